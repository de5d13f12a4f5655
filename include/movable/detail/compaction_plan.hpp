// The least-moves compaction plan: which aligned regions of an arena to empty so that its free
// space forms as many free max-order blocks as it can (or one free block of a requested order,
// or a fragmentation score at or below a requested level), moving the fewest frames, and where
// the moved frames go (the holes of the densest blocks). The compactor's internals: users see
// the plan's cost as compact_stats::minimum_moves.
//
// Why evacuating the cheapest regions is optimal: freeing k max-order blocks of P frames each
// needs k·P free frames in all, and moves exactly the used frames of the k blocks chosen; the
// holes outside them number F - (k·P - moved) >= moved whenever k·P <= F. So the most blocks
// that can be freed is min(F / P, evacuable blocks), and the fewest moves that free them are
// the used frames of that many cheapest evacuable blocks (a block holding a frame that cannot
// move is not evacuable).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <movable/arena.hpp>
#include <movable/fragmentation.hpp>
#include <movable/frame.hpp>
#include <movable/operations.hpp>

namespace movable::detail {

// An aligned region the plan may empty: its first frame and its used frames when planned.
struct region_cost {
    std::size_t first = 0;
    std::size_t used = 0;
};

// The arena seen in regions of 2^order frames, at one moment (lockless hints: owners keep
// allocating and freeing, so the compactor revalidates each region as it empties it).
struct region_census {
    std::size_t region_frames = 0;
    std::size_t free_frames = 0;            // that could take a frame (or form a free block)
    std::size_t all_free_frames = 0;        // every free frame (the fragmentation score's)
    std::size_t free_regions = 0;           // regions wholly free already
    std::vector<region_cost> candidates;    // evacuable regions with a used frame, cheapest first
    std::vector<std::size_t> used_of_block; // used frames of each max-order block
};

// An arena that says which kind of allocation a max-order block serves (frame_arena): free
// frames of an unmovable block are never handed out as migration targets
// (try_take_free_frame refuses them), so the plan must not count them as holes.
template <class Arena>
concept arena_has_block_kind = requires(const Arena& arena, std::size_t block) {
    { arena.block_kind(block) } -> std::same_as<frame_kind>;
};

// A used frame that the compactor could isolate: movable (a hint, re-checked under its lock
// when it is isolated).
template <class Arena>
bool may_move(Arena& arena, std::size_t index) {
    return is_movable(arena.frame_at(index));
}

template <class Arena>
region_census take_census(Arena& arena, unsigned order) {
    region_census census;
    census.region_frames = std::size_t{1} << order;
    const std::size_t frames = arena.frame_count();
    const std::size_t block_frames = std::size_t{1} << Arena::max_order;
    census.used_of_block.assign(frames / block_frames, 0);
    for (std::size_t first = 0; first + census.region_frames <= frames;
         first += census.region_frames) {
        std::size_t used = 0;
        std::size_t free = 0;
        bool evacuable = true;
        for (std::size_t i = first; i < first + census.region_frames; ++i) {
            if (arena.is_free(i)) {
                ++free;
            } else {
                ++used;
                evacuable = evacuable && may_move(arena, i);
            }
        }
        bool holes_usable = true;
        if constexpr (arena_has_block_kind<Arena>) {
            holes_usable =
                used == 0 || arena.block_kind(first / block_frames) == frame_kind::movable;
        }
        census.free_frames += holes_usable ? free : 0;
        census.all_free_frames += free;
        census.used_of_block[first / block_frames] += used;
        if (used == 0) {
            ++census.free_regions;
        } else if (evacuable) {
            census.candidates.push_back({first, used});
        }
    }
    if constexpr (arena_has_block_kind<Arena>) {
        // A partly used unmovable block gives no targets: count it full for the destinations.
        for (std::size_t b = 0; b < census.used_of_block.size(); ++b) {
            if (census.used_of_block[b] != 0 && arena.block_kind(b) != frame_kind::movable) {
                census.used_of_block[b] = block_frames;
            }
        }
    }
    std::stable_sort(census.candidates.begin(), census.candidates.end(),
                     [](const region_cost& a, const region_cost& b) { return a.used < b.used; });
    return census;
}

// How many of the cheapest candidates a full compaction empties: as many as free space allows.
inline std::size_t regions_to_empty_for_full(const region_census& census) {
    const std::size_t possible = census.free_frames / census.region_frames;
    const std::size_t more = possible > census.free_regions ? possible - census.free_regions : 0;
    return std::min(more, census.candidates.size());
}

// How many of the cheapest max-order candidates bring the fragmentation score to `score` or
// below (as many as a full compaction empties when it cannot get there).
inline std::size_t regions_to_empty_for_score(const region_census& census, unsigned score) {
    const std::size_t most = regions_to_empty_for_full(census);
    for (std::size_t k = 0; k < most; ++k) {
        const std::size_t free_in_blocks = (census.free_regions + k) * census.region_frames;
        if (movable::fragmentation_score(census.all_free_frames, free_in_blocks) <= score) {
            return k;
        }
    }
    return most;
}

// Keeps the candidates whose used frames fit in the free frames outside them, cheapest first:
// an order-targeted compaction empties the first, and falls back on the next should that one
// turn out unmovable.
inline void keep_fitting_regions(region_census& census) {
    std::erase_if(census.candidates, [&](const region_cost& region) {
        const std::size_t free_inside = census.region_frames - region.used;
        return census.free_frames - free_inside < region.used;
    });
}

// Sum of the used frames of the first `count` candidates: what an ideal plan moves.
inline std::size_t moves_of(const region_census& census, std::size_t count) {
    std::size_t moves = 0;
    for (std::size_t i = 0; i < count && i < census.candidates.size(); ++i) {
        moves += census.candidates[i].used;
    }
    return moves;
}

// The max-order blocks to take targets from: the partly used ones densest first (fill the holes
// of the fullest blocks, which are not worth emptying), then the free ones, last resort (a full
// compaction never needs them: its sources fit in the partly used blocks' holes).
inline std::vector<std::size_t> destination_blocks(const region_census& census,
                                                   std::size_t block_frames) {
    std::vector<std::size_t> blocks;
    for (std::size_t b = 0; b < census.used_of_block.size(); ++b) {
        if (census.used_of_block[b] < block_frames) {
            blocks.push_back(b);
        }
    }
    std::stable_sort(blocks.begin(), blocks.end(), [&](std::size_t a, std::size_t b) {
        const std::size_t used_a = census.used_of_block[a];
        const std::size_t used_b = census.used_of_block[b];
        return (used_a == 0) != (used_b == 0) ? used_b == 0 : used_a > used_b;
    });
    return blocks;
}

} // namespace movable::detail
