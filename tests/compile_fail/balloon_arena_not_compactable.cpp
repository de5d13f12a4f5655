// expect: Arena must model movable::compactable_arena
#include <movable/models/balloon.hpp>
struct plain_pool {
    movable::frame* try_allocate(unsigned, movable::frame_kind) noexcept { return nullptr; }
    void deallocate(movable::frame&, unsigned) noexcept {}
};
struct host {
    bool lend(movable::frame&) noexcept { return true; }
    void reclaim(movable::frame&) noexcept {}
};
void make(plain_pool& pool, host& h) {
    movable::balloon<plain_pool, host> b(pool, h);
}
