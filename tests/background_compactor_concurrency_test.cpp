// Runs under ThreadSanitizer (the tsan workflow): background_compactor's real thread compacting a
// zspage_pool, an object_pool and their arena while worker threads allocate, free and pin on
// them; and the thread stopped in the middle of an episode. Interleavings are forced with a
// barrier and with a gate source the service passes in every episode (after the pools), never
// with sleeps.
#include <movable/service/background_compactor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include <movable/models/object_pool.hpp>
#include <movable/models/zspage_pool.hpp>

#include "support/arena_frames.hpp"

using namespace movable;
using namespace std::chrono_literals;

namespace {

using arena_type = frame_arena<4096, 4>;

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

struct record {
    std::uint64_t id = 0;
    std::uint64_t check = 0; // id * a constant: a half-moved record would not match
};
constexpr std::uint64_t check_of(std::uint64_t id) {
    return id * 0x9E3779B97F4A7C15ull;
}

// Registered after the pools: every episode passes it after compacting them. It counts its
// passes so that workers can wait for "an episode has run past the pools since I asked".
struct gate_source {
    std::atomic<std::size_t> passes{0};
    std::size_t compact() {
        passes.fetch_add(1, std::memory_order_acq_rel);
        passes.notify_all();
        return 0;
    }
};

// Blocks the service inside its first pass until the test lets it go.
struct blocking_source {
    std::atomic<bool> entered{false};
    std::atomic<bool> released{false};
    std::size_t compact() {
        entered.store(true);
        entered.notify_all();
        released.wait(false);
        return 0;
    }
};

struct zs_object {
    zspage_handle handle;
    std::size_t size;
    std::uint32_t seed;
};

} // namespace

TEST_CASE("the service compacts pools and their arena while workers allocate, free and pin") {
    arena_type arena(std::size_t{8} << 20);
    zspage_pool<arena_type> zspages(arena);
    object_pool<record, arena_type> records(arena);
    gate_source gate;
    background_compactor_options options;
    options.check_interval = 1ms; // watermark episodes too, between the forced ones
    options.cycle = 10ms;
    options.cpu_percent_min = 100;
    options.cpu_percent_max = 100;
    options.source_high_frames = 4;
    options.high_watermark = 2; // the arena's compaction too, whenever the pools free frames
    options.low_watermark = 0;
    options.pass_frames = 8;
    background_compactor service(options);
    service.add_source(zspages);
    service.add_source(records);
    service.add_source(gate);
    service.add_arena(arena);
    service.start();

    constexpr int workers = 2;
    constexpr int rounds = 4;
    constexpr std::size_t per_round = 1500;
    std::size_t gate_target = 0;
    // After every worker's churn: ask for an episode; workers then pin and churn more while
    // it runs, and wait until it has passed the pools.
    std::barrier churned(workers, [&]() noexcept {
        gate_target = gate.passes.load(std::memory_order_acquire) + 1;
        service.wake();
    });
    std::atomic<bool> all_intact{true};
    std::vector<std::jthread> threads;
    for (int w = 0; w < workers; ++w) {
        threads.emplace_back([&, w] {
            std::mt19937 rng(static_cast<unsigned>(w) + 1);
            std::vector<zs_object> objects;
            std::vector<object_handle<record>> handles;
            std::vector<std::uint64_t> ids;
            std::uint32_t next_seed = static_cast<std::uint32_t>(w) << 24;
            const auto churn = [&] {
                for (std::size_t i = 0; i < per_round; ++i) {
                    const std::size_t size = 32 + rng() % 700;
                    const zspage_handle h = zspages.allocate(size);
                    std::vector<std::byte> bytes(size);
                    fill(bytes, next_seed);
                    zspages.write(h, bytes);
                    objects.push_back({h, size, next_seed++});
                    const std::uint64_t id = next_seed;
                    handles.push_back(records.emplace(record{id, check_of(id)}));
                    ids.push_back(id);
                }
                // Free two thirds at random: both pools are left fragmented.
                for (std::size_t i = 1; i < objects.size();) { // [0] may be pinned
                    if (rng() % 3 != 0) {
                        zspages.deallocate(objects[i].handle);
                        objects[i] = objects.back();
                        objects.pop_back();
                    } else {
                        ++i;
                    }
                }
                for (std::size_t i = 1; i < handles.size();) { // [0] may be pinned
                    if (rng() % 3 != 0) {
                        records.destroy(handles[i]);
                        handles[i] = handles.back();
                        handles.pop_back();
                        ids[i] = ids.back();
                        ids.pop_back();
                    } else {
                        ++i;
                    }
                }
                records.release_thread_cache();
            };
            const auto verify = [&] {
                for (const zs_object& o : objects) {
                    std::vector<std::byte> bytes(o.size);
                    zspages.read(o.handle, bytes);
                    if (!holds(bytes, o.seed)) {
                        all_intact = false;
                    }
                }
                for (std::size_t i = 0; i < handles.size(); ++i) {
                    const pinned<record> r = records.pin(handles[i]);
                    if (r->id != ids[i] || r->check != check_of(ids[i])) {
                        all_intact = false;
                    }
                }
            };
            for (int round = 0; round < rounds; ++round) {
                churn();
                churned.arrive_and_wait();
                {
                    // Pins held across the episode: compaction and migration must leave these
                    // objects where they are, and move the others.
                    auto mapped = zspages.map(objects.front().handle, zspage_access::read);
                    const pinned<record> held = records.pin(handles.front());
                    churn();
                    verify();
                    const std::size_t target = gate_target;
                    for (std::size_t seen = gate.passes.load(); seen < target;
                         seen = gate.passes.load()) {
                        gate.passes.wait(seen);
                    }
                    if (!holds(mapped.bytes(), objects.front().seed) ||
                        held->check != check_of(held->id)) {
                        all_intact = false;
                    }
                }
                verify();
            }
            churned.arrive_and_wait(); // nobody frees before everyone verified
            for (const zs_object& o : objects) {
                zspages.deallocate(o.handle);
            }
            for (const object_handle<record> h : handles) {
                records.destroy(h);
            }
            records.release_thread_cache();
        });
    }
    threads.clear(); // joins
    // The last barrier asked for one more episode: wait until it has passed the gate too, so
    // that `rounds + 1` episodes have run whatever the watermarks did (each passes the gate
    // once, and each wait above needed a pass after the one before).
    for (std::size_t seen = gate.passes.load(); seen < gate_target; seen = gate.passes.load()) {
        gate.passes.wait(seen);
    }
    service.stop();
    CHECK(all_intact.load());
    const background_compactor_stats stats = service.stats();
    CHECK(stats.episodes >= rounds + 1);
    CHECK(stats.episodes_by_wake >= 1);
    CHECK(stats.last_reason == background_compactor_reason::stop_requested);
    zspages.check_invariants();
    records.check_invariants();
    CHECK(zspages.stats().objects_in_use == 0);
    CHECK(records.size() == 0);
}

TEST_CASE("the thread stops in the middle of an episode; nothing is lost") {
    using owner_type = test::arena_owner<arena_type>;
    arena_type arena(16 * arena_type::block_bytes);
    test::arena_frames<arena_type> frames{arena};
    owner_type owner(frames);
    const std::size_t pages = arena.frame_count();
    for (std::size_t page = 0; page < pages; ++page) {
        REQUIRE(owner.add_page(page) != nullptr);
    }
    for (std::size_t page = 0; page < pages; page += 2) {
        owner.release_page(page); // half free, in every block: fragmented
    }
    REQUIRE(arena.fragmentation_score() > 50);
    blocking_source blocker;
    background_compactor_options options;
    options.pass_frames = 1;
    background_compactor service(options);
    service.add_source(blocker); // first in every episode, before the arena
    service.add_arena(arena);
    service.start();
    CHECK(service.running());
    CHECK_THROWS_AS(service.start(), std::logic_error);
    CHECK_THROWS_AS((void)service.step(), std::logic_error);
    blocker.entered.wait(false); // the episode has begun (the arena is above the watermark)
    service.request_stop();      // the cycle ends after the running pass
    blocker.released = true;
    blocker.released.notify_all();
    service.stop();
    CHECK_FALSE(service.running());
    const background_compactor_stats stats = service.stats();
    CHECK(stats.last_reason == background_compactor_reason::stop_requested);
    CHECK(stats.frames_moved == 0); // stopped before the arena's first pass
    CHECK(arena.free_frames() == pages / 2);
    for (std::size_t page = 1; page < pages; page += 2) {
        CHECK(owner.page_intact(page));
    }
    service.stop(); // again: nothing to do
}
