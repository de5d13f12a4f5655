// expect: zbud_arena: Arena has no member `std::byte\* address_of\(const movable::frame&\) const`
#include <movable/models/zbud_pool.hpp>
// A compactable arena that allocates frames but cannot say where their memory is.
struct arena_without_memory {
    static constexpr std::size_t frame_size = 4096;
    static constexpr unsigned max_order = 2;
    std::size_t frame_count() const { return 0; }
    movable::frame& frame_at(std::size_t);
    std::size_t index_of(const movable::frame&) const { return 0; }
    bool is_free(std::size_t) const { return true; }
    movable::frame* try_take_free_frame(std::size_t) { return nullptr; }
    void free_frame(movable::frame&) {}
    movable::frame* try_allocate(unsigned, movable::frame_kind) noexcept { return nullptr; }
    void deallocate(movable::frame&, unsigned) noexcept {}
};
void make(arena_without_memory& arena) {
    movable::zbud_pool<arena_without_memory> pool(arena);
}
