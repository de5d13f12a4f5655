// expect: Host::lend must be noexcept
#include <movable/models/balloon.hpp>
struct host_that_may_throw {
    bool lend(movable::frame&) { return true; }
    void reclaim(movable::frame&) noexcept {}
};
void make(movable::frame_arena<>& arena, host_that_may_throw& host) {
    movable::balloon<movable::frame_arena<>, host_that_may_throw> b(arena, host);
}
