// expect: Host has no member `void reclaim\(movable::frame&\) noexcept`
#include <movable/models/balloon.hpp>
struct host_without_reclaim {
    bool lend(movable::frame&) noexcept { return true; }
};
void make(movable::frame_arena<>& arena, host_without_reclaim& host) {
    movable::balloon<movable::frame_arena<>, host_without_reclaim> b(arena, host);
}
