// Stress (runs under ThreadSanitizer in the tsan workflow): four threads allocate, free, write,
// read and pin objects of a compressed store (each of MOVABLE_COMPRESSED_STORES_OVER: zspage_pool,
// zbud_pool, z3fold_pool) and inflate and deflate a balloon, while a fifth runs
// pool compaction and arena compaction (full, order-targeted, incremental, every migrate mode)
// in a loop. Each worker keeps a shadow copy of its objects and checks every read against it;
// at the end every object is checked once more and every frame of the arena is accounted for.
#include <movable/compaction.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/compressed_store.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "support/balloon_hosts.hpp"
#include "support/compressed_stores.hpp"

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 6>; // 64 frames per max-order block
using balloon_type = balloon<arena_type, test::recording_host>;

constexpr int workers = 4;
constexpr int ops_per_worker = 6000;

template <class Store>
struct object {
    typename Store::handle handle;
    std::vector<std::byte> bytes; // what the object must hold
};

struct tallies {
    std::atomic<std::size_t> ops{0};
    std::atomic<std::size_t> mismatches{0};
    std::atomic<std::size_t> pool_compactions{0};
    std::atomic<std::size_t> arena_compactions{0};
    std::atomic<std::size_t> frames_migrated{0};
    std::atomic<std::size_t> frames_freed_by_pool{0};
};

// Sizes shaped like compressed 4 KiB pages: mostly 1-2 KiB, a few tiny and a few large.
std::size_t object_size(std::mt19937& random) {
    const unsigned pick = random() % 100;
    if (pick < 10) {
        return 32 + random() % 200;
    }
    if (pick < 85) {
        return 700 + random() % 1500;
    }
    return 2200 + random() % 1065; // up to 3264
}

template <class Store>
void worker(Store& pool, balloon_type& balloon, unsigned seed, tallies& counts,
            std::vector<object<Store>>& objects) {
    std::mt19937 random(seed);
    auto fill = [&](object<Store>& o) {
        for (auto& b : o.bytes) {
            b = static_cast<std::byte>(random());
        }
    };
    for (int op = 0; op < ops_per_worker; ++op) {
        ++counts.ops;
        const unsigned choice = random() % 100;
        if (choice < 30 || objects.empty()) { // allocate and write
            object<Store> o;
            o.bytes.resize(object_size(random));
            o.handle = pool.try_allocate(o.bytes.size());
            if (!o.handle) {
                continue; // arena full for now: the others free, compaction makes room
            }
            fill(o);
            pool.write(o.handle, o.bytes);
            objects.push_back(std::move(o));
        } else if (choice < 50) { // free
            const std::size_t victim = random() % objects.size();
            pool.deallocate(objects[victim].handle);
            objects[victim] = std::move(objects.back());
            objects.pop_back();
        } else if (choice < 70) { // read and check
            object<Store>& o = objects[random() % objects.size()];
            std::vector<std::byte> out(o.bytes.size());
            pool.read(o.handle, out);
            counts.mismatches += out == o.bytes ? 0 : 1;
        } else if (choice < 80) { // pinned read
            object<Store>& o = objects[random() % objects.size()];
            auto mapped = pool.map(o.handle, store_access::read);
            counts.mismatches +=
                std::equal(o.bytes.begin(), o.bytes.end(), mapped.bytes().begin()) ? 0 : 1;
        } else if (choice < 90) { // pinned write
            object<Store>& o = objects[random() % objects.size()];
            auto mapped = pool.map(o.handle, store_access::write);
            fill(o);
            std::memcpy(mapped.writable_bytes().data(), o.bytes.data(), o.bytes.size());
        } else if (choice < 95) {
            balloon.inflate(1 + random() % 4);
        } else {
            balloon.deflate(1 + random() % 4);
        }
    }
}

} // namespace

TEST_CASE_TEMPLATE("four threads use a pool and a balloon while a fifth compacts both; nothing is "
                   "lost",
                   Store, MOVABLE_COMPRESSED_STORES_OVER(arena_type)) {
    arena_type arena(8 * arena_type::block_bytes); // 2 MiB: full enough to need compaction
    test::recording_host host;
    tallies counts;
    std::vector<std::vector<object<Store>>> objects(workers);
    {
        Store pool(arena);
        balloon_type balloon(arena, host);
        std::atomic<int> running{workers};
        std::thread compaction_thread([&] {
            compactor<arena_type> compaction(arena);
            const migrate_mode modes[] = {migrate_mode::async, migrate_mode::sync_light,
                                          migrate_mode::sync};
            for (unsigned round = 0; running.load() > 0; ++round) {
                counts.frames_freed_by_pool += pool.compact();
                ++counts.pool_compactions;
                compact_request request;
                request.mode = modes[round % 3];
                if (round % 4 == 1) {
                    request.max_frames_per_pass = 16;
                } else if (round % 4 == 2) {
                    request.order = static_cast<int>(arena_type::max_order);
                }
                counts.frames_migrated += compaction.compact(request).migrated;
                ++counts.arena_compactions;
            }
        });
        std::vector<std::thread> threads;
        for (int t = 0; t < workers; ++t) {
            threads.emplace_back([&, t] {
                worker(pool, balloon, static_cast<unsigned>(t) * 7919 + 1, counts, objects[t]);
                --running;
            });
        }
        for (auto& thread : threads) {
            thread.join();
        }
        compaction_thread.join();

        // Every object holds what its worker last wrote.
        std::size_t live = 0;
        for (auto& mine : objects) {
            for (object<Store>& o : mine) {
                std::vector<std::byte> out(o.bytes.size());
                pool.read(o.handle, out);
                CHECK(out == o.bytes);
                ++live;
            }
        }
        CHECK(counts.mismatches.load() == 0);
        CHECK(pool.stats().objects_in_use == live);
        CHECK(balloon.isolated_count() == 0);
        CHECK(host.held.size() == balloon.size());
        CHECK(host.double_lends + host.unknown_returns + host.overlapping_calls.load() == 0);
        for (std::size_t i = 0; i < arena.frame_count(); ++i) {
            CHECK_FALSE(arena.frame_at(i).is_isolated());
        }
        // Allocated + free = total.
        CHECK(pool.stats().isolated_frames == 0);
        CHECK(arena.free_frames() + pool.stats().frames_in_use + balloon.size() ==
              arena.frame_count());
        MESSAGE(counts.ops.load() << " ops; " << counts.pool_compactions.load()
                                  << " pool compactions freed "
                                  << counts.frames_freed_by_pool.load() << " frames ("
                                  << pool.stats().objects_moved << " objects moved); "
                                  << counts.arena_compactions.load()
                                  << " arena compactions migrated " << counts.frames_migrated.load()
                                  << " frames; " << live << " objects live at the end");
        for (auto& mine : objects) {
            for (object<Store>& o : mine) {
                pool.deallocate(o.handle);
            }
        }
    }
    // Pool and balloon gone: every frame is back.
    CHECK(arena.free_frames() == arena.frame_count());
}
