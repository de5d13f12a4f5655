// The fragmentation metrics, one formula each, for any arena: the kernel's fragmentation index
// and unusable free index (mm/vmstat.c) and the fragmentation score that proactive compaction
// keeps low (mm/compaction.c). frame_arena computes them from its free lists, the compactor
// from any compactable_arena's free frames; both call these.
#pragma once

#include <cstddef>

namespace movable {

// An arena's free space as seen by an allocation of 2^order frames.
struct free_space {
    std::size_t blocks = 0;          // free blocks of any order
    std::size_t frames = 0;          // free frames in all
    std::size_t suitable_blocks = 0; // free blocks of at least 2^order frames
    std::size_t suitable_frames = 0; // free frames in those blocks
};

// The kernel's fragmentation index for an allocation of 2^order frames: -1 when a free block of
// that order exists; otherwise within [0, 1], towards 0 when the allocation fails for lack of
// memory, towards 1 when it fails for fragmentation; 0 when nothing is free. The kernel's
// formula, 1 - (1 + frames / 2^order) / blocks, goes below 0 when there is less free memory
// than one request per free block (e.g. one free frame asked at order 1): that is a failure for
// lack of memory, so the result is clamped to 0.
[[nodiscard]] constexpr double fragmentation_index(const free_space& free,
                                                   unsigned order) noexcept {
    if (free.blocks == 0) {
        return 0.0;
    }
    if (free.suitable_blocks != 0) {
        return -1.0;
    }
    const double requested = static_cast<double>(std::size_t{1} << order);
    const double index = 1.0 - (1.0 + static_cast<double>(free.frames) / requested) /
                                   static_cast<double>(free.blocks);
    return index < 0.0 ? 0.0 : index;
}

// Fraction of free memory in blocks too small for the order the summary was taken for; 0 when
// nothing is free.
[[nodiscard]] constexpr double unusable_free_index(const free_space& free) noexcept {
    if (free.frames == 0) {
        return 0.0;
    }
    return static_cast<double>(free.frames - free.suitable_frames) /
           static_cast<double>(free.frames);
}

// 0..100: the unusable free index for max-order blocks as a percentage, rounded to the nearest;
// what proactive compaction keeps low (the kernel's fragmentation score).
[[nodiscard]] constexpr unsigned
fragmentation_score(std::size_t free_frames, std::size_t frames_in_max_order_blocks) noexcept {
    if (free_frames == 0) {
        return 0;
    }
    // round(100 * unusable / free), half up, in integers: (200 * unusable + free) / (2 * free).
    const std::size_t unusable = free_frames - frames_in_max_order_blocks;
    return static_cast<unsigned>((200 * unusable + free_frames) / (2 * free_frames));
}

} // namespace movable
