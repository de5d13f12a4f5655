// Compaction against the floor of moving the same frames (issue 12), both strategies, one run,
// ratios only; a summary table (Markdown) is printed after the benchmarks.
//
//   compaction/<arena>/<scenario>/<strategy>: one full compact() of a frame_arena<> (4 KiB
//     frames, 4 MiB max-order blocks) laid out as the scenario says:
//       packed_25/50/90  pages from frame 0 up to 25/50/90% of the arena (nothing to gain)
//       random_50        every frame used, then half of the pages freed at random
//       random_90        every frame used, then 10% of the pages freed at random
//       unmovable_1      as random_50, with 1% of the frames unmovable, allocated in between the
//                        pages while the arena filled up (the arena groups them by mobility)
//       hot_cold         random_50, plus 1/32 of the arena in a second owner whose pages another
//                        thread frees and allocates, without pause, while the compaction runs
//     Counters: frames moved and compact_stats::minimum_moves (moved_x_min), max-order blocks
//     freed and the most that could be freed (freed_x_max; the maximum is computed here from the
//     arena before compacting: `reference` in compaction_scenarios.hpp), the time as a multiple
//     of a scattered memcpy of the same (source, target) frame pairs (x_scattered) and of a
//     contiguous memcpy of the same bytes (x_contiguous), and the protocol's nanoseconds per moved
//     frame ((compaction - scattered memcpy) / moved). The owner logs every move; the scattered
//     memcpy replays exactly those copies, in the same order, on a re-created identical arena.
//     Caches are evicted before the compaction and before each memcpy (cold: a compaction runs
//     between other work); the contiguous memcpy copies between two buffers touched beforehand.
//   incremental_1MiB/<arena>/<strategy>: random_50 compacted in passes of max_bytes_per_pass =
//     1 MiB (256 frames), caches evicted before every pass; the pauses (p50, p99, longest) as
//     multiples of a scattered memcpy of 1 MiB: the median of the passes' own 256 copies
//     replayed on a re-created arena, cold.
//   migrate_one_frame: one 4 KiB frame isolated and migrated through migrate_frames with the
//     arena's targets (lock both, owner copies, target taken and source freed under the arena
//     lock), caches warm, against a warm 4 KiB memcpy (core_bench's migrate_one_4k_frame is the
//     same without an arena).
//
// Arenas: 16 MiB and 256 MiB; 1 GiB too with MOVABLE_BENCH_LARGE=1 in the environment (the
// incremental benchmark then runs on 1 GiB instead of 256 MiB). Each compaction benchmark runs
// a fixed number of times (it builds its arena twice per run, which takes longer than the
// compaction): the counters are means over the runs.
#include <movable/compaction.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "baseline.hpp"
#include "compaction_scenarios.hpp"

namespace {

using namespace movable::bench::compaction;
using movable::compact_strategy;
constexpr std::size_t mebibyte = std::size_t{1} << 20;

const char* strategy_name(compact_strategy strategy) {
    return strategy == compact_strategy::least_moves ? "least_moves" : "scanners";
}

// ---- the summary -------------------------------------------------------------------------------

struct compaction_row {
    std::string arena;
    std::string scenario;
    std::string strategy;
    double moved = 0;
    double minimum = 0;
    double reference_moves = 0;
    double freed = 0;
    double possible = 0;
    double milliseconds = 0;
    double scattered_milliseconds = 0;
    double contiguous_milliseconds = 0;
    double given_up = 0;
};
struct incremental_row {
    std::string arena;
    std::string strategy;
    std::size_t passes = 0;
    double p50_us = 0;
    double p99_us = 0;
    double max_us = 0;
    double scattered_us = 0;     // median replay of a full pass's copies
    double scattered_p99_us = 0; // and its 99th percentile (the memcpy's own spread)
};
struct frame_row {
    double engine_ns = 0;
    double memcpy_ns = 0;
};

struct summary {
    std::mutex mutex;
    std::vector<compaction_row> compactions;
    std::vector<incremental_row> incrementals;
    std::vector<frame_row> frames;
    std::vector<std::string> problems;
};
summary& results() {
    static summary instance;
    return instance;
}

void report_problem(benchmark::State& state, const std::string& what) {
    const std::lock_guard guard(results().mutex);
    results().problems.push_back(what);
    state.SkipWithError(what.c_str());
}

// ---- compaction/<arena>/<scenario>/<strategy> --------------------------------------------------

void full_compaction(benchmark::State& state, scenario s, std::size_t bytes,
                     compact_strategy strategy) {
    const std::string name = std::to_string(bytes / mebibyte) + " MiB " + scenario_name(s) + " " +
                             strategy_name(strategy);
    move_log log(2 * (bytes / frame_size));
    double seconds = 0;
    double scattered_seconds = 0;
    double contiguous_seconds = 0;
    std::size_t moved = 0;
    std::size_t minimum = 0;
    std::size_t freed = 0;
    std::size_t given_up = 0;
    std::size_t hot_operations = 0;
    reference_plan plan;
    std::vector<std::byte> contiguous_from;
    std::vector<std::byte> contiguous_to;
    movable::compact_request request;
    request.strategy = strategy;
    for (auto _ : state) {
        std::size_t moved_now = 0;
        {
            auto built = std::make_unique<layout>(s, bytes, &log);
            plan = reference(built->arena);
            movable::compactor<arena_type> compaction(built->arena);
            log.clear();
            movable::bench::evict_caches();
            std::unique_ptr<churn> hot;
            if (s == scenario::hot_cold) {
                hot = std::make_unique<churn>(built->hot, built->hot_live);
            }
            const auto start = clock_type::now();
            const movable::compact_stats stats = compaction.compact(request);
            const double elapsed = seconds_since(start);
            if (hot) {
                hot_operations += hot->stop();
            }
            state.SetIterationTime(elapsed);
            seconds += elapsed;
            moved_now = stats.migrated;
            moved += stats.migrated;
            minimum += stats.minimum_moves;
            freed += stats.max_order_blocks_freed;
            given_up += stats.regions_given_up;
            if (log.overflowed() || log.size() != stats.migrated) {
                report_problem(state, name + ": the owners logged " + std::to_string(log.size()) +
                                          " moves, compact_stats::migrated says " +
                                          std::to_string(stats.migrated));
                return;
            }
            if (built->cold.stored() != built->cold_stored || !built->cold.all_intact() ||
                !built->hot.all_intact()) {
                report_problem(state, name + ": a page was lost or changed by the compaction");
                return;
            }
        }
        // The same copies on a re-created identical arena (its frames touched as the original's).
        {
            auto replay = std::make_unique<layout>(s, bytes, nullptr);
            movable::bench::evict_caches();
            scattered_seconds += replay_seconds(replay->arena.data(), log.moves(0, log.size()));
        }
        const std::size_t moved_bytes = moved_now * frame_size;
        if (moved_bytes > 0) {
            if (contiguous_from.size() < moved_bytes) {
                contiguous_from.assign(moved_bytes, std::byte{1});
                contiguous_to.assign(moved_bytes, std::byte{2});
            }
            movable::bench::evict_caches();
            const auto start = clock_type::now();
            std::memcpy(contiguous_to.data(), contiguous_from.data(), moved_bytes);
            benchmark::DoNotOptimize(contiguous_to.data());
            benchmark::ClobberMemory();
            contiguous_seconds += seconds_since(start);
        }
    }
    const auto runs = static_cast<double>(state.iterations());
    compaction_row row{std::to_string(bytes / mebibyte) + " MiB",
                       scenario_name(s),
                       strategy_name(strategy),
                       static_cast<double>(moved) / runs,
                       static_cast<double>(minimum) / runs,
                       static_cast<double>(plan.moves),
                       static_cast<double>(freed) / runs,
                       static_cast<double>(plan.blocks_gain),
                       seconds * 1e3 / runs,
                       scattered_seconds * 1e3 / runs,
                       contiguous_seconds * 1e3 / runs,
                       static_cast<double>(given_up) / runs};
    state.counters["moved"] = row.moved;
    state.counters["min_moves"] = row.minimum;
    state.counters["reference_min_moves"] = row.reference_moves;
    if (row.minimum > 0) {
        state.counters["moved_x_min"] = row.moved / row.minimum;
    }
    state.counters["blocks_freed"] = row.freed;
    state.counters["blocks_max"] = row.possible;
    if (row.possible > 0) {
        state.counters["freed_x_max"] = row.freed / row.possible;
    }
    state.counters["pinned_blocks"] = static_cast<double>(plan.pinned_blocks);
    state.counters["regions_given_up"] = row.given_up;
    if (row.moved > 0) {
        state.counters["scattered_ms"] = row.scattered_milliseconds;
        state.counters["contiguous_ms"] = row.contiguous_milliseconds;
        state.counters["x_scattered"] = row.milliseconds / row.scattered_milliseconds;
        state.counters["x_contiguous"] = row.milliseconds / row.contiguous_milliseconds;
        state.counters["protocol_ns"] =
            (row.milliseconds - row.scattered_milliseconds) * 1e6 / row.moved;
    }
    if (s == scenario::hot_cold) {
        state.counters["hot_ops_per_ms"] = static_cast<double>(hot_operations) / (seconds * 1e3);
    }
    const std::lock_guard guard(results().mutex);
    std::erase_if(results().compactions, [&](const compaction_row& r) {
        return r.arena == row.arena && r.scenario == row.scenario && r.strategy == row.strategy;
    });
    results().compactions.push_back(row);
}

// ---- incremental_1MiB/<arena>/<strategy> -------------------------------------------------------

double percentile(std::vector<double> values, double p) {
    if (values.empty()) {
        return 0;
    }
    std::sort(values.begin(), values.end());
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
    return values[std::min(values.size() - 1, std::max<std::size_t>(rank, 1) - 1)];
}

void incremental_pass(benchmark::State& state, std::size_t bytes, compact_strategy strategy) {
    constexpr std::size_t budget = mebibyte;
    const std::string name =
        std::to_string(bytes / mebibyte) + " MiB incremental " + strategy_name(strategy);
    move_log log(2 * (bytes / frame_size));
    std::vector<double> pauses;
    std::vector<double> replays;
    for (auto _ : state) {
        std::vector<std::size_t> pass_ends;
        {
            auto built = std::make_unique<layout>(scenario::random_50, bytes, &log);
            movable::compactor<arena_type> compaction(built->arena);
            movable::compact_request request;
            request.strategy = strategy;
            request.max_bytes_per_pass = budget;
            log.clear();
            compaction.begin(request);
            double total = 0;
            for (;;) {
                movable::bench::evict_caches(); // the program ran between passes
                const auto start = clock_type::now();
                const movable::compact_progress progress = compaction.pass();
                const double pause = seconds_since(start);
                pauses.push_back(pause);
                total += pause;
                pass_ends.push_back(log.size());
                if (progress == movable::compact_progress::done) {
                    break;
                }
            }
            const movable::compact_stats stats = compaction.end();
            state.SetIterationTime(total);
            if (log.overflowed() || log.size() != stats.migrated) {
                report_problem(state, name + ": the owners logged " + std::to_string(log.size()) +
                                          " moves, compact_stats::migrated says " +
                                          std::to_string(stats.migrated));
                return;
            }
            if (built->cold.stored() != built->cold_stored || !built->cold.all_intact()) {
                report_problem(state, name + ": a page was lost or changed by the compaction");
                return;
            }
        }
        auto replay = std::make_unique<layout>(scenario::random_50, bytes, nullptr);
        std::size_t first = 0;
        for (const std::size_t end : pass_ends) {
            movable::bench::evict_caches();
            const double seconds = replay_seconds(replay->arena.data(), log.moves(first, end));
            if (end - first == budget / frame_size) {
                replays.push_back(seconds);
            }
            first = end;
        }
    }
    incremental_row row{std::to_string(bytes / mebibyte) + " MiB",
                        strategy_name(strategy),
                        pauses.size(),
                        percentile(pauses, 0.5) * 1e6,
                        percentile(pauses, 0.99) * 1e6,
                        percentile(pauses, 1.0) * 1e6,
                        percentile(replays, 0.5) * 1e6,
                        percentile(replays, 0.99) * 1e6};
    state.counters["passes"] = static_cast<double>(row.passes);
    state.counters["scattered_1MiB_us"] = row.scattered_us;
    state.counters["scattered_1MiB_p99_us"] = row.scattered_p99_us;
    state.counters["p50_us"] = row.p50_us;
    state.counters["p50_x_scattered"] = row.p50_us / row.scattered_us;
    state.counters["p99_x_scattered"] = row.p99_us / row.scattered_us;
    state.counters["max_x_scattered"] = row.max_us / row.scattered_us;
    const std::lock_guard guard(results().mutex);
    std::erase_if(results().incrementals, [&](const incremental_row& r) {
        return r.arena == row.arena && r.strategy == row.strategy;
    });
    results().incrementals.push_back(row);
}

// ---- migrate_one_frame -------------------------------------------------------------------------

void migrate_one_frame(benchmark::State& state) {
    arena_type arena(arena_type::block_bytes);
    {
        page_owner owner(arena, 1, nullptr);
        (void)owner.insert(0);
        movable::arena_targets<arena_type> targets{arena};
        const double memcpy_ns = movable::bench::memcpy_nanoseconds(frame_size);
        movable::bench::loop_timer timer;
        timer.start();
        for (auto _ : state) {
            movable::frame& f = *owner.frame_of(0);
            if (!movable::isolate_movable_frame(f, movable::migrate_mode::async)) {
                state.SkipWithError("isolation failed");
                break;
            }
            movable::frame_list list;
            list.push_back(f);
            const movable::migrate_stats stats =
                movable::migrate_frames(list, targets, movable::migrate_mode::async);
            benchmark::DoNotOptimize(stats.succeeded);
        }
        const double ns = timer.nanoseconds_per_iteration(state);
        state.counters["memcpy_ns"] = memcpy_ns;
        state.counters["x_memcpy"] = ns / memcpy_ns;
        state.counters["protocol_ns"] = ns - memcpy_ns;
        const std::lock_guard guard(results().mutex);
        results().frames.assign(1, frame_row{ns, memcpy_ns});
    }
}

// ---- main --------------------------------------------------------------------------------------

// A value and, when it misses the goal, a '!' after it.
std::string mark(double value, const char* format, bool missed) {
    char text[64];
    std::snprintf(text, sizeof text, format, value);
    return std::string(text) + (missed ? " !" : "");
}

// A count, or a mean of counts over the runs: whole when it is, else with one decimal.
std::string count_text(double value) {
    char text[32];
    std::snprintf(text, sizeof text, value == std::floor(value) ? "%.0f" : "%.1f", value);
    return text;
}

void print_summary(bool large) {
    const summary& r = results();
    if (r.compactions.empty() && r.incrementals.empty() && r.frames.empty()) {
        return;
    }
    std::printf("\nSummary (issue 12; '!' marks a miss of its goal: moved/min <= 1.05 and 0 moved "
                "where the minimum is 0, freed/max = 1, time/scattered <= 1.11, protocol <= 25 ns "
                "per frame, pause p50 and p99 <= 1.5x a scattered 1 MiB memcpy)%s\n",
                large ? "" : "; 1 GiB arenas skipped: run with MOVABLE_BENCH_LARGE=1");
    if (!r.compactions.empty()) {
        std::printf("\n| arena | scenario | strategy | moved | minimum_moves | moved / min | "
                    "blocks freed / max | time ms | / scattered memcpy | / contiguous memcpy | "
                    "protocol ns/frame |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (const compaction_row& row : r.compactions) {
            // scanners plan nothing, so their minimum_moves is 0: the reference plan stands in.
            const bool planned = row.strategy == "least_moves";
            const double minimum = planned ? row.minimum : row.reference_moves;
            const std::string moved_ratio =
                minimum > 0     ? mark(row.moved / minimum, "%.3f", row.moved > 1.05 * minimum)
                : row.moved > 0 ? std::string("min 0 !")
                                : std::string("0 (min 0)");
            const std::string freed = count_text(row.freed) + " / " + count_text(row.possible);
            const std::string freed_ratio =
                row.possible > 0
                    ? freed + " = " +
                          mark(row.freed / row.possible, "%.3f", row.freed < row.possible)
                    : freed + (row.freed > 0 ? " (more than the maximum?)" : "");
            const bool moved_any = row.moved > 0;
            const double protocol =
                moved_any ? (row.milliseconds - row.scattered_milliseconds) * 1e6 / row.moved : 0;
            std::printf(
                "| %s | %s | %s | %s | %s%s | %s | %s | %.3f | %s | %s | %s |\n", row.arena.c_str(),
                row.scenario.c_str(), row.strategy.c_str(), count_text(row.moved).c_str(),
                count_text(minimum).c_str(), planned ? "" : " (ref)", moved_ratio.c_str(),
                freed_ratio.c_str(), row.milliseconds,
                moved_any ? mark(row.milliseconds / row.scattered_milliseconds, "%.2f",
                                 row.milliseconds > 1.11 * row.scattered_milliseconds)
                                .c_str()
                          : "-",
                moved_any
                    ? mark(row.milliseconds / row.contiguous_milliseconds, "%.2f", false).c_str()
                    : "-",
                moved_any ? mark(protocol, "%.0f", protocol > 25).c_str() : "-");
        }
        std::printf("\nminimum_moves: compact_stats::minimum_moves for least_moves; for scanners, "
                    "which plan nothing (minimum_moves 0), the reference plan's count (ref). The "
                    "reference and the maximum of blocks freed are computed by this benchmark from "
                    "the arena before compacting (moved frames go only to free frames of movable "
                    "blocks). hot_cold: another thread frees and allocates pages during the "
                    "compaction (it competes for the arena and the memory bus; the memcpy replays "
                    "run alone), so its maximum and minimum are those of the arena at the start. "
                    "Counts are means over "
                    "the runs. The contiguous memcpy's buffers are touched beforehand; where a "
                    "compaction moves frames into memory never touched (scanners on the packed "
                    "arenas: the top of the arena), its time includes those first-touch page "
                    "faults, as the scattered replay's does.\n");
        bool differs = false;
        for (const compaction_row& row : r.compactions) {
            if (row.strategy == "least_moves" && row.minimum != row.reference_moves) {
                if (!differs) {
                    std::printf("\nminimum_moves differs from this benchmark's reference plan:\n");
                    differs = true;
                }
                std::printf("  %s %s: minimum_moves %.0f, reference %.0f (for %.0f blocks)\n",
                            row.arena.c_str(), row.scenario.c_str(), row.minimum,
                            row.reference_moves, row.possible);
            }
        }
    }
    if (!r.incrementals.empty()) {
        std::printf(
            "\n| incremental, 1 MiB per pass | strategy | passes | p50 us | p99 us | max us "
            "| scattered 1 MiB memcpy us, p50 (p99) | p50 / scattered p50 | p99 / scattered p50 | "
            "max / scattered p50 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (const incremental_row& row : r.incrementals) {
            std::printf(
                "| %s random_50 | %s | %zu | %.0f | %.0f | %.0f | %.0f (%.0f) | %s | %s | %.2f |\n",
                row.arena.c_str(), row.strategy.c_str(), row.passes, row.p50_us, row.p99_us,
                row.max_us, row.scattered_us, row.scattered_p99_us,
                mark(row.p50_us / row.scattered_us, "%.2f", row.p50_us > 1.5 * row.scattered_us)
                    .c_str(),
                mark(row.p99_us / row.scattered_us, "%.2f", row.p99_us > 1.5 * row.scattered_us)
                    .c_str(),
                row.max_us / row.scattered_us);
        }
    }
    for (const frame_row& row : r.frames) {
        std::printf("\n| one 4 KiB frame, warm | ns |\n|---|---:|\n| migrate through the engine "
                    "(arena targets) | %.1f |\n| memcpy | %.1f |\n| protocol | %s |\n",
                    row.engine_ns, row.memcpy_ns,
                    mark(row.engine_ns - row.memcpy_ns, "%.1f", row.engine_ns - row.memcpy_ns > 25)
                        .c_str());
    }
    for (const std::string& problem : r.problems) {
        std::printf("\nPROBLEM: %s\n", problem.c_str());
    }
}

} // namespace

int main(int argc, char** argv) {
    const char* large_variable = std::getenv("MOVABLE_BENCH_LARGE");
    const bool large = large_variable != nullptr && std::string(large_variable) == "1";
    benchmark::AddCustomContext(
        "arenas", large ? "16 MiB, 256 MiB, 1 GiB (MOVABLE_BENCH_LARGE=1)"
                        : "16 MiB, 256 MiB (1 GiB skipped: run with MOVABLE_BENCH_LARGE=1)");
    benchmark::AddCustomContext(
        "cache_eviction_bytes",
        std::to_string(
            std::max(std::size_t{64} << 20, 2 * movable::bench::last_level_cache_bytes())));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    std::vector<std::size_t> sizes = {16 * mebibyte, 256 * mebibyte};
    if (large) {
        sizes.push_back(1024 * mebibyte);
    }
    for (const std::size_t bytes : sizes) {
        // Fewer runs of the larger arenas: each builds its arena twice.
        const benchmark::IterationCount runs = bytes <= 16 * mebibyte ? 5 : 3;
        for (const scenario s : all_scenarios) {
            for (const compact_strategy strategy :
                 {compact_strategy::least_moves, compact_strategy::scanners}) {
                const std::string name = "compaction/" + std::to_string(bytes / mebibyte) + "MiB/" +
                                         scenario_name(s) + "/" + strategy_name(strategy);
                benchmark::RegisterBenchmark(name.c_str(), full_compaction, s, bytes, strategy)
                    ->Iterations(runs)
                    ->UseManualTime()
                    ->Unit(benchmark::kMillisecond);
            }
        }
    }
    const std::size_t incremental_bytes = (large ? 1024 : 256) * mebibyte;
    for (const compact_strategy strategy :
         {compact_strategy::least_moves, compact_strategy::scanners}) {
        const std::string name = "incremental_1MiB/" +
                                 std::to_string(incremental_bytes / mebibyte) + "MiB/" +
                                 strategy_name(strategy);
        benchmark::RegisterBenchmark(name.c_str(), incremental_pass, incremental_bytes, strategy)
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
    }
    benchmark::RegisterBenchmark("migrate_one_frame", migrate_one_frame);
    benchmark::RunSpecifiedBenchmarks();
    print_summary(large);
    benchmark::Shutdown();
    return 0;
}
