// expect: Owner has no member `bool isolate
// expect: Owner has no member `movable::migrate_status migrate
// expect: Owner has no member `void putback
#include <movable/operations.hpp>
void make_movable(movable::frame& f, int& not_an_owner) {
    movable::set_movable(f, not_an_owner);
}
