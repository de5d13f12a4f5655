// expect: Targets needs `void free\(movable::frame&\)`
#include <movable/migrate.hpp>
struct no_free_targets {
    movable::frame* allocate(const movable::frame&) { return nullptr; }
};
movable::migrate_stats run(movable::frame_list& list, no_free_targets& targets) {
    return movable::migrate_frames(list, targets, movable::migrate_mode::sync);
}
