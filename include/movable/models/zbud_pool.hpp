// zbud_pool<Arena>: the kernel's zbud as a library, the smallest complete owner of movable
// frames. Each frame holds at most two objects ("buddies"): "first" from the frame's start,
// "last" ending at the frame's end, both in 64-byte chunks, so the free space of a frame is
// always one run in the middle. Frames with one buddy free sit on unbuddied lists by free
// chunks, and allocation takes the best fit (the fewest free chunks that hold the object) before
// it takes a new frame. Objects are reached through handles that stay valid while frames move:
// every frame is movable through the core protocol (seed 003: "mm: migrate zbud pages"), and
// evict() hands the least recently allocated frames' objects to the caller, as the kernel's
// zbud_reclaim_page. At most 2 objects per frame: simple and predictable, denser than one object
// per frame, sparser than zspage_pool for small objects.
//
// Layout: each frame has a descriptor outside it (models/zbud/zbud_frame.hpp), so every chunk of
// the frame holds data and an object may be a whole frame; the descriptor does not move when
// its frame is migrated, so migration only copies the frame and rewrites the buddies' handles.
//
// Lock order ("->" reads "may be taken while holding"):
//
//     frame lock  ->  pool lock  ->  frame pin count (checked, never waited for)
//     handle-table growth lock, the arena's lock: leaves, taken with no lock of the pool held
//
//   * One pool lock (the kernel's pool spinlock) guards the lists, the descriptors' buddies and
//     every handle's location: every change of an object's location (compaction, migration,
//     free) happens under it, so resolving a handle needs only it.
//   * The core calls isolate/migrate/putback with the frame(s) locked; migrate takes the pool
//     lock inside (try_lock in async mode: `retry` when it is held). The pool locks frames only
//     with no lock of its own held (making a new frame movable, giving a frame back, the
//     destructor).
//   * A frame's pin count is its reader lock: reads, writes and mappings pin it under the pool
//     lock and unpin without any lock. Movers (compaction, migration, eviction) hold the pool
//     lock, under which no new pin can start, and leave a pinned frame alone: compaction and
//     eviction skip it; migration answers `busy` in every mode (a mapping may be kept for as
//     long as its user likes, and zbud's objects are copied in one memcpy each, so there is no
//     short pin worth waiting for).
//
// Errors: size 0 or above max_object_size() throws std::invalid_argument (try_allocate: empty
// handle); arena exhaustion throws std::bad_alloc (try_allocate: empty handle); an empty handle
// throws std::invalid_argument; a span larger than the object throws std::out_of_range. A stale
// handle (freed, double free) is a contract violation: abort with a message naming the call in
// Debug and MOVABLE_HARDENED builds, undefined in Release. Every handle a slot gives out has its
// own 32-bit generation (pool/handle_table.hpp).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include <movable/detail/contract.hpp>
#include <movable/detail/shake_frames.hpp>
#include <movable/detail/small_locks.hpp>
#include <movable/frame.hpp>
#include <movable/frame_arena.hpp>
#include <movable/migrate.hpp>
#include <movable/models/zbud/stats.hpp>
#include <movable/models/zbud/zbud_frame.hpp>
#include <movable/operations.hpp>
#include <movable/pool/handle_table.hpp>
#include <movable/pool/pinned_mapping.hpp>
#include <movable/pool/pins.hpp>
#include <movable/pool/store_errors.hpp>
#include <movable/pool/store_handle.hpp>
#include <movable/shake.hpp>

namespace movable {

struct zbud_handle_tag;
// An opaque reference to an object of a zbud_pool. Stays valid while the object is allocated,
// across compaction and frame migration. The empty handle (default) is false.
using zbud_handle = store_handle<zbud_handle_tag>;

// A pinned object of a zbud_pool, in place (pool/pinned_mapping.hpp).
template <class Pool>
using zbud_mapping = pinned_mapping<Pool, detail::zbud_frame>;

namespace detail {
template <class Pool>
struct zbud_pool_test_access; // tests only: reach inside a pool
struct zbud_pool_invariants;
} // namespace detail

// What zbud_pool needs from an arena: frame_allocating_arena (arena.hpp) and the memory of a
// frame, `std::byte* address_of(const frame&) const`. frame_arena models it.
template <class Arena>
concept zbud_arena = frame_allocating_arena<Arena> && detail::arena_has_address_of<Arena>;

template <class Arena = frame_arena<>>
class zbud_pool {
    static_assert(detail::check_frame_allocating_arena<Arena>());
    static_assert(detail::arena_has_address_of<Arena>,
                  "zbud_arena: Arena has no member `std::byte* address_of(const movable::frame&) "
                  "const`");

public:
    using handle = zbud_handle;
    using access_mode = store_access;
    using mapping = zbud_mapping<zbud_pool>;
    static constexpr std::size_t frame_size = Arena::frame_size;
    static constexpr std::size_t chunk_size = detail::pool_chunk_size;
    static constexpr std::size_t chunks_per_frame = detail::zbud_chunks<frame_size>::per_frame;

    // A pool over `arena` (which must outlive it). Throws std::invalid_argument for an arena too
    // large for the handle encoding.
    explicit zbud_pool(Arena& arena);
    // Frees every object and frame. Waits for in-flight migrations of the pool's frames (it
    // locks each frame); frames the core holds isolated are handed to it (it frees them). No
    // other call may run concurrently; no object may still be mapped (contract).
    ~zbud_pool();
    zbud_pool(const zbud_pool&) = delete;
    zbud_pool& operator=(const zbud_pool&) = delete;

    // ---- objects --------------------------------------------------------------------------------
    // A new object of `size` bytes (contents unspecified): in the best-fitting unbuddied frame,
    // else as the first buddy of a new frame. Throws std::invalid_argument for size 0 or above
    // max_object_size(), std::bad_alloc when the arena (or the handle table) is exhausted.
    [[nodiscard]] handle allocate(std::size_t size);
    // As allocate, but the empty handle instead of throwing.
    [[nodiscard]] handle try_allocate(std::size_t size) noexcept;
    // Frees the object; a frame whose last buddy goes is given back to the arena at once. Throws
    // std::invalid_argument for the empty handle; a stale handle (double free) is a contract
    // violation. Freeing an object while it is mapped is misuse.
    void deallocate(handle h);

    // The object's size as requested from allocate.
    [[nodiscard]] std::size_t size(handle h) const;
    // Copies the object's first out.size() bytes into `out` / `data` into the object's first
    // data.size() bytes. Throws std::invalid_argument for the empty handle, std::out_of_range
    // when the span is larger than the object.
    void read(handle h, std::span<std::byte> out) const;
    void write(handle h, std::span<const std::byte> data);
    // Pins the object's frame and exposes the object in place until the mapping ends. Throws
    // std::invalid_argument for the empty handle.
    [[nodiscard]] mapping map(handle h, store_access access);

    // ---- compaction and eviction ----------------------------------------------------------------
    // zbud itself never compacts (a buddy stays where it was put); this pool's compact() pairs
    // unbuddied frames: the buddy of the least used unpinned unbuddied frame moves into the free
    // buddy of the best-fitting other unbuddied frame, its handle rewritten, and the emptied
    // frame is freed, until no such pair is left. Drops the pool lock and yields whenever
    // another thread waits for it. One compaction runs per pool at a time: a call made while
    // another runs returns 0 at once. Returns the frames freed.
    std::size_t compact();
    // Evicts up to `frames` frames, least recently allocated from first (the kernel's
    // zbud_reclaim_page): each buddy's object is handed to `callback(handle, bytes)` (e.g. to
    // write it to a backing store), then freed; the frame goes back to the arena. Frames that
    // are pinned (mapped, read or written) are skipped. The callback runs with no lock of the
    // pool held and may call the pool (but not evict), and must not free nor use the handle it
    // is given after it returns: evict frees it. Another thread may free an object of a frame
    // being evicted (it is then not freed twice); the callback may still be handed it. If the
    // callback throws, the objects not yet handed over stay, and the exception propagates.
    // Returns the frames freed.
    template <class Callback>
    requires std::invocable<Callback&, handle, std::span<const std::byte>> std::size_t
    evict(std::size_t frames, Callback&& callback);

    // ---- introspection --------------------------------------------------------------------------
    [[nodiscard]] static constexpr std::size_t max_object_size() noexcept { return frame_size; }
    [[nodiscard]] zbud_pool_stats stats() const;
    [[nodiscard]] Arena& arena() const noexcept { return arena_; }
    // Walks every frame and every handle slot and checks the pool's invariants
    // (models/zbud/invariants.hpp); aborts naming the first that does not hold, in every build.
    // O(frames + handle slots). Call it when the pool is quiescent.
    void check_invariants() const;

    // ---- shake mode (shake.hpp)
    // ------------------------------------------------------------------ Under shake, the end of
    // every pin moves the object's frame(s), compact() moves every frame of the pool afterwards,
    // and every N-th allocation does too (shake_options).
    [[nodiscard]] shake_switch& shake() noexcept { return shake_; }
    [[nodiscard]] const shake_switch& shake() const noexcept { return shake_; }

    // ---- owner protocol (called by the core with the frame locked; not for users) -------------
    // Refuses a frame that is pinned or being freed.
    bool isolate(frame& f, migrate_mode mode) noexcept;
    // Copies src to dst and rewrites the location of its buddies' handles; the descriptor (and
    // so the lists) stays. `retry` in async mode when the pool lock is held (sync modes wait for
    // it: it is short). `busy` when the frame is pinned or being freed.
    migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept;
    void putback(frame& f) noexcept;

private:
    template <class>
    friend struct detail::zbud_pool_test_access;
    friend struct detail::zbud_pool_invariants;
    using chunk_math = detail::zbud_chunks<frame_size>;
    using pool_lock = std::unique_lock<detail::contended_mutex>;
    struct located;
    struct resolved;

    located lock_and_locate(handle h, const char* stale_message, pool_lock& guard) const;
    resolved resolve_and_pin(handle h, const char* call, const char* stale_message) const;
    std::byte* bytes_of(const detail::zbud_frame& zf, detail::zbud_buddy buddy) const noexcept;
    void set_location(std::uint32_t slot, const detail::zbud_frame& zf,
                      detail::zbud_buddy buddy) const noexcept;
    // Frees the buddy `buddy` of zf (pool locked): its slot word, generation and counts. Returns
    // whether the slot must be retired. zf is left off or on its list as it was.
    bool free_buddy_locked(detail::zbud_frame& zf, detail::zbud_buddy buddy) noexcept;
    void give_back_slot(std::uint32_t slot, bool retire) noexcept;
    // Takes an empty frame off the LRU list and marks it freeing (pool locked).
    void retire_frame_locked(detail::zbud_frame& zf) noexcept;
    // Gives a frame marked freeing back (no lock of the pool held) and deletes its descriptor.
    void release_frame(detail::zbud_frame* zf) noexcept;
    detail::zbud_frame* new_frame() noexcept;
    bool compact_one_pair() noexcept; // pool locked; frees into emptied_ (see compact)

    Arena& arena_;
    detail::location_format locations_{1}; // frame index << 1 | buddy
    std::unique_ptr<detail::handle_table> handles_;
    mutable detail::contended_mutex lock_;
    // Under lock_.
    detail::zbud_unbuddied<chunks_per_frame> unbuddied_;
    detail::zbud_lru lru_; // every frame but those evict holds
    std::size_t frames_ = 0;
    std::size_t objects_ = 0;
    std::size_t bytes_ = 0;
    std::size_t chunks_ = 0;
    detail::zbud_frame* emptied_ = nullptr; // compaction's emptied frames, linked through next
    std::mutex compaction_lock_;
    detail::zbud_pool_counters counters_;
    shake_switch shake_;
};

} // namespace movable

#include <movable/models/zbud/pool_impl.hpp>
