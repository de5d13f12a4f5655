// arena_queries: what the compactor asks of an arena about its free space, answered by the
// arena's optional members when it has them (compactable_arena_optional_members) and otherwise
// by scanning is_free, O(frame_count) per question.
#pragma once

#include <algorithm>
#include <cstddef>

#include <movable/arena.hpp>
#include <movable/fragmentation.hpp>
#include <movable/frame.hpp>

namespace movable::detail {

// Every frame of [first, first + span) is free (a lockless hint, as is_free).
template <class Arena>
bool span_free(const Arena& arena, std::size_t first, std::size_t span) {
    for (std::size_t i = first; i < first + span; ++i) {
        if (!arena.is_free(i)) {
            return false;
        }
    }
    return true;
}

// The largest order with a free (aligned) block, -1 when nothing is free.
template <class Arena>
int largest_free_order(const Arena& arena) {
    if constexpr (compactable_arena_optional_members<Arena>::largest_free_order) {
        return arena.largest_free_order();
    } else {
        for (int order = static_cast<int>(Arena::max_order); order >= 0; --order) {
            const std::size_t span = std::size_t{1} << order;
            for (std::size_t first = 0; first + span <= arena.frame_count(); first += span) {
                if (span_free(arena, first, span)) {
                    return order;
                }
            }
        }
        return -1;
    }
}

// Free blocks of max_order.
template <class Arena>
std::size_t free_max_order_blocks(const Arena& arena) {
    if constexpr (compactable_arena_optional_members<Arena>::free_block_count) {
        return arena.free_block_count(Arena::max_order);
    } else {
        const std::size_t span = std::size_t{1} << Arena::max_order;
        std::size_t blocks = 0;
        for (std::size_t first = 0; first + span <= arena.frame_count(); first += span) {
            blocks += span_free(arena, first, span) ? 1 : 0;
        }
        return blocks;
    }
}

// fragmentation.hpp's score of the arena.
template <class Arena>
unsigned fragmentation_score(const Arena& arena) {
    if constexpr (compactable_arena_optional_members<Arena>::fragmentation_score) {
        return arena.fragmentation_score();
    } else {
        std::size_t free_frames = 0;
        for (std::size_t i = 0; i < arena.frame_count(); ++i) {
            free_frames += arena.is_free(i) ? 1 : 0;
        }
        return movable::fragmentation_score(free_frames, free_max_order_blocks(arena)
                                                             << Arena::max_order);
    }
}

// One past the last frame of the free run starting at `index`; index + 1 when unknown.
template <class Arena>
std::size_t free_run_end(const Arena& arena, std::size_t index) {
    if constexpr (compactable_arena_optional_members<Arena>::free_block_end) {
        return std::max(arena.free_block_end(index), index + 1);
    } else {
        return index + 1;
    }
}

// Takes up to `max` free frames of [first, end) as migration targets (try_take_free_frame's
// rule), lowest first, appending them to `out`. Returns one past the last frame it looked at:
// `end` when the range ran out before `max` were taken. One arena lock in all where the arena
// has take_free_frames; `scanned` counts the frames looked at.
template <class Arena>
std::size_t take_free_frames(Arena& arena, std::size_t first, std::size_t end, std::size_t max,
                             frame_list& out, std::size_t& scanned) {
    if constexpr (compactable_arena_optional_members<Arena>::take_free_frames) {
        const std::size_t taken = arena.take_free_frames(first, end, max, out);
        const std::size_t stop = taken == max && taken > 0 ? arena.index_of(*out.back()) + 1 : end;
        scanned += stop - first;
        return stop;
    } else {
        std::size_t taken = 0;
        for (std::size_t index = first; index < end; ++index) {
            ++scanned;
            if (arena.is_free(index)) {
                if (frame* f = arena.try_take_free_frame(index)) {
                    out.push_back(*f);
                    if (++taken == max) {
                        return index + 1;
                    }
                }
            }
        }
        return end;
    }
}

// Frees every frame of `frames` (free_frame's contract each), one arena lock in all where the
// arena has free_frame_batch.
template <class Arena>
void free_frames(Arena& arena, frame_list& frames) noexcept {
    if constexpr (compactable_arena_optional_members<Arena>::free_frame_batch) {
        arena.free_frame_batch(frames);
    } else {
        while (frame* f = frames.pop_front()) {
            arena.free_frame(*f);
        }
    }
}

} // namespace movable::detail
