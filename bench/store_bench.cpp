// store_bench: every compressed_store (models/compressed_store.hpp) on the same stream of real
// compressed-page sizes (bench/zram_trace.hpp), side by side, ending with one Markdown table
// (issue 14's comparison). For each store in `stores` below:
//   * footprint: the resident growth of a fresh process (this program re-executed, as
//     zspage_pool_bench does) over the live bytes after bench/trace_footprint.hpp's stream (fill,
//     random replacement, 70% freed; every object written), then again after the store's
//     compact(), arena compaction (movable::compactor) and arena.discard_free_memory(0);
//     mimalloc's figures on the same stream (before and after mi_collect(true)) as a reference;
//   * allocate + free pairs on a live set of 16384 objects, one replaced at random per pair, in
//     nanoseconds and as a ratio to mi_malloc/mi_free of the same sizes in the same order,
//     measured in the same run;
//   * map read: map(handle, read), memcpy of the object's bytes out, unmap, per object, as a ratio
//     to memcpy of the same sizes from one contiguous buffer;
//   * compaction, in the footprint process: the time of compact() plus arena compaction over a
//     memcpy (bench/baseline.hpp) of the bytes they moved. The arena's bytes are exact (frames
//     migrated); the store's are estimated as objects moved × the mean live object size then
//     (the stores count objects moved, not bytes).
// With --benchmark_repetitions=N the table shows each figure's median over the repetitions.
// The stores are tests/support/compressed_stores.hpp's list: adding one there adds it here.
#include <movable/compaction.hpp>
#include <movable/models/compressed_store.hpp>

#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "allocators.hpp"
#include "baseline.hpp"
#include "examples/support/resident.hpp"
#include "fresh_process.hpp"
#include "tests/support/compressed_stores.hpp"
#include "trace_footprint.hpp"
#include "zram_trace.hpp"

namespace {

using arena_type = movable::frame_arena<>; // 4 KiB frames
constexpr std::size_t frame_size = arena_type::frame_size;

// ---- the stores ------------------------------------------------------------------------------

template <class Store>
struct named_store {
    static_assert(movable::detail::check_compressed_store<Store>());
    using type = Store;
    static constexpr const char* name = movable::test::store_name<Store>;
};

template <class... Stores>
struct store_list {};

// Every store the benchmark compares: the project's list of compressed stores
// (tests/support/compressed_stores.hpp; a new store is one entry there).
template <class... Stores>
using named_stores = store_list<named_store<Stores>...>;
using stores = named_stores<MOVABLE_COMPRESSED_STORES_OVER(arena_type)>;

template <class... Entries, class Fn>
void for_each_store(store_list<Entries...>, Fn&& fn) {
    (fn(Entries{}), ...);
}

// ---- allocators over the trace --------------------------------------------------------------

template <class Store>
struct store_allocator {
    using handle = typename Store::handle;
    Store& store;
    std::vector<std::byte> bytes = std::vector<std::byte>(frame_size);
    handle allocate(std::size_t size) { return store.allocate(size); }
    void deallocate(handle h, std::size_t) { store.deallocate(h); }
    void fill(handle h, std::size_t size, int value) {
        std::memset(bytes.data(), value, size);
        store.write(h, std::span(bytes).first(size));
    }
};

#if MOVABLE_BENCH_HAVE_MIMALLOC
struct mimalloc_allocator {
    using handle = void*;
    handle allocate(std::size_t size) { return mi_malloc(size); }
    void deallocate(handle p, std::size_t) { mi_free(p); }
    void fill(handle p, std::size_t size, int value) { std::memset(p, value, size); }
};
constexpr const char* mimalloc_name = "mimalloc";
#endif

// ---- 1. allocate + free pairs ---------------------------------------------------------------

struct pair_workload {
    static constexpr std::size_t live = 16384;
    static constexpr std::size_t steps = std::size_t{1} << 16;
    std::vector<std::uint32_t> initial = movable::bench::zram_trace::sizes(live, 21);
    std::vector<std::uint32_t> sizes = movable::bench::zram_trace::sizes(steps, 22);
    std::vector<std::uint32_t> victims = [] {
        std::mt19937_64 rng(23);
        std::vector<std::uint32_t> v(steps);
        for (std::uint32_t& i : v) {
            i = static_cast<std::uint32_t>(rng() % live);
        }
        return v;
    }();
};
const pair_workload& the_pairs() {
    static const pair_workload w;
    return w;
}

// A live set; step() frees one object at random and allocates the next size in its place.
template <class Allocator>
class churn {
public:
    explicit churn(Allocator& allocator)
        : allocator_(allocator), objects_(pair_workload::live), sizes_(the_pairs().initial) {
        for (std::size_t i = 0; i < pair_workload::live; ++i) {
            objects_[i] = allocator_.allocate(sizes_[i]);
        }
    }
    ~churn() { // NOLINT(bugprone-exception-escape): a broken handle ends the benchmark
        for (std::size_t i = 0; i < objects_.size(); ++i) {
            allocator_.deallocate(objects_[i], sizes_[i]);
        }
    }
    churn(const churn&) = delete;
    churn& operator=(const churn&) = delete;

    void step() {
        const pair_workload& w = the_pairs();
        const std::size_t k = step_++ % pair_workload::steps;
        const std::size_t victim = w.victims[k];
        allocator_.deallocate(objects_[victim], sizes_[victim]);
        sizes_[victim] = w.sizes[k];
        objects_[victim] = allocator_.allocate(sizes_[victim]);
    }

private:
    Allocator& allocator_;
    std::vector<typename Allocator::handle> objects_;
    std::vector<std::uint32_t> sizes_;
    std::size_t step_ = 0;
};

#if MOVABLE_BENCH_HAVE_MIMALLOC
// mimalloc's nanoseconds per pair: the best of a few timed batches on a warm set.
double mimalloc_pair_nanoseconds() {
    mimalloc_allocator allocator;
    churn<mimalloc_allocator> c(allocator);
    for (std::size_t i = 0; i < pair_workload::steps; ++i) {
        c.step();
    }
    double best = 1e300;
    for (int round = 0; round < 5; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < pair_workload::steps; ++i) {
            c.step();
        }
        const auto stop = std::chrono::steady_clock::now();
        best = std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() /
                                  static_cast<double>(pair_workload::steps));
    }
    return best;
}
#endif

template <class Store>
void pairs(benchmark::State& state) {
    arena_type arena(std::size_t{256} << 20);
    Store store(arena);
    store_allocator<Store> allocator{store};
    movable::bench::loop_timer timer;
    {
        churn<store_allocator<Store>> c(allocator);
        timer.start();
        for (auto _ : state) {
            c.step();
        }
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    state.SetItemsProcessed(state.iterations());
    state.counters["pair_ns"] = ns;
#if MOVABLE_BENCH_HAVE_MIMALLOC
    const double mimalloc_ns = mimalloc_pair_nanoseconds();
    state.counters["mimalloc_pair_ns"] = mimalloc_ns;
    state.counters["x_mimalloc"] = ns / mimalloc_ns;
#endif
}

// ---- 2. map read ----------------------------------------------------------------------------

template <class Store>
void map_read(benchmark::State& state) {
    constexpr std::size_t objects = 4096;
    arena_type arena(std::size_t{64} << 20);
    Store store(arena);
    const std::vector<std::uint32_t> sizes = movable::bench::zram_trace::sizes(objects, 31);
    std::vector<typename Store::handle> handles;
    std::vector<std::byte> buffer(frame_size, std::byte{7});
    for (std::uint32_t size : sizes) {
        handles.push_back(store.allocate(size));
        store.write(handles.back(), std::span(buffer).first(size));
    }
    movable::bench::loop_timer timer;
    std::size_t i = 0;
    std::size_t bytes = 0;
    timer.start();
    for (auto _ : state) {
        const std::size_t k = i++ % objects;
        const typename Store::mapping m = store.map(handles[k], movable::store_access::read);
        std::memcpy(buffer.data(), m.bytes().data(), m.bytes().size());
        benchmark::DoNotOptimize(buffer.data());
        bytes += sizes[k];
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    // memcpy of the same sizes from one contiguous buffer, the best of a few rounds.
    std::size_t total = 0;
    for (std::uint32_t size : sizes) {
        total += size;
    }
    const std::vector<std::byte> source(total, std::byte{1});
    double memcpy_ns = 1e300;
    for (int round = 0; round < 7; ++round) {
        const auto start = std::chrono::steady_clock::now();
        std::size_t offset = 0;
        for (std::uint32_t size : sizes) {
            std::memcpy(buffer.data(), source.data() + offset, size);
            benchmark::DoNotOptimize(buffer.data());
            benchmark::ClobberMemory();
            offset += size;
        }
        const auto stop = std::chrono::steady_clock::now();
        memcpy_ns =
            std::min(memcpy_ns, std::chrono::duration<double, std::nano>(stop - start).count() /
                                    static_cast<double>(objects));
    }
    for (const typename Store::handle h : handles) {
        store.deallocate(h);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
    state.counters["map_ns"] = ns;
    state.counters["memcpy_ns"] = memcpy_ns;
    state.counters["x_memcpy"] = ns / memcpy_ns;
}

// ---- 3. footprint and compaction, in a fresh process -----------------------------------------

enum figure : std::size_t {
    rss_after_churn,   // resident growth / live bytes right after the stream
    rss_after_release, // the same after compact(), arena compaction and discard_free_memory
    live_bytes,
    store_compact_ns,  // compact()
    arena_compact_ns,  // movable::compactor's compact()
    store_bytes_moved, // objects moved by compact() × mean live object size (estimate)
    arena_bytes_moved, // frames migrated × frame size
    objects_moved,     // by compact()
    frames_before,     // the store's frames after the stream
    frames_after,      // and after compact()
    figure_count
};

constexpr std::size_t footprint_arena_bytes = std::size_t{1} << 30;

template <class Store>
std::vector<double> store_footprint_here() {
    (void)movable::bench::the_trace();
    movable::bench::trace_run<store_allocator<Store>> run;
    std::vector<double> figures(figure_count);
    const std::size_t before = movable::support::resident_bytes();
    arena_type arena(footprint_arena_bytes);
    Store store(arena);
    store_allocator<Store> allocator{store};
    run.run(allocator);
    const auto live = static_cast<double>(run.live_bytes());
    figures[live_bytes] = live;
    figures[rss_after_churn] =
        static_cast<double>(movable::support::resident_bytes() - before) / live;
    const auto stats_before = store.stats();
    figures[frames_before] = static_cast<double>(stats_before.frames_in_use);
    const auto t0 = std::chrono::steady_clock::now();
    store.compact();
    const auto t1 = std::chrono::steady_clock::now();
    const movable::compact_stats arena_stats = movable::compactor<arena_type>(arena).compact();
    const auto t2 = std::chrono::steady_clock::now();
    arena.discard_free_memory(0);
    figures[rss_after_release] =
        static_cast<double>(movable::support::resident_bytes() - before) / live;
    const auto stats_after = store.stats();
    figures[frames_after] = static_cast<double>(stats_after.frames_in_use);
    figures[store_compact_ns] = std::chrono::duration<double, std::nano>(t1 - t0).count();
    figures[arena_compact_ns] = std::chrono::duration<double, std::nano>(t2 - t1).count();
    double moved = -1; // objects_moved is not part of compressed_store: -1 (n/a) without it
    if constexpr (requires { stats_after.objects_moved; }) {
        moved = static_cast<double>(stats_after.objects_moved - stats_before.objects_moved);
    }
    figures[objects_moved] = moved;
    figures[store_bytes_moved] = moved < 0 ? -1.0
                                 : stats_before.objects_in_use == 0
                                     ? 0.0
                                     : moved * static_cast<double>(stats_before.bytes_stored) /
                                           static_cast<double>(stats_before.objects_in_use);
    figures[arena_bytes_moved] = static_cast<double>(arena_stats.bytes_moved);
    run.free_all(allocator);
    return figures;
}

constexpr const char* footprint_child_flag = "--store-footprint-child=";

std::vector<double> footprint_child(const std::string& which) {
    std::vector<double> values;
    for_each_store(stores{}, [&](auto entry) {
        using entry_type = decltype(entry);
        if (which == entry_type::name) {
            values = store_footprint_here<typename entry_type::type>();
        }
    });
#if MOVABLE_BENCH_HAVE_MIMALLOC
    if (which == mimalloc_name) {
        // {after mi_collect(true), before it, live bytes}
        values = movable::bench::allocator_trace_footprint<mimalloc_allocator>(
            &movable::bench::mimalloc_give_back);
    }
#endif
    return values;
}

std::vector<double> footprint_in_fresh_process(const std::string& which, std::size_t count) {
    return movable::bench::figures_in_fresh_process(footprint_child_flag, which, count);
}

template <class Entry>
void footprint(benchmark::State& state) {
    std::vector<double> f;
    for (auto _ : state) {
        f = footprint_in_fresh_process(Entry::name, figure_count);
    }
    if (f.empty()) {
        state.SkipWithError("the footprint process failed");
        return;
    }
    const bool known = f[store_bytes_moved] >= 0; // the store counts the objects it moved
    const double moved = known ? f[store_bytes_moved] + f[arena_bytes_moved] : -1.0;
    const double compact_ns = f[store_compact_ns] + f[arena_compact_ns];
    const double memcpy_ns =
        moved > 0 ? movable::bench::memcpy_nanoseconds(static_cast<std::size_t>(moved)) : 0.0;
    state.counters["rss_churn"] = f[rss_after_churn];
    state.counters["rss_released"] = f[rss_after_release];
    state.counters["live_MiB"] = f[live_bytes] / (1 << 20);
    state.counters["frames_before"] = f[frames_before];
    state.counters["frames_after"] = f[frames_after];
    state.counters["objects_moved"] = f[objects_moved];
    state.counters["compact_ms"] = f[store_compact_ns] / 1e6;
    state.counters["arena_compact_ms"] = f[arena_compact_ns] / 1e6;
    state.counters["moved_MiB"] = known ? moved / (1 << 20) : -1.0;
    state.counters["x_memcpy"] = memcpy_ns > 0 ? compact_ns / memcpy_ns : -1.0;
}

#if MOVABLE_BENCH_HAVE_MIMALLOC
void footprint_mimalloc(benchmark::State& state) {
    std::vector<double> f;
    for (auto _ : state) {
        f = footprint_in_fresh_process(mimalloc_name, 3);
    }
    if (f.empty()) {
        state.SkipWithError("the footprint process failed");
        return;
    }
    state.counters["rss_churn"] = f[1];
    state.counters["rss_released"] = f[0];
    state.counters["live_MiB"] = f[2] / (1 << 20);
}
#endif

// ---- the table --------------------------------------------------------------------------------

// Prints as the console reporter does and keeps every repetition's counters, by benchmark name.
class table_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            if (run.run_type == Run::RT_Iteration && !run.error_occurred) {
                auto& counters = figures_[run.run_name.function_name];
                for (const auto& [name, counter] : run.counters) {
                    counters[name].push_back(counter.value);
                }
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }

    // The median of a counter over the repetitions; negative when it was not measured.
    double median(const std::string& benchmark, const std::string& counter) const {
        const auto b = figures_.find(benchmark);
        if (b == figures_.end()) {
            return -1;
        }
        const auto c = b->second.find(counter);
        if (c == b->second.end() || c->second.empty()) {
            return -1;
        }
        std::vector<double> values = c->second;
        std::sort(values.begin(), values.end());
        const std::size_t n = values.size();
        return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }

private:
    std::map<std::string, std::map<std::string, std::vector<double>>> figures_;
};

std::string cell(double value, const char* format) {
    if (value < 0) {
        return "n/a";
    }
    char text[64];
    std::snprintf(text, sizeof text, format, value);
    return text;
}

void print_table(const table_reporter& r) {
    std::printf("\n| store | footprint ÷ live, after churn | after compaction + release | "
                "alloc+free pair | × mimalloc | map read | × memcpy | compaction (store + "
                "arena) | × memcpy of moved bytes |\n"
                "|---|---|---|---|---|---|---|---|---|\n");
    for_each_store(stores{}, [&](auto entry) {
        const std::string name = decltype(entry)::name;
        const std::string fp = "footprint/" + name;
        const double compact_ms =
            r.median(fp, "compact_ms") < 0
                ? -1
                : r.median(fp, "compact_ms") + r.median(fp, "arena_compact_ms");
        std::printf("| %s | %s | %s | %s ns | %s | %s ns | %s | %s ms (%s MiB moved) | %s |\n",
                    name.c_str(), cell(r.median(fp, "rss_churn"), "%.2f").c_str(),
                    cell(r.median(fp, "rss_released"), "%.2f").c_str(),
                    cell(r.median("pairs/" + name, "pair_ns"), "%.0f").c_str(),
                    cell(r.median("pairs/" + name, "x_mimalloc"), "%.2f").c_str(),
                    cell(r.median("map_read/" + name, "map_ns"), "%.0f").c_str(),
                    cell(r.median("map_read/" + name, "x_memcpy"), "%.2f").c_str(),
                    cell(compact_ms, "%.1f").c_str(),
                    cell(r.median(fp, "moved_MiB"), "%.1f").c_str(),
                    cell(r.median(fp, "x_memcpy"), "%.1f").c_str());
    });
#if MOVABLE_BENCH_HAVE_MIMALLOC
    std::string any_store;
    for_each_store(stores{}, [&](auto entry) {
        if (any_store.empty()) {
            any_store = decltype(entry)::name;
        }
    });
    std::printf("| mimalloc (reference) | %s | %s (mi_collect) | %s ns | 1 | | | | |\n",
                cell(r.median("footprint/mimalloc", "rss_churn"), "%.2f").c_str(),
                cell(r.median("footprint/mimalloc", "rss_released"), "%.2f").c_str(),
                cell(r.median("pairs/" + any_store, "mimalloc_pair_ns"), "%.0f").c_str());
#endif
    std::printf("\nlive bytes after the stream: %s MiB; figures are medians over the "
                "repetitions\n",
                cell(r.median("footprint/zspage_pool", "live_MiB"), "%.1f").c_str());
}

} // namespace

int main(int argc, char** argv) {
    if (const auto code =
            movable::bench::run_if_child(argc, argv, footprint_child_flag, footprint_child)) {
        return *code;
    }
    benchmark::AddCustomContext("sizes", "real compressed 4 KiB pages (bench/zram_trace.hpp)");
    if (!movable::bench::add_allocator_context("store_bench")) {
        return 1;
    }
    for_each_store(stores{}, [](auto entry) {
        using entry_type = decltype(entry);
        using store = typename entry_type::type;
        const std::string name = entry_type::name;
        benchmark::RegisterBenchmark(("footprint/" + name).c_str(), &footprint<entry_type>)
            ->Iterations(1)
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("pairs/" + name).c_str(), &pairs<store>);
        benchmark::RegisterBenchmark(("map_read/" + name).c_str(), &map_read<store>);
    });
#if MOVABLE_BENCH_HAVE_MIMALLOC
    benchmark::RegisterBenchmark("footprint/mimalloc", &footprint_mimalloc)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
#endif
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    table_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    print_table(reporter);
    benchmark::Shutdown();
    return 0;
}
