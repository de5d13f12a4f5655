// expect: Host has no member `bool lend\(movable::frame&\) noexcept`
#include <movable/models/balloon.hpp>
struct host_without_lend {
    void reclaim(movable::frame&) noexcept {}
};
void make(movable::frame_arena<>& arena, host_without_lend& host) {
    movable::balloon<movable::frame_arena<>, host_without_lend> b(arena, host);
}
