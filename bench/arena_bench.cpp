// frame_arena allocation when movable and unmovable allocations alternate inside one max-order
// block (issue 9, item 6: each allocation used to re-claim and rescan the whole block), beside
// the same fill with one kind, measured in the same run. Each iteration fills one block frame by
// frame; the time per allocation is reported, and `x_one_kind` is the ratio to one kind.
#include <movable/frame_arena.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <vector>

namespace {

using namespace movable;

// Fills the arena's one block with order-0 allocations of alternating kinds (or movable only)
// and frees it; returns the nanoseconds spent allocating, per allocation.
template <class Arena>
double fill_block(Arena& arena, std::vector<frame*>& frames, bool alternate) {
    frames.clear();
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < Arena::block_frames; ++i) {
        const frame_kind kind =
            alternate && i % 2 == 0 ? frame_kind::unmovable : frame_kind::movable;
        frame* f = arena.try_allocate(0, kind);
        benchmark::DoNotOptimize(f);
        frames.push_back(f);
    }
    const auto stop = std::chrono::steady_clock::now();
    for (frame* f : frames) {
        arena.deallocate(*f);
    }
    return std::chrono::duration<double, std::nano>(stop - start).count() /
           static_cast<double>(Arena::block_frames);
}

template <unsigned MaxOrder>
void alternating_kinds_in_one_block(benchmark::State& state) {
    using arena_type = frame_arena<4096, MaxOrder>;
    arena_type arena(arena_type::block_bytes);
    std::vector<frame*> frames;
    frames.reserve(arena_type::block_frames);
    const double one_kind_ns = fill_block(arena, frames, false);
    double total_ns = 0;
    for (auto _ : state) {
        const double ns = fill_block(arena, frames, true);
        state.SetIterationTime(ns * 1e-9 * static_cast<double>(arena_type::block_frames));
        total_ns += ns;
    }
    const double ns_per_allocation = total_ns / static_cast<double>(state.iterations());
    state.counters["ns_per_allocation"] = ns_per_allocation;
    state.counters["one_kind_ns"] = one_kind_ns;
    state.counters["x_one_kind"] = ns_per_allocation / one_kind_ns;
    state.counters["claims"] = static_cast<double>(arena.stats().blocks_claimed) /
                               static_cast<double>(state.iterations() + 1);
    state.SetItemsProcessed(state.iterations() *
                            static_cast<std::int64_t>(arena_type::block_frames));
}
BENCHMARK(alternating_kinds_in_one_block<10>)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(alternating_kinds_in_one_block<14>)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(alternating_kinds_in_one_block<16>)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(alternating_kinds_in_one_block<20>)->UseManualTime()->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
