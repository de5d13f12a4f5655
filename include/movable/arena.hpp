// compactable_arena: what the compactor needs from an arena, and frame_kind, the mobility of an
// allocation. frame_arena (frame_arena.hpp) models it; so can any arena that hands out
// fixed-size frames with a frame descriptor each (the tests compact a bitmap arena this way).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include <movable/frame.hpp>

namespace movable {

// Mobility of an allocation and of a max-order block.
enum class frame_kind : std::uint8_t { movable = 0, unmovable = 1 };

// Required members (the compactor calls them from one thread at a time, never holding a frame
// lock, and several compactors and the arena's other users may run at once):
//   frame_size, max_order       bytes per frame; 2^max_order frames make the largest block
//   frame_count()               frames in the arena
//   frame_at(i), index_of(f)    index <-> descriptor
//   is_free(i)                  lockless hint: frame i is free (may be stale)
//   try_take_free_frame(i)      if frame i is free and may hold a movable frame, allocate
//                               exactly it (count 1) as a migration target, else null
//   free_frame(f)            give back one frame (count 1, not movable, not isolated)
//
// Optional members: when present (exactly these names and signatures) the compactor uses them;
// otherwise it falls back to a scan of is_free over the arena, O(frame_count) each time.
//   int largest_free_order() const           largest order with a free block, -1 if none
//   std::size_t free_block_count(unsigned order) const
//                                            free blocks of exactly that order
//   unsigned fragmentation_score() const     0..100, fragmentation.hpp's formula
//   std::size_t free_block_end(std::size_t i) const
//                                            one past the free block holding i (i if not free)
//   std::size_t take_free_frames(std::size_t first, std::size_t end, std::size_t max,
//                                frame_list& out)
//                                            try_take_free_frame of up to `max` free frames in
//                                            [first, end), lowest first, under one lock,
//                                            appended to `out`; returns how many
//   void free_frame_batch(frame_list& frames)
//                                            free_frame of every frame on the list (emptied),
//                                            under one lock
// The batched pair lets the compactor take its targets and free its sources one lock per
// batch instead of one per frame.
// compactable_arena_optional_members<Arena> says which of them an arena has, so a misspelt one
// can be caught by a static_assert in the arena's own tests.
template <class Arena>
concept compactable_arena = requires(Arena& arena, const Arena& const_arena, std::size_t index,
                                     frame& f) {
    { Arena::frame_size } -> std::convertible_to<std::size_t>;
    { Arena::max_order } -> std::convertible_to<unsigned>;
    { const_arena.frame_count() } -> std::same_as<std::size_t>;
    { arena.frame_at(index) } -> std::same_as<frame&>;
    { const_arena.index_of(f) } -> std::same_as<std::size_t>;
    { const_arena.is_free(index) } -> std::same_as<bool>;
    { arena.try_take_free_frame(index) } -> std::same_as<frame*>;
    arena.free_frame(f);
};

template <class Arena>
struct compactable_arena_optional_members {
    static constexpr bool largest_free_order = requires(const Arena& arena) {
        { arena.largest_free_order() } -> std::same_as<int>;
    };
    static constexpr bool free_block_count = requires(const Arena& arena, unsigned order) {
        { arena.free_block_count(order) } -> std::same_as<std::size_t>;
    };
    static constexpr bool fragmentation_score = requires(const Arena& arena) {
        { arena.fragmentation_score() } -> std::same_as<unsigned>;
    };
    static constexpr bool free_block_end = requires(const Arena& arena, std::size_t index) {
        { arena.free_block_end(index) } -> std::same_as<std::size_t>;
    };
    static constexpr bool take_free_frames =
        requires(Arena & arena, std::size_t index, frame_list& out) {
        { arena.take_free_frames(index, index, index, out) } -> std::same_as<std::size_t>;
    };
    static constexpr bool free_frame_batch = requires(Arena & arena, frame_list& frames) {
        arena.free_frame_batch(frames);
    };
    static constexpr bool all = largest_free_order && free_block_count && fragmentation_score &&
                                free_block_end && take_free_frames && free_frame_batch;
};

namespace detail {
// The atomic requirements frame_allocating_arena and zspage_arena are built from; the check_*
// functions below say which one a type misses.
template <class Arena>
concept arena_has_try_allocate = requires(Arena& arena) {
    { arena.try_allocate(0u, frame_kind::movable) } -> std::same_as<frame*>;
};
template <class Arena>
concept arena_has_deallocate = requires(Arena& arena, frame& f) {
    arena.deallocate(f, 0u);
};
template <class Arena>
concept arena_has_address_of = requires(const Arena& arena, const frame& f) {
    { arena.address_of(f) } -> std::same_as<std::byte*>;
};
} // namespace detail

// What the pools need from an arena (balloon_arena, zspage_arena): a compactable arena (frames
// lent to a pool must stay movable, or they would pin it) that also allocates and frees frames.
//   frame* try_allocate(unsigned order, frame_kind kind)   count 1, or null; never throws
//   void deallocate(frame& f, unsigned order)              f: count 1, not movable
template <class Arena>
concept frame_allocating_arena = compactable_arena<Arena> &&
    detail::arena_has_try_allocate<Arena> && detail::arena_has_deallocate<Arena>;

namespace detail {
// Says which piece of frame_allocating_arena a type misses, one static_assert per piece (every
// fact settled before the first static_assert, as check_movable_owner explains).
template <class Arena>
consteval bool check_frame_allocating_arena() {
    constexpr bool compactable = compactable_arena<Arena>;
    constexpr bool has_try_allocate = arena_has_try_allocate<Arena>;
    constexpr bool has_deallocate = arena_has_deallocate<Arena>;
    static_assert(compactable,
                  "frame_allocating_arena: Arena must model movable::compactable_arena (a pool's "
                  "frames must stay movable, or lending them would pin the arena)");
    static_assert(has_try_allocate, "frame_allocating_arena: Arena has no member "
                                    "`movable::frame* try_allocate(unsigned order, "
                                    "movable::frame_kind kind)`");
    static_assert(has_deallocate, "frame_allocating_arena: Arena has no member `void "
                                  "deallocate(movable::frame&, unsigned order)`");
    return compactable && has_try_allocate && has_deallocate;
}
} // namespace detail

} // namespace movable
