// expect: Owner::isolate must return bool
#include <movable/operations.hpp>
struct int_isolate_owner {
    int isolate(movable::frame&, movable::migrate_mode) noexcept { return 1; }
    movable::migrate_status migrate(movable::frame&, movable::frame&,
                                    movable::migrate_mode) noexcept {
        return movable::migrate_status::busy;
    }
    void putback(movable::frame&) noexcept {}
};
void make_movable(movable::frame& f, int_isolate_owner& owner) {
    movable::set_movable(f, owner);
}
