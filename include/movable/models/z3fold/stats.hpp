// z3fold_pool's statistics and its event counters.
#pragma once

#include <atomic>
#include <cstddef>

namespace movable {

// A snapshot of a z3fold_pool. frames_in_use, objects_in_use and bytes_stored are the members
// every compressed_store's stats share (models/compressed_store.hpp).
struct z3fold_pool_stats {
    std::size_t frame_size = 0;
    std::size_t frames_in_use = 0; // frames holding at least one buddy
    std::size_t objects_in_use = 0;
    std::size_t bytes_stored = 0;     // sum of the live objects' requested sizes
    std::size_t chunks_in_use = 0;    // 64-byte chunks the live objects take
    std::size_t unbuddied_frames = 0; // frames with a buddy free and room for it
    std::size_t compactions = 0;      // compact() calls that ran
    std::size_t frames_freed_by_compaction = 0;
    std::size_t middles_moved = 0;                  // in-frame compaction (compact and free)
    std::size_t objects_moved = 0;                  // to another frame, by compact
    std::size_t frames_migrated = 0;                // frames moved through the core protocol
    std::size_t frames_released_while_isolated = 0; // freed frames the core freed
    std::size_t isolated_frames = 0;                // frames isolated by the core right now
    std::size_t handle_slots_retired = 0; // slots whose 32-bit generation ran out: never reused
};

namespace detail {

// A pool's event counters: atomics (different paths change them, stats() reads them unlocked).
struct z3fold_pool_counters {
    std::atomic<std::size_t> compactions{0};
    std::atomic<std::size_t> frames_freed_by_compaction{0};
    std::atomic<std::size_t> middles_moved{0};
    std::atomic<std::size_t> objects_moved{0};
    std::atomic<std::size_t> frames_migrated{0};
    std::atomic<std::size_t> frames_released_while_isolated{0};
    std::atomic<std::size_t> isolated_frames{0};
};

} // namespace detail
} // namespace movable
