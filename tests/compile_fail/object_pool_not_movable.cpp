// expect: object_pool: T cannot be relocated: it is not trivially relocatable and its move
#include <movable/models/object_pool.hpp>
// Neither copyable nor movable: something keeps its address. Its members are trivial, so the
// language calls it trivially copyable; object_pool still refuses to move it (only the user's
// movable::trivially_relocatable opt-in would).
struct registered {
    int id;
    explicit registered(int i) : id(i) {}
    registered(const registered&) = delete;
    registered(registered&&) = delete;
    registered& operator=(const registered&) = delete;
    registered& operator=(registered&&) = delete;
    ~registered() = default;
};
void make(movable::frame_arena<>& arena) {
    movable::object_pool<registered> pool(arena);
    (void)pool.emplace(1);
}
