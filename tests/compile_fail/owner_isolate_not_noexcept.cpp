// expect: Owner::isolate must be noexcept
#include <movable/operations.hpp>
struct throwing_owner {
    bool isolate(movable::frame&, movable::migrate_mode) { return true; }
    movable::migrate_status migrate(movable::frame&, movable::frame&,
                                    movable::migrate_mode) noexcept {
        return movable::migrate_status::busy;
    }
    void putback(movable::frame&) noexcept {}
};
void make_movable(movable::frame& f, throwing_owner& owner) {
    movable::set_movable(f, owner);
}
