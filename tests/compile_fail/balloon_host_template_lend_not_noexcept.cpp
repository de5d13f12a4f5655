// expect: Host::lend must be noexcept
#include <movable/models/balloon.hpp>
// A class template's noexcept-specifier is instantiated only when asked; the check of reclaim
// must still see it after the check of lend has failed.
template <class Frame>
struct host_template_that_may_throw {
    bool lend(Frame&) { return true; }
    void reclaim(Frame&) noexcept(sizeof(Frame) > 0) {}
};
using host = host_template_that_may_throw<movable::frame>;
void make(movable::frame_arena<>& arena, host& h) {
    movable::balloon<movable::frame_arena<>, host> b(arena, h);
}
