// expect: Owner must be a non-const object type
#include <movable/operations.hpp>
struct owner {
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    movable::migrate_status migrate(movable::frame&, movable::frame&,
                                    movable::migrate_mode) noexcept {
        return movable::migrate_status::busy;
    }
    void putback(movable::frame&) noexcept {}
};
void make_movable(movable::frame& f, const owner& read_only) {
    movable::set_movable(f, read_only);
}
