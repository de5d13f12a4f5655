// The pools' handle table: slots that never move, a lock-free stack of free slots, and a 32-bit
// generation per slot so that a stale handle never equals a live one. Also the three packed
// words around it, each built and taken apart only here: the handle value (slot, generation),
// the slot word (allocated tag, class, location) and the location (frame index, object index).
// Knows nothing of arenas or frames: a pool says what a location means.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>

#include <movable/detail/contract.hpp>
#include <movable/detail/mapped_region.hpp>

namespace movable::detail {

// Handle values (e.g. zspage_handle::value()): the generation in the high half, the slot index
// + 1 in the low half (so that 0 is the empty handle).
struct handle_value {
    static constexpr unsigned generation_shift = 32;
    static constexpr std::uint64_t slot_mask = 0xffffffff;
    // A slot freed at this generation is retired (never reused): a next generation would wrap
    // to 0 and let a stale handle equal a live one.
    static constexpr std::uint32_t last_generation = 0xffffffff;

    static constexpr std::uint64_t make(std::uint32_t slot, std::uint32_t generation) noexcept {
        return (std::uint64_t{generation} << generation_shift) | (std::uint64_t{slot} + 1);
    }
    // The empty handle gives 0xffffffff, which no table contains.
    static constexpr std::uint32_t slot(std::uint64_t value) noexcept {
        return static_cast<std::uint32_t>((value & slot_mask) - 1);
    }
    static constexpr std::uint32_t generation(std::uint64_t value) noexcept {
        return static_cast<std::uint32_t>(value >> generation_shift);
    }
};
static_assert(handle_value::slot(handle_value::make(0xfffffffe, 0xffffffff)) == 0xfffffffe &&
                  handle_value::generation(handle_value::make(0xfffffffe, 0xffffffff)) ==
                      0xffffffff &&
                  handle_value::make(0, 0) != 0,
              "handle_value: slot and generation must round-trip without overlapping");

// Slot words of the handle table (one atomic 64-bit word per handle):
//   bit 0          allocated tag
//   bits 1..9      size class of the object (the pool's distinct class id)
//   bits 10..63    allocated: the object's location (location_format)
//                  free: next free slot + 1 (0: none)
struct slot_word {
    static constexpr std::uint64_t allocated_tag = 1;
    static constexpr unsigned class_shift = 1;
    static constexpr unsigned class_bits = 9;
    static constexpr std::uint64_t class_mask = (std::uint64_t{1} << class_bits) - 1;
    static constexpr std::size_t class_count = std::size_t{1} << class_bits;
    static constexpr unsigned location_shift = class_shift + class_bits;
    static constexpr unsigned location_bits = 64 - location_shift;

    static constexpr std::uint64_t make(std::uint64_t location, std::uint64_t class_id,
                                        bool allocated) noexcept {
        return (location << location_shift) | ((class_id & class_mask) << class_shift) |
               (allocated ? allocated_tag : 0);
    }
    static constexpr bool allocated(std::uint64_t word) noexcept {
        return (word & allocated_tag) != 0;
    }
    static constexpr std::uint32_t class_id(std::uint64_t word) noexcept {
        return static_cast<std::uint32_t>((word >> class_shift) & class_mask);
    }
    static constexpr std::uint64_t location(std::uint64_t word) noexcept {
        return word >> location_shift;
    }
};
static_assert(slot_word::allocated_tag < (std::uint64_t{1} << slot_word::class_shift) &&
                  slot_word::class_shift + slot_word::class_bits <= slot_word::location_shift,
              "slot_word: the allocated tag, the class and the location must not overlap");
static_assert(slot_word::location_bits >= 32,
              "slot_word: a free slot's location holds the next free slot + 1 (32 bits)");
static_assert(slot_word::class_id(slot_word::make(~std::uint64_t{0} >> slot_word::location_shift,
                                                  slot_word::class_mask, true)) ==
                  slot_word::class_mask,
              "slot_word: a full location must leave the class field intact");

// An object's location in a slot word: frame index << object_bits | object index. object_bits
// is chosen per pool (enough for its largest object index and a "none" value); the frame index
// takes what is left of slot_word::location_bits.
class location_format {
public:
    constexpr location_format() noexcept = default;
    // A format whose object index holds 0..max_object_index.
    constexpr explicit location_format(std::size_t max_object_index) noexcept
        : object_bits_(static_cast<unsigned>(std::bit_width(max_object_index))) {}

    // True when frame indexes 0..frame_count - 1 fit beside the object index.
    [[nodiscard]] constexpr bool fits(std::size_t frame_count) const noexcept {
        return static_cast<unsigned>(std::bit_width(frame_count)) + object_bits_ <=
               slot_word::location_bits;
    }
    [[nodiscard]] constexpr std::uint64_t make(std::size_t frame_index,
                                               std::uint32_t object) const noexcept {
        return (std::uint64_t{frame_index} << object_bits_) | object;
    }
    [[nodiscard]] constexpr std::size_t frame_index(std::uint64_t location) const noexcept {
        return static_cast<std::size_t>(location >> object_bits_);
    }
    [[nodiscard]] constexpr std::uint32_t object(std::uint64_t location) const noexcept {
        return static_cast<std::uint32_t>(location & ((std::uint64_t{1} << object_bits_) - 1));
    }
    [[nodiscard]] constexpr unsigned object_bits() const noexcept { return object_bits_; }

private:
    unsigned object_bits_ = 0;
};
static_assert(location_format(255).frame_index(location_format(255).make(12345, 255)) == 12345 &&
                  location_format(255).object(location_format(255).make(12345, 255)) == 255,
              "location_format: frame index and object index must round-trip without "
              "overlapping");

// A handle's slot, 16 bytes: its slot word, its generation and a 32-bit word of the pool's own.
// The generation has a word of its own, as wide as the handle's 32 generation bits, so the slot
// word keeps its bits for the location. A slot whose generation runs out is retired, so a stale
// handle can never equal a live one, however often its slot was reused.
struct alignas(16) handle_slot {
    std::atomic<std::uint64_t> word{0}; // slot_word
    // The live handle's generation (allocated) or the next handle's (free). Bumped on free and
    // read by allocate and the stale checks, under the pool's lock for the object; atomic
    // because a stale check may read it under another lock than a concurrent free writes it.
    std::atomic<std::uint32_t> generation{0};
    // The pool's word for the object: zspage_pool keeps its requested size (under the class
    // lock), object_pool its pin word (pool/pins.hpp: lock-free).
    std::atomic<std::uint32_t> pool_word{0};
};
static_assert(sizeof(handle_slot) == 16,
              "handle_slot: four slots per cache line, none straddles two");

// The handle table's free-stack head word: (change count << 32) | (top slot + 1), 0 in the low half
// when the stack is empty. Every push and pop bumps the count, so a head read before another
// thread's pop-push-pop never compares equal (ABA).
struct handle_free_stack {
    static constexpr std::uint64_t link_mask = 0xffffffff;
    static constexpr unsigned count_shift = 32;
    // The top slot + 1 (0: empty), as a free slot word's link stores it.
    static constexpr std::uint64_t link(std::uint64_t head) noexcept { return head & link_mask; }
    static constexpr std::uint32_t top(std::uint64_t head) noexcept {
        return static_cast<std::uint32_t>(link(head) - 1); // empty: none
    }
    // The head after `head` with `link` (slot + 1, or 0) on top.
    static constexpr std::uint64_t make(std::uint64_t head, std::uint64_t link) noexcept {
        return (((head >> count_shift) + 1) << count_shift) | link;
    }
};
static_assert(handle_free_stack::top(0) == 0xffffffff &&
                  handle_free_stack::top(handle_free_stack::make(0, 5)) == 4,
              "handle_free_stack: an empty head must read as no slot, a pushed slot as itself");

// Handle slots: a directory of fixed chunks allocated on demand, so a slot never moves and
// lookups take no lock. The directory is a no-reserve mapping (zero bytes are null chunk
// pointers), so its untouched part costs nothing: a table sized for a large arena's worst case
// holds memory for the chunks in use only. Free slots form a lock-free stack through their words;
// its head carries a change count against ABA. The growth lock only guards growth (a leaf lock). A
// slot's life: acquire() -> the pool marks it allocated -> the pool marks it free and calls
// end_generation() -> release() (reused) or, when the generation ran out, retire() (never).
class handle_table {
public:
    static constexpr std::size_t chunk_slots = 1024;
    static constexpr std::uint32_t none = 0xffffffff;

    explicit handle_table(std::size_t max_slots)
        : chunks_((max_slots + chunk_slots - 1) / chunk_slots),
          directory_region_(std::max<std::size_t>(chunks_, 1) * sizeof(std::atomic<handle_slot*>)),
          directory_(static_cast<std::atomic<handle_slot*>*>(
              static_cast<void*>(directory_region_.start()))) {}
    ~handle_table() {
        for (std::size_t i = 0; i < chunks_; ++i) {
            delete[] directory_[i].load(std::memory_order_relaxed);
        }
    }
    handle_table(const handle_table&) = delete;
    handle_table& operator=(const handle_table&) = delete;

    // A free slot (its generation is the next handle's), or `none` when the table is full or a
    // new chunk cannot be allocated.
    [[nodiscard]] std::uint32_t acquire() noexcept {
        std::uint64_t head = free_head_.load(std::memory_order_acquire);
        while (handle_free_stack::top(head) != none) {
            const std::uint32_t slot = handle_free_stack::top(head);
            // May read a word another thread just took and rewrote: then the count changed
            // and the exchange fails.
            const std::uint64_t next =
                slot_word::location(word(slot).load(std::memory_order_acquire));
            if (free_head_.compare_exchange_weak(head, handle_free_stack::make(head, next),
                                                 std::memory_order_acquire,
                                                 std::memory_order_acquire)) {
                return slot;
            }
        }
        return grow();
    }
    // Returns a slot to the free stack: one never marked allocated (its generation stays), or
    // one whose word the caller marked free and whose generation end_generation() bumped.
    void release(std::uint32_t slot) noexcept {
        std::atomic<std::uint64_t>& w = word(slot);
        const std::uint64_t old = w.load(std::memory_order_relaxed);
        std::uint64_t head = free_head_.load(std::memory_order_relaxed);
        for (;;) {
            w.store(slot_word::make(handle_free_stack::link(head), slot_word::class_id(old), false),
                    std::memory_order_relaxed);
            if (free_head_.compare_exchange_weak(
                    head, handle_free_stack::make(head, std::uint64_t{slot} + 1),
                    std::memory_order_release, std::memory_order_relaxed)) {
                return;
            }
        }
    }
    // Ends the generation of a slot being freed: the next handle it gives out gets the next
    // one. False when the generation ran out: the caller must retire() the slot, not release it.
    // Under the pool's lock for the object, as the generation's readers.
    [[nodiscard]] bool end_generation(std::uint32_t index) const noexcept {
        std::atomic<std::uint32_t>& generation = slot(index).generation;
        const std::uint32_t current = generation.load(std::memory_order_relaxed);
        if (current == handle_value::last_generation) {
            return false;
        }
        generation.store(current + 1, std::memory_order_relaxed);
        return true;
    }
    // Keeps a freed slot out of use for good (its generation ran out); it stays marked free.
    void retire(std::uint32_t /*slot*/) noexcept {
        retired_.fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::size_t retired() const noexcept {
        return retired_.load(std::memory_order_relaxed);
    }
    // Slots handed out at least once (free, allocated or retired).
    [[nodiscard]] std::size_t published() const noexcept {
        return published_.load(std::memory_order_acquire);
    }
    [[nodiscard]] bool contains(std::uint32_t slot) const noexcept { return slot < published(); }
    // The slot a handle names, checked in every build before anything follows it: a forged
    // handle's slot past the published ones would index a chunk never allocated or past the
    // directory (one load of published() on the pools' locked lookups). Aborts with
    // `bad_handle_message` for such a slot.
    [[nodiscard]] handle_slot& checked_slot(std::uint64_t handle,
                                            const char* bad_handle_message) const noexcept {
        const std::uint32_t index = handle_value::slot(handle);
        release_check(contains(index), bad_handle_message);
        return slot(index);
    }
    // Calls visit(slot) for each slot on the free stack, top first, until it returns false.
    // False when the stack leaves the published slots or does not end within published() + 1
    // of them (corrupted links). For invariant checks of a quiescent table only: acquire and
    // release change the stack under it.
    template <class Visit>
    [[nodiscard]] bool walk_free_stack(Visit&& visit) const {
        std::uint64_t link = handle_free_stack::link(free_head_.load(std::memory_order_acquire));
        for (std::size_t visited = 0; link != 0; ++visited) {
            if (link > published() || visited > published()) {
                return false;
            }
            const auto index = static_cast<std::uint32_t>(link - 1);
            if (!visit(index)) {
                return true;
            }
            link = slot_word::location(word(index).load(std::memory_order_acquire));
        }
        return true;
    }
    [[nodiscard]] handle_slot& slot(std::uint32_t index) const noexcept {
        return directory_[index / chunk_slots].load(std::memory_order_acquire)[index % chunk_slots];
    }
    [[nodiscard]] std::atomic<std::uint64_t>& word(std::uint32_t index) const noexcept {
        return slot(index).word;
    }

private:
    std::uint32_t grow() noexcept {
        std::lock_guard guard(growth_lock_);
        const std::size_t slot = published_.load(std::memory_order_relaxed);
        if (slot >= chunks_ * chunk_slots || slot >= none) {
            return none;
        }
        if (slot % chunk_slots == 0) {
            auto* chunk = new (std::nothrow) handle_slot[chunk_slots];
            if (chunk == nullptr) {
                return none;
            }
            directory_[slot / chunk_slots].store(chunk, std::memory_order_release);
        }
        published_.store(slot + 1, std::memory_order_release);
        return static_cast<std::uint32_t>(slot);
    }

    std::size_t chunks_;
    static_assert(std::atomic<handle_slot*>::is_always_lock_free &&
                      sizeof(std::atomic<handle_slot*>) == sizeof(std::uintptr_t),
                  "handle_table: a zero-filled directory entry must be a null chunk pointer");
    mapped_region directory_region_;                      // zero-filled until a chunk is published
    std::atomic<handle_slot*>* directory_;                // chunks_ entries in directory_region_
    alignas(64) std::atomic<std::uint64_t> free_head_{0}; // handle_free_stack
    alignas(64) std::mutex growth_lock_;
    std::atomic<std::size_t> published_{0}; // slots handed out at least once
    std::atomic<std::size_t> retired_{0};   // slots whose generation ran out: never reused
};

// The pools' check_invariants of a quiescent table, given the slots the pool counted allocated:
// the free stack ends, its entries are distinct and marked free, and allocated + free + retired
// == published. `invariant(holds, what)` reports a failure.
template <class Invariant>
void check_free_stack(const handle_table& handles, std::size_t allocated, Invariant&& invariant) {
    const std::size_t published = handles.published();
    std::size_t on_stack = 0;
    std::unique_ptr<bool[]> seen(new bool[published]());
    const bool stack_ends = handles.walk_free_stack([&](std::uint32_t slot) {
        invariant(!seen[slot], "the handle table's free stack has a slot twice");
        seen[slot] = true;
        ++on_stack;
        invariant(!slot_word::allocated(handles.word(slot).load(std::memory_order_relaxed)),
                  "the handle table's free stack has an allocated slot");
        return true;
    });
    invariant(stack_ends,
              "the handle table's free stack leaves the published slots or does not end");
    invariant(allocated + on_stack + handles.retired() == published,
              "allocated + free + retired handle slots != published slots");
}

// check_free_stack, counting the allocated slots itself: they must be the pool's `objects`.
template <class Invariant>
void check_handle_slots(const handle_table& handles, std::size_t objects, Invariant&& invariant) {
    const std::size_t published = handles.published();
    std::size_t allocated = 0;
    for (std::uint32_t slot = 0; slot < published; ++slot) {
        allocated +=
            slot_word::allocated(handles.word(slot).load(std::memory_order_relaxed)) ? 1 : 0;
    }
    invariant(allocated == objects, "allocated handle slots differ from the objects");
    check_free_stack(handles, allocated, invariant);
}

// True when `w`, the word of `entry`, is a live object's and `handle` names it: the slot is
// allocated and has the handle's generation.
inline bool names_live_object(const handle_slot& entry, std::uint64_t w,
                              std::uint64_t handle) noexcept {
    return slot_word::allocated(w) &&
           entry.generation.load(std::memory_order_relaxed) == handle_value::generation(handle);
}

// The slot word of a live handle's object, read under the pool's lock for it (under which it
// cannot change); a stale handle aborts naming `stale_message`. A free slot (freed twice, stale,
// forged) is caught in every build: its word holds the next free slot, not a location, and
// following it as one would write outside the pool's memory. A slot reused since (another
// generation) names another handle's object, inside the pool: caught in Debug and hardened
// builds only (docs/concepts.md, "Handles: what Release checks", has the cost). The caller got
// `entry` from handle_table::checked_slot.
inline std::uint64_t live_slot_word(const handle_slot& entry, std::uint64_t handle,
                                    const char* stale_message) noexcept {
    const std::uint64_t w = entry.word.load(std::memory_order_relaxed);
    release_check(slot_word::allocated(w), stale_message);
    MOVABLE_CONTRACT(names_live_object(entry, w, handle), stale_message);
    return w;
}

} // namespace movable::detail
