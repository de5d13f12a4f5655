// expect: object_pool: T cannot be relocated: it is not trivially relocatable and its move
#include <movable/models/object_pool.hpp>
#include <string>
// Neither copyable nor movable: something keeps its address. (Its std::string member makes it
// not trivially copyable. A type whose only members are trivial is called trivially copyable by
// GCC 12 and Clang 14 even with every copy and move deleted, and object_pool accepts it.)
struct registered {
    std::string name;
    explicit registered(std::string n) : name(std::move(n)) {}
    registered(const registered&) = delete;
    registered(registered&&) = delete;
    registered& operator=(const registered&) = delete;
    registered& operator=(registered&&) = delete;
    ~registered() = default;
};
void make(movable::frame_arena<>& arena) {
    movable::object_pool<registered> pool(arena);
    (void)pool.emplace("x");
}
