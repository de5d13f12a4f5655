// zspage_pool<Arena>: the kernel's zsmalloc as a library. A pool for objects of any size from
// 1 byte to a frame (a compressed-memory store's compressed pages), packed densely into
// "zspages" of 1..N frames, addressed by opaque handles so that they can move: the pool
// compacts itself (compact()), and every frame of every zspage is movable through the core
// protocol, so arena compaction can move the pool's frames too.
//
// Lock order (each path takes locks only in this order; "->" reads "may be taken while
// holding"):
//
//     frame lock  ->  class lock  ->  zspage pin count (checked; waited for only by `sync`
//                                     migration, bounded, with the class lock dropped)
//     compaction lock  ->  class lock
//     handle-table growth lock, the arena's lock: leaves, taken with no lock of the pool held
//     (free handle slots are a lock-free stack)
//
//   * The core calls isolate/migrate/putback with the frame(s) locked; migrate takes the class
//     lock inside (try_lock in async mode: `retry` when it is held). So the pool never waits
//     for a frame lock while it holds a class lock: it locks frames only with no lock of its
//     own held (making a new zspage movable, giving an empty zspage's frames back, the
//     destructor).
//   * The kernel has a pool lock between the page lock and the class lock (readers take it to
//     resolve a handle). Here the handle's slot word names the object's size class, and every
//     change of an object's location (compaction, migration, free) happens under that class
//     lock, so resolving a handle needs only the class lock.
//   * A zspage's pin count is its reader lock (the kernel's zspage lock, read side). Readers
//     (map, read, write, size) pin without any lock: they follow the handle's location to its
//     frame and the frame's private word to a zspage descriptor (descriptors are type-stable,
//     pool/descriptor_table.hpp, so following a stale word touches no freed memory), add
//     themselves to its pin count unless a mover's bit is set (pool/pins.hpp, container_claim),
//     then check that the handle and the frame still lead there; if anything changed they let go
//     and take the class lock instead, under which they pin as before. Movers (compaction,
//     migration) hold the class lock and claim a zspage (its pin count 0 -> the mover bit)
//     before they move objects out of it or change its frames, so exactly one of a reader and a
//     mover wins. Compaction skips a pinned zspage and never waits. Migration in `async` and
//     `sync_light` mode answers `busy` at once. In `sync` mode it
//     waits for the pins to drop, bounded (zspage_pool_options::sync_pin_wait_attempts looks,
//     a yield before each), then answers `busy`: it drops the class lock while it waits, since
//     a pin holder may need it (a thread holding a mapping may call anything on the pool,
//     compaction included, except freeing that object or destroying the pool), and keeps the
//     frame locks of src and dst, which no pin holder needs to unpin: the pool locks frames
//     only of fresh zspages and of zspages being freed (never pinned), and src is isolated by
//     the waiting migrator. The bound keeps even a misuse (a thread migrating in sync mode a
//     frame of a zspage it has mapped itself) from deadlocking: it ends in `busy`. So a reader
//     never sees a half-moved object, and a frame lock is held at most that bound longer.
//     Releasing an emptied zspage claims it too, waiting out readers that followed a stale
//     location to it (they let go at once).
//   * Per-thread caches (zspage_pool_options::thread_cache, on by default): each thread keeps,
//     per size class, a few reserved places (a taken place and its handle slot, no object; up
//     to about 16 KiB of them per class) in a magazine only it touches (pool/thread_cache.hpp,
//     models/zspage/magazine.hpp). allocate turns one into an object and deallocate an object
//     back into one, each under a pin of the zspage taken without a lock, so neither takes the
//     class lock. Migration moves reservations with their frame; compact() takes idle ones back
//     (a zspage a thread pins is skipped), and so does an allocation that finds the arena
//     exhausted. A thread gives its own back when its class's cache is full (the older half),
//     when it exits, and on release_thread_cache().
//   * Fields changed under different locks never share a word: per-class state lives in its
//     own cache line; in a zspage descriptor the class-locked fields, the pin count and the
//     freeing flag are separate words; pool counters are separate atomics.
//
// Errors: size 0 or above max_object_size() throws std::invalid_argument (try_allocate: empty
// handle); arena exhaustion throws std::bad_alloc (try_allocate: empty handle); an empty
// handle throws std::invalid_argument; a span larger than the object throws
// std::out_of_range. A stale handle (freed, double free) is a contract violation: abort with
// a message naming the call in Debug and MOVABLE_HARDENED builds, undefined in Release. Every
// handle a slot gives out has its own 32-bit generation (a slot whose generation runs out is
// retired), so a stale handle is caught however often its slot was reused.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <movable/detail/contract.hpp>
#include <movable/detail/shake_frames.hpp>
#include <movable/detail/small_locks.hpp>
#include <movable/frame.hpp>
#include <movable/frame_arena.hpp>
#include <movable/migrate.hpp>
#include <movable/models/zspage/handle.hpp>
#include <movable/models/zspage/invariants.hpp>
#include <movable/models/zspage/magazine.hpp>
#include <movable/models/zspage/mapping.hpp>
#include <movable/models/zspage/relocation.hpp>
#include <movable/models/zspage/stats.hpp>
#include <movable/models/zspage/zspage.hpp>
#include <movable/operations.hpp>
#include <movable/pool/handle_table.hpp>
#include <movable/pool/size_classes.hpp>
#include <movable/pool/store_errors.hpp>
#include <movable/pool/thread_cache.hpp>
#include <movable/shake.hpp>

namespace movable {

// ---- the pool ---------------------------------------------------------------------------------

// What zspage_pool needs from an arena: frame_allocating_arena (arena.hpp) and the memory of a
// frame, `std::byte* address_of(const frame&) const`. frame_arena models it.
template <class Arena>
concept zspage_arena = frame_allocating_arena<Arena> && detail::arena_has_address_of<Arena>;

namespace detail {
template <class Pool>
struct zspage_pool_test_access; // tests only: reach inside a pool

// Says which piece of zspage_arena a type misses (after frame_allocating_arena's own check).
template <class Arena>
consteval bool check_zspage_arena() {
    constexpr bool allocates = check_frame_allocating_arena<Arena>();
    constexpr bool has_address_of = arena_has_address_of<Arena>;
    static_assert(!allocates || has_address_of,
                  "zspage_arena: Arena has no member `std::byte* address_of(const movable::frame&) "
                  "const`");
    return allocates && has_address_of;
}
} // namespace detail

template <class Arena = frame_arena<>>
class zspage_pool {
    static_assert(detail::check_zspage_arena<Arena>());

public:
    using handle = zspage_handle;
    static constexpr std::size_t frame_size = Arena::frame_size;
    using mapping = zspage_mapping<zspage_pool>;
    using access_mode = zspage_access; // store_access, as compressed_store names it

    // A pool over `arena` (which must outlive it). Throws std::invalid_argument for a chain
    // length outside 1..zspage_max_chain_frames or an arena too large for the handle encoding.
    explicit zspage_pool(Arena& arena, zspage_pool_options options = {});
    // Frees every object and zspage. Waits for in-flight migrations of the pool's frames (it
    // locks each frame); frames the core holds isolated are handed to it (it frees them). No
    // other call may run concurrently; no object may still be mapped (contract).
    ~zspage_pool();
    zspage_pool(const zspage_pool&) = delete;
    zspage_pool& operator=(const zspage_pool&) = delete;

    // ---- objects --------------------------------------------------------------------------------
    // A new object of `size` bytes (contents unspecified). Throws std::invalid_argument for
    // size 0 or above max_object_size(), std::bad_alloc when the arena (or the handle table)
    // is exhausted.
    [[nodiscard]] handle allocate(std::size_t size);
    // As allocate, but the empty handle instead of throwing.
    [[nodiscard]] handle try_allocate(std::size_t size) noexcept;
    // Frees the object. Throws std::invalid_argument for the empty handle; a stale handle
    // (double free) is a contract violation. Freeing an object while it is mapped is misuse.
    void deallocate(handle h);

    // The object's size as requested from allocate.
    [[nodiscard]] std::size_t size(handle h) const;
    // Copies the object's first out.size() bytes into `out` / `data` into the object's first
    // data.size() bytes. Throws std::invalid_argument for the empty handle, std::out_of_range
    // when the span is larger than the object.
    void read(handle h, std::span<std::byte> out) const;
    void write(handle h, std::span<const std::byte> data);
    // Pins the object and exposes it as one contiguous span until the mapping ends. An object
    // that spans two frames is served through a copy (written back at the end for `write`).
    // While any object of a zspage is mapped, that zspage is neither compacted nor migrated.
    // Throws std::invalid_argument for the empty handle, std::bad_alloc if a copy buffer
    // cannot be had.
    [[nodiscard]] mapping map(handle h, zspage_access access);

    // ---- compaction -----------------------------------------------------------------------------
    // Per class, moves objects from the sparsest zspages into the densest, rewriting their
    // handles, and frees emptied zspages. Pinned zspages are skipped. Drops the class lock and
    // yields whenever another thread waits for it. One compaction runs per pool at a time: a
    // call made while another runs returns 0 at once. Returns the frames freed.
    std::size_t compact();
    // Frames compaction could free now (the kernel's zs_can_compact, summed over classes),
    // counting the places reserved in threads' caches as free.
    [[nodiscard]] std::size_t compactable_frames() const;

    // ---- per-thread caches (zspage_pool_options::thread_cache) ----------------------------------
    // Gives the calling thread's reserved places back to the pool (a thread's cache holds up to
    // magazine_capacity per size class; it gives them back by itself when it exits, and
    // compact() takes back those of every thread that is not using them).
    void release_thread_cache() noexcept;
    static constexpr std::size_t magazine_capacity = detail::zspage_magazine::capacity;

    // ---- introspection --------------------------------------------------------------------------
    [[nodiscard]] std::span<const zspage_size_class> size_classes() const noexcept {
        return class_map_.classes();
    }
    // The class that allocate(size) uses. Throws std::invalid_argument as allocate does.
    [[nodiscard]] const zspage_size_class& size_class_for(std::size_t size) const;
    [[nodiscard]] std::size_t max_object_size() const noexcept { return frame_size; }
    [[nodiscard]] std::size_t max_frames_per_zspage() const noexcept { return max_chain_; }
    [[nodiscard]] const zspage_pool_options& options() const noexcept { return options_; }
    [[nodiscard]] zspage_pool_stats stats() const;
    [[nodiscard]] Arena& arena() const noexcept { return arena_; }

    // ---- invariants -----------------------------------------------------------------------------
    // Walks every class's zspages and every handle slot and checks the pool's invariants
    // (models/zspage/invariants.hpp); aborts naming the first that does not hold, in every
    // build. O(objects + handle slots). Call it when the pool is quiescent: no call on it and no
    // migration of its frames in flight (it reads frame words and handle slots without their
    // locks). With MOVABLE_EXPENSIVE_CHECKS defined, every allocation and free checks the touched
    // class's lists and counts and the touched zspage's free list as it finishes.
    void check_invariants() const { detail::zspage_pool_invariants::check(*this); }

    // ---- shake mode (shake.hpp)
    // ------------------------------------------------------------------ Under shake, the end of
    // every pin moves the object's frame(s), compact() moves every frame of the pool afterwards,
    // and every N-th allocation does too (shake_options).
    [[nodiscard]] shake_switch& shake() noexcept { return shake_; }
    [[nodiscard]] const shake_switch& shake() const noexcept { return shake_; }

    // ---- owner protocol (called by the core with the frame locked; not for users) -------------
    // Refuses a frame whose zspage is pinned or being freed.
    bool isolate(frame& f, migrate_mode mode) noexcept;
    // Copies src to dst, rewrites the location of every object that starts in src and puts dst
    // in src's place in the zspage's chain. `retry` in async mode when the class lock is held
    // (sync modes wait for it: it is short). `busy` when the zspage is being freed, or pinned:
    // at once in async and sync_light mode; in sync mode after waiting, bounded, for the pins
    // to drop (options().sync_pin_wait_attempts; see the lock order at the top of the file).
    migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept;
    void putback(frame& f) noexcept;

private:
    template <class>
    friend struct detail::zspage_pool_test_access;
    friend struct detail::zspage_pool_invariants;
    using class_state = detail::zspage_class;
    struct located;
    struct resolved;

    class_state& class_of_payload(std::size_t size) const noexcept {
        return classes_[class_map_.class_for_payload(size)];
    }
    located lock_and_locate(handle h, const char* stale_message,
                            std::unique_lock<detail::contended_mutex>& guard) const;
    resolved resolve_and_pin(handle h, const char* call, const char* stale_message) const;
    std::optional<resolved> try_pin_unlocked(handle h) const noexcept;
    std::optional<detail::zspage_pin> pin_at(const detail::handle_slot& entry,
                                             std::uint64_t w) const noexcept;
    // The frame an object's location names, and its zspage.
    frame& frame_of(std::uint64_t location) const noexcept {
        return arena_.frame_at(locations_.frame_index(location));
    }
    static detail::zspage* zspage_of(const frame& f) noexcept {
        return detail::zspage_link::from_raw(f.private_word()).pointer();
    }
    void set_location(std::uint32_t slot, detail::zspage& zs, const class_state& cls,
                      std::uint32_t object, bool allocated) const noexcept;
    // set_location for a place that moved, keeping the word's state (object or reservation).
    void relocate(std::uint32_t slot, detail::zspage& zs, const class_state& cls,
                  std::uint32_t object) const noexcept;
    void free_chain(detail::zspage* first) noexcept;
    // An object of `size` bytes of `cls` under the class lock; the empty handle when the arena or
    // the handle table is exhausted.
    handle allocate_locked(class_state& cls, std::size_t size) noexcept;
    std::size_t compact_class(class_state& cls);

    bool wait_for_unpinned(detail::zspage& zs,
                           std::unique_lock<detail::contended_mutex>& guard) noexcept;

    // ---- per-thread caches (models/zspage/thread_cache_impl.hpp) --------------------------------
    using magazine = detail::zspage_magazine;
    // The calling thread's magazine; null without thread caches or when memory ran out.
    magazine* local_magazine() noexcept;
    // allocate / deallocate through the magazine: the empty handle / false when the caller must
    // take the locked way.
    handle allocate_cached(magazine& m, class_state& cls, std::size_t size) noexcept;
    bool deallocate_cached(magazine& m, handle h) noexcept;
    // Makes a reservation (its word just popped) an object of `size` bytes; the empty handle when
    // compaction took it back (the slot is given back).
    handle take_reservation(class_state& cls, std::uint32_t slot, std::size_t size) noexcept;
    // Reserves up to magazine::refill places of `cls` into an empty cache (takes the class
    // lock); false when it reserved none (the arena or the handle table is exhausted).
    bool refill(magazine::class_cache& cache, class_state& cls) noexcept;
    // Gives the places of `count` reserved slots of `cls` back (class lock), then their slots.
    void give_back_reservations(class_state& cls, const std::uint32_t* slots,
                                std::size_t count) noexcept;
    void give_back_magazine(magazine& m) noexcept;
    // Compaction's side: a reservation's place goes back to its zspage's free list and its word
    // says `stolen` (false: the slot holds an object); every idle reservation of `cls` in a
    // zspage nobody pins, returning the zspages emptied (freeing, off the lists, linked through
    // next). Class locked.
    bool take_back_reservation(class_state& cls, std::uint32_t slot) noexcept;
    detail::zspage* take_back_reservations(class_state& cls) noexcept;
    // take_back_reservations with the class lock taken, then the emptied zspages freed; returns
    // their frames.
    std::size_t take_back_idle(class_state& cls) noexcept;
    static void flush_exiting_thread(void* pool, void* cache) noexcept;
    // Per class: reservations in threads' magazines (less those compaction took back), and the
    // bytes the magazines counted. Takes the caches' lock; a snapshot when threads run.
    std::vector<std::size_t> reserved_by_class() const;
    std::vector<std::int64_t> cached_bytes_by_class() const;

    Arena& arena_;
    zspage_pool_options options_;
    std::size_t max_chain_;
    detail::size_class_map class_map_;
    detail::zspage_descriptors descriptors_; // type-stable, one per zspage: at most one per frame
    std::unique_ptr<class_state[]> classes_; // one per class of class_map_, in its order
    detail::location_format locations_;      // frame index << object bits | object index
    std::unique_ptr<detail::handle_table> handles_;
    std::mutex compaction_lock_;
    detail::zspage_pool_counters counters_;
    shake_switch shake_;
    detail::pool_caches<magazine> caches_{this}; // last: registered once the pool is built
};

} // namespace movable

#include <movable/models/zspage/pool_impl.hpp>
#include <movable/models/zspage/thread_cache_impl.hpp>
