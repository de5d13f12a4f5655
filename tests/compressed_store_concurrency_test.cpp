// The threaded half of the compressed_store conformance suite (runs under ThreadSanitizer, label
// concurrency), for every store in MOVABLE_COMPRESSED_STORES: threads allocate, free, read,
// write and map objects, each checked against its own shadow, while other threads compact the
// pool and the arena (movable::compactor over the shared frame_arena).
#include <movable/compaction.hpp>
#include <movable/models/compressed_store.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "support/compressed_stores.hpp"

using namespace movable;
using movable::test::fill_pattern;
using movable::test::holds_pattern;
using movable::test::store_arena;

TEST_CASE_TEMPLATE("objects stay intact while threads allocate, free, read, write and map during "
                   "pool compaction and arena compaction",
                   Store, MOVABLE_COMPRESSED_STORES) {
    store_arena arena(96 * store_arena::block_bytes);
    Store store(arena);
    struct object {
        typename Store::handle handle;
        std::size_t size;
        std::uint32_t seed;
    };
    constexpr int workers = 3;
    constexpr int operations = 4000;
    std::atomic<int> running{workers};
    std::atomic<std::size_t> corrupted{0};
    std::vector<std::vector<object>> owned(workers);
    const std::size_t max = store.max_object_size();

    auto worker = [&](int id) {
        std::mt19937 rng(static_cast<unsigned>(id) * 7919 + 3);
        std::vector<object>& mine = owned[static_cast<std::size_t>(id)];
        std::vector<std::byte> buffer(max);
        std::uint32_t next_seed = static_cast<std::uint32_t>(id) << 24;
        for (int op = 0; op < operations; ++op) {
            const unsigned choice = rng() % 100;
            if (mine.empty() || choice < 40) {
                const std::size_t size = 1 + rng() % max;
                const auto h = store.try_allocate(size);
                if (!h) {
                    continue;
                }
                const object o{h, size, ++next_seed};
                fill_pattern(std::span(buffer).first(size), o.seed);
                store.write(h, std::span(buffer).first(size));
                mine.push_back(o);
            } else if (choice < 65) {
                const std::size_t i = rng() % mine.size();
                store.deallocate(mine[i].handle);
                mine[i] = mine.back();
                mine.pop_back();
            } else if (choice < 85) {
                const object& o = mine[rng() % mine.size()];
                store.read(o.handle, std::span(buffer).first(o.size));
                corrupted += holds_pattern(std::span(buffer).first(o.size), o.seed) ? 0 : 1;
            } else {
                object& o = mine[rng() % mine.size()];
                const bool for_write = rng() % 2 == 0;
                auto m = store.map(o.handle, for_write ? store_access::write : store_access::read);
                corrupted += holds_pattern(m.bytes(), o.seed) ? 0 : 1;
                std::this_thread::yield(); // hold the pin while others move things
                corrupted += holds_pattern(m.bytes(), o.seed) ? 0 : 1;
                if (for_write) {
                    o.seed = ++next_seed;
                    fill_pattern(m.writable_bytes(), o.seed);
                }
            }
        }
        --running;
    };
    auto pool_compactor = [&] {
        while (running.load() > 0) {
            store.compact();
            std::this_thread::yield();
        }
    };
    auto arena_compactor = [&] {
        compactor<store_arena> compaction(arena);
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

    std::vector<std::thread> threads;
    for (int id = 0; id < workers; ++id) {
        threads.emplace_back(worker, id);
    }
    threads.emplace_back(pool_compactor);
    threads.emplace_back(arena_compactor);
    for (auto& t : threads) {
        t.join();
    }

    CHECK(corrupted.load() == 0);
    std::size_t live = 0;
    std::vector<std::byte> buffer(max);
    for (const auto& mine : owned) {
        for (const object& o : mine) {
            CHECK(store.size(o.handle) == o.size);
            store.read(o.handle, std::span(buffer).first(o.size));
            CHECK(holds_pattern(std::span(buffer).first(o.size), o.seed));
            ++live;
        }
    }
    const auto stats = store.stats();
    CHECK(stats.objects_in_use == live);
    CHECK(arena.free_frames() + stats.frames_in_use == arena.frame_count());
    MESSAGE(std::string(test::store_name<Store>)
            << ": live " << live << " objects in " << stats.frames_in_use
            << " frames; compaction moved " << stats.objects_moved << " objects; "
            << stats.frames_migrated << " frames migrated");
    store.check_invariants();
    for (const auto& mine : owned) {
        for (const object& o : mine) {
            store.deallocate(o.handle);
        }
    }
    test::release_thread_cache(store); // the workers' caches went back when they exited
    CHECK(store.stats().frames_in_use == 0);
    CHECK(arena.free_frames() == arena.frame_count());
}
