// zbud_pool's races, each interleaving forced (runs under ThreadSanitizer, label concurrency):
// async migration while the pool lock is held, a frame's last buddy freed while the core holds
// the frame locked for migration, and an object freed by another thread while evict hands its
// frame over. The random many-thread test is the conformance suite's
// (compressed_store_concurrency_test.cpp).
#include <movable/models/zbud_pool.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/zbud_pool_access.hpp"

using namespace movable;
using movable::test::holds_pattern;
using movable::test::pattern;

namespace {
using arena_type = test::store_arena;
using pool_type = zbud_pool<arena_type>;
using access = detail::zbud_pool_test_access<pool_type>;
} // namespace

TEST_CASE("async migration answers retry while the pool lock is held; the frame is put back") {
    arena_type arena(2 * arena_type::block_bytes);
    pool_type pool(arena);
    const zbud_handle h = pool.allocate(500);
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
    CHECK(stats.retried == static_cast<std::size_t>(migrate_max_passes));
    CHECK(stats.failed == 1);
    CHECK(stats.put_back == 1);
    CHECK(&access::frame_of(pool, h) == &f);
    CHECK(pool.stats().isolated_frames == 0);
    // With the lock free again, the same migration goes through.
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
    const zbud_handle h = pool.allocate(700);
    frame& src = access::frame_of(pool, h);
    REQUIRE(isolate_movable_frame(src, migrate_mode::sync));

    // Hold src's lock as the core does around migrate; the free marks the frame freeing under
    // the pool lock, then waits for src's lock to release it.
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

TEST_CASE("an object freed by another thread while evict hands its frame over is freed once") {
    arena_type arena(2 * arena_type::block_bytes);
    pool_type pool(arena);
    const zbud_handle first = pool.allocate(1000);
    const zbud_handle last = pool.allocate(1000); // same frame
    std::vector<std::uint64_t> handed;
    const std::size_t freed = pool.evict(1, [&](zbud_handle h, std::span<const std::byte>) {
        handed.push_back(h.value());
        if (h == first) { // the other buddy goes meanwhile, on another thread
            std::thread other([&] { pool.deallocate(last); });
            other.join();
        }
    });
    CHECK(freed == 1);
    CHECK(handed == std::vector<std::uint64_t>{first.value()});
    const zbud_pool_stats stats = pool.stats();
    CHECK(stats.objects_in_use == 0);
    CHECK(stats.frames_in_use == 0);
    CHECK(stats.objects_evicted == 1);
    CHECK(arena.free_frames() == arena.frame_count());
    pool.check_invariants();
}
