// Compaction throughput and pauses, against memcpy of the same bytes measured in the same run.
//   full_compaction/<MiB>: an arena at 50% occupancy (every other page freed at random), all
//     frames movable, compacted in one call. Counters: bytes moved per second as a fraction of
//     memcpy's (x_memcpy_speed), time per arena frame and per moved frame.
//   incremental_pass_1MiB: one pass with a 1 MiB budget on a fragmented 256 MiB arena; the
//     pause (median, 99th percentile, longest) as a multiple of a 1 MiB memcpy. The memcpy is of
//     a buffer in cache; a pass copies 256 frames scattered over the arena.
#include <movable/compaction.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "../examples/page_store.hpp"
#include "baseline.hpp"

namespace {

using arena_type = movable::frame_arena<4096, 10>;
using clock_type = std::chrono::steady_clock;

struct fragmented_arena {
    explicit fragmented_arena(std::size_t bytes, unsigned seed = 1) : arena(bytes), store(arena) {
        std::vector<std::byte> page(arena_type::frame_size, std::byte{0x42});
        const std::size_t pages = arena.frame_count();
        for (std::size_t i = 0; i < pages; ++i) {
            store.insert(i, page.data());
        }
        std::vector<std::size_t> order(pages);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), std::mt19937(seed));
        for (std::size_t i = 0; i < pages / 2; ++i) {
            store.erase(order[i]);
        }
    }
    arena_type arena;
    example::page_store<arena_type> store;
};

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

void full_compaction(benchmark::State& state) {
    const std::size_t bytes = static_cast<std::size_t>(state.range(0)) << 20;
    double total_seconds = 0;
    std::size_t total_moved = 0;
    std::size_t total_frames = 0;
    std::size_t blocks_freed = 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto fragmented = std::make_unique<fragmented_arena>(bytes);
        state.ResumeTiming();
        const auto start = clock_type::now();
        const movable::compact_stats stats = movable::compactor(fragmented->arena).compact();
        const double seconds = seconds_since(start);
        state.SetIterationTime(seconds);
        total_seconds += seconds;
        total_moved += stats.bytes_moved;
        total_frames += fragmented->arena.frame_count();
        blocks_freed = stats.max_order_blocks_freed;
        state.PauseTiming();
        fragmented.reset();
        state.ResumeTiming();
    }
    // memcpy of the bytes one compaction moved, between buffers of that size, same process.
    const std::size_t moved_per_run = total_moved / static_cast<std::size_t>(state.iterations());
    const double memcpy_seconds = movable::bench::memcpy_nanoseconds(moved_per_run) * 1e-9;
    const double seconds_per_run = total_seconds / static_cast<double>(state.iterations());
    state.counters["moved_MiB"] = static_cast<double>(moved_per_run) / (1 << 20);
    state.counters["GiB_per_s"] = static_cast<double>(moved_per_run) / seconds_per_run / (1u << 30);
    state.counters["x_memcpy_speed"] = memcpy_seconds / seconds_per_run;
    state.counters["ns_per_arena_frame"] = total_seconds * 1e9 / static_cast<double>(total_frames);
    state.counters["ns_per_moved_frame"] =
        seconds_per_run * 1e9 / (static_cast<double>(moved_per_run) / arena_type::frame_size);
    state.counters["blocks_freed"] = static_cast<double>(blocks_freed);
}
BENCHMARK(full_compaction)
    ->Arg(16)
    ->Arg(256)
    ->Arg(1024)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void incremental_pass_1MiB(benchmark::State& state) {
    constexpr std::size_t budget = 1 << 20;
    auto fragmented = std::make_unique<fragmented_arena>(std::size_t{256} << 20);
    auto compaction = std::make_unique<movable::compactor<arena_type>>(fragmented->arena);
    movable::compact_request request;
    request.max_bytes_per_pass = budget;
    compaction->begin(request);
    std::vector<double> pauses;
    std::size_t passes = 0;
    for (auto _ : state) {
        const auto start = clock_type::now();
        const movable::compact_progress progress = compaction->pass();
        const double seconds = seconds_since(start);
        state.SetIterationTime(seconds);
        pauses.push_back(seconds);
        ++passes;
        if (progress == movable::compact_progress::done) {
            state.PauseTiming();
            (void)compaction->end();
            compaction.reset();
            fragmented = std::make_unique<fragmented_arena>(std::size_t{256} << 20,
                                                            static_cast<unsigned>(passes));
            compaction = std::make_unique<movable::compactor<arena_type>>(fragmented->arena);
            compaction->begin(request);
            state.ResumeTiming();
        }
    }
    (void)compaction->end();
    const double memcpy_seconds = movable::bench::memcpy_nanoseconds(budget) * 1e-9;
    std::sort(pauses.begin(), pauses.end());
    auto percentile = [&](double p) {
        return pauses[std::min(pauses.size() - 1,
                               static_cast<std::size_t>(p * static_cast<double>(pauses.size())))];
    };
    state.counters["memcpy_1MiB_us"] = memcpy_seconds * 1e6;
    state.counters["p50_pause_us"] = percentile(0.5) * 1e6;
    state.counters["p50_x_memcpy"] = percentile(0.5) / memcpy_seconds;
    state.counters["p99_x_memcpy"] = percentile(0.99) / memcpy_seconds;
    state.counters["max_x_memcpy"] = pauses.back() / memcpy_seconds;
}
BENCHMARK(incremental_pass_1MiB)->UseManualTime()->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
