// expect: Host::replace must return movable::balloon_replace_result
#include <movable/models/balloon.hpp>
struct host_with_bool_replace {
    bool lend(movable::frame&) noexcept { return true; }
    void reclaim(movable::frame&) noexcept {}
    bool replace(movable::frame&, movable::frame&) noexcept { return true; }
};
void make(movable::frame_arena<>& arena, host_with_bool_replace& host) {
    movable::balloon<movable::frame_arena<>, host_with_bool_replace> b(arena, host);
}
