// expect: frame_allocating_arena: Arena must model movable::compactable_arena
#include <movable/models/zspage_pool.hpp>
// Allocates frames and knows their memory, but the compactor could not work over it.
struct plain_pool {
    movable::frame* try_allocate(unsigned, movable::frame_kind) noexcept { return nullptr; }
    void deallocate(movable::frame&, unsigned) noexcept {}
    std::byte* address_of(const movable::frame&) const { return nullptr; }
};
void make(plain_pool& pool) {
    movable::zspage_pool<plain_pool> p(pool);
}
