// expect: Targets needs `movable::frame\* allocate\(const movable::frame& source\)`
#include <movable/migrate.hpp>
struct no_allocate_targets {
    void free(movable::frame&) {}
};
movable::migrate_stats run(movable::frame_list& list, no_allocate_targets& targets) {
    return movable::migrate_frames(list, targets, movable::migrate_mode::sync);
}
