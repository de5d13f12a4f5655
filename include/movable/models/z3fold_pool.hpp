// z3fold_pool<Arena>: the kernel's z3fold as a library. Each frame holds at most three objects
// ("buddies") in 64-byte chunks: "first" from the frame's start, "last" ending at the frame's
// end and "middle" anywhere between. Frames with a buddy free sit on unbuddied lists by the
// largest new buddy they can take, and allocation takes the best fit before it takes a new
// frame. Objects are reached through handles that stay valid while buddies move inside their
// frame and while frames move: in-frame compaction moves the middle buddy next to the first or
// the last to merge free space (the kernel's z3fold_compact_page), cheaply on free where it
// merges at least 3 chunks and fully in compact(); compact() also moves the objects of frames
// holding one object into other frames (the kernel's compact_single_buddy), then empties frames
// holding two whose objects all fit in other frames' free chunks (the kernel stops at single
// buddies); every frame is movable through the core protocol (seed 004: z3fold_page_migrate).
// Denser than zbud_pool for small objects, still sparser than zspage_pool.
//
// Layout: each frame has a descriptor outside it (models/z3fold/z3fold_frame.hpp), so every
// chunk of the frame holds data and an object may be a whole frame; a handle's location is its
// frame and its buddy (first, middle, last), and the descriptor says where in the frame the
// middle starts, so moving the middle rewrites the descriptor (and, when it becomes the first
// buddy, its handle); migration copies the frame and rewrites the buddies' handles.
//
// Lock order ("->" reads "may be taken while holding"), as zbud_pool's:
//
//     frame lock  ->  pool lock  ->  frame pin count (checked, never waited for)
//     handle-table growth lock, the arena's lock: leaves, taken with no lock of the pool held
//
//   * One pool lock guards the lists, the descriptors and every handle's location: every move
//     and free of an object happens under it, so resolving a handle needs only it.
//   * The core calls isolate/migrate/putback with the frame(s) locked; migrate takes the pool
//     lock inside (try_lock in async mode: `retry` when it is held).
//   * A frame's pin count is its reader lock: reads, writes and mappings pin it under the pool
//     lock and unpin without any lock. Movers (in-frame and pool compaction, migration) hold the
//     pool lock and leave a pinned frame's buddies where they are: compaction skips it,
//     migration answers `busy` in every mode. A pinned frame may still receive a new buddy in
//     its free chunks (nothing mapped moves).
//
// Errors, as zbud_pool's: size 0 or above max_object_size() throws std::invalid_argument
// (try_allocate: empty handle); arena exhaustion throws std::bad_alloc (try_allocate: empty
// handle); an empty handle throws std::invalid_argument; a span larger than the object throws
// std::out_of_range. A stale handle (freed, double free) is a contract violation: abort with a
// message naming the call in Debug and MOVABLE_HARDENED builds, undefined in Release.
#pragma once

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
#include <movable/models/z3fold/stats.hpp>
#include <movable/models/z3fold/z3fold_frame.hpp>
#include <movable/operations.hpp>
#include <movable/pool/handle_table.hpp>
#include <movable/pool/pinned_mapping.hpp>
#include <movable/pool/pins.hpp>
#include <movable/pool/store_errors.hpp>
#include <movable/pool/store_handle.hpp>
#include <movable/shake.hpp>

namespace movable {

struct z3fold_handle_tag;
// An opaque reference to an object of a z3fold_pool. Stays valid while the object is allocated,
// across in-frame and pool compaction and frame migration. The empty handle (default) is false.
using z3fold_handle = store_handle<z3fold_handle_tag>;

// A pinned object of a z3fold_pool, in place (pool/pinned_mapping.hpp).
template <class Pool>
using z3fold_mapping = pinned_mapping<Pool, detail::z3fold_frame>;

namespace detail {
template <class Pool>
struct z3fold_pool_test_access; // tests only: reach inside a pool
struct z3fold_pool_invariants;
} // namespace detail

// What z3fold_pool needs from an arena: frame_allocating_arena (arena.hpp) and the memory of a
// frame, `std::byte* address_of(const frame&) const`. frame_arena models it.
template <class Arena>
concept z3fold_arena = frame_allocating_arena<Arena> && detail::arena_has_address_of<Arena>;

template <class Arena = frame_arena<>>
class z3fold_pool {
    static_assert(detail::check_frame_allocating_arena<Arena>());
    static_assert(detail::arena_has_address_of<Arena>,
                  "z3fold_arena: Arena has no member `std::byte* address_of(const "
                  "movable::frame&) const`");

public:
    using handle = z3fold_handle;
    using access_mode = store_access;
    using mapping = z3fold_mapping<z3fold_pool>;
    static constexpr std::size_t frame_size = Arena::frame_size;
    static constexpr std::size_t chunk_size = detail::pool_chunk_size;
    static constexpr std::size_t chunks_per_frame = detail::frame_chunks<frame_size>::per_frame;

    // A pool over `arena` (which must outlive it). Throws std::invalid_argument for an arena too
    // large for the handle encoding.
    explicit z3fold_pool(Arena& arena);
    // Frees every object and frame. Waits for in-flight migrations of the pool's frames (it
    // locks each frame); frames the core holds isolated are handed to it (it frees them). No
    // other call may run concurrently; no object may still be mapped (contract).
    ~z3fold_pool();
    z3fold_pool(const z3fold_pool&) = delete;
    z3fold_pool& operator=(const z3fold_pool&) = delete;

    // ---- objects --------------------------------------------------------------------------------
    // A new object of `size` bytes (contents unspecified): in the best-fitting unbuddied frame
    // (as its first buddy when free, else its last, else its middle), else as the first buddy
    // of a new frame. Throws std::invalid_argument for size 0 or above max_object_size(),
    // std::bad_alloc when the arena (or the handle table) is exhausted.
    [[nodiscard]] handle allocate(std::size_t size);
    // As allocate, but the empty handle instead of throwing.
    [[nodiscard]] handle try_allocate(std::size_t size) noexcept;
    // Frees the object; a frame whose last buddy goes is given back to the arena at once; in a
    // frame left unpinned with a middle buddy, the middle moves next to the first or the last
    // when that merges at least 3 chunks of free space. Throws std::invalid_argument for the
    // empty handle; a stale handle (double free) is a contract violation. Freeing an object
    // while it is mapped is misuse.
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

    // ---- compaction -----------------------------------------------------------------------------
    // In every unpinned frame, moves the middle buddy next to the first or the last (any gain);
    // then, while an unpinned frame holding one object has another frame with room for it, moves
    // the object there (best fit) and frees the frame; then, the frames with the largest free run
    // first, empties each unpinned frame with a free buddy (holding one or two objects) whose
    // objects all fit in other frames' free chunks (best fit each, the largest object first; a
    // frame is emptied completely or not touched) and frees it, until no such frame is left.
    // Pinned frames may receive objects. Handles are rewritten. Drops the pool lock and yields
    // whenever another thread waits for it between moves to other frames. One compaction runs per
    // pool at a time: a call made while another runs returns 0 at once. Returns the frames freed.
    std::size_t compact();

    // ---- introspection --------------------------------------------------------------------------
    [[nodiscard]] static constexpr std::size_t max_object_size() noexcept { return frame_size; }
    [[nodiscard]] z3fold_pool_stats stats() const;
    [[nodiscard]] Arena& arena() const noexcept { return arena_; }
    // Walks every frame and every handle slot and checks the pool's invariants
    // (models/z3fold/invariants.hpp); aborts naming the first that does not hold, in every
    // build. O(frames + handle slots). Call it when the pool is quiescent.
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
    friend struct detail::z3fold_pool_test_access;
    friend struct detail::z3fold_pool_invariants;
    using chunk_math = detail::frame_chunks<frame_size>;
    using layout = detail::z3fold_layout<static_cast<std::uint32_t>(chunks_per_frame)>;
    using pool_lock = std::unique_lock<detail::contended_mutex>;
    struct located;
    struct resolved;

    located lock_and_locate(handle h, const char* stale_message, pool_lock& guard) const;
    resolved resolve_and_pin(handle h, const char* call, const char* stale_message) const;
    std::byte* bytes_of(const detail::z3fold_frame& zf, detail::z3fold_buddy buddy) const noexcept;
    void set_location(std::uint32_t slot, const detail::z3fold_frame& zf,
                      detail::z3fold_buddy buddy) const noexcept;
    std::size_t size_of(std::uint32_t slot) const noexcept;
    // Records a buddy of `chunks` chunks for `slot` at `at` in zf (pool locked); not its bytes.
    void put_buddy_locked(detail::z3fold_frame& zf, detail::z3fold_place at, std::uint32_t slot,
                          std::uint32_t chunks) noexcept;
    // Frees the buddy `buddy` of zf (pool locked): its slot word, generation and counts. Returns
    // whether the slot must be retired. zf is left off or on its list as it was.
    bool free_buddy_locked(detail::z3fold_frame& zf, detail::z3fold_buddy buddy) noexcept;
    void give_back_slot(std::uint32_t slot, bool retire) noexcept;
    // Moves zf's middle buddy as layout::compaction_target says (pool locked, zf unpinned and
    // off its list). Returns whether it moved.
    bool compact_in_frame_locked(detail::z3fold_frame& zf, std::uint32_t min_gap) noexcept;
    // Moves the buddy `from` of src into dst, where layout::place puts it (pool locked; src off
    // its list, dst with room for it). Refiles dst; counts the move.
    void move_buddy_locked(detail::z3fold_frame& src, detail::z3fold_buddy from,
                           detail::z3fold_frame& dst) noexcept;
    // Moves the object of one unpinned one-object frame into another frame; the emptied frame
    // goes on emptied_. False when no such move is left (pool locked).
    bool move_single_locked() noexcept;
    struct emptying;
    // Where each object of src goes so that src empties: the best fit among the other listed
    // frames, the largest object first, counting what the plan has already put in each. False
    // when one does not fit (pool locked).
    bool plan_emptying_locked(const detail::z3fold_frame& src, emptying& plan) const noexcept;
    // Empties unpinned listed frames whose objects all fit in other frames' free chunks, the
    // frames with the largest free run first; the emptied frames go on emptied_. True when it
    // stopped after emptying one because another thread waits for the pool lock (call it again
    // after yielding), false when no listed frame can be emptied any more (pool locked).
    bool empty_frames_locked() noexcept;
    // Takes an empty frame off the LRU list and marks it freeing (pool locked).
    void retire_frame_locked(detail::z3fold_frame& zf) noexcept;
    // Gives a frame marked freeing back (no lock of the pool held) and deletes its descriptor.
    void release_frame(detail::z3fold_frame* zf) noexcept;
    detail::z3fold_frame* new_frame() noexcept;

    Arena& arena_;
    detail::location_format locations_{2}; // frame index << 2 | buddy
    std::unique_ptr<detail::handle_table> handles_;
    mutable detail::contended_mutex lock_;
    // Under lock_.
    detail::z3fold_unbuddied<chunks_per_frame> unbuddied_;
    detail::frame_lru<detail::z3fold_frame> frames_list_; // every frame, newest allocation first
    std::size_t frames_ = 0;
    std::size_t objects_ = 0;
    std::size_t bytes_ = 0;
    std::size_t chunks_ = 0;
    detail::z3fold_frame* emptied_ = nullptr; // compaction's emptied frames, linked through next
    std::mutex compaction_lock_;
    detail::z3fold_pool_counters counters_;
    shake_switch shake_;
};

} // namespace movable

#include <movable/models/z3fold/compaction_impl.hpp>
#include <movable/models/z3fold/pool_impl.hpp>
