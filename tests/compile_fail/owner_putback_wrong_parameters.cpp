// expect: Owner has no member `void putback\(movable::frame&\) noexcept`
#include <movable/operations.hpp>
struct pointer_putback_owner {
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    movable::migrate_status migrate(movable::frame&, movable::frame&,
                                    movable::migrate_mode) noexcept {
        return movable::migrate_status::busy;
    }
    void putback(movable::frame*) noexcept {}
};
void make_movable(movable::frame& f, pointer_putback_owner& owner) {
    movable::set_movable(f, owner);
}
