#include <movable/operations.hpp>

#include <doctest/doctest.h>

#include <mutex>

#include "support/death_test.hpp"
#include "support/test_owner.hpp"

using namespace movable;

namespace {

struct minimal_owner {
    bool isolate(frame&, migrate_mode) noexcept { return true; }
    migrate_status migrate(frame&, frame&, migrate_mode) noexcept { return migrate_status::busy; }
    void putback(frame&) noexcept {}
};

struct other_owner : minimal_owner {};

struct not_noexcept_owner {
    bool isolate(frame&, migrate_mode) { return true; }
    migrate_status migrate(frame&, frame&, migrate_mode) noexcept { return migrate_status::busy; }
    void putback(frame&) noexcept {}
};

struct wrong_status_owner {
    bool isolate(frame&, migrate_mode) noexcept { return true; }
    bool migrate(frame&, frame&, migrate_mode) noexcept { return true; }
    void putback(frame&) noexcept {}
};

// A type we pretend we cannot change: its member names do not match the protocol.
struct third_party_cache {
    int pinned = 0;
    int taken_back = 0;
    bool can_evict(const frame&) const { return pinned == 0; }
    void reinsert(frame&) { ++taken_back; }
};

} // namespace

// ...adapted by specializing owner_traits.
template <>
struct movable::owner_traits<third_party_cache> {
    static bool isolate(third_party_cache& cache, frame& f, migrate_mode) noexcept {
        return cache.can_evict(f);
    }
    static migrate_status migrate(third_party_cache&, frame&, frame&, migrate_mode) noexcept {
        return migrate_status::failed;
    }
    static void putback(third_party_cache& cache, frame& f) noexcept { cache.reinsert(f); }
};

static_assert(movable_owner<minimal_owner>);
static_assert(movable_owner<other_owner>);
static_assert(movable_owner<test::test_owner>);
static_assert(movable_owner<third_party_cache>);
static_assert(!movable_owner<int>);
static_assert(!movable_owner<const minimal_owner>);
static_assert(!movable_owner<not_noexcept_owner>);
static_assert(!movable_owner<wrong_status_owner>);

TEST_CASE("a fresh frame is not movable and has no operations") {
    frame f;
    CHECK_FALSE(is_movable(f));
    CHECK(movable_ops(f) == nullptr);
}

TEST_CASE("set_movable points the mapping word at the owner type's table with the MOVABLE bit") {
    minimal_owner owner;
    frame f;
    std::unique_lock<frame> guard(f);
    set_movable(f, owner);
    CHECK(is_movable(f));
    CHECK(movable_ops(f) == &operations_for<minimal_owner>);
    CHECK((f.mapping_word(std::memory_order_relaxed) & movable_tag) == movable_tag);
    CHECK(f.owner() == &owner);
}

TEST_CASE("one operations table per owner type, shared by all its instances") {
    minimal_owner first;
    minimal_owner second;
    other_owner third;
    frame a;
    frame b;
    frame c;
    {
        std::scoped_lock guard(a, b, c);
        set_movable(a, first);
        set_movable(b, second);
        set_movable(c, third);
    }
    CHECK(movable_ops(a) == movable_ops(b));
    CHECK(movable_ops(a) != movable_ops(c));
    CHECK(a.owner() != b.owner());
}

TEST_CASE("clear_movable keeps the movable tag but drops the operations pointer") {
    minimal_owner owner;
    frame f;
    std::unique_lock<frame> guard(f);
    set_movable(f, owner);
    CHECK_FALSE(clear_movable(f));    // not isolated: the owner frees it itself
    CHECK(is_movable(f));             // lockless check still says "movable type"...
    CHECK(movable_ops(f) == nullptr); // ...but there is no owner to call
    CHECK(f.owner() == nullptr);
}

TEST_CASE("the operations table calls the owner instance stored in the frame") {
    test::test_pool pool(4);
    test::test_owner owner(pool);
    frame& f = *owner.add_page(0);
    const movable_operations* ops = movable_ops(f);
    REQUIRE(ops != nullptr);
    std::unique_lock<frame> guard(f);
    CHECK(ops->isolate(f, migrate_mode::async));
    CHECK(owner.isolate_calls == 1);
    ops->putback(f);
    CHECK(owner.putback_calls == 1);
}

TEST_CASE("a type that cannot be changed is adapted through owner_traits") {
    third_party_cache cache;
    frame f;
    std::unique_lock<frame> guard(f);
    set_movable(f, cache);
    const movable_operations* ops = movable_ops(f);
    REQUIRE(ops == &operations_for<third_party_cache>);
    CHECK(ops->isolate(f, migrate_mode::sync));
    cache.pinned = 1;
    CHECK_FALSE(ops->isolate(f, migrate_mode::sync));
    frame dst;
    CHECK(ops->migrate(dst, f, migrate_mode::sync) == migrate_status::failed);
    ops->putback(f);
    CHECK(cache.taken_back == 1);
}

TEST_CASE("set_movable and clear_movable on an unlocked frame are contract violations") {
    MOVABLE_REQUIRE_CONTRACTS();
    CHECK(test::dies_with("set_movable: frame is not locked", [] {
        minimal_owner owner;
        frame f;
        set_movable(f, owner);
    }));
    CHECK(test::dies_with("clear_movable: frame is not locked", [] {
        frame f;
        (void)clear_movable(f);
    }));
    CHECK(test::dies_with("clear_movable: frame is not owned", [] {
        minimal_owner owner;
        frame f;
        std::unique_lock<frame> guard(f);
        set_movable(f, owner);
        (void)clear_movable(f);
        (void)clear_movable(f);
    }));
}
