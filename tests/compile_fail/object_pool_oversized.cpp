// expect: object_pool: sizeof\(T\) is larger than a frame. objects never straddle frames
#include <movable/models/object_pool.hpp>
// One byte more than a 4 KiB frame.
struct oversized {
    unsigned char bytes[4097];
};
void make(movable::frame_arena<>& arena) {
    movable::object_pool<oversized> pool(arena);
    (void)pool.size();
}
