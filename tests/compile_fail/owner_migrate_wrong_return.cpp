// expect: Owner::migrate must return movable::migrate_status
#include <movable/operations.hpp>
struct owner_returning_bool {
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    bool migrate(movable::frame&, movable::frame&, movable::migrate_mode) noexcept { return true; }
    void putback(movable::frame&) noexcept {}
};
void make_movable(movable::frame& f, owner_returning_bool& owner) {
    movable::set_movable(f, owner);
}
