// The README's background_compactor example: a cache in an object_pool, churned by worker threads
// (the cache grows, shrinks to a fifth by random evictions, grows again), with the
// service compacting the pool and the arena and giving freed memory back to the OS, so the
// footprint follows the live data instead of its high-water mark. Prints the footprint and the
// service's statistics every second for --seconds N (default 3), then checks every entry.
// --no-service runs the same churn without the service, for comparison.
#include <movable/movable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "examples/support/resident.hpp"

namespace {

struct entry {
    std::uint64_t key = 0;
    std::uint64_t check = 0; // derived from key: verified at the end
    char payload[112] = {};
};
constexpr std::uint64_t check_of(std::uint64_t key) {
    return key * 0x9E3779B97F4A7C15ull;
}

double mib(std::size_t bytes) {
    return static_cast<double>(bytes) / (1 << 20);
}

int seconds_from(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--seconds") == 0) {
            return std::max(1, std::atoi(argv[i + 1]));
        }
    }
    return 3;
}
bool has_flag(int argc, char** argv, const char* flag) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], flag) == 0) {
            return true;
        }
    }
    return false;
}

} // namespace

int main(int argc, char** argv) {
    const int seconds = seconds_from(argc, argv);
    const std::size_t resident_at_start = movable::support::resident_bytes();
    movable::frame_arena<> arena(std::size_t{1} << 30); // reserved; committed when touched
    movable::object_pool<entry> cache(arena);

    // The service: wakes when the pool could free 64 frames or the arena's fragmentation score
    // passes 30, compacts in 1 ms passes using 1-25% of a core, gives free frames back to the
    // OS after each episode.
    movable::background_compactor_options options;
    options.check_interval = std::chrono::milliseconds(50);
    options.release_min_order = 0; // pool compaction frees single frames: give those back too
    movable::background_compactor service(options);
    service.add_source(cache);
    service.add_arena(arena);
    if (!has_flag(argc, argv, "--no-service")) { // for comparison: the same churn without it
        service.start();
    }

    // The cache's size follows the load: the main thread sets each second's target (60000
    // entries per worker, then 12000, and again); the workers grow or shrink their shards to it
    // (evicting at random), then keep replacing random entries, reading each before it goes.
    constexpr int workers = 2;
    constexpr std::size_t shard_large = 60000;
    constexpr std::size_t shard_small = 12000;
    std::atomic<std::size_t> target{shard_large};
    std::atomic<bool> done{false};
    std::atomic<bool> intact{true};
    std::vector<std::thread> threads;
    for (int w = 0; w < workers; ++w) {
        threads.emplace_back([&, w] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(w) + 1);
            std::vector<std::pair<movable::object_handle<entry>, std::uint64_t>> shard;
            std::uint64_t next_key = static_cast<std::uint64_t>(w) << 48;
            const auto evict = [&] {
                const std::size_t victim = rng() % shard.size();
                const auto [handle, key] = shard[victim];
                if (cache.visit(handle, [](const entry& e) { return e.check; }) != check_of(key)) {
                    intact = false;
                }
                cache.destroy(handle);
                shard[victim] = shard.back();
                shard.pop_back();
            };
            const auto insert = [&] {
                const std::uint64_t key = next_key++;
                shard.emplace_back(cache.emplace(entry{key, check_of(key), {}}), key);
            };
            while (!done.load(std::memory_order_relaxed)) {
                const std::size_t size = target.load(std::memory_order_relaxed);
                if (shard.size() > size) {
                    evict();
                } else if (shard.size() < size) {
                    insert();
                } else {
                    evict();
                    insert();
                }
            }
            for (const auto& [handle, key] : shard) {
                if (cache.visit(handle, [](const entry& e) { return e.key; }) != key) {
                    intact = false;
                }
                cache.destroy(handle);
            }
            cache.release_thread_cache();
        });
    }

    std::printf("%4s %9s %9s %9s %10s | %8s %7s %10s %9s %9s %7s  %s\n", "s", "live MiB",
                "pool MiB", "arena MiB", "RSS +MiB", "episodes", "passes", "objs moved",
                "frames fr", "rel MiB", "cpu ms", "last");
    for (int s = 1; s <= seconds; ++s) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        target = s % 2 == 1 ? shard_small : shard_large; // the next second's size
        const movable::object_pool_stats pool = cache.stats();
        const auto arena_stats = arena.stats();
        const movable::background_compactor_stats st = service.stats();
        std::printf("%4d %9.1f %9.1f %9.1f %10.1f | %8zu %7zu %10zu %9zu %9.1f %7.1f  %s\n", s,
                    mib(pool.objects * sizeof(entry)), mib(pool.frames * pool.frame_size),
                    mib((arena_stats.total_frames - arena_stats.free_frames) * 4096),
                    mib(movable::support::resident_bytes() - resident_at_start), st.episodes,
                    st.passes, st.objects_moved, st.frames_freed, mib(st.bytes_released),
                    static_cast<double>(st.cpu_time_ns) / 1e6, movable::to_string(st.last_reason));
    }
    done = true;
    for (std::thread& t : threads) {
        t.join();
    }
    service.stop();
    std::printf("every entry intact: %s\n", intact ? "yes" : "NO");
    return intact ? EXIT_SUCCESS : EXIT_FAILURE;
}
