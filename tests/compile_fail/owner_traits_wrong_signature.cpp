// expect: Owner::putback must be noexcept
#include <movable/operations.hpp>
struct sealed_type {};
template <>
struct movable::owner_traits<sealed_type> {
    static bool isolate(sealed_type&, frame&, migrate_mode) noexcept { return true; }
    static migrate_status migrate(sealed_type&, frame&, frame&, migrate_mode) noexcept {
        return migrate_status::busy;
    }
    static void putback(sealed_type&, frame&) {}
};
void make_movable(movable::frame& f, sealed_type& owner) {
    movable::set_movable(f, owner);
}
