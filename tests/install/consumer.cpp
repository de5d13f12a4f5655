// A consumer of the library: includes the umbrella header, makes a frame movable, isolates it
// and puts it back. Exits 0 when the protocol behaved.
#include <movable/movable.hpp>

#include <cstdio>
#include <mutex>

namespace {
struct owner {
    int putbacks = 0;
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    movable::migrate_status migrate(movable::frame&, movable::frame&,
                                    movable::migrate_mode) noexcept {
        return movable::migrate_status::busy;
    }
    void putback(movable::frame&) noexcept { ++putbacks; }
};
} // namespace

int main() {
    owner o;
    movable::frame f;
    f.acquire_first_reference();
    {
        std::unique_lock<movable::frame> guard(f);
        movable::set_movable(f, o);
    }
    if (!movable::isolate_movable_frame(f, movable::migrate_mode::async)) {
        return 1;
    }
    if (movable::putback_movable_frame(f) != movable::putback_result::returned_to_owner ||
        o.putbacks != 1) {
        return 2;
    }
    std::printf("movable %d.%d.%d consumer ok\n", MOVABLE_VERSION_MAJOR, MOVABLE_VERSION_MINOR,
                MOVABLE_VERSION_PATCH);
    return 0;
}
