// z3fold_pool's own behaviour (models/z3fold_pool.hpp); what every compressed_store shares is in
// compressed_store_test.cpp: first/middle/last placement, in-frame compaction moving the middle
// buddy (on free and in compact), compact moving single objects into other frames and emptying
// frames holding two objects into others, and frame migration through the core protocol (mapped
// frames refuse, handles follow, frames released while isolated).
#include <movable/models/z3fold_pool.hpp>

#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/death_test.hpp"
#include "support/isolate_and_migrate.hpp"
#include "support/z3fold_pool_access.hpp"

using namespace movable;
using movable::test::holds_pattern;
using movable::test::isolate_and_migrate;
using movable::test::pattern;

namespace {

using arena_type = test::store_arena;
using pool_type = z3fold_pool<arena_type>;
using access = detail::z3fold_pool_test_access<pool_type>;
using detail::z3fold_buddy;
constexpr std::size_t frame_size = arena_type::frame_size;
constexpr std::size_t chunk = pool_type::chunk_size;

struct fixture {
    explicit fixture(std::size_t blocks = 2)
        : arena(blocks * arena_type::block_bytes), pool(std::make_unique<pool_type>(arena)) {}
    z3fold_handle add(std::size_t size, std::uint32_t seed) {
        const z3fold_handle h = pool->allocate(size);
        pool->write(h, pattern(size, seed));
        return h;
    }
    bool holds(z3fold_handle h, std::uint32_t seed) const {
        std::vector<std::byte> got(pool->size(h));
        pool->read(h, got);
        return holds_pattern(got, seed);
    }
    // Where the object starts in its frame, in chunks.
    std::size_t chunk_of(z3fold_handle h) {
        const std::byte* base = arena.address_of(access::frame_of(*pool, h));
        return static_cast<std::size_t>(pool->map(h, store_access::read).bytes().data() - base) /
               chunk;
    }
    arena_type arena;
    std::unique_ptr<pool_type> pool;
};

} // namespace

TEST_CASE("first starts at the frame's start, last ends at its end, middle follows the first") {
    fixture s;
    const z3fold_handle first = s.add(100, 1);  // 2 chunks
    const z3fold_handle last = s.add(1000, 2);  // 16 chunks
    const z3fold_handle middle = s.add(500, 3); // 8 chunks, after the first
    const z3fold_handle other = s.add(3000, 4); // 47 chunks: 38 are free: a new frame
    frame& f = access::frame_of(*s.pool, first);
    CHECK(&access::frame_of(*s.pool, last) == &f);
    CHECK(&access::frame_of(*s.pool, middle) == &f);
    CHECK(&access::frame_of(*s.pool, other) != &f);
    CHECK(access::buddy_of(*s.pool, first) == z3fold_buddy::first);
    CHECK(access::buddy_of(*s.pool, middle) == z3fold_buddy::middle);
    CHECK(access::buddy_of(*s.pool, last) == z3fold_buddy::last);
    CHECK(s.chunk_of(first) == 0);
    CHECK(s.chunk_of(middle) == 2);
    CHECK(s.chunk_of(last) == 64 - 16);
    CHECK(s.holds(first, 1));
    CHECK(s.holds(last, 2));
    CHECK(s.holds(middle, 3));
    CHECK(s.holds(other, 4));
    const z3fold_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.objects_in_use == 4);
    CHECK(stats.chunks_in_use == 2 + 16 + 8 + 47);
    CHECK(stats.unbuddied_frames == 1); // the other's frame; the first holds three buddies
    s.pool->check_invariants();
}

TEST_CASE("beside a middle buddy, a new buddy takes the smaller free run that holds it") {
    fixture s;
    const z3fold_handle a = s.add(10 * chunk, 1); // first [0, 10)
    const z3fold_handle c = s.add(20 * chunk, 2); // last [44, 64)
    const z3fold_handle b = s.add(14 * chunk, 3); // middle [10, 24)
    z3fold_handle x;
    z3fold_handle y;
    {
        const auto pinned = s.pool->map(b, store_access::read); // nothing in its frame moves
        s.pool->deallocate(a);
        s.pool->deallocate(c);
        CHECK(access::buddy_of(*s.pool, b) == z3fold_buddy::middle);
        CHECK(s.chunk_of(b) == 10);
        // Runs: 10 chunks before the middle, 40 after. 8 chunks take the 10 (first)...
        x = s.add(8 * chunk, 4);
        CHECK(access::buddy_of(*s.pool, x) == z3fold_buddy::first);
        CHECK(s.chunk_of(x) == 0);
        // ...and 9 chunks the 40 (last), the run before the middle being taken.
        y = s.add(9 * chunk, 5);
        CHECK(access::buddy_of(*s.pool, y) == z3fold_buddy::last);
        CHECK(s.chunk_of(y) == 64 - 9);
        CHECK(s.pool->stats().frames_in_use == 1);
    }
    CHECK(s.pool->stats().middles_moved == 0);
    CHECK(s.holds(b, 3));
    CHECK(s.holds(x, 4));
    CHECK(s.holds(y, 5));
    s.pool->check_invariants();
}

TEST_CASE("freeing the first or the last moves the middle beside the other; alone it becomes the "
          "first") {
    fixture s;
    const z3fold_handle a = s.add(10 * chunk, 1); // first [0, 10)
    const z3fold_handle c = s.add(20 * chunk, 2); // last [44, 64)
    const z3fold_handle b = s.add(14 * chunk, 3); // middle [10, 24)
    s.pool->deallocate(a); // 20 chunks between the middle and the last: it moves to [30, 44)
    CHECK(access::buddy_of(*s.pool, b) == z3fold_buddy::middle);
    CHECK(s.chunk_of(b) == 30);
    CHECK(s.pool->stats().middles_moved == 1);
    CHECK(s.holds(b, 3));
    s.pool->deallocate(c); // alone: it becomes the first
    CHECK(access::buddy_of(*s.pool, b) == z3fold_buddy::first);
    CHECK(s.chunk_of(b) == 0);
    CHECK(s.pool->stats().middles_moved == 2);
    CHECK(s.holds(b, 3));
    const z3fold_handle l = s.add(30 * chunk, 4); // last [34, 64)
    const z3fold_handle m = s.add(10 * chunk, 5); // middle [14, 24)
    CHECK(access::buddy_of(*s.pool, m) == z3fold_buddy::middle);
    CHECK(s.chunk_of(m) == 14);
    s.pool->deallocate(b); // 10 chunks between the middle and the last: it moves to [24, 34)
    CHECK(s.chunk_of(m) == 24);
    CHECK(s.pool->stats().middles_moved == 3);
    CHECK(s.holds(l, 4));
    CHECK(s.holds(m, 5));
    s.pool->check_invariants();
}

TEST_CASE("freeing a neighbour moves the middle buddy when it merges 3 chunks; compact moves it "
          "for less") {
    fixture s;
    const z3fold_handle first = s.add(2 * chunk, 1);       // [0, 2)
    const z3fold_handle last = s.add(50 * chunk, 2);       // [14, 64)
    const z3fold_handle middle = s.add(10 * chunk - 7, 3); // [2, 12): 2 chunks free after it
    CHECK(s.chunk_of(middle) == 2);
    s.pool->deallocate(first); // moving the middle right would merge only 2 chunks: it stays
    CHECK(s.chunk_of(middle) == 2);
    CHECK(s.pool->stats().middles_moved == 0);
    CHECK(s.pool->compact() == 0);
    CHECK(s.chunk_of(middle) == 4); // now beside the last
    CHECK(s.pool->stats().middles_moved == 1);
    CHECK(s.holds(middle, 3));
    CHECK(s.holds(last, 2));
    // The merged run (4 chunks) takes a first buddy of 4 chunks in this frame.
    const z3fold_handle four = s.add(4 * chunk, 4);
    CHECK(&access::frame_of(*s.pool, four) == &access::frame_of(*s.pool, middle));
    CHECK(s.pool->stats().frames_in_use == 1);
    s.pool->check_invariants();
}

TEST_CASE("compact moves the objects of one-object frames into other frames and frees them") {
    fixture s;
    std::vector<z3fold_handle> small;
    std::vector<z3fold_handle> large;
    for (std::uint32_t i = 0; i < 4; ++i) {
        small.push_back(s.add(500, 10 + i));              // 8 chunks, first
        large.push_back(s.add(frame_size - 600, 20 + i)); // 55 chunks, last of the same frame
    }
    for (const z3fold_handle h : large) {
        s.pool->deallocate(h);
    }
    CHECK(s.pool->stats().frames_in_use == 4);
    // Two of the three other objects fit in one frame beside the first (last, then middle).
    CHECK(s.pool->compact() == 2);
    const z3fold_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.objects_moved == 2);
    CHECK(stats.frames_freed_by_compaction == 2);
    for (std::uint32_t i = 0; i < 4; ++i) {
        CHECK(s.holds(small[i], 10 + i));
    }
    CHECK(s.arena.free_frames() + 2 == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("compact empties frames holding two objects when their objects fit in other frames' "
          "free chunks") {
    fixture s;
    std::vector<z3fold_handle> kept;
    std::vector<z3fold_handle> middles;
    for (std::uint32_t frame = 0; frame < 3; ++frame) {
        kept.push_back(s.add(1300, 10 * frame + 1)); // 21 chunks, first
        kept.push_back(s.add(1300, 10 * frame + 2)); // last
        middles.push_back(s.add(1300, 0));           // middle: the frame is full
        CHECK(access::buddy_of(*s.pool, middles.back()) == z3fold_buddy::middle);
    }
    for (const z3fold_handle h : middles) {
        s.pool->deallocate(h); // two objects left, 22 chunks free between them
    }
    CHECK(s.pool->stats().frames_in_use == 3);
    // One frame's two objects become the middles of the other two.
    CHECK(s.pool->compact() == 1);
    const z3fold_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.objects_moved == 2);
    CHECK(stats.frames_freed_by_compaction == 1);
    CHECK(stats.unbuddied_frames == 0);
    for (std::uint32_t i = 0; i < kept.size(); ++i) {
        CHECK(s.holds(kept[i], 10 * (i / 2) + 1 + i % 2));
    }
    CHECK(s.arena.free_frames() + 2 == s.arena.frame_count());
    s.pool->check_invariants();
    CHECK(s.pool->compact() == 0); // nothing left to empty
}

namespace {

// Frame A holds two objects of 22 chunks (20 chunks free); frames B and C two of 21 (22 free
// between them). Only A can be emptied: each of B and C can take one of A's objects, but A's
// free run takes none of theirs.
struct only_one_frame_can_empty : fixture {
    only_one_frame_can_empty() {
        a = {add(1400, 1), add(1400, 2)};
        std::vector<z3fold_handle> middles;
        for (std::uint32_t frame = 0; frame < 2; ++frame) {
            others.push_back(add(1300, 10 * frame + 3));
            others.push_back(add(1300, 10 * frame + 4));
            middles.push_back(add(1300, 0));
        }
        for (const z3fold_handle h : middles) {
            pool->deallocate(h);
        }
    }
    bool all_hold() const {
        return holds(a[0], 1) && holds(a[1], 2) && holds(others[0], 3) && holds(others[1], 4) &&
               holds(others[2], 13) && holds(others[3], 14);
    }
    std::vector<z3fold_handle> a;
    std::vector<z3fold_handle> others;
};

} // namespace

TEST_CASE("compact leaves a mapped frame holding two objects where it is") {
    only_one_frame_can_empty s;
    CHECK(s.pool->stats().frames_in_use == 3);
    frame& a = access::frame_of(*s.pool, s.a[0]);
    {
        const auto mapped = s.pool->map(s.a[0], store_access::read);
        CHECK(s.pool->compact() == 0);
        CHECK(holds_pattern(mapped.bytes(), 1));
    }
    CHECK(&access::frame_of(*s.pool, s.a[0]) == &a);
    CHECK(&access::frame_of(*s.pool, s.a[1]) == &a);
    CHECK(s.pool->stats().objects_moved == 0);
    CHECK(s.all_hold());
    s.pool->check_invariants();
    // Unmapped, its objects move into the other two frames.
    CHECK(s.pool->compact() == 1);
    CHECK(&access::frame_of(*s.pool, s.a[0]) != &access::frame_of(*s.pool, s.a[1]));
    CHECK(s.pool->stats().frames_in_use == 2);
    CHECK(s.pool->stats().objects_moved == 2);
    CHECK(s.all_hold());
    s.pool->check_invariants();
}

TEST_CASE("a mapped frame's middle buddy stays where it is, on free and in compact") {
    fixture s;
    const z3fold_handle first = s.add(10 * chunk, 1);
    const z3fold_handle last = s.add(10 * chunk, 2);
    const z3fold_handle middle = s.add(10 * chunk, 3); // [10, 20)
    {
        const auto m = s.pool->map(last, store_access::read);
        s.pool->deallocate(first);
        CHECK(s.chunk_of(middle) == 10);
        CHECK(s.pool->compact() == 0);
        CHECK(s.chunk_of(middle) == 10);
        CHECK(s.pool->stats().middles_moved == 0);
    }
    CHECK(s.pool->compact() == 0);
    CHECK(s.chunk_of(middle) == 44); // beside the last
    CHECK(s.holds(middle, 3));
    CHECK(s.holds(last, 2));
    s.pool->check_invariants();
}

TEST_CASE("migrating a frame moves its three buddies and rewrites their handles") {
    fixture s;
    const z3fold_handle first = s.add(700, 1);
    const z3fold_handle last = s.add(900, 2);
    const z3fold_handle middle = s.add(300, 3);
    frame& before = access::frame_of(*s.pool, first);
    CHECK(isolate_and_migrate(s.arena, before, migrate_mode::sync) == 1);
    frame& after = access::frame_of(*s.pool, first);
    CHECK(&after != &before);
    CHECK(&access::frame_of(*s.pool, last) == &after);
    CHECK(&access::frame_of(*s.pool, middle) == &after);
    CHECK(s.pool->stats().frames_migrated == 1);
    CHECK(s.holds(first, 1));
    CHECK(s.holds(last, 2));
    CHECK(s.holds(middle, 3));
    s.pool->check_invariants();
    // The descriptor followed: freeing the first then the last moves the middle in the new frame.
    s.pool->deallocate(first);
    s.pool->deallocate(last);
    CHECK(access::buddy_of(*s.pool, middle) == z3fold_buddy::first);
    CHECK(&access::frame_of(*s.pool, middle) == &after);
    CHECK(s.holds(middle, 3));
    s.pool->check_invariants();
}

TEST_CASE("a mapped frame refuses isolation; one mapped after isolation answers busy and is put "
          "back") {
    fixture s;
    const z3fold_handle h = s.add(700, 1);
    frame& f = access::frame_of(*s.pool, h);
    {
        const auto m = s.pool->map(h, store_access::read);
        CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync));
    }
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK(s.pool->stats().isolated_frames == 1);
    auto m = s.pool->map(h, store_access::write);
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
    CHECK(stats.succeeded == 0);
    CHECK(stats.failed == 1);
    putback_movable_frames(list, targets);
    m.unmap();
    CHECK(&access::frame_of(*s.pool, h) == &f);
    CHECK(s.pool->stats().isolated_frames == 0);
    CHECK(s.holds(h, 1));
    s.pool->check_invariants();
}

TEST_CASE("a frame emptied while isolated is left to the core, which frees it") {
    fixture s;
    const z3fold_handle a = s.add(700, 1);
    const z3fold_handle b = s.add(900, 2);
    const z3fold_handle c = s.add(100, 3);
    frame& f = access::frame_of(*s.pool, a);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    s.pool->deallocate(a); // the middle moves inside the isolated frame: fine
    s.pool->deallocate(b);
    s.pool->deallocate(c);
    const z3fold_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 0);
    CHECK(stats.frames_released_while_isolated == 1);
    CHECK(stats.isolated_frames == 0);
    CHECK(s.arena.free_frames() + 1 == s.arena.frame_count()); // the core still holds it
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    CHECK(migrate_frames(list, targets, migrate_mode::sync).released == 1);
    putback_movable_frames(list, targets);
    CHECK(s.arena.free_frames() == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("destroying a pool while one of its frames is isolated hands the frame to the core") {
    fixture s;
    const z3fold_handle a = s.add(700, 1);
    frame& f = access::frame_of(*s.pool, a);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    s.pool.reset();
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    CHECK(migrate_frames(list, targets, migrate_mode::sync).released == 1);
    putback_movable_frames(list, targets);
    CHECK(s.arena.free_frames() == s.arena.frame_count());
}

TEST_CASE("arena compaction moves z3fold frames together and loses nothing") {
    fixture s(4);
    std::vector<z3fold_handle> added;
    for (std::uint32_t i = 0; i < 3 * arena_type::block_frames; ++i) {
        added.push_back(s.add(3000, i)); // one per frame
    }
    std::vector<std::pair<z3fold_handle, std::uint32_t>> kept;
    for (std::uint32_t i = 0; i < added.size(); ++i) {
        if (i % 8 == 5) {
            kept.emplace_back(added[i], i);
        } else {
            s.pool->deallocate(added[i]);
        }
    }
    const compact_stats stats = compactor<arena_type>(s.arena).compact();
    CHECK(stats.migrated > 0);
    CHECK(s.pool->stats().frames_migrated == stats.migrated);
    for (const auto& kept_one : kept) {
        CHECK(s.holds(kept_one.first, kept_one.second));
    }
    CHECK(s.arena.free_frames() + s.pool->stats().frames_in_use == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("check_invariants names a frame on the wrong list and buddies that overlap") {
    if (!detail::contracts_enabled) {
        return;
    }
    fixture s;
    const z3fold_handle h = s.add(700, 1);
    const z3fold_handle m = s.add(700, 2);
    const z3fold_handle mid = s.add(700, 3);
    CHECK(test::dies_with("z3fold_pool::check_invariants: a frame is not on the unbuddied list "
                          "its free chunks say",
                          [&] {
                              access::descriptor_of(*s.pool, h).list = 3;
                              s.pool->check_invariants();
                          }));
    CHECK(test::dies_with("z3fold_pool::check_invariants: a frame's buddies overlap or leave the "
                          "frame",
                          [&] {
                              access::descriptor_of(*s.pool, mid).start_middle = 5;
                              s.pool->check_invariants();
                          }));
    (void)m;
}

TEST_CASE("freeing a mapped object that empties its frame and destroying a pool with a mapped "
          "object are caught") {
    if (!detail::contracts_enabled) {
        return;
    }
    fixture s;
    const z3fold_handle h = s.add(700, 1);
    CHECK(test::dies_with("z3fold_pool::deallocate: freed an object that is still mapped", [&] {
        const auto m = s.pool->map(h, store_access::read);
        s.pool->deallocate(h);
    }));
    CHECK(test::dies_with("z3fold_pool::~z3fold_pool: an object is still mapped", [&] {
        const auto m = s.pool->map(h, store_access::read);
        s.pool.reset();
    }));
    CHECK(test::dies_with("z3fold_pool::mapping::writable_bytes: mapped for reading only", [&] {
        auto m = s.pool->map(h, store_access::read);
        (void)m.writable_bytes();
    }));
}
