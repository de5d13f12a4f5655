// expect: Owner has no member `bool isolate
#include <movable/operations.hpp>
struct owner_without_isolate {
    movable::migrate_status migrate(movable::frame&, movable::frame&,
                                    movable::migrate_mode) noexcept {
        return movable::migrate_status::busy;
    }
    void putback(movable::frame&) noexcept {}
};
void make_movable(movable::frame& f, owner_without_isolate& owner) {
    movable::set_movable(f, owner);
}
