// Isolates one frame and migrates it to a fresh frame of the arena, as a compaction would move
// it alone: the pool tests' way to move a chosen frame.
#pragma once

#include <cstddef>

#include <movable/migrate.hpp>

namespace movable::test {

// Returns the frames that moved (0 or 1); `out`, when given, gets the engine's statistics
// (left untouched when isolation is refused).
template <class Arena>
std::size_t isolate_and_migrate(Arena& arena, frame& f, migrate_mode mode,
                                migrate_stats* out = nullptr) {
    if (!isolate_movable_frame(f, mode)) {
        return 0;
    }
    frame_list list;
    list.push_back(f);
    arena_targets<Arena> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, mode);
    if (out != nullptr) {
        *out = stats;
    }
    putback_movable_frames(list, targets);
    return stats.succeeded;
}

} // namespace movable::test
