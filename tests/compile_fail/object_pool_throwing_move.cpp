// expect: object_pool: T cannot be relocated: it is not trivially relocatable and its move
#include <movable/models/object_pool.hpp>
#include <string>
// A move constructor that may throw (not noexcept), and no movable::trivially_relocatable opt-in.
struct throwing_move {
    std::string text;
    explicit throwing_move(std::string t) : text(std::move(t)) {}
    throwing_move(throwing_move&& other) : text(std::move(other.text)) {}
    throwing_move(const throwing_move&) = default;
    throwing_move& operator=(const throwing_move&) = default;
    throwing_move& operator=(throwing_move&&) = default;
    ~throwing_move() = default;
};
void make(movable::frame_arena<>& arena) {
    movable::object_pool<throwing_move> pool(arena);
    (void)pool.emplace("x");
}
