// object_pool's slabs: one frame of objects of one type, laid out at multiples of the object's
// stride from the frame's start (so no object straddles a frame), and the descriptor that says
// which of them are live and which handle slot owns each. object_pool's internals: users never
// name these.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/operations.hpp>
#include <movable/pool/pool_frames.hpp>
#include <movable/tagged_ptr.hpp>

namespace movable::detail {

// A slab's entry for one object place, 32 bits:
//   taken:  bit 0 set, bits 1..31 the handle slot that owns the place (the object is live,
//           being constructed or being destroyed: the slot's pin word says which is safe)
//   free:   bit 0 clear, bits 1..31 the next free place (capacity: none)
struct slab_entry {
    static constexpr std::uint32_t max_slot = 0x7ffffffe; // handle slots a pool may use

    static constexpr std::uint32_t taken(std::uint32_t slot) noexcept { return (slot << 1) | 1; }
    static constexpr std::uint32_t free_link(std::uint32_t next) noexcept { return next << 1; }
    static constexpr bool is_taken(std::uint32_t entry) noexcept { return (entry & 1) != 0; }
    static constexpr std::uint32_t slot(std::uint32_t entry) noexcept { return entry >> 1; }
    static constexpr std::uint32_t next(std::uint32_t entry) noexcept { return entry >> 1; }
};
static_assert(slab_entry::slot(slab_entry::taken(slab_entry::max_slot)) == slab_entry::max_slot &&
                  slab_entry::is_taken(slab_entry::taken(0)) &&
                  !slab_entry::is_taken(slab_entry::free_link(0x7fffffff)) &&
                  slab_entry::next(slab_entry::free_link(0x7fffffff)) == 0x7fffffff,
              "slab_entry: the taken bit and the slot / next place must not overlap");

// A slab's descriptor, followed in the same allocation by its `capacity` entries. Cache-line
// aligned, which also leaves the low bits of its address free for the frame's private word.
struct alignas(64) object_slab {
    // Under the pool lock.
    std::uint32_t in_use = 0;        // taken places
    std::uint32_t free_head = 0;     // first free place; capacity when none
    std::uint32_t capacity = 0;      // set at creation, then read-only
    std::uint32_t skip_epoch = 0;    // compaction `epoch` found pinned objects it could not move
    std::uint8_t group = 0xff;       // fullness list it is on (0xff: none)
    frame* home = nullptr;           // the slab's frame; changed by migration
    object_slab* previous = nullptr; // fullness list links, or the release chain
    object_slab* next = nullptr;
    // Lock-free: 1 once empty and on its way back to the arena (migration answers busy).
    std::atomic<std::uint32_t> freeing{0};

    [[nodiscard]] std::uint32_t* entries() noexcept {
        return std::launder(reinterpret_cast<std::uint32_t*>(this + 1));
    }
    [[nodiscard]] const std::uint32_t* entries() const noexcept {
        return std::launder(reinterpret_cast<const std::uint32_t*>(this + 1));
    }

    // A descriptor with every place free, or null when memory runs out.
    static object_slab* make(std::uint32_t capacity) noexcept {
        void* memory = ::operator new (sizeof(object_slab) + capacity * sizeof(std::uint32_t),
                                       std::align_val_t{alignof(object_slab)}, std::nothrow);
        if (memory == nullptr) {
            return nullptr;
        }
        auto* slab = ::new (memory) object_slab;
        slab->capacity = capacity;
        std::uint32_t* entries = ::new (static_cast<void*>(slab + 1)) std::uint32_t[capacity];
        for (std::uint32_t place = 0; place < capacity; ++place) {
            entries[place] = slab_entry::free_link(place + 1);
        }
        return slab;
    }
    static void unmake(object_slab* slab) noexcept {
        slab->~object_slab();
        ::operator delete (static_cast<void*>(slab), std::align_val_t{alignof(object_slab)});
    }

    // Takes the first free place for `slot` (there must be one). Pool locked.
    std::uint32_t take(std::uint32_t slot) noexcept {
        const std::uint32_t place = free_head;
        MOVABLE_CONTRACT(place < capacity, "object_pool: a slab's free list is corrupted");
        free_head = slab_entry::next(entries()[place]);
        entries()[place] = slab_entry::taken(slot);
        ++in_use;
        return place;
    }
    // Puts a place back on the free list. Pool locked.
    void give_back(std::uint32_t place) noexcept {
        MOVABLE_CONTRACT(slab_entry::is_taken(entries()[place]),
                         "object_pool: freed a slab place that is free");
        entries()[place] = slab_entry::free_link(free_head);
        free_head = place;
        --in_use;
    }
};
static_assert(sizeof(object_slab) % alignof(std::uint32_t) == 0,
              "object_slab: its entries follow it in the same allocation");

using slab_link = tagged_ptr<object_slab, 0>; // a frame's private word: the slab

// A new slab of `capacity` places: one movable frame from the arena (its memory aligned to
// `alignment`: a contract), owned by `owner`. Called with no pool lock held (it locks the
// frame); null when the arena or the heap is exhausted.
template <class Arena, class Owner>
object_slab* slab_create(Arena& arena, std::uint32_t capacity, std::size_t alignment,
                         Owner& owner) noexcept {
    object_slab* slab = object_slab::make(capacity);
    if (slab == nullptr) {
        return nullptr;
    }
    frame* f = arena.try_allocate(0, frame_kind::movable);
    if (f == nullptr) {
        object_slab::unmake(slab);
        return nullptr;
    }
    MOVABLE_CONTRACT(reinterpret_cast<std::uintptr_t>(arena.address_of(*f)) % alignment == 0,
                     "object_pool: the arena's frame is not aligned for T");
    slab->home = f;
    f->set_private_word(slab_link(slab).raw());
    std::lock_guard guard(*f);
    set_movable(*f, owner);
    return slab;
}

// Gives an emptied slab (marked freeing, on no list: migration answers busy for it) back: its
// frame is locked (waiting is fine, no pool lock is held) and freed, unless the core holds it
// isolated, which then frees it. Then the descriptor goes. True when the core frees the frame.
template <class Arena>
bool slab_release(Arena& arena, object_slab* slab) noexcept {
    const bool core_frees_it = free_pool_frame(arena, *slab->home);
    object_slab::unmake(slab);
    return core_frees_it;
}

} // namespace movable::detail
