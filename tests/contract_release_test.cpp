// Contracts in a Release build of the library (this program is compiled with NDEBUG and without
// MOVABLE_HARDENED): a contract's condition is not evaluated at all, while the checks that stay
// on in every build still abort.
#include <movable/detail/contract.hpp>
#include <movable/frame_arena.hpp>
#include <movable/operations.hpp>

#include <doctest/doctest.h>

#include "support/death_test.hpp"
#include "support/inert_owner.hpp"

using namespace movable;

static_assert(!detail::contracts_enabled, "this test must be built with NDEBUG");

TEST_CASE("in Release a contract's condition is not evaluated") {
    int evaluated = 0;
    MOVABLE_CONTRACT(++evaluated > 100, "never checked");
    CHECK(evaluated == 0);
}

TEST_CASE("in Release the checks that protect stored data still abort") {
    CHECK(test::dies_with("set_movable: frame belongs to a multi-frame allocation", [] {
        test::inert_owner o;
        frame_arena<4096, 4> arena(frame_arena<4096, 4>::block_bytes);
        frame& first = arena.allocate(1);
        first.lock();
        set_movable(first, o);
    }));
    CHECK(test::dies_with("frame_arena::check_invariants", [] {
        frame_arena<4096, 4> arena(frame_arena<4096, 4>::block_bytes);
        arena.frame_at(3).acquire_first_reference();
        arena.check_invariants();
    }));
}
