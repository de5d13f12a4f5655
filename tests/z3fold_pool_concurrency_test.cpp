// z3fold_pool's races, each interleaving forced or hammered (runs under ThreadSanitizer, label
// concurrency): async migration while the pool lock is held, a frame's last buddy freed while the
// core holds the frame locked for migration, and readers of middle buddies while other threads
// free and allocate their neighbours (the middle moves inside its frame) and compact. The random
// many-thread test is the conformance suite's (compressed_store_concurrency_test.cpp).
#include <movable/models/z3fold_pool.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/z3fold_pool_access.hpp"

using namespace movable;
using movable::test::holds_pattern;
using movable::test::pattern;

namespace {
using arena_type = test::store_arena;
using pool_type = z3fold_pool<arena_type>;
using access = detail::z3fold_pool_test_access<pool_type>;
} // namespace

TEST_CASE("async migration answers retry while the pool lock is held; the frame is put back") {
    arena_type arena(2 * arena_type::block_bytes);
    pool_type pool(arena);
    const z3fold_handle h = pool.allocate(500);
    pool.write(h, pattern(500, 7));
    frame& f = access::frame_of(pool, h);

    std::atomic<int> stage{0};
    std::thread holder([&] {
        std::lock_guard hold(access::lock(pool));
        stage = 1;
        while (stage.load() != 2) {
            std::this_thread::yield();
        }
    });
    while (stage.load() != 1) {
        std::this_thread::yield();
    }
    REQUIRE(isolate_movable_frame(f, migrate_mode::async));
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::async);
    stage = 2;
    holder.join();

    CHECK(stats.succeeded == 0);
    CHECK(stats.failed == 1);
    CHECK(stats.put_back == 1);
    CHECK(&access::frame_of(pool, h) == &f);
    CHECK(pool.stats().isolated_frames == 0);
    REQUIRE(isolate_movable_frame(f, migrate_mode::async));
    list.push_back(f);
    CHECK(migrate_frames(list, targets, migrate_mode::async).succeeded == 1);
    std::vector<std::byte> got(500);
    pool.read(h, got);
    CHECK(holds_pattern(got, 7));
    pool.check_invariants();
}

TEST_CASE("a frame whose last buddy is freed while the core holds it locked answers busy; the "
          "core then frees it") {
    arena_type arena(2 * arena_type::block_bytes);
    pool_type pool(arena);
    const z3fold_handle h = pool.allocate(700);
    frame& src = access::frame_of(pool, h);
    REQUIRE(isolate_movable_frame(src, migrate_mode::sync));

    src.lock();
    std::thread freeing([&] { pool.deallocate(h); });
    while (pool.stats().frames_in_use != 0) {
        std::this_thread::yield();
    }
    frame& dst = arena.allocate();
    dst.lock();
    CHECK(pool.migrate(dst, src, migrate_mode::sync) == migrate_status::busy);
    CHECK_FALSE(is_movable(dst));
    dst.unlock();
    arena.deallocate(dst);
    src.unlock();
    freeing.join();

    CHECK(movable_ops(src) == nullptr);
    CHECK(pool.stats().frames_released_while_isolated == 1);
    CHECK(putback_movable_frame(src) == putback_result::released);
    arena.free_frame(src);
    CHECK(arena.free_frames() == arena.frame_count());
    pool.check_invariants();
}

TEST_CASE("middle buddies read and mapped by one thread stay intact while others free and "
          "allocate their neighbours and compact") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    constexpr std::uint32_t frames = 8;
    std::vector<z3fold_handle> middles;
    std::vector<z3fold_handle> firsts;
    std::vector<z3fold_handle> lasts;
    for (std::uint32_t i = 0; i < frames; ++i) {
        firsts.push_back(pool.allocate(640));
        lasts.push_back(pool.allocate(640));
        middles.push_back(pool.allocate(700));
        pool.write(middles.back(), pattern(700, i));
    }
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> bad{0};
    std::atomic<std::size_t> passes{0}; // the reader's completed passes over every middle
    std::thread reader([&] {
        std::vector<std::byte> got(700);
        while (!stop.load()) {
            for (std::uint32_t i = 0; i < frames; ++i) {
                pool.read(middles[i], got);
                bad += holds_pattern(got, i) ? 0 : 1;
                const auto m = pool.map(middles[i], store_access::read);
                bad += holds_pattern(m.bytes(), i) ? 0 : 1;
            }
            passes.fetch_add(1);
            passes.notify_all();
        }
    });
    // Forced: every round starts after a pass of the reader that began after the round before
    // ended, so the reader reads every middle where each round left it. Whether a read also
    // overlaps a round is up to the scheduler; the result must not depend on it.
    const auto wait_for_fresh_pass = [&passes] {
        const std::size_t target = passes.load() + 2;
        for (std::size_t seen = passes.load(); seen < target; seen = passes.load()) {
            passes.wait(seen);
        }
    };
    // Only this thread touches firsts and lasts: free them (the middles move) and take them again.
    std::thread churn([&] {
        for (int round = 0; round < 200; ++round) {
            wait_for_fresh_pass();
            const std::uint32_t i = static_cast<std::uint32_t>(round) % frames;
            pool.deallocate(firsts[i]);
            pool.deallocate(lasts[i]);
            firsts[i] = pool.allocate(640);
            lasts[i] = pool.allocate(640);
            if (round % 16 == 0) {
                pool.compact();
            }
        }
        wait_for_fresh_pass();
    });
    churn.join();
    stop = true;
    reader.join();
    CHECK(bad.load() == 0);
    for (std::uint32_t i = 0; i < frames; ++i) {
        std::vector<std::byte> got(700);
        pool.read(middles[i], got);
        CHECK(holds_pattern(got, i));
    }
    pool.check_invariants();
}
