// zbud_pool's own behaviour (models/zbud_pool.hpp); what every compressed_store shares is in
// compressed_store_test.cpp: buddy placement, the unbuddied lists' best fit, pairing
// compaction, eviction of the least recently allocated frames, and frame migration through
// the core protocol (mapped frames refuse, lists and handles follow, frames released while
// isolated).
#include <movable/models/zbud_pool.hpp>

#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/death_test.hpp"
#include "support/isolate_and_migrate.hpp"
#include "support/zbud_pool_access.hpp"

using namespace movable;
using movable::test::holds_pattern;
using movable::test::isolate_and_migrate;
using movable::test::pattern;

namespace {

using arena_type = test::store_arena;
using pool_type = zbud_pool<arena_type>;
using access = detail::zbud_pool_test_access<pool_type>;
constexpr std::size_t frame_size = arena_type::frame_size;
constexpr std::size_t chunk = pool_type::chunk_size;

struct fixture {
    explicit fixture(std::size_t blocks = 2)
        : arena(blocks * arena_type::block_bytes), pool(std::make_unique<pool_type>(arena)) {}
    zbud_handle add(std::size_t size, std::uint32_t seed) {
        const zbud_handle h = pool->allocate(size);
        pool->write(h, pattern(size, seed));
        return h;
    }
    bool holds(zbud_handle h, std::uint32_t seed) const {
        std::vector<std::byte> got(pool->size(h));
        pool->read(h, got);
        return holds_pattern(got, seed);
    }
    arena_type arena;
    std::unique_ptr<pool_type> pool;
};

} // namespace

TEST_CASE("the first buddy starts at its frame's start, the last ends at its frame's end") {
    fixture s;
    const zbud_handle first = s.add(100, 1);  // 2 chunks
    const zbud_handle last = s.add(1000, 2);  // 16 chunks, same frame
    const zbud_handle third = s.add(3000, 3); // 47 chunks: 46 are free in the first frame
    frame& f = access::frame_of(*s.pool, first);
    CHECK(&access::frame_of(*s.pool, last) == &f);
    CHECK(&access::frame_of(*s.pool, third) != &f);
    CHECK(access::buddy_of(*s.pool, first) == detail::zbud_buddy::first);
    CHECK(access::buddy_of(*s.pool, last) == detail::zbud_buddy::last);
    const std::byte* base = s.arena.address_of(f);
    CHECK(s.pool->map(first, store_access::read).bytes().data() == base);
    CHECK(s.pool->map(last, store_access::read).bytes().data() == base + frame_size - 16 * chunk);
    CHECK(s.holds(first, 1));
    CHECK(s.holds(last, 2));
    CHECK(s.holds(third, 3));
    const zbud_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.chunks_in_use == 2 + 16 + 47);
    CHECK(stats.unbuddied_frames == 1); // the third's frame; the first is buddied
    s.pool->check_invariants();
}

TEST_CASE("a whole-frame object fills its frame alone; freeing the first buddy frees room for a "
          "new first") {
    fixture s;
    const zbud_handle whole = s.add(frame_size, 1);
    CHECK(s.pool->stats().unbuddied_frames == 0);
    const zbud_handle a = s.add(64, 2);
    CHECK(&access::frame_of(*s.pool, a) != &access::frame_of(*s.pool, whole));
    const zbud_handle b = s.add(640, 3); // last buddy of a's frame
    s.pool->deallocate(a);
    const zbud_handle c = s.add(64, 4); // takes the first buddy again
    CHECK(&access::frame_of(*s.pool, c) == &access::frame_of(*s.pool, b));
    CHECK(access::buddy_of(*s.pool, c) == detail::zbud_buddy::first);
    CHECK(s.holds(whole, 1));
    CHECK(s.holds(b, 3));
    CHECK(s.holds(c, 4));
    s.pool->check_invariants();
}

TEST_CASE("allocation takes the unbuddied frame with the fewest free chunks that hold the object") {
    fixture s;
    // Three frames with one buddy each and 10, 30 and 50 chunks free: each filled up with a
    // filler first (so the next one opens a new frame), then the fillers freed.
    const zbud_handle free10 = s.add(54 * chunk, 1);
    const zbud_handle filler10 = s.add(10 * chunk, 7);
    const zbud_handle free30 = s.add(34 * chunk, 2);
    const zbud_handle filler30 = s.add(30 * chunk, 8);
    const zbud_handle free50 = s.add(14 * chunk, 3);
    CHECK(&access::frame_of(*s.pool, filler10) == &access::frame_of(*s.pool, free10));
    CHECK(&access::frame_of(*s.pool, filler30) == &access::frame_of(*s.pool, free30));
    s.pool->deallocate(filler10);
    s.pool->deallocate(filler30);
    CHECK(s.pool->stats().frames_in_use == 3);
    CHECK(s.pool->stats().unbuddied_frames == 3);
    // 20 chunks: fits the 30-free and 50-free frames; the best fit is the 30-free one.
    const zbud_handle twenty = s.add(20 * chunk, 4);
    CHECK(&access::frame_of(*s.pool, twenty) == &access::frame_of(*s.pool, free30));
    // 5 chunks: the 10-free frame.
    const zbud_handle five = s.add(5 * chunk - 3, 5);
    CHECK(&access::frame_of(*s.pool, five) == &access::frame_of(*s.pool, free10));
    // 51 chunks: no frame has that many free: a new frame.
    const zbud_handle big = s.add(51 * chunk, 6);
    CHECK(s.pool->stats().frames_in_use == 4);
    CHECK(&access::frame_of(*s.pool, big) != &access::frame_of(*s.pool, free50));
    s.pool->check_invariants();
}

TEST_CASE("compact pairs unbuddied frames: the emptier's buddy moves into the best fit") {
    fixture s;
    std::vector<zbud_handle> small;
    std::vector<zbud_handle> large;
    for (std::uint32_t i = 0; i < 4; ++i) {
        small.push_back(s.add(500, 10 + i)); // 8 chunks
        large.push_back(
            s.add(frame_size - 600, 20 + i)); // 55 chunks: beside the small one? 63 > 64? no
    }
    // small[i] and large[i] share a frame (8 + 55 = 63 <= 64). Free the large ones: 4 frames
    // with one 8-chunk buddy each.
    for (const zbud_handle h : large) {
        s.pool->deallocate(h);
    }
    CHECK(s.pool->stats().frames_in_use == 4);
    const std::size_t freed = s.pool->compact();
    CHECK(freed == 2);
    const zbud_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.objects_moved == 2);
    CHECK(stats.frames_freed_by_compaction == 2);
    for (std::uint32_t i = 0; i < 4; ++i) {
        CHECK(s.holds(small[i], 10 + i));
    }
    CHECK(s.pool->compact() == 0); // both frames are buddied now
    CHECK(s.arena.free_frames() + 2 == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("compact leaves a mapped frame's object where it is") {
    fixture s;
    const zbud_handle a = s.add(500, 1);
    const zbud_handle a_big = s.add(frame_size - 600, 9);
    const zbud_handle b = s.add(500, 2);
    s.pool->deallocate(a_big);
    // Two unbuddied frames, a's and b's. With b's mapped, only a's buddy may move (into b's).
    frame& b_frame = access::frame_of(*s.pool, b);
    {
        const auto m = s.pool->map(b, store_access::read);
        CHECK(s.pool->compact() == 1);
        CHECK(&access::frame_of(*s.pool, b) == &b_frame);
        CHECK(&access::frame_of(*s.pool, a) == &b_frame);
    }
    CHECK(s.holds(a, 1));
    CHECK(s.holds(b, 2));
    s.pool->check_invariants();
}

TEST_CASE("evict hands over the least recently allocated frame's objects, first then last, and "
          "frees the frame") {
    fixture s;
    const zbud_handle a1 = s.add(2000, 1);
    const zbud_handle a2 = s.add(2000, 2); // a's frame, last buddy
    const zbud_handle b1 = s.add(2200, 3); // b's frame: 35 chunks, 29 free
    const zbud_handle c1 = s.add(2100, 4); // c's frame: 33 chunks, 31 free
    std::vector<std::pair<std::uint64_t, bool>> handed;
    const std::size_t freed =
        s.pool->evict(1, [&](zbud_handle h, std::span<const std::byte> bytes) {
            handed.emplace_back(h.value(), holds_pattern(bytes, h == a1 ? 1 : 2));
        });
    CHECK(freed == 1);
    REQUIRE(handed.size() == 2);
    CHECK(handed[0] == std::pair{a1.value(), true});
    CHECK(handed[1] == std::pair{a2.value(), true});
    zbud_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.objects_in_use == 2);
    CHECK(stats.frames_evicted == 1);
    CHECK(stats.objects_evicted == 2);
    // Allocating into b's frame (the best fit) makes it the most recent: c's goes next.
    const zbud_handle b2 = s.add(1000, 5);
    CHECK(&access::frame_of(*s.pool, b2) == &access::frame_of(*s.pool, b1));
    std::vector<std::uint64_t> next;
    CHECK(s.pool->evict(1, [&](zbud_handle h, std::span<const std::byte>) {
        next.push_back(h.value());
    }) == 1);
    CHECK(next == std::vector<std::uint64_t>{c1.value()});
    CHECK(s.holds(b1, 3));
    CHECK(s.holds(b2, 5));
    CHECK(s.arena.free_frames() + 1 == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("evict skips a mapped frame, stops when nothing is left, and keeps what a throwing "
          "callback did not take") {
    fixture s;
    const zbud_handle a = s.add(3000, 1);
    const zbud_handle b = s.add(3000, 2);
    const zbud_handle c = s.add(3000, 3);
    {
        const auto m = s.pool->map(a, store_access::read);
        std::vector<std::uint64_t> handed;
        CHECK(s.pool->evict(1, [&](zbud_handle h, std::span<const std::byte>) {
            handed.push_back(h.value());
        }) == 1);
        CHECK(handed == std::vector<std::uint64_t>{b.value()});
        CHECK_THROWS_AS(s.pool->evict(5,
                                      [](zbud_handle, std::span<const std::byte>) {
                                          throw std::runtime_error("backing store full");
                                      }),
                        std::runtime_error);
        CHECK(s.holds(c, 3)); // the throw left c's frame and object alone
        s.pool->check_invariants();
        // Only a's frame (mapped) and c's are left; c's goes, a's is skipped.
        CHECK(s.pool->evict(5, [](zbud_handle, std::span<const std::byte>) {}) == 1);
        CHECK(s.holds(a, 1));
    }
    CHECK(s.pool->stats().frames_in_use == 1);
    CHECK(s.pool->evict(5, [](zbud_handle, std::span<const std::byte>) {}) == 1);
    CHECK(s.pool->stats().frames_in_use == 0);
    CHECK(s.arena.free_frames() == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("migrating a frame moves both buddies and rewrites their handles; the lists follow") {
    fixture s;
    const zbud_handle first = s.add(700, 1);
    const zbud_handle last = s.add(900, 2);
    const zbud_handle other = s.add(3000, 3); // another frame, unbuddied
    frame& before = access::frame_of(*s.pool, first);
    CHECK(isolate_and_migrate(s.arena, before, migrate_mode::sync) == 1);
    frame& after = access::frame_of(*s.pool, first);
    CHECK(&after != &before);
    CHECK(&access::frame_of(*s.pool, last) == &after);
    CHECK(s.holds(first, 1));
    CHECK(s.holds(last, 2));
    s.pool->check_invariants();
    // The other frame, unbuddied, moves and stays the best fit for what fits beside it.
    frame& other_before = access::frame_of(*s.pool, other);
    CHECK(isolate_and_migrate(s.arena, other_before, migrate_mode::async) == 1);
    const zbud_handle beside = s.add(500, 4);
    CHECK(&access::frame_of(*s.pool, beside) == &access::frame_of(*s.pool, other));
    CHECK(&access::frame_of(*s.pool, other) != &other_before);
    CHECK(s.pool->stats().frames_migrated == 2);
    CHECK(s.holds(other, 3));
    CHECK(s.holds(beside, 4));
    s.pool->check_invariants();
}

TEST_CASE("a mapped frame refuses isolation; one mapped after isolation answers busy and is put "
          "back") {
    fixture s;
    const zbud_handle h = s.add(700, 1);
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
    const zbud_handle a = s.add(700, 1);
    const zbud_handle b = s.add(900, 2);
    frame& f = access::frame_of(*s.pool, a);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    s.pool->deallocate(a);
    s.pool->deallocate(b);
    zbud_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == 0);
    CHECK(stats.frames_released_while_isolated == 1);
    CHECK(stats.isolated_frames == 0);
    CHECK(s.arena.free_frames() + 1 == s.arena.frame_count()); // the core still holds it
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    const migrate_stats migrated = migrate_frames(list, targets, migrate_mode::sync);
    CHECK(migrated.released == 1);
    putback_movable_frames(list, targets);
    CHECK(s.arena.free_frames() == s.arena.frame_count());
    s.pool->check_invariants();
}

TEST_CASE("destroying a pool while one of its frames is isolated hands the frame to the core") {
    fixture s;
    const zbud_handle a = s.add(700, 1);
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

TEST_CASE("arena compaction moves zbud frames together and loses nothing") {
    fixture s(4);
    // One 3000-byte object per frame over three blocks, then all but every 8th freed: six
    // frames scattered over three blocks, which compaction gathers.
    std::vector<zbud_handle> added;
    for (std::uint32_t i = 0; i < 3 * arena_type::block_frames; ++i) {
        added.push_back(s.add(3000, i));
    }
    std::vector<std::pair<zbud_handle, std::uint32_t>> kept;
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
    for (const auto& [h, seed] : kept) {
        CHECK(s.holds(h, seed));
    }
    CHECK(s.arena.free_frames() + s.pool->stats().frames_in_use == s.arena.frame_count());
    CHECK(s.arena.free_block_count(arena_type::max_order) >= 3);
    s.pool->check_invariants();
}

TEST_CASE("check_invariants names a frame on the wrong unbuddied list") {
    if (!detail::contracts_enabled) {
        return;
    }
    fixture s;
    const zbud_handle h = s.add(700, 1);
    CHECK(test::dies_with("zbud_pool::check_invariants: a frame is not on the unbuddied list its "
                          "free chunks say",
                          [&] {
                              access::descriptor_of(*s.pool, h).list = 3;
                              s.pool->check_invariants();
                          }));
}

TEST_CASE("freeing a mapped object that empties its frame and destroying a pool with a mapped "
          "object are caught") {
    if (!detail::contracts_enabled) {
        return;
    }
    fixture s;
    const zbud_handle h = s.add(700, 1);
    CHECK(test::dies_with("zbud_pool::deallocate: freed an object that is still mapped", [&] {
        const auto m = s.pool->map(h, store_access::read);
        s.pool->deallocate(h);
    }));
    CHECK(test::dies_with("zbud_pool::~zbud_pool: an object is still mapped", [&] {
        const auto m = s.pool->map(h, store_access::read);
        s.pool.reset();
    }));
    CHECK(test::dies_with("zbud_pool::mapping::writable_bytes: mapped for reading only", [&] {
        auto m = s.pool->map(h, store_access::read);
        (void)m.writable_bytes();
    }));
}
