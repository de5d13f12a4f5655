// expect: Owner has no member `movable::migrate_status migrate
#include <movable/operations.hpp>
struct half_owner {
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    void putback(movable::frame&) noexcept {}
};
const movable::movable_operations* table = &movable::operations_for<half_owner>;
