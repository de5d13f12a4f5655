// object_pool<T, Arena>: C++ objects that move. A pool of objects of one type T, one frame of the
// arena per slab, objects at multiples of their stride (so no object straddles a frame and
// T& is always contiguous), reached through generation-checked handles so that they can move:
// compact() repacks objects from the sparsest slabs into the densest and frees the emptied
// frames, and every frame of the pool is movable through the core protocol, so arena
// compaction moves the pool's frames too. Objects move as relocation_traits<T> says
// (pool/relocation.hpp): by memcpy when T is trivially relocatable, else by a nothrow
// move-construct and the destruction of the old object; never by a raw copy of a type that is
// not trivially relocatable.
//
// Lock order ("->" reads "may be taken while holding"):
//
//     frame lock  ->  pool lock  ->  an object's pin word (claimed with try only)
//     compaction lock  ->  pool lock
//     live-pool registry (thread exit)  ->  pool lock  ->  the pool's cache list
//     handle-table growth lock, the arena's lock: leaves, taken with no pool lock held
//
//   * The core calls isolate/migrate/putback with the frame(s) locked; migrate takes the pool
//     lock inside (try_lock in async mode: `retry` when it is held). The pool locks frames only
//     with no lock of its own held (making a new slab's frame movable, freeing an emptied
//     slab's frame, the destructor).
//   * Each object has a pin word (pool/pins.hpp) in its handle slot: readers (pin, visit,
//     for_each) count themselves in without any lock; movers (compact(), migrate) and the
//     destroyer claim it only when no reader is in. Movers hold the pool lock and never wait
//     for a pin: compact() skips a pinned object, migrate answers `busy` for a frame that
//     holds one. A reader waits only while a mover holds the word for one object's move (or,
//     for migration, one frame's). destroy() waits for the readers of its object to leave.
//   * Per-thread caches (object_pool_options::thread_cache, on by default): each thread keeps
//     up to magazine_capacity reserved places (a taken place and its handle slot, no object) in
//     a magazine only it touches (pool/thread_cache.hpp, object/reservations.hpp). emplace
//     builds in one, destroy leaves the place reserved again: neither takes the pool lock nor
//     touches the handle table on the common path. Movers treat a reservation as an object
//     (migration moves it with its frame) and compact() takes back every idle one first, so a
//     reservation never pins a frame. A thread's reservations go back when it holds too many,
//     when it exits, and on release_thread_cache().
//   * emplace constructs T with no pool lock held (T's constructor may call the pool), holding
//     the claim of its place's slot: movers leave an object being built alone (compaction
//     skips it, migration of its frame answers busy); it marks the slot allocated and lets go
//     of the claim after the constructor. destroy runs ~T with the object claimed and no pool
//     lock held.
//   * T's move constructor and destructor run under the pool lock when compact() or migrate
//     relocates an object (and the frame locks, for migrate). They must not call the pool or
//     take a lock that a thread holding the pool's lock could wait for: calling the pool from
//     there would deadlock, and is a contract violation (checked in Debug and
//     MOVABLE_HARDENED).
//
// Errors: arena exhaustion (or the handle table's) throws std::bad_alloc from emplace
// (try_emplace: the empty handle); whatever T's constructor throws passes through, and the
// place is reserved again (given back at once without a thread cache). An empty handle throws
// std::invalid_argument. A stale handle (destroyed, double destroy) is a contract violation: abort
// with a message naming the call in Debug and MOVABLE_HARDENED builds, undefined in Release. Every
// handle a slot gives out has its own 32-bit generation (a slot whose generation runs out is
// retired), so a stale handle is caught however often its slot was reused. Destroying an object the
// calling thread holds pinned deadlocks.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <movable/arena.hpp>
#include <movable/detail/contract.hpp>
#include <movable/detail/shake_frames.hpp>
#include <movable/detail/small_locks.hpp>
#include <movable/frame.hpp>
#include <movable/frame_arena.hpp>
#include <movable/models/object/handle.hpp>
#include <movable/models/object/slab.hpp>
#include <movable/operations.hpp>
#include <movable/pool/fullness_groups.hpp>
#include <movable/pool/handle_table.hpp>
#include <movable/pool/pins.hpp>
#include <movable/pool/relocation.hpp>
#include <movable/pool/thread_cache.hpp>
#include <movable/shake.hpp>

namespace movable {

namespace detail {
template <class Pool>
struct object_pool_test_access; // tests only: reach inside a pool
struct object_pool_invariants;

// Says which piece of what object_pool needs from an arena a type misses: frame_allocating_arena
// (arena.hpp) and `std::byte* address_of(const frame&) const`.
template <class Arena>
consteval bool check_object_pool_arena() {
    constexpr bool allocates = check_frame_allocating_arena<Arena>();
    constexpr bool has_address_of = arena_has_address_of<Arena>;
    static_assert(!allocates || has_address_of,
                  "object_pool: Arena has no member `std::byte* address_of(const movable::frame&) "
                  "const`");
    return allocates && has_address_of;
}

// Says why T does not fit the frames of Arena.
template <class T, std::size_t FrameSize>
consteval bool check_fits_frame() {
    static_assert(sizeof(T) <= FrameSize,
                  "object_pool: sizeof(T) is larger than a frame; objects never straddle frames, "
                  "so use a larger frame_size (or keep the object's bulk elsewhere)");
    static_assert(alignof(T) <= FrameSize, "object_pool: alignof(T) is larger than a frame");
    return true;
}

// A thread's reserved places in one object_pool (its per-thread cache): handle slots whose place
// in a slab is taken but holds no object, the slot word saying where (location, not allocated).
// emplace pops one and builds there; destroy pushes the object's slot back. Only its thread
// touches the array; movers move a reservation as they move an object, by rewriting its slot
// word under the slot's claim.
struct object_magazine {
    // The word of a reserved slot whose place compact() took back: its thread releases the slot
    // when it comes to it (a class field object_pool never uses otherwise).
    static constexpr std::uint64_t stolen = slot_word::make(0, 1, false);
    static constexpr std::uint32_t capacity = 32;
    static constexpr std::uint32_t refill = 16; // reserved at once when empty; kept when full
    std::uint32_t count = 0;
    std::array<std::uint32_t, capacity> slots{};
    // Objects this thread emplaced less those it destroyed (negative when it destroys others'
    // objects): written by its thread alone (a load and a store, no read-modify-write), summed
    // by size().
    std::atomic<std::int64_t> live{0};
    void count_live(std::int64_t change) noexcept {
        live.store(live.load(std::memory_order_relaxed) + change, std::memory_order_relaxed);
    }
};

// The pool whose objects the calling thread is relocating (T's move constructor is running
// under that pool's lock), for the contract that T's move must not call the pool.
inline const void*& relocating_pool() noexcept {
    thread_local const void* pool = nullptr;
    return pool;
}
} // namespace detail

struct object_pool_options {
    // Each thread keeps the places of objects it destroyed (up to magazine_capacity) for its
    // next emplace, so the common emplace and destroy take no pool lock (see
    // release_thread_cache). Off: every destroy gives its place back at once, and every emplace
    // takes the pool lock.
    bool thread_cache = true;
};

template <class T, class Arena = frame_arena<>>
class object_pool {
    static_assert(detail::check_relocatable<T>());
    static_assert(detail::check_object_pool_arena<Arena>());
    static_assert(detail::check_fits_frame<T, Arena::frame_size>());

public:
    using value_type = T;
    using handle = object_handle<T>;
    using arena_type = Arena;
    static constexpr std::size_t frame_size = Arena::frame_size;
    // A place in a frame: sizeof(T) rounded up to alignof(T).
    static constexpr std::size_t object_stride =
        (sizeof(T) + alignof(T) - 1) / alignof(T) * alignof(T);
    static constexpr std::size_t objects_per_frame = frame_size / object_stride;
    // True when objects move by memcpy (relocation_traits<T>::by_memcpy).
    static constexpr bool moves_by_memcpy = relocation_traits<T>::by_memcpy;

    // A pool over `arena` (which must outlive it, and give frames aligned to alignof(T)). Throws
    // std::invalid_argument for an arena too large for the handle encoding.
    explicit object_pool(Arena& arena, object_pool_options options = {});
    // Destroys every object (~T) and frees every frame. No other call may run concurrently and
    // no object may be pinned (contract). Waits for in-flight migrations of the pool's frames;
    // frames the core holds isolated are handed to it (it frees them).
    ~object_pool();
    object_pool(const object_pool&) = delete;
    object_pool& operator=(const object_pool&) = delete;

    // ---- objects --------------------------------------------------------------------------------
    // A new T constructed from args. Throws std::bad_alloc when the arena (or the handle table)
    // is exhausted, and whatever T's constructor throws (nothing is left allocated).
    template <class... Args>
    [[nodiscard]] handle emplace(Args&&... args);
    // As emplace, but the empty handle when the arena is exhausted. T's exceptions still pass.
    template <class... Args>
    [[nodiscard]] handle
    try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>);
    // Runs ~T. The object's place stays reserved for this thread's next emplace (see
    // release_thread_cache); without a thread cache it is freed at once, and a frame that
    // empties goes back to the arena, but for one kept in reserve for the next emplace that
    // finds no room (compact() frees that one). Waits while other threads pin the object.
    // Throws std::invalid_argument for the empty handle; a stale handle (double destroy) is a
    // contract violation.
    void destroy(handle h);
    // Live objects.
    [[nodiscard]] std::size_t size() const noexcept {
        std::int64_t live = live_.load(std::memory_order_relaxed);
        caches_.for_each(
            [&](const magazine& m) { live += m.live.load(std::memory_order_relaxed); });
        return live > 0 ? static_cast<std::size_t>(live) : 0;
    }

    // ---- access ---------------------------------------------------------------------------------
    // Pins the object: it stays where it is until the guard ends. Takes no lock. Throws
    // std::invalid_argument for the empty handle; a stale handle is a contract violation.
    [[nodiscard]] pinned<T> pin(handle h);
    [[nodiscard]] pinned<const T> pin(handle h) const;
    // fn(object) with the object pinned; returns what fn returns.
    template <class Fn>
    decltype(auto) visit(handle h, Fn&& fn) {
        const pinned<T> p = pin(h);
        return std::forward<Fn>(fn)(*p);
    }
    template <class Fn>
    decltype(auto) visit(handle h, Fn&& fn) const {
        const pinned<const T> p = pin(h);
        return std::forward<Fn>(fn)(*p);
    }
    // Calls fn(object) or fn(handle, object) for every live object, each pinned while visited
    // (for snapshots, digests and tests). Objects emplaced or destroyed concurrently may or may
    // not be visited; fn may call the pool, but must not destroy the object it visits.
    template <class Fn>
    void for_each(Fn&& fn);
    template <class Fn>
    void for_each(Fn&& fn) const;

    // ---- compaction -----------------------------------------------------------------------------
    // Moves objects from the sparsest slabs into the densest, rewriting their handles, and frees
    // the frames it empties and the one kept in reserve. Skips pinned objects. Drops the pool lock
    // and yields whenever another thread waits for it. One compaction runs per pool at a time: a
    // call made while another runs returns 0 at once. Returns the frames freed.
    std::size_t compact();
    // Gives back the calling thread's reserved places: each thread keeps up to
    // magazine_capacity places of objects it destroyed (or reserved in advance) for its next
    // emplace, so that the common emplace and destroy take no lock. A thread's places go back
    // when it exits, when it holds more than magazine_capacity, when compact() runs (it takes
    // back every idle one of every thread), or with this call.
    void release_thread_cache() noexcept;
    static constexpr std::size_t magazine_capacity = detail::object_magazine::capacity;
    // Frames compact() could free now (no pins): frames held - ceil(objects / per frame) (the
    // threads' reserved places count as free: compact() takes them back).
    [[nodiscard]] std::size_t compactable_frames() const;

    // ---- introspection --------------------------------------------------------------------------
    [[nodiscard]] object_pool_stats stats() const;
    [[nodiscard]] Arena& arena() const noexcept { return arena_; }
    // Walks every slab and handle slot and checks the pool's invariants; aborts naming the first
    // that does not hold, in every build. O(objects + handle slots + arena frames). The pool must
    // be quiescent: no call on it and no migration of its frames in flight.
    void check_invariants() const;

    // ---- shake mode (shake.hpp)
    // ------------------------------------------------------------------ Under shake, the end of
    // every pin moves the object's frame(s), compact() moves every frame of the pool afterwards,
    // and every N-th allocation does too (shake_options).
    [[nodiscard]] shake_switch& shake() noexcept { return shake_; }
    [[nodiscard]] const shake_switch& shake() const noexcept { return shake_; }

    // ---- owner protocol (called by the core with the frame locked; not for users) -------------
    // Refuses a frame whose slab is being freed.
    bool isolate(frame& f, migrate_mode mode) noexcept;
    // Relocates every object of src into the same place of dst and rewrites their handles.
    // `retry` in async mode when the pool lock is held (sync modes wait: it is short). `busy`
    // when the slab is being freed or one of its objects is pinned, being constructed or being
    // destroyed.
    migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept;
    void putback(frame& f) noexcept;

private:
    template <class>
    friend struct detail::object_pool_test_access;
    friend struct detail::object_pool_invariants;
    using pool_lock = std::unique_lock<detail::contended_mutex>;
    struct compaction_pass;

    template <class... Args>
    handle emplace_or_empty(Args&&... args);
    template <class U>
    pinned<U> pin_checked(handle h, const char* call) const;
    template <class U, class Fn>
    void for_each_in(Fn& fn) const;
    void check_not_relocating(const char* call) const noexcept;
    detail::handle_slot& slot_of(handle h, const char* call) const;
    std::uint64_t live_word(handle h, const detail::handle_slot& entry, const char* call,
                            const char* stale) const noexcept;
    // Frames compact() could free now: frames held - ceil(taken places / per frame). Pool
    // locked.
    [[nodiscard]] std::size_t frames_freeable() const noexcept {
        return slabs_ - (taken_ + objects_per_frame - 1) / objects_per_frame;
    }
    // What compact() could free now: idle reservations count as free, since it takes them back
    // first. Pool locked.
    [[nodiscard]] std::size_t frames_freeable_by_compact() const noexcept {
        const std::size_t needed = (size() + objects_per_frame - 1) / objects_per_frame;
        return slabs_ > needed ? slabs_ - needed : 0;
    }

    static detail::object_slab* slab_of(const frame& f) noexcept {
        return detail::slab_link::from_raw(f.private_word()).pointer();
    }
    T* object_at(const frame& f, std::uint32_t place) const noexcept {
        return std::launder(reinterpret_cast<T*>(arena_.address_of(f) + place * object_stride));
    }
    T* object_at(std::uint64_t location) const noexcept {
        return object_at(arena_.frame_at(locations_.frame_index(location)),
                         locations_.object(location));
    }
    // Publishes that the object of `slot` lives at `place` of `f` now.
    void set_location(std::uint32_t slot, const frame& f, std::uint32_t place) const noexcept {
        handles_->word(slot).store(
            detail::slot_word::make(locations_.make(arena_.index_of(f), place), 0, true),
            std::memory_order_release);
    }
    // Gives a place back under the pool lock; the slab when that emptied it (unlinked, marked
    // freeing: free it with no lock held), else null.
    // Keeps an emptied slab as the spare when `may_keep` and there is none.
    detail::object_slab* give_back_place(detail::object_slab& slab, std::uint32_t place,
                                         bool may_keep) noexcept;
    // True when the object of a taken place's slot is built (its slot word is allocated); a
    // reserved place (in a thread's magazine, or being built with its slot claimed) is not.
    // Acquire: a mover that sees it built sees the object.
    bool built(std::uint32_t slot) const noexcept {
        return detail::slot_word::allocated(handles_->word(slot).load(std::memory_order_acquire));
    }
    void free_chain(detail::object_slab* first) noexcept;
    std::size_t relocate_objects(detail::object_slab& src, detail::object_slab& dst) noexcept;
    // Moves the claimed place `from` of `src` to place `to` of frame `dst`: an object (its bytes
    // too, unless `copied` already), or a reservation (its slot word's location only). Pool
    // locked.
    void relocate_place(std::uint32_t slot, const frame& dst, std::uint32_t to, const frame& src,
                        std::uint32_t from, bool copied = false) noexcept;

    // ---- per-thread caches (pool/thread_cache.hpp) -------------------------------------------
    using magazine = detail::object_magazine;
    // The calling thread's magazine; null when memory for it ran out.
    magazine* local_magazine() noexcept {
        return options_.thread_cache ? caches_.local(&flush_exiting_thread) : nullptr;
    }
    // Reserves up to `want` places into `m` (takes the pool lock); false when it reserved none
    // (the arena or the handle table is exhausted). `created`: it made a new slab.
    bool refill(magazine& m, std::uint32_t want, bool& created) noexcept;
    // Keeps the reservation of `slot` in `m`, or gives it back when m is null or full.
    void keep_reservation(magazine* m, std::uint32_t slot) noexcept;
    // Gives the places of `count` reserved slots back (pool lock) and their slots to the handle
    // table (retired instead when `retire`). A slab that empties becomes the spare when
    // `may_keep` and there is none (give_back_place).
    void give_back_reservations(const std::uint32_t* slots, std::size_t count, bool may_keep,
                                bool retire = false) noexcept;
    static void flush_exiting_thread(void* pool, void* cache) noexcept;
    // Counts an object in or out: in this thread's magazine, or the pool's count without one.
    void count_live(magazine* m, std::int64_t change) noexcept {
        if (m != nullptr) {
            m->count_live(change);
        } else {
            live_.fetch_add(change, std::memory_order_relaxed);
        }
    }
    // compact()'s first step: takes back the place of every idle reservation of every thread
    // (their slots stay in the magazines, marked stolen). Pool locked; returns emptied slabs
    // (chained through next) to free once it is dropped.
    detail::object_slab* steal_reservations();

    Arena& arena_;
    object_pool_options options_;
    detail::location_format locations_; // frame index << place bits | place
    std::unique_ptr<detail::handle_table> handles_;
    mutable detail::contended_mutex lock_; // the pool lock
    // Under the pool lock.
    detail::fullness_groups<detail::object_slab> groups_;
    std::size_t slabs_ = 0; // frames held: listed slabs and the spare
    // An emptied slab kept for the next emplace that finds no room (so a pool that swings
    // between 0 and 1 objects in a slab does not take and free a frame each time); compact()
    // and the destructor free it.
    detail::object_slab* spare_ = nullptr;
    std::size_t taken_ = 0;   // places taken (live objects + those being built or destroyed)
    std::uint32_t epoch_ = 0; // compaction passes, for object_slab::skip_epoch
    std::mutex compaction_lock_;
    std::atomic<std::int64_t> live_{0}; // less what the magazines count (size())
    struct counters {
        std::atomic<std::size_t> compactions{0};
        std::atomic<std::size_t> objects_moved{0};
        std::atomic<std::size_t> frames_freed_by_compaction{0};
        std::atomic<std::size_t> objects_skipped_pinned{0};
        std::atomic<std::size_t> reservations_stolen{0};
        std::atomic<std::size_t> compaction_yields{0};
        std::atomic<std::size_t> frames_migrated{0};
        std::atomic<std::size_t> migrations_refused{0};
        std::atomic<std::size_t> frames_released_while_isolated{0};
        std::atomic<std::size_t> isolated_frames{0};
    };
    counters counters_;
    shake_switch shake_;
    detail::pool_caches<magazine> caches_{this};
};

} // namespace movable

#include <movable/models/object/invariants.hpp>
#include <movable/models/object/pool_impl.hpp>
#include <movable/models/object/reservations.hpp>
