// expect: frame_allocating_arena: Arena has no member `movable::frame\* try_allocate\(unsigned
#include <movable/models/zspage_pool.hpp>
// A compactable arena that cannot hand out frames.
struct arena_without_allocation {
    static constexpr std::size_t frame_size = 4096;
    static constexpr unsigned max_order = 2;
    std::size_t frame_count() const { return 0; }
    movable::frame& frame_at(std::size_t);
    std::size_t index_of(const movable::frame&) const { return 0; }
    bool is_free(std::size_t) const { return true; }
    movable::frame* try_take_free_frame(std::size_t) { return nullptr; }
    void free_frame(movable::frame&) {}
    void deallocate(movable::frame&, unsigned) noexcept {}
    std::byte* address_of(const movable::frame&) const { return nullptr; }
};
void make(arena_without_allocation& arena) {
    movable::zspage_pool<arena_without_allocation> pool(arena);
}
