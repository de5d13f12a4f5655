// object_pool's per-thread caches (magazines of reserved places): what a thread keeps, when it
// goes back (overflow, release_thread_cache, thread exit, compact()), that movers move or take
// back reservations, and that a pool destroyed before its threads exit is never touched again.
// Runs under ThreadSanitizer with the other concurrency tests.
#include <movable/models/object_pool.hpp>

#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <thread>
#include <vector>

#include "support/isolate_and_migrate.hpp"
#include "support/object_pool_access.hpp"

using namespace movable;

namespace {
using arena_type = frame_arena<4096, 4>;
struct item {
    std::uint64_t a;
    std::uint64_t b;
};
using pool_type = object_pool<item, arena_type>;
using access = detail::object_pool_test_access<pool_type>;

std::vector<object_handle<item>> emplace_n(pool_type& pool, std::size_t n, std::uint64_t first) {
    std::vector<object_handle<item>> handles;
    for (std::size_t i = 0; i < n; ++i) {
        handles.push_back(pool.emplace(item{first + i, ~(first + i)}));
    }
    return handles;
}
bool intact(pool_type& pool, const std::vector<object_handle<item>>& handles, std::uint64_t first) {
    for (std::size_t i = 0; i < handles.size(); ++i) {
        const pinned<item> p = pool.pin(handles[i]);
        if (p->a != first + i || p->b != ~(first + i)) {
            return false;
        }
    }
    return true;
}
} // namespace

TEST_CASE("a thread reuses the places it destroyed without the pool lock") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    auto handles = emplace_n(pool, 8, 0);
    for (const auto h : handles) {
        pool.destroy(h);
    }
    CHECK(pool.stats().reserved_places >= 8); // and the rest of what it reserved at once
    const std::size_t reserved_before = pool.stats().reserved_places;
    // Another thread holds the pool lock: this thread's emplaces and destroys still complete,
    // from and into its reserved places.
    std::binary_semaphore locked{0};
    std::binary_semaphore done{0};
    std::thread holder([&] {
        const std::lock_guard guard(access::lock(pool));
        locked.release();
        done.acquire();
    });
    locked.acquire();
    handles = emplace_n(pool, 8, 100);
    CHECK(intact(pool, handles, 100));
    for (const auto h : handles) {
        pool.destroy(h);
    }
    done.release();
    holder.join();
    CHECK(pool.size() == 0);
    CHECK(pool.stats().reserved_places == reserved_before);
    pool.check_invariants();
}

TEST_CASE("a thread keeps at most magazine_capacity places; the rest go back as it destroys") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const std::size_t many = 3 * pool_type::magazine_capacity;
    const auto handles = emplace_n(pool, many, 0);
    for (const auto h : handles) {
        pool.destroy(h);
        CHECK(pool.stats().reserved_places <= pool_type::magazine_capacity);
    }
    pool.check_invariants();
    pool.release_thread_cache();
    CHECK(pool.stats().reserved_places == 0);
    CHECK(pool.stats().frames == pool.stats().reserve_frames);
    pool.check_invariants();
}

TEST_CASE("with thread_cache off, destroy gives its place back at once") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena, {.thread_cache = false});
    const auto handles = emplace_n(pool, pool_type::objects_per_frame + 1, 0);
    CHECK(pool.stats().frames == 2);
    CHECK(pool.stats().reserved_places == 0);
    pool.destroy(handles.back());
    CHECK(pool.stats().reserved_places == 0);
    CHECK(pool.stats().frames == 2); // the emptied one is the reserve
    CHECK(pool.stats().reserve_frames == 1);
    pool.check_invariants();
    for (std::size_t i = 0; i + 1 < handles.size(); ++i) {
        pool.destroy(handles[i]);
    }
    CHECK(pool.stats().reserved_places == 0);
    pool.check_invariants();
}

TEST_CASE("a thread that exits gives its reserved places back") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const std::size_t free_before = arena.free_frames();
    std::thread worker([&] {
        const auto handles = emplace_n(pool, 20, 0);
        for (const auto h : handles) {
            pool.destroy(h);
        }
        CHECK(pool.stats().reserved_places >= 20);
    });
    worker.join();
    CHECK(pool.stats().reserved_places == 0);
    pool.check_invariants();
    CHECK(pool.compact() == pool.stats().reserve_frames);
    CHECK(arena.free_frames() == free_before);
    // A new thread reuses the exited thread's cache (no cache per thread ever seen).
    std::thread second([&] {
        pool.destroy(pool.emplace(item{1, 2}));
        CHECK(pool.stats().reserved_places >= 1);
    });
    second.join();
    CHECK(pool.stats().reserved_places == 0);
    pool.check_invariants();
}

TEST_CASE("compact takes back the idle reserved places of every thread, which carry on") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const std::size_t free_before = arena.free_frames();
    std::binary_semaphore reserved{0};
    std::binary_semaphore compacted{0};
    std::vector<object_handle<item>> later;
    std::thread worker([&] {
        const auto handles = emplace_n(pool, 2 * pool_type::objects_per_frame, 0);
        for (const auto h : handles) {
            pool.destroy(h);
        }
        reserved.release();
        compacted.acquire();
        // Its magazine's slots were taken back: emplace skips them and reserves anew.
        later = emplace_n(pool, 40, 500);
    });
    reserved.acquire();
    CHECK(pool.stats().reserved_places > 0);
    const std::size_t frames = pool.stats().frames;
    CHECK(pool.compact() == frames);
    CHECK(pool.stats().reserved_places == 0);
    CHECK(pool.stats().reservations_stolen > 0);
    CHECK(pool.stats().frames == 0);
    CHECK(arena.free_frames() == free_before);
    pool.check_invariants(); // the worker waits: its magazine holds stolen slots
    compacted.release();
    worker.join();
    CHECK(intact(pool, later, 500));
    CHECK(pool.size() == 40);
    pool.check_invariants();
}

TEST_CASE("migrating a frame moves the reserved places in it, and emplace builds there") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const auto kept = emplace_n(pool, 4, 0);
    auto gone = emplace_n(pool, 4, 10);
    for (const auto h : gone) {
        pool.destroy(h); // four places of the same frame, reserved
    }
    CHECK(pool.stats().reserved_places >= 4);
    const item* before = pool.pin(kept[0]).get();
    frame& f = arena.frame_of(before);
    migrate_stats stats;
    (void)test::isolate_and_migrate(arena, f, migrate_mode::sync, &stats);
    REQUIRE(stats.succeeded == 1);
    const item* after = pool.pin(kept[0]).get();
    CHECK(after != before);
    pool.check_invariants(); // the reservations' words point into the new frame
    gone = emplace_n(pool, 4, 20);
    for (const auto h : gone) {
        CHECK(&arena.frame_of(pool.pin(h).get()) == &arena.frame_of(after));
    }
    CHECK(intact(pool, kept, 0));
    CHECK(intact(pool, gone, 20));
    pool.check_invariants();
}

TEST_CASE("a pool destroyed while a thread holds reserved places is not touched at its exit") {
    arena_type arena(4 * arena_type::block_bytes);
    auto pool = std::make_unique<pool_type>(arena);
    std::binary_semaphore reserved{0};
    std::binary_semaphore destroyed{0};
    std::thread worker([&] {
        pool->destroy(pool->emplace(item{1, 1}));
        reserved.release();
        destroyed.acquire();
        // A new pool (perhaps at the same address) gets a new cache, not the dead pool's.
        pool_type again(arena);
        const auto h = again.emplace(item{7, 8});
        CHECK(again.pin(h)->a == 7);
        again.destroy(h);
        again.check_invariants();
    }); // exits: flushes only into pools still alive
    reserved.acquire();
    pool.reset();
    CHECK(arena.free_frames() == arena.frame_count());
    destroyed.release();
    worker.join();
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("threads emplacing and destroying through their caches while others compact lose "
          "nothing") {
    arena_type arena(32 * arena_type::block_bytes);
    pool_type pool(arena);
    constexpr int workers = 3;
    constexpr int rounds = 300;
    std::atomic<int> running{workers};
    std::atomic<int> corrupted{0};
    std::vector<std::thread> threads;
    for (int id = 0; id < workers; ++id) {
        threads.emplace_back([&, id] {
            const std::uint64_t base = static_cast<std::uint64_t>(id) << 40;
            for (int r = 0; r < rounds; ++r) {
                const std::size_t n = 1 + static_cast<std::size_t>((r * 7 + id) % 50);
                const std::uint64_t first = base + static_cast<std::uint64_t>(r) * 100;
                const auto handles = emplace_n(pool, n, first);
                if (!intact(pool, handles, first)) {
                    ++corrupted;
                }
                for (const auto h : handles) {
                    pool.destroy(h);
                }
                if (r % 50 == id) {
                    pool.release_thread_cache();
                }
            }
            --running;
        });
    }
    std::size_t migrated = 0;
    while (running.load() > 0) {
        (void)pool.compact();
        for (std::size_t i = 0; i < arena.frame_count(); ++i) {
            frame& f = arena.frame_at(i);
            if (is_movable(f)) {
                migrated += test::isolate_and_migrate(arena, f, migrate_mode::async);
            }
        }
    }
    for (std::thread& t : threads) {
        t.join();
    }
    CHECK(corrupted.load() == 0);
    CHECK(pool.size() == 0);
    CHECK(pool.stats().reserved_places == 0); // the workers exited
    pool.check_invariants();
    MESSAGE("migrated " << migrated << " frames, stole " << pool.stats().reservations_stolen
                        << " reservations");
}

TEST_CASE("a thread that uses many short-lived pools keeps entries only for live ones") {
    arena_type arena(4 * arena_type::block_bytes);
    // Each pool at an address of its own (a freed pool's address is never reused here).
    std::vector<std::optional<pool_type>> pools(100);
    const std::size_t before = detail::thread_caches::here().size();
    std::size_t alive = 0;
    for (std::size_t i = 0; i < pools.size(); ++i) {
        pools[i].emplace(arena);
        pools[i]->destroy(pools[i]->emplace(item{1, 2}));
        if (i % 25 == 0) {
            ++alive; // four pools stay alive
        } else {
            pools[i].reset();
        }
    }
    // The entries of the 96 destroyed pools were dropped as new ones came.
    CHECK(detail::thread_caches::here().size() <= before + alive + 1);
    for (std::optional<pool_type>& pool : pools) {
        if (pool) {
            pool->destroy(pool->emplace(item{3, 4})); // each still finds its own cache
            CHECK(pool->stats().reserved_places >= 1);
            pool->check_invariants();
        }
    }
}
