// expect: object_pool: sizeof\(T\) is larger than a frame. objects never straddle frames
#include <movable/models/object_pool.hpp>
// One byte more than a 4 KiB frame. (The pool is named, not constructed: constructing it makes
// Clang print the constructor's "a slab's places must fit" assertion as well.)
struct oversized {
    unsigned char bytes[4097];
};
std::size_t count(movable::object_pool<oversized>& pool) {
    return pool.size();
}
