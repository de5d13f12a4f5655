// The zspage descriptor (a chain of 1..N frames holding objects of one size class), the
// encodings inside it (a frame's link to its zspage, object headers, the free-object list), and
// a size class's zspages sorted into fullness groups. The object helpers at the end address a
// zspage's bytes through the pool's arena. zspage_pool's internals: users never name these.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

#include <movable/detail/contract.hpp>
#include <movable/detail/small_locks.hpp>
#include <movable/frame.hpp>
#include <movable/operations.hpp>
#include <movable/pool/descriptor_table.hpp>
#include <movable/pool/fullness_groups.hpp>
#include <movable/pool/pins.hpp>
#include <movable/pool/pool_frames.hpp>
#include <movable/pool/size_classes.hpp>
#include <movable/tagged_ptr.hpp>

namespace movable {

// Fullness groups a zspage can be in by in-use ratio (pool/fullness_groups.hpp): [0]: under
// 10% ... [9]: under 100%, [10]: full; empty zspages are freed.
inline constexpr std::size_t zspage_fullness_groups = fullness_group_count;

namespace detail {

// The descriptor of one zspage. Cache-line aligned, with what allocation, free and pinning
// touch in the first line; the alignment also leaves the low bits of its address free, so a
// frame's private word can hold a pointer to it tagged with the frame's position in the chain.
// Descriptors are type-stable (a pool's zspage_descriptors table recycles them and never frees
// one while the pool lives), so a reader may follow a frame's private word without a lock and
// pin what it finds optimistically.
struct alignas(64) zspage {
    // Under the class lock.
    std::uint32_t in_use = 0;    // allocated objects
    std::uint32_t free_head = 0; // first free object; objects_per_zspage when none
    std::uint32_t class_id = 0;  // set at creation, then read-only until the zspage is freed
    std::uint8_t group = 0xff;   // fullness list it is on (0xff: none)
    // Lock-free words.
    // Mappings and reads in progress, and the mover bit (container_claim): readers pin without
    // a lock and back off from a claimed zspage; compaction, migration and release claim it.
    std::atomic<std::uint64_t> pins{0};
    std::atomic<std::uint64_t> freeing{0}; // 1 once empty and on its way back to the arena
    // Under the class lock.
    std::array<frame*, zspage_max_chain_frames> frames{}; // the chain; changed by migration
    zspage* previous = nullptr; // fullness list links, or the release chain
    zspage* next = nullptr;
    std::uint64_t huge_header = 0; // huge classes: the object's header word lives here
};

using zspage_link = tagged_ptr<zspage, 4>; // a frame's private word: zspage | position
using zspage_descriptors = descriptor_table<zspage>;
static_assert(low_bits_available<zspage> >= 4 && zspage_max_chain_frames <= 16,
              "zspage descriptors must leave 4 low bits for the frame's position in the chain");

// A pin on a zspage, its reader lock (see zspage_pool's lock order and pool/pins.hpp): taken
// without a lock (container_claim::try_pin, then validated) or under the class lock, released
// without any lock. While a zspage is pinned, compaction skips it and migration answers busy.
using zspage_pin = container_pin<zspage>;

// A mover's claim on a zspage (container_claim): true when no reader pins it.
[[nodiscard]] inline bool zspage_try_claim(zspage& zs) noexcept {
    return container_claim::try_claim(zs.pins);
}
inline void zspage_end_claim(zspage& zs) noexcept {
    container_claim::end_claim(zs.pins);
}

// Object headers (the first word of every object of a non-huge class; the zspage's
// huge_header for a huge class), so that migration and compaction find an object's handle:
//   allocated: bit 0 set, bits 32..63 the slot index
//   free:      bit 0 clear, bits 1..32 the next free object (objects_per_zspage: none)
struct object_header {
    static constexpr std::uint64_t allocated(std::uint64_t slot) noexcept {
        return (slot << 32) | 1;
    }
    static constexpr std::uint64_t free_link(std::uint64_t next) noexcept { return next << 1; }
    static constexpr bool is_allocated(std::uint64_t header) noexcept { return (header & 1) != 0; }
    static constexpr std::uint32_t slot(std::uint64_t header) noexcept {
        return static_cast<std::uint32_t>(header >> 32);
    }
    static constexpr std::uint32_t next(std::uint64_t header) noexcept {
        return static_cast<std::uint32_t>(header >> 1);
    }
};

// One size class of a pool: its lock, what it is, and its zspages by fullness group.
struct alignas(64) zspage_class {
    contended_mutex lock;
    // Read-only after construction.
    zspage_size_class info;
    std::uint32_t id = 0;
    std::uint32_t header_bytes = 0; // 0 for huge classes
    // Under the lock.
    fullness_groups<zspage> groups; // its zspages; capacity: objects_per_zspage
    std::size_t zspages = 0;
    std::size_t objects_in_use = 0; // taken places: objects and threads' reservations
    std::size_t bytes_in_use = 0;   // of objects allocated and freed under the lock (the
                                    // magazines count the rest)
    // Reservations compaction took back whose threads have not popped them yet (they are
    // still in a magazine's count). Changed by compaction (locked) and by the threads (not).
    std::atomic<std::size_t> stolen_pending{0};

    // Sets what the class is; once, before the pool is shared.
    void init(const zspage_size_class& size_class, std::uint32_t class_id) noexcept {
        info = size_class;
        id = class_id;
        header_bytes = size_class.huge ? 0 : static_cast<std::uint32_t>(zspage_object_header_bytes);
        groups.capacity = size_class.objects_per_zspage;
    }

    // Frames compaction could free now (the kernel's zs_can_compact), counting `reserved`
    // places of threads' magazines as free (compaction takes them back).
    [[nodiscard]] std::size_t frames_freeable(std::size_t reserved = 0) const noexcept {
        const std::size_t allocated = zspages * info.objects_per_zspage;
        const std::size_t used = objects_in_use - std::min(reserved, objects_in_use);
        if (allocated <= used) {
            return 0;
        }
        return (allocated - used) / info.objects_per_zspage * info.frames_per_zspage;
    }

    void link(zspage& zs) noexcept { groups.link(zs); }
    void unlink(zspage& zs) noexcept { groups.unlink(zs); }
    void refile(zspage& zs) noexcept { groups.refile(zs); }
    // After places of the listed zspage `zs` went back on its free list: an emptied zspage
    // leaves the lists, marked freeing, onto the front of `chain` (linked through next; freed
    // once the class lock is dropped); else it is refiled. Returns the chain.
    zspage* settle_after_free(zspage& zs, zspage* chain) noexcept {
        if (zs.in_use != 0) {
            refile(zs);
            return chain;
        }
        unlink(zs);
        zs.freeing.store(1, std::memory_order_release);
        --zspages;
        zs.next = chain;
        return &zs;
    }
    // Takes every zspage off the lists, marked freeing, onto the front of `chain` (linked
    // through next) and returns it; the class is then empty. The pool's destructor.
    zspage* take_all(zspage* chain) noexcept {
        groups.take_all([&](zspage& zs) {
            MOVABLE_CONTRACT(zs.pins.load(std::memory_order_acquire) == 0,
                             "zspage_pool::~zspage_pool: an object is still mapped");
            zs.freeing.store(1, std::memory_order_relaxed);
            zs.next = chain;
            chain = &zs;
        });
        zspages = 0;
        objects_in_use = 0;
        bytes_in_use = 0;
        return chain;
    }
    // The fullest zspage that is not full, or null.
    [[nodiscard]] zspage* fullest_not_full() const noexcept { return groups.fullest_not_full(); }
    // Compaction's picks: the densest / sparsest not-full zspage that nobody has pinned, claimed
    // (zspage_try_claim; the caller ends the claim when it links the zspage back).
    zspage* take_densest_claimed() noexcept { return groups.take_densest(zspage_try_claim); }
    zspage* take_sparsest_claimed() noexcept { return groups.take_sparsest(zspage_try_claim); }
};

// ---- objects in a zspage (the pool's arena gives each frame's address) ------------------------

// The byte at `offset` of the zspage's chain.
template <class Arena>
std::byte* zspage_byte_at(Arena& arena, zspage& zs, std::size_t offset) noexcept {
    return arena.address_of(*zs.frames[offset / Arena::frame_size]) + offset % Arena::frame_size;
}

// Copies n bytes out of / into the chain at `offset`, frame piece by frame piece.
template <class Arena>
void zspage_copy_out(Arena& arena, zspage& zs, std::size_t offset, std::byte* out,
                     std::size_t n) noexcept {
    while (n > 0) {
        const std::size_t chunk = std::min(n, Arena::frame_size - offset % Arena::frame_size);
        std::memcpy(out, zspage_byte_at(arena, zs, offset), chunk);
        out += chunk;
        offset += chunk;
        n -= chunk;
    }
}
template <class Arena>
void zspage_copy_in(Arena& arena, zspage& zs, std::size_t offset, const std::byte* in,
                    std::size_t n) noexcept {
    while (n > 0) {
        const std::size_t chunk = std::min(n, Arena::frame_size - offset % Arena::frame_size);
        std::memcpy(zspage_byte_at(arena, zs, offset), in, chunk);
        in += chunk;
        offset += chunk;
        n -= chunk;
    }
}
// Copies n bytes from one chain to another (either side may span two frames).
template <class Arena>
void zspage_copy(Arena& arena, zspage& dst, std::size_t to_offset, zspage& src,
                 std::size_t from_offset, std::size_t n) noexcept {
    constexpr std::size_t frame_size = Arena::frame_size;
    while (n > 0) {
        const std::size_t chunk = std::min(
            {n, frame_size - from_offset % frame_size, frame_size - to_offset % frame_size});
        std::memcpy(zspage_byte_at(arena, dst, to_offset), zspage_byte_at(arena, src, from_offset),
                    chunk);
        from_offset += chunk;
        to_offset += chunk;
        n -= chunk;
    }
}

template <class Arena>
std::uint64_t zspage_read_header(Arena& arena, const zspage_class& cls, zspage& zs,
                                 std::uint32_t object) noexcept {
    if (cls.info.huge) {
        return zs.huge_header;
    }
    std::uint64_t header = 0; // never spans frames: objects and frames are multiples of 16
    std::memcpy(&header, zspage_byte_at(arena, zs, std::size_t{object} * cls.info.object_size),
                sizeof header);
    return header;
}
template <class Arena>
void zspage_write_header(Arena& arena, const zspage_class& cls, zspage& zs, std::uint32_t object,
                         std::uint64_t header) noexcept {
    if (cls.info.huge) {
        zs.huge_header = header;
        return;
    }
    std::memcpy(zspage_byte_at(arena, zs, std::size_t{object} * cls.info.object_size), &header,
                sizeof header);
}

// Takes the first object off the zspage's free list (there must be one). Class locked.
template <class Arena>
std::uint32_t zspage_pop_free_object(Arena& arena, const zspage_class& cls, zspage& zs) noexcept {
    const std::uint32_t object = zs.free_head;
    MOVABLE_CONTRACT(object < cls.info.objects_per_zspage,
                     "zspage_pool: free list of a zspage is corrupted");
    zs.free_head = object_header::next(zspage_read_header(arena, cls, zs, object));
    ++zs.in_use;
    if (!cls.info.huge && zs.free_head < cls.info.objects_per_zspage) {
        // The next allocation from this zspage reads and writes that header.
        __builtin_prefetch(
            zspage_byte_at(arena, zs, std::size_t{zs.free_head} * cls.info.object_size), 1);
    }
    return object;
}
// Puts an object back on the zspage's free list. Class locked.
template <class Arena>
void zspage_push_free_object(Arena& arena, const zspage_class& cls, zspage& zs,
                             std::uint32_t object) noexcept {
    zspage_write_header(arena, cls, zs, object, object_header::free_link(zs.free_head));
    zs.free_head = object;
    --zs.in_use;
}

// ---- a zspage's life ---------------------------------------------------------------------------

// A new zspage for `cls`: frames from the arena, every object on the free list, every frame
// movable with `owner` as its owner. Called with no lock held; null when the arena is exhausted.
template <class Arena, class Owner>
zspage* zspage_create(Arena& arena, const zspage_class& cls, Owner& owner,
                      zspage_descriptors& descriptors) noexcept {
    zspage* zs = descriptors.take();
    if (zs == nullptr) {
        return nullptr;
    }
    // A recycled descriptor: every field anew but the pin word, which racy readers may be
    // counting themselves into and out of (they find the frames changed and back off).
    zs->in_use = 0;
    zs->class_id = cls.id;
    zs->group = 0xff;
    zs->freeing.store(0, std::memory_order_relaxed);
    zs->frames = {};
    zs->previous = nullptr;
    zs->next = nullptr;
    zs->huge_header = 0;
    const std::size_t frames = cls.info.frames_per_zspage;
    for (std::size_t position = 0; position < frames; ++position) {
        frame* f = arena.try_allocate(0, frame_kind::movable);
        if (f == nullptr) {
            for (std::size_t i = 0; i < position; ++i) {
                arena.deallocate(*zs->frames[i], 0);
            }
            descriptors.give_back(zs);
            return nullptr;
        }
        zs->frames[position] = f;
    }
    const auto objects = static_cast<std::uint32_t>(cls.info.objects_per_zspage);
    for (std::uint32_t object = 0; object < objects; ++object) {
        zspage_write_header(arena, cls, *zs, object, object_header::free_link(object + 1));
    }
    zs->free_head = 0;
    // Everything the owner callbacks read is in place: let the core see the frames.
    for (std::size_t position = 0; position < frames; ++position) {
        frame& f = *zs->frames[position];
        f.set_private_word(zspage_link(zs, position).raw());
        std::lock_guard guard(f);
        set_movable(f, owner);
    }
    return zs;
}

// Claims an emptied zspage for its release, waiting out the pins of readers that followed a
// stale location to it (they find their handle changed and let go at once). A pin that stays is
// a mapping of an object freed while mapped: a contract violation, reported after a bounded
// wait (in builds without contracts the wait goes on: never free what a reader still maps).
inline void zspage_claim_for_release(zspage& zs) noexcept {
    constexpr std::size_t patience = std::size_t{1} << 20;
    for (std::size_t looks = 0; !zspage_try_claim(zs); ++looks) {
        MOVABLE_CONTRACT(looks < patience,
                         "zspage_pool::deallocate: freed an object that is still mapped");
        std::this_thread::yield();
    }
}

// Gives an emptied zspage (marked freeing, on no list; its chain is frozen because migration
// answers busy for it) back: claims it (no reader left), then each frame is locked (waiting is
// fine, no pool lock is held) and released; a frame the core holds isolated is left for the core
// to free. Then the descriptor goes back to the table: after clear_movable under each frame's
// lock, no callback can reach it. Returns the frames left to the core.
template <class Arena>
std::size_t zspage_release(Arena& arena, zspage* zs, std::size_t frames,
                           zspage_descriptors& descriptors) noexcept {
    zspage_claim_for_release(*zs);
    std::size_t left_to_core = 0;
    for (std::size_t position = 0; position < frames; ++position) {
        left_to_core += free_pool_frame(arena, *zs->frames[position]) ? 1 : 0;
    }
    zspage_end_claim(*zs);
    descriptors.give_back(zs);
    return left_to_core;
}

// `sync` migration of a frame of the pinned zspage `zs`, its class lock held by `guard`: waits,
// bounded (`looks_left` looks, a yield before each), for the pins to drop. Drops the class lock
// while it waits (a pin holder may need it) and takes it again to look; src's frame lock, held
// throughout, keeps zs alive (freeing a zspage locks each of its frames before the descriptor
// goes). True when, class lock held again, the zspage is not being freed and claimed
// (zspage_try_claim: the caller ends the claim).
inline bool zspage_wait_for_unpinned(zspage& zs, std::unique_lock<contended_mutex>& guard,
                                     std::size_t looks_left) noexcept {
    while (looks_left > 0) {
        guard.unlock();
        do {
            std::this_thread::yield();
            --looks_left;
        } while (looks_left > 0 && zs.pins.load(std::memory_order_acquire) != 0);
        guard.lock();
        if (zs.freeing.load(std::memory_order_relaxed) != 0) {
            return false;
        }
        if (zspage_try_claim(zs)) {
            return true;
        }
    }
    return false;
}

// Starts fetching what a free or a read of the object in frame `frame_index` will touch (its frame
// descriptor and the line holding its header), before the class lock is taken: the free's
// header store would otherwise stall the next locked instruction. Harmless when the
// location is stale or garbage: a prefetch never faults.
template <class Arena>
void zspage_prefetch_object(Arena& arena, const zspage_class& cls, std::size_t frame_index,
                            std::uint64_t object) noexcept {
    if (frame_index >= arena.frame_count()) {
        return;
    }
    frame& f = arena.frame_at(frame_index);
    __builtin_prefetch(&f, 0);
    if (!cls.info.huge) {
        __builtin_prefetch(arena.address_of(f) + object * cls.info.object_size % Arena::frame_size,
                           1);
    }
}

} // namespace detail
} // namespace movable
