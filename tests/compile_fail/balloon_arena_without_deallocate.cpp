// expect: frame_allocating_arena: Arena has no member `void deallocate\(movable::frame&
#include <movable/models/balloon.hpp>
struct arena_without_free {
    static constexpr std::size_t frame_size = 4096;
    static constexpr unsigned max_order = 2;
    std::size_t frame_count() const { return 0; }
    movable::frame& frame_at(std::size_t);
    std::size_t index_of(const movable::frame&) const { return 0; }
    bool is_free(std::size_t) const { return true; }
    movable::frame* try_take_free_frame(std::size_t) { return nullptr; }
    void free_frame(movable::frame&) {}
    movable::frame* try_allocate(unsigned, movable::frame_kind) noexcept { return nullptr; }
};
struct host {
    bool lend(movable::frame&) noexcept { return true; }
    void reclaim(movable::frame&) noexcept {}
};
void make(arena_without_free& arena, host& h) {
    movable::balloon<arena_without_free, host> b(arena, h);
}
