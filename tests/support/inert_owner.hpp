// An owner that accepts isolation, never moves (migrate answers busy) and ignores putback: for
// tests that need a frame to be movable and nothing more.
#pragma once

#include <movable/operations.hpp>

namespace movable::test {

struct inert_owner {
    bool isolate(frame&, migrate_mode) noexcept { return true; }
    migrate_status migrate(frame&, frame&, migrate_mode) noexcept { return migrate_status::busy; }
    void putback(frame&) noexcept {}
};

} // namespace movable::test
