// Runs under ThreadSanitizer (the tsan workflow): zspage_pool used from many threads while
// pool compaction, arena compaction and frame migration run on others; the races between
// migration and freeing a zspage or destroying the pool, forced with a held class lock; and
// sync migration waiting for a pin that another thread drops.
#include <movable/models/zspage_pool.hpp>

#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <semaphore>
#include <thread>
#include <utility>
#include <vector>

#include "support/isolate_and_migrate.hpp"
#include "support/zspage_pool_access.hpp"

using namespace movable;
using movable::test::isolate_and_migrate;

namespace {

using arena_type = frame_arena<4096, 4>;
using pool_type = zspage_pool<arena_type>;
using access = detail::zspage_pool_test_access<pool_type>;
constexpr std::size_t frame_size = arena_type::frame_size;

void fill(std::span<std::byte> bytes, std::uint32_t seed) {
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& b : bytes) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<std::byte>(x);
    }
}
bool holds(std::span<const std::byte> bytes, std::uint32_t seed) {
    std::vector<std::byte> expected(bytes.size());
    fill(expected, seed);
    return std::equal(bytes.begin(), bytes.end(), expected.begin());
}

struct object {
    zspage_handle handle;
    std::size_t size;
    std::uint32_t seed;
};

std::size_t compressed_page_size(std::mt19937& rng) {
    const unsigned kind = rng() % 10;
    if (kind == 0) {
        return 1 + rng() % 400;
    }
    if (kind < 8) {
        return 800 + rng() % 1400;
    }
    return 2200 + rng() % (frame_size - 2200 + 1);
}

} // namespace

TEST_CASE("objects stay intact while threads allocate, free, read, write and map during pool "
          "compaction, arena compaction and frame migration") {
    arena_type arena(96 * arena_type::block_bytes);
    pool_type pool(arena);
    constexpr int workers = 3;
    constexpr int operations = 6000;
    std::atomic<int> running{workers};
    std::atomic<std::size_t> corrupted{0};
    std::atomic<std::size_t> allocation_failures{0};
    std::vector<std::vector<object>> owned(workers);

    auto worker = [&](int id) {
        std::mt19937 rng(static_cast<unsigned>(id) * 7919 + 1);
        std::vector<object>& mine = owned[static_cast<std::size_t>(id)];
        std::vector<std::byte> buffer(frame_size);
        std::uint32_t next_seed = static_cast<std::uint32_t>(id) << 24;
        for (int op = 0; op < operations; ++op) {
            const unsigned choice = rng() % 100;
            if (mine.empty() || choice < 40) {
                const std::size_t size = compressed_page_size(rng);
                const zspage_handle h = pool.try_allocate(size);
                if (!h) {
                    ++allocation_failures;
                    continue;
                }
                const object o{h, size, ++next_seed};
                fill(std::span(buffer).first(size), o.seed);
                pool.write(h, std::span(buffer).first(size));
                mine.push_back(o);
            } else if (choice < 65) {
                const std::size_t i = rng() % mine.size();
                pool.deallocate(mine[i].handle);
                mine[i] = mine.back();
                mine.pop_back();
            } else if (choice < 85) {
                const object& o = mine[rng() % mine.size()];
                pool.read(o.handle, std::span(buffer).first(o.size));
                corrupted += holds(std::span(buffer).first(o.size), o.seed) ? 0 : 1;
            } else {
                object& o = mine[rng() % mine.size()];
                const bool for_write = rng() % 2 == 0;
                pool_type::mapping m =
                    pool.map(o.handle, for_write ? zspage_access::write : zspage_access::read);
                corrupted += holds(m.bytes(), o.seed) ? 0 : 1;
                std::this_thread::yield(); // hold the pin while others move things
                corrupted += holds(m.bytes(), o.seed) ? 0 : 1;
                if (for_write) {
                    o.seed = ++next_seed;
                    fill(m.writable_bytes(), o.seed);
                }
            }
        }
        --running;
    };
    auto pool_compactor = [&] {
        while (running.load() > 0) {
            pool.compact();
            std::this_thread::yield();
        }
    };
    auto arena_compactor = [&] {
        compactor<arena_type> compaction(arena);
        for (int round = 0; running.load() > 0; ++round) {
            compact_request request;
            request.mode = round % 2 == 0 ? migrate_mode::sync : migrate_mode::async;
            request.max_frames_per_pass = 64;
            compaction.begin(request);
            while (running.load() > 0 && compaction.pass() == compact_progress::incomplete) {
            }
            compaction.end();
        }
    };
    auto migrator = [&] {
        std::mt19937 rng(99);
        while (running.load() > 0) {
            const std::size_t index = rng() % arena.frame_count();
            if (!arena.is_free(index)) {
                (void)isolate_and_migrate(arena, arena.frame_at(index),
                                          rng() % 2 ? migrate_mode::sync : migrate_mode::async);
            }
        }
    };

    std::vector<std::thread> threads;
    for (int id = 0; id < workers; ++id) {
        threads.emplace_back(worker, id);
    }
    threads.emplace_back(pool_compactor);
    threads.emplace_back(arena_compactor);
    threads.emplace_back(migrator);
    for (auto& t : threads) {
        t.join();
    }

    CHECK(corrupted.load() == 0);
    std::size_t live = 0;
    std::vector<std::byte> buffer(frame_size);
    for (const auto& mine : owned) {
        for (const object& o : mine) {
            CHECK(pool.size(o.handle) == o.size);
            pool.read(o.handle, std::span(buffer).first(o.size));
            CHECK(holds(std::span(buffer).first(o.size), o.seed));
            ++live;
        }
    }
    const zspage_pool_stats stats = pool.stats();
    CHECK(stats.objects_in_use == live);
    CHECK(stats.isolated_frames == 0);
    MESSAGE("live " << live << " objects; compacted " << stats.compactions << " times, freed "
                    << stats.frames_freed_by_compaction << " frames, moved " << stats.objects_moved
                    << " objects; migrated " << stats.frames_migrated << " frames; "
                    << allocation_failures.load() << " allocations found the arena full");
    for (const auto& mine : owned) {
        for (const object& o : mine) {
            pool.deallocate(o.handle);
        }
    }
    pool.release_thread_cache(); // the workers' caches went back when they exited
    CHECK(pool.stats().frames_in_use == 0);
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("async migration answers retry while the class lock is held; the frame is put back") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const zspage_handle h = pool.allocate(500);
    std::vector<std::byte> bytes(500);
    fill(bytes, 7);
    pool.write(h, bytes);
    frame& f = access::start_frame(pool, h);

    std::atomic<int> stage{0};
    std::thread holder([&] {
        std::lock_guard hold(access::class_lock(pool, 500));
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
    CHECK(list.empty());
    CHECK(&access::start_frame(pool, h) == &f);
    CHECK(pool.stats().isolated_frames == 0);
    // With the lock free again, the same migration goes through.
    REQUIRE(isolate_movable_frame(f, migrate_mode::async));
    list.push_back(f);
    CHECK(migrate_frames(list, targets, migrate_mode::async).succeeded == 1);
    std::vector<std::byte> got(500);
    pool.read(h, got);
    CHECK(got == bytes);
}

TEST_CASE("a pin taken after isolation: sync_light answers busy with the pin held, sync waits "
          "for the pin to drop and then moves the frame") {
    arena_type arena(4 * arena_type::block_bytes);
    zspage_pool_options options;
    // No bound the test could outrun: the test, not a count of yields, says when the pin drops.
    options.sync_pin_wait_attempts = std::numeric_limits<std::size_t>::max();
    pool_type pool(arena, options);
    const zspage_handle h = pool.allocate(500);
    std::vector<std::byte> bytes(500);
    fill(bytes, 7);
    pool.write(h, bytes);
    frame& f = access::start_frame(pool, h);
    arena_targets<arena_type> targets{arena};

    REQUIRE(isolate_movable_frame(f, migrate_mode::sync_light));
    pool_type::mapping pin = pool.map(h, zspage_access::read);
    frame_list list;
    list.push_back(f);
    const migrate_stats light = migrate_frames(list, targets, migrate_mode::sync_light);
    CHECK(light.failed == 1);
    CHECK(light.put_back == 1);
    CHECK(pool.stats().migrate_pin_waits == 0);

    // The same pin, taken after a sync isolation: the migrator waits for it.
    pin.unmap();
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    pin = pool.map(h, zspage_access::read);
    migrate_stats stats;
    std::atomic<bool> returned{false};
    std::thread migrator([&] {
        frame_list isolated;
        isolated.push_back(f);
        stats = migrate_frames(isolated, targets, migrate_mode::sync);
        returned = true;
    });
    // Until the migrator found the pin and waits (or, were it not to wait, gave up).
    while (pool.stats().migrate_pin_waits == 0 && !returned.load()) {
        std::this_thread::yield();
    }
    CHECK_FALSE(returned.load());               // it cannot return while we hold the pin
    CHECK(&access::start_frame(pool, h) == &f); // not moved while pinned
    CHECK(holds(pin.bytes(), 7));
    pin.unmap();
    migrator.join();

    CHECK(stats.succeeded == 1);
    CHECK(stats.failed == 0);
    CHECK(&access::start_frame(pool, h) != &f);
    CHECK(pool.stats().migrate_pin_waits == 1);
    CHECK(pool.stats().frames_migrated == 1);
    CHECK(pool.stats().isolated_frames == 0);
    std::vector<std::byte> got(500);
    pool.read(h, got);
    CHECK(got == bytes);
}

TEST_CASE("migrating a frame of a zspage that is being freed answers busy; the core then "
          "frees the frame") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena, {.thread_cache = false}); // the free empties the zspage
    const zspage_handle h = pool.allocate(1100);    // one 8-frame zspage
    frame& src = access::start_frame(pool, h);
    REQUIRE(isolate_movable_frame(src, migrate_mode::sync));

    // Hold src's lock as the core does around migrate, and free the zspage meanwhile: the free
    // marks it freeing, then waits for src's lock to release it.
    src.lock();
    std::thread freeing([&] { pool.deallocate(h); });
    while (pool.stats().zspages != 0) {
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

    // The pool forgot src (released while isolated); the core frees it when it gives it back.
    CHECK(movable_ops(src) == nullptr);
    CHECK(pool.stats().frames_released_while_isolated == 1);
    CHECK(putback_movable_frame(src) == putback_result::released);
    arena.free_frame(src);
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("a zspage emptied while a reader that followed a stale location pins it is released "
          "only after that pin ends") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena, {.thread_cache = false}); // the free empties the zspage
    const zspage_handle h = pool.allocate(1100);    // one 8-frame zspage, its only object
    const std::vector<frame*> frames = access::zspage_frames(pool, h);
    detail::zspage_pin reader = access::pin_zspage(pool, h);
    REQUIRE(reader.get() != nullptr);

    // The free empties the zspage (the class forgets it), then waits for the reader's pin
    // before it gives the frames back.
    std::thread freeing([&] { pool.deallocate(h); });
    while (pool.stats().zspages != 0) {
        std::this_thread::yield();
    }
    for (const frame* f : frames) {
        CHECK(f->owner() == &pool); // not released under the reader
    }
    CHECK(arena.free_frames() == arena.frame_count() - frames.size());
    reader.release();
    freeing.join();
    CHECK(arena.free_frames() == arena.frame_count());
    CHECK(pool.stats().frames_in_use == 0);
}

// The two orders of a migration of a zspage's frame and the zspage going away (freed by its
// last deallocate, or by the pool's destructor), each forced by holding the migrating thread
// inside migrate_frames (held_targets):
//   migration first: held after the pool's migrate answered success (the zspage now lives in
//     the new frame); the zspage is freed meanwhile, from its new frame.
//   free first: held before the pool's migrate is called, with the frame locked; the free
//     marks the zspage freeing under the class lock and waits for the frame's lock to release
//     it; then the migration goes on and the pool answers busy. The frame, given back, is
//     freed by the core (released while isolated) or by the pool (put back first): which of
//     the two takes the frame's lock first is left to the scheduler; both free it once.
// Either way nothing leaks.
enum class race_order { migration_first, free_first };

// Migration targets from the arena that hold the migrating thread at one point until the test
// lets it on: in allocate (source locked, the owner's migrate not yet called) or in release of
// the migrated source (the owner's migrate answered success; both frames unlocked).
struct held_targets {
    arena_type& arena;
    const frame* source;
    bool hold_before_migrate = false;
    bool hold_after_migrate = false;
    std::binary_semaphore held{0};   // the migrating thread reached the hold
    std::binary_semaphore let_go{0}; // the test lets it on

    frame* allocate(const frame& /*source*/) noexcept {
        if (std::exchange(hold_before_migrate, false)) {
            hold();
        }
        return arena.try_allocate(0, frame_kind::movable);
    }
    void free(frame& f) noexcept {
        if (&f == source && std::exchange(hold_after_migrate, false)) {
            hold();
        }
        arena.free_frame(f);
    }
    void hold() noexcept {
        held.release();
        let_go.acquire();
    }
};

template <class Free>
void migration_racing_a_free(Free&& free_the_zspage, race_order order) {
    arena_type arena(4 * arena_type::block_bytes);
    auto pool = std::make_unique<pool_type>(arena, zspage_pool_options{.thread_cache = false});
    const zspage_handle h = pool->allocate(1100); // one 8-frame zspage
    frame& f = access::start_frame(*pool, h);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));

    held_targets targets{arena, &f};
    (order == race_order::migration_first ? targets.hold_after_migrate
                                          : targets.hold_before_migrate) = true;
    migrate_stats stats;
    std::thread migrator([&] {
        frame_list list;
        list.push_back(f);
        stats = migrate_frames(list, targets, migrate_mode::sync);
        putback_movable_frames(list, targets);
    });
    targets.held.acquire();
    if (order == race_order::migration_first) {
        CHECK(&access::start_frame(*pool, h) != &f); // moved: f is no longer in the chain
        free_the_zspage(pool, h);
        targets.let_go.release();
        migrator.join();
        CHECK(stats.succeeded == 1);
    } else {
        std::thread freeing([&] { free_the_zspage(pool, h); });
        // The migrator holds f's lock, so the free, once it has marked the zspage, waits for it.
        while (!access::zspage_being_freed(f)) {
            std::this_thread::yield();
        }
        targets.let_go.release();
        migrator.join();
        freeing.join();
        CHECK(stats.succeeded == 0);
        CHECK(stats.released + stats.put_back == 1);
    }

    CHECK(stats.succeeded + stats.released + stats.put_back == 1);
    pool.reset();
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("a zspage freed while its frame is being migrated, before or after the frame moves, "
          "neither crashes nor leaks") {
    const auto free_last_object = [](std::unique_ptr<pool_type>& pool, zspage_handle h) {
        pool->deallocate(h);
        CHECK(pool->stats().frames_in_use == 0);
    };
    SUBCASE("migration first: the zspage is freed from its new frame") {
        migration_racing_a_free(free_last_object, race_order::migration_first);
    }
    SUBCASE("free first: migration answers busy and the frame is freed once") {
        migration_racing_a_free(free_last_object, race_order::free_first);
    }
}

TEST_CASE("destroying a pool while one of its frames is being migrated, before or after the "
          "frame moves, neither crashes nor leaks") {
    const auto destroy_pool = [](std::unique_ptr<pool_type>& pool, zspage_handle) { pool.reset(); };
    SUBCASE("migration first: the destructor frees the zspage from its new frame") {
        migration_racing_a_free(destroy_pool, race_order::migration_first);
    }
    SUBCASE("destruction first: migration answers busy and the frame is freed once") {
        migration_racing_a_free(destroy_pool, race_order::free_first);
    }
}
