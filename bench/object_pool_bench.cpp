// object_pool against the heap, for 64-byte objects, side by side in one run:
//   * emplace + destroy pairs: on an empty pool (each step makes one object and ends it), and
//     in a steady state (65536 live objects; each step ends one picked at random and makes a
//     new one in its place), as ratios to the same steps done by placement new into memory from
//     glibc's malloc (then ~T and free), mimalloc's mi_malloc (mi_free) and jemalloc's mallocx
//     (dallocx);
//   * a pinned read, `pool.pin(h)->key` over handles picked at random from the live set, as a
//     ratio to reading the same field of the same objects through raw pointers in the same
//     order; a live set that fits the L2 cache and one that does not;
//   * compact() after destroying 60% of 100000 objects at random, caches cold: bytes moved
//     (objects_moved x sizeof(T)) per second, as a ratio to memcpy of the same object-sized
//     pieces between the same offsets of a buffer as large as the arena's used part, also cold
//     (the pieces are the objects whose address compact() changed); frames after compaction
//     per frame the live objects need; and moves per the fewest that could pack them. For a
//     trivially copyable record (moved by memcpy) and one holding a std::string (moved by
//     move-construct + destroy).
//
// Every ratio is measured inside the benchmark that reports it, in the same process: the
// allocators and raw reads right after the pool's loop (the best of a few timed batches of the
// same steps), the memcpy pieces right after each compaction. Each allocator is called through
// its own API, so every column measures what it says even though linking mimalloc or jemalloc
// replaces the process-wide malloc (glibc_malloc.hpp); the context lines say where each
// resolved to.
#include <movable/models/object_pool.hpp>

#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "allocators.hpp"
#include "baseline.hpp"
#include "summary_table.hpp"
#include "threaded_steps.hpp"

namespace {

using movable::bench::glibc;
using arena_type = movable::frame_arena<>; // 4 KiB frames, 4 MiB max-order blocks
constexpr std::size_t arena_bytes = std::size_t{64} << 20;

// The object: 64 bytes, trivially copyable (compaction moves it by memcpy).
struct record {
    std::uint64_t key;
    std::array<std::uint64_t, 7> payload;
    explicit record(std::uint64_t k) noexcept : key(k), payload{k, k, k, k, k, k, k} {}
};
static_assert(sizeof(record) == 64 && movable::relocation_traits<record>::by_memcpy);

// 64 bytes holding a short std::string (inside the object: libstdc++'s string then points into
// itself), so not trivially relocatable: compaction moves it by move-construct + destroy.
struct named_record {
    std::string name;
    std::uint64_t key;
    std::array<std::byte, 64 - sizeof(std::string) - sizeof(std::uint64_t)> padding{};
    explicit named_record(std::uint64_t k) : name(std::to_string(k)), key(k) {}
};
static_assert(sizeof(named_record) == 64 && !movable::relocation_traits<named_record>::by_memcpy);

template <class T>
using pool_of = movable::object_pool<T, arena_type>;

// `count` indexes below `below` (all 0 when below is 0), the same for every run.
std::vector<std::uint32_t> random_indexes(std::size_t count, std::size_t below, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::uint32_t> indexes(count);
    for (auto& i : indexes) {
        i = below == 0 ? 0 : static_cast<std::uint32_t>(rng() % below);
    }
    return indexes;
}

// Best nanoseconds per step of `batch` steps of `run(step)`, over a few timed batches.
template <class Run>
double best_nanoseconds_per_step(std::size_t batch, Run&& run) {
    double best = 1e300;
    for (int round = 0; round < 7; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < batch; ++i) {
            run(i);
        }
        const auto stop = std::chrono::steady_clock::now();
        best = std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() /
                                  static_cast<double>(batch));
    }
    return best;
}

// ---- 1. emplace + destroy pairs ---------------------------------------------------------------

constexpr std::size_t steps = std::size_t{1} << 16;
constexpr std::size_t steady_live = std::size_t{1} << 16; // 4 MiB of objects: more than L2

record* construct(void* memory, std::uint64_t key) {
    if (memory == nullptr) {
        throw std::bad_alloc();
    }
    return ::new (memory) record(key);
}

// "new" and "delete" of a record over each allocator's own API.
struct glibc_objects {
    using handle = record*;
    movable::bench::libc_functions libc = glibc();
    handle make(std::uint64_t key) const { return construct(libc.malloc(sizeof(record)), key); }
    void end(handle r) const {
        std::destroy_at(r);
        libc.free(r);
    }
};
#if MOVABLE_BENCH_HAVE_MIMALLOC
struct mimalloc_objects {
    using handle = record*;
    static handle make(std::uint64_t key) { return construct(mi_malloc(sizeof(record)), key); }
    static void end(handle r) {
        std::destroy_at(r);
        mi_free(r);
    }
};
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
struct jemalloc_objects {
    using handle = record*;
    static handle make(std::uint64_t key) { return construct(mallocx(sizeof(record), 0), key); }
    static void end(handle r) {
        std::destroy_at(r);
        dallocx(r, 0);
    }
};
#endif
struct pool_objects {
    using handle = movable::object_handle<record>;
    pool_of<record>& pool;
    handle make(std::uint64_t key) const { return pool.emplace(key); }
    void end(handle h) const { pool.destroy(h); }
};

// `live` objects, then one step after another: the same sequence for every allocator.
template <class Objects>
class churn {
public:
    churn(Objects& objects, std::size_t live)
        : objects_(objects), handles_(live), victims_(random_indexes(steps, live, 3)) {
        for (std::size_t i = 0; i < live; ++i) {
            handles_[i] = objects_.make(i);
        }
    }
    // A throwing destroy (a broken handle) ends the benchmark, as it should.
    ~churn() { // NOLINT(bugprone-exception-escape)
        for (const auto h : handles_) {
            objects_.end(h);
        }
    }
    churn(const churn&) = delete;
    churn& operator=(const churn&) = delete;

    // One make + end pair.
    void step() {
        const std::size_t k = step_++ % steps;
        if (handles_.empty()) {
            objects_.end(objects_.make(k));
            return;
        }
        const std::uint32_t victim = victims_[k];
        objects_.end(handles_[victim]);
        handles_[victim] = objects_.make(k);
    }

private:
    Objects& objects_;
    std::vector<typename Objects::handle> handles_;
    std::vector<std::uint32_t> victims_;
    std::size_t step_ = 0;
};

// Nanoseconds per pair on a warm live set: the best of a few batches of the same steps.
template <class Objects>
double pair_nanoseconds(Objects& objects, std::size_t live) {
    churn<Objects> c(objects, live);
    for (std::size_t i = 0; i < steps; ++i) {
        c.step();
    }
    return best_nanoseconds_per_step(steps, [&](std::size_t) { c.step(); });
}

template <class Objects>
void run_pairs(benchmark::State& state, Objects& objects) {
    churn<Objects> c(objects, static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        c.step();
    }
    state.SetItemsProcessed(state.iterations());
}

void pair_glibc(benchmark::State& state) {
    glibc_objects objects;
    run_pairs(state, objects);
}
BENCHMARK(pair_glibc)->ArgName("live")->Arg(0)->Arg(steady_live);
#if MOVABLE_BENCH_HAVE_MIMALLOC
void pair_mimalloc(benchmark::State& state) {
    mimalloc_objects objects;
    run_pairs(state, objects);
}
BENCHMARK(pair_mimalloc)->ArgName("live")->Arg(0)->Arg(steady_live);
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
void pair_jemalloc(benchmark::State& state) {
    jemalloc_objects objects;
    run_pairs(state, objects);
}
BENCHMARK(pair_jemalloc)->ArgName("live")->Arg(0)->Arg(steady_live);
#endif

// The pool's pairs, with the ratios to each allocator measured in this run.
void pair_object_pool(benchmark::State& state) {
    const auto live = static_cast<std::size_t>(state.range(0));
    arena_type arena(arena_bytes);
    pool_of<record> pool(arena);
    pool_objects objects{pool};
    double ns = 0;
    {
        churn<pool_objects> c(objects, live);
        movable::bench::loop_timer timer;
        timer.start();
        for (auto _ : state) {
            c.step();
        }
        ns = timer.nanoseconds_per_iteration(state);
        state.counters["frames_per_min_frame"] = pool.stats().frames_per_min_frame();
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["pool_ns"] = ns;
    glibc_objects g;
    state.counters["x_glibc"] = ns / pair_nanoseconds(g, live);
#if MOVABLE_BENCH_HAVE_MIMALLOC
    mimalloc_objects m;
    state.counters["x_mimalloc"] = ns / pair_nanoseconds(m, live);
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
    jemalloc_objects j;
    state.counters["x_jemalloc"] = ns / pair_nanoseconds(j, live);
#endif
}
BENCHMARK(pair_object_pool)->ArgName("live")->Arg(0)->Arg(steady_live);

// The same steady-state pairs from 4 threads at once, each with its own quarter of the live set,
// on one pool (or one heap): items/s are pairs per second over all threads. The pool's threads
// take from and give to their own caches; compare items_per_second across the four.
template <class Objects>
void run_pairs_threaded(benchmark::State& state, Objects objects) {
    churn<Objects> c(objects, steady_live / 4);
    for (auto _ : state) {
        c.step();
    }
    state.SetItemsProcessed(state.iterations());
}
void pair_4_threads_glibc(benchmark::State& state) {
    run_pairs_threaded(state, glibc_objects{});
}
BENCHMARK(pair_4_threads_glibc)->Threads(4)->UseRealTime();
#if MOVABLE_BENCH_HAVE_MIMALLOC
void pair_4_threads_mimalloc(benchmark::State& state) {
    run_pairs_threaded(state, mimalloc_objects{});
}
BENCHMARK(pair_4_threads_mimalloc)->Threads(4)->UseRealTime();
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
void pair_4_threads_jemalloc(benchmark::State& state) {
    run_pairs_threaded(state, jemalloc_objects{});
}
BENCHMARK(pair_4_threads_jemalloc)->Threads(4)->UseRealTime();
#endif
void pair_4_threads_object_pool(benchmark::State& state) {
    static arena_type arena(arena_bytes); // shared by the 4 threads, for the whole run
    static pool_of<record> pool(arena);
    run_pairs_threaded(state, pool_objects{pool});
}
BENCHMARK(pair_4_threads_object_pool)->Threads(4)->UseRealTime();

// One thread's share of the 4-thread pairs: its own quarter of the steady live set.
template <class Objects>
struct pair_worker {
    explicit pair_worker(Objects o) : objects(std::move(o)), live(objects, steady_live / 4) {}
    void step() { live.step(); }
    Objects objects;
    churn<Objects> live;
};

// Wall nanoseconds per pair with 4 threads at once (inverse throughput), each with its own
// quarter of the steady live set, on one pool (or one heap).
template <class Objects>
double four_thread_pair_nanoseconds(const Objects& prototype) {
    return movable::bench::threaded_nanoseconds_per_step(
        4, 8 * steps, [&](unsigned) { return std::make_unique<pair_worker<Objects>>(prototype); });
}

// The 4-thread steady-state pairs as ratios to each allocator doing the same from 4 threads,
// measured in this run.
void pair_4_threads(benchmark::State& state) {
    arena_type arena(arena_bytes);
    pool_of<record> pool(arena);
    double ns = 0;
    for (auto _ : state) {
        ns = four_thread_pair_nanoseconds(pool_objects{pool});
    }
    state.counters["pool_ns"] = ns;
#if MOVABLE_BENCH_HAVE_MIMALLOC
    state.counters["x_mimalloc"] = ns / four_thread_pair_nanoseconds(mimalloc_objects{});
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
    state.counters["x_jemalloc"] = ns / four_thread_pair_nanoseconds(jemalloc_objects{});
#endif
    state.counters["x_glibc"] = ns / four_thread_pair_nanoseconds(glibc_objects{});
}
BENCHMARK(pair_4_threads)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---- 2. pinned reads --------------------------------------------------------------------------

// `live` records in a pool, the same objects' addresses as raw pointers (valid here because
// nothing compacts or migrates while the benchmark runs), and one random order of reads.
struct read_fixture {
    static constexpr std::size_t reads = std::size_t{1} << 16; // a power of two
    arena_type arena{arena_bytes};
    pool_of<record> pool{arena};
    std::vector<movable::object_handle<record>> handles;
    std::vector<const record*> pointers;
    std::vector<std::uint32_t> order;

    explicit read_fixture(std::size_t live) : order(random_indexes(reads, live, 5)) {
        for (std::size_t i = 0; i < live; ++i) {
            handles.push_back(pool.emplace(i));
            pointers.push_back(pool.pin(handles.back()).get());
        }
    }
    std::uint64_t read_pinned(std::size_t i) {
        return pool.pin(handles[order[i & (reads - 1)]])->key;
    }
    std::uint64_t read_raw(std::size_t i) const { return pointers[order[i & (reads - 1)]]->key; }
};

void pinned_read_raw_pointer(benchmark::State& state) {
    const read_fixture f(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    std::uint64_t sum = 0;
    for (auto _ : state) {
        sum += f.read_raw(i++);
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations());
}
// 4096 objects (256 KiB) fit L2; 262144 (16 MiB) do not.
BENCHMARK(pinned_read_raw_pointer)->ArgName("live")->Arg(4096)->Arg(262144);

// `pool.pin(h)->key`, with the ratio to the raw pointers' reads measured in this run.
void pinned_read(benchmark::State& state) {
    read_fixture f(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    std::uint64_t sum = 0;
    movable::bench::loop_timer timer;
    timer.start();
    for (auto _ : state) {
        sum += f.read_pinned(i++);
        benchmark::DoNotOptimize(sum);
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    const double raw_ns = best_nanoseconds_per_step(read_fixture::reads, [&](std::size_t k) {
        sum += f.read_raw(k);
        benchmark::DoNotOptimize(sum);
    });
    state.SetItemsProcessed(state.iterations());
    state.counters["raw_ns"] = raw_ns;
    state.counters["x_raw_pointer"] = ns / raw_ns;
}
BENCHMARK(pinned_read)->ArgName("live")->Arg(4096)->Arg(262144);

// ---- 3. compact() -----------------------------------------------------------------------------

// Reads and writes one word of every cache line of a buffer at least twice the last-level
// cache, so that what the next timed step touches comes from memory.
void evict_caches() {
    static std::vector<std::uint64_t> sweep = [] {
        const long l3 = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
        const std::size_t bytes = std::max<std::size_t>(
            std::size_t{64} << 20, l3 > 0 ? 2 * static_cast<std::size_t>(l3) : 0);
        return std::vector<std::uint64_t>(bytes / sizeof(std::uint64_t));
    }();
    for (std::size_t i = 0; i < sweep.size(); i += 64 / sizeof(std::uint64_t)) {
        sweep[i] += 1;
    }
    benchmark::ClobberMemory();
}

// One object's move by compact(): offsets from the arena's first byte.
struct piece {
    std::size_t from;
    std::size_t to;
};

// The fewest moves that pack the live objects (at `offsets` from the arena's start) into
// stats.min_frames frames: empty the sparsest frames into the holes of the others.
std::size_t fewest_moves_to_pack(const std::vector<std::size_t>& offsets,
                                 const movable::object_pool_stats& stats) {
    std::vector<std::size_t> per_frame;
    for (const std::size_t offset : offsets) {
        const std::size_t index = offset / arena_type::frame_size;
        per_frame.resize(std::max(per_frame.size(), index + 1));
        ++per_frame[index];
    }
    std::erase(per_frame, 0);
    std::sort(per_frame.begin(), per_frame.end());
    const std::size_t emptied = per_frame.size() - stats.min_frames;
    return std::accumulate(per_frame.begin(), per_frame.begin() + static_cast<long>(emptied),
                           std::size_t{0});
}

template <class T>
void compact_after_destroying_60_percent(benchmark::State& state) {
    constexpr std::size_t objects = 100000;
    constexpr std::size_t kept = objects * 2 / 5;
    arena_type arena(arena_bytes);
    const std::byte* const base = arena.address_of(arena.frame_at(0));
    std::vector<std::byte> mirror; // the arena's used part, for the memcpy baseline
    double compact_seconds = 0;
    double memcpy_seconds = 0;
    std::size_t moved = 0;     // stats().objects_moved
    std::size_t relocated = 0; // objects whose address changed: the memcpy pieces
    std::size_t fewest_moves = 0;
    std::size_t freed = 0;
    double spread_before = 0;
    double spread_after = 0;
    std::size_t freeable_after = 0;
    for (auto _ : state) {
        pool_of<T> pool(arena);
        std::vector<movable::object_handle<T>> handles;
        for (std::size_t i = 0; i < objects; ++i) {
            handles.push_back(pool.emplace(i));
        }
        std::shuffle(handles.begin(), handles.end(), std::mt19937(7));
        for (std::size_t i = kept; i < objects; ++i) {
            pool.destroy(handles[i]);
        }
        handles.resize(kept);
        const auto offset_of = [&](movable::object_handle<T> h) {
            return static_cast<std::size_t>(reinterpret_cast<const std::byte*>(pool.pin(h).get()) -
                                            base);
        };
        std::vector<std::size_t> before(kept);
        for (std::size_t i = 0; i < kept; ++i) {
            before[i] = offset_of(handles[i]);
        }
        const movable::object_pool_stats stats_before = pool.stats();
        fewest_moves += fewest_moves_to_pack(before, stats_before);

        evict_caches();
        const auto start = std::chrono::steady_clock::now();
        freed += pool.compact();
        const auto stop = std::chrono::steady_clock::now();
        const double seconds = std::chrono::duration<double>(stop - start).count();
        const movable::object_pool_stats stats_after = pool.stats();

        // The same pieces, memcpy'd between the same offsets of the mirror: grouped by target
        // frame, sources in address order, as compact() fills one dense slab at a time.
        std::vector<piece> pieces;
        std::size_t extent = 0;
        for (std::size_t i = 0; i < kept; ++i) {
            const std::size_t to = offset_of(handles[i]);
            if (to != before[i]) {
                pieces.push_back({before[i], to});
                extent = std::max({extent, before[i] + sizeof(T), to + sizeof(T)});
            }
        }
        // compact() may move an object twice (out of a slab it had filled earlier in the pass,
        // when the picks come out of order), never leave one moved without counting it.
        const std::size_t moves = stats_after.objects_moved - stats_before.objects_moved;
        if (pieces.size() > moves) {
            state.SkipWithError("objects whose address changed > stats().objects_moved");
            return;
        }
        std::sort(pieces.begin(), pieces.end(), [](const piece& a, const piece& b) {
            constexpr std::size_t frame = arena_type::frame_size;
            return a.to / frame != b.to / frame ? a.to / frame < b.to / frame : a.from < b.from;
        });
        if (mirror.size() < extent) {
            mirror.resize(extent, std::byte{1}); // written: resident, like the arena's frames
        }
        evict_caches();
        const auto copy_start = std::chrono::steady_clock::now();
        for (const piece& p : pieces) {
            std::memcpy(mirror.data() + p.to, mirror.data() + p.from, sizeof(T));
        }
        benchmark::ClobberMemory();
        const auto copy_stop = std::chrono::steady_clock::now();

        state.SetIterationTime(seconds);
        compact_seconds += seconds;
        memcpy_seconds += std::chrono::duration<double>(copy_stop - copy_start).count();
        moved += moves;
        relocated += pieces.size();
        spread_before += stats_before.frames_per_min_frame();
        spread_after += stats_after.frames_per_min_frame();
        freeable_after += pool.compactable_frames();
    }
    const auto runs = static_cast<double>(state.iterations());
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    const double bytes_per_second = static_cast<double>(moved * sizeof(T)) / compact_seconds;
    const double memcpy_bytes_per_second =
        static_cast<double>(relocated * sizeof(T)) / memcpy_seconds;
    state.counters["objects_moved"] = static_cast<double>(moved) / runs;
    state.counters["moves_per_fewest"] =
        static_cast<double>(moved) / static_cast<double>(fewest_moves);
    state.counters["frames_freed"] = static_cast<double>(freed) / runs;
    state.counters["GiB_per_s"] = bytes_per_second / gib;
    state.counters["memcpy_GiB_per_s"] = memcpy_bytes_per_second / gib;
    // How many times longer a byte takes to move by compact() than by memcpy.
    state.counters["x_memcpy"] = memcpy_bytes_per_second / bytes_per_second;
    state.counters["ns_per_object"] = compact_seconds * 1e9 / static_cast<double>(moved);
    state.counters["frames_per_min_frame_before"] = spread_before / runs;
    state.counters["frames_per_min_frame"] = spread_after / runs;
    state.counters["frames_freeable_after"] = static_cast<double>(freeable_after) / runs;
}
// A fixed number of runs: each builds and fragments a fresh pool, which takes longer than the
// compaction it times.
BENCHMARK_TEMPLATE(compact_after_destroying_60_percent, record)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(compact_after_destroying_60_percent, named_record)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

} // namespace

int main(int argc, char** argv) {
    benchmark::AddCustomContext("object", "64 bytes; compact() also with a std::string inside");
    if (!movable::bench::add_allocator_context("object_pool_bench")) {
        return 1;
    }
    movable::bench::summary_table table(argc, argv); // before Initialize takes the flags out
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    const struct {
        const char* benchmark;
        const char* what;
    } pairs[] = {{"pair_object_pool/live:0", "empty pool, 1 thread"},
                 {"pair_object_pool/live:65536", "65536 live, 1 thread"},
                 {"pair_4_threads", "65536 live, 4 threads"}};
    for (const auto& pair : pairs) {
        for (const char* allocator : {"mimalloc", "jemalloc", "glibc"}) {
            table.add_row(pair.benchmark, std::string("x_") + allocator,
                          std::string("emplace+destroy pair, ") + pair.what + ": object_pool / " +
                              allocator);
        }
    }
    table.add_row("pinned_read/live:4096", "x_raw_pointer",
                  "pinned read / raw pointer read, 4096 live (fits L2)");
    table.add_row("pinned_read/live:262144", "x_raw_pointer",
                  "pinned read / raw pointer read, 262144 live (16 MiB)");
    table.add_row("compact_after_destroying_60_percent<record>", "x_memcpy",
                  "compact() / scattered memcpy of the moved objects, cold, trivially copyable");
    table.add_row("compact_after_destroying_60_percent<named_record>", "x_memcpy",
                  "compact() / scattered memcpy of the moved objects, cold, with a std::string");
    table.run("object_pool_bench: each ratio against its baseline measured in the same run");
    benchmark::Shutdown();
    return 0;
}
