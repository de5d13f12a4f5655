// zspage_pool against general-purpose allocators, side by side in one run:
//   * allocate + deallocate pairs on a live set of objects, sizes shaped like compressed 4 KiB
//     pages, as ratios to glibc malloc/free, jemalloc (mallocx/dallocx) and mimalloc
//     (mi_malloc/mi_free) on the same sizes in the same order;
//   * footprint on a zram-like trace (sizes of real compressed pages, bench/zram_trace.hpp;
//     fill, random replacement, 70% freed; bench/trace_footprint.hpp): the pool's resident
//     growth / live bytes after compact(), arena compaction and release, where those bytes go,
//     the same with a 2 GiB arena instead of 256 MiB, and each allocator's resident growth /
//     live bytes after it gave back what it could (malloc_trim(0), jemalloc's purge,
//     mi_collect(true)), each measured in a fresh process (this program re-executed) so no
//     allocator starts with a heap that an earlier benchmark warmed, and the allocators do not
//     pollute each other's RSS;
//   * pinned read and write of an object as a ratio to memcpy of its bytes.
//
// Each allocator is called through its own explicit API, so every column measures what it
// says even though linking jemalloc or mimalloc replaces the process-wide malloc: glibc's
// malloc and free are looked up in libc.so.6 itself (mimalloc's override also exports
// __libc_malloc, so that name cannot be trusted). The context lines say which library each
// column resolved to.
//
// Sizes of the pairs and access benchmarks ("compressed 4 KiB pages", synthetic): 10% uniform
// in 32..512 bytes (nearly empty pages), 70% normal around 1400 bytes (sd 450) clipped to 32..3264,
// 20% uniform in 2048..3264 (poorly compressible). Mean about 1.5 KiB.
#include <movable/compaction.hpp>
#include <movable/models/zspage_pool.hpp>

#include <benchmark/benchmark.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "allocators.hpp"
#include "baseline.hpp"
#include "examples/support/resident.hpp"
#include "fresh_process.hpp"
#include "summary_table.hpp"
#include "threaded_steps.hpp"
#include "trace_footprint.hpp"

namespace {

using arena_type = movable::frame_arena<>; // 4 KiB frames, 4 MiB max-order blocks
using pool_type = movable::zspage_pool<arena_type>;
constexpr std::size_t frame_size = arena_type::frame_size;
constexpr std::size_t arena_bytes = std::size_t{256} << 20;

// ---- the workload ---------------------------------------------------------------------------

std::vector<std::uint32_t> compressed_page_sizes(std::size_t count, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> typical(1400.0, 450.0);
    std::uniform_int_distribution<std::uint32_t> nearly_empty(32, 512);
    std::uniform_int_distribution<std::uint32_t> poorly_compressed(2048, 3264);
    std::vector<std::uint32_t> sizes(count);
    for (auto& size : sizes) {
        const unsigned kind = rng() % 100;
        if (kind < 10) {
            size = nearly_empty(rng);
        } else if (kind < 80) {
            size = static_cast<std::uint32_t>(std::clamp(typical(rng), 32.0, 3264.0));
        } else {
            size = poorly_compressed(rng);
        }
    }
    return sizes;
}

// The same sequence for every allocator: fill `live` objects, then replace one at random per
// step (free it, allocate the next size in its place).
struct workload {
    static constexpr std::size_t live = 16384;
    static constexpr std::size_t steps = std::size_t{1} << 16;
    std::vector<std::uint32_t> initial = compressed_page_sizes(live, 1);
    std::vector<std::uint32_t> sizes = compressed_page_sizes(steps, 2);
    std::vector<std::uint32_t> victims = [] {
        std::mt19937 rng(3);
        std::vector<std::uint32_t> v(steps);
        for (auto& i : v) {
            i = static_cast<std::uint32_t>(rng() % live);
        }
        return v;
    }();
};
const workload& the_workload() {
    static const workload w;
    return w;
}

// ---- allocators, each through its own API --------------------------------------------------

using movable::bench::glibc;

struct glibc_allocator {
    using handle = void*;
    static constexpr const char* name = "glibc";
    handle allocate(std::size_t size) { return glibc().malloc(size); }
    void deallocate(handle p, std::size_t) { glibc().free(p); }
    void fill(handle p, std::size_t size, int value) { std::memset(p, value, size); }
};
#if MOVABLE_BENCH_HAVE_JEMALLOC
struct jemalloc_allocator {
    using handle = void*;
    static constexpr const char* name = "jemalloc";
    handle allocate(std::size_t size) { return mallocx(size, 0); }
    void deallocate(handle p, std::size_t) { dallocx(p, 0); }
    void fill(handle p, std::size_t size, int value) { std::memset(p, value, size); }
};
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
struct mimalloc_allocator {
    using handle = void*;
    static constexpr const char* name = "mimalloc";
    handle allocate(std::size_t size) { return mi_malloc(size); }
    void deallocate(handle p, std::size_t) { mi_free(p); }
    void fill(handle p, std::size_t size, int value) { std::memset(p, value, size); }
};
#endif
struct pool_allocator {
    using handle = movable::zspage_handle;
    pool_type& pool;
    std::vector<std::byte> bytes = std::vector<std::byte>(frame_size);
    handle allocate(std::size_t size) { return pool.allocate(size); }
    void deallocate(handle h, std::size_t) { pool.deallocate(h); }
    void fill(handle h, std::size_t size, int value) {
        std::memset(bytes.data(), value, size);
        pool.write(h, std::span(bytes).first(size));
    }
};

// A live set driven through the workload; `fill_bytes` writes every object (as a store does).
template <class Allocator>
class churn {
public:
    // The containers only; populate() allocates the live set.
    churn(Allocator& allocator, bool fill_bytes, bool populate_now = true)
        : allocator_(allocator), fill_(fill_bytes), objects_(workload::live),
          sizes_(the_workload().initial) {
        if (populate_now) {
            populate();
        }
    }
    void populate() {
        for (std::size_t i = 0; i < workload::live; ++i) {
            objects_[i] = allocator_.allocate(sizes_[i]);
            if (fill_) {
                allocator_.fill(objects_[i], sizes_[i], static_cast<int>(i));
            }
        }
    }
    // A throwing deallocate (a broken handle) ends the benchmark, as it should.
    ~churn() { // NOLINT(bugprone-exception-escape)
        for (std::size_t i = 0; i < objects_.size(); ++i) {
            if (objects_[i]) {
                allocator_.deallocate(objects_[i], sizes_[i]);
            }
        }
    }
    churn(const churn&) = delete;
    churn& operator=(const churn&) = delete;

    // One allocate + deallocate pair.
    void step() {
        const workload& w = the_workload();
        const std::size_t k = step_++ % workload::steps;
        const std::size_t victim = w.victims[k];
        allocator_.deallocate(objects_[victim], sizes_[victim]);
        sizes_[victim] = w.sizes[k];
        objects_[victim] = allocator_.allocate(sizes_[victim]);
        if (fill_) {
            allocator_.fill(objects_[victim], sizes_[victim], static_cast<int>(k));
        }
    }
    // Frees every other object of a random half (a burst of swap-ins): fragmentation.
    void free_random_half() {
        std::mt19937 rng(4);
        for (std::size_t i = 0; i < objects_.size(); ++i) {
            if (rng() % 2 == 0 && objects_[i]) {
                allocator_.deallocate(objects_[i], sizes_[i]);
                objects_[i] = {};
            }
        }
    }
    std::size_t live_bytes() const {
        std::size_t bytes = 0;
        for (std::size_t i = 0; i < objects_.size(); ++i) {
            bytes += objects_[i] ? sizes_[i] : 0;
        }
        return bytes;
    }

private:
    Allocator& allocator_;
    bool fill_;
    std::vector<typename Allocator::handle> objects_;
    std::vector<std::uint32_t> sizes_;
    std::size_t step_ = 0;
};

// Nanoseconds per allocate + deallocate pair: the best of a few timed batches on a warm set.
template <class Allocator>
double pair_nanoseconds(Allocator& allocator) {
    churn<Allocator> c(allocator, false);
    for (std::size_t i = 0; i < workload::steps; ++i) {
        c.step();
    }
    double best = 1e300;
    for (int round = 0; round < 5; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < workload::steps; ++i) {
            c.step();
        }
        const auto stop = std::chrono::steady_clock::now();
        best = std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() /
                                  static_cast<double>(workload::steps));
    }
    return best;
}

// ---- 1. allocate + deallocate pairs --------------------------------------------------------

template <class Allocator>
void run_pairs(benchmark::State& state, Allocator& allocator) {
    churn<Allocator> c(allocator, false);
    for (auto _ : state) {
        c.step();
    }
    state.SetItemsProcessed(state.iterations());
}

void pairs_glibc(benchmark::State& state) {
    glibc_allocator a;
    run_pairs(state, a);
}
BENCHMARK(pairs_glibc);
#if MOVABLE_BENCH_HAVE_JEMALLOC
void pairs_jemalloc(benchmark::State& state) {
    jemalloc_allocator a;
    run_pairs(state, a);
}
BENCHMARK(pairs_jemalloc);
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
void pairs_mimalloc(benchmark::State& state) {
    mimalloc_allocator a;
    run_pairs(state, a);
}
BENCHMARK(pairs_mimalloc);
#endif

// The pool's pairs, with the ratios to each allocator measured in this run.
void pairs_zspage_pool(benchmark::State& state) {
    arena_type arena(arena_bytes);
    pool_type pool(arena);
    pool_allocator a{pool};
    movable::bench::loop_timer timer;
    {
        churn<pool_allocator> c(a, false);
        timer.start();
        for (auto _ : state) {
            c.step();
        }
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    state.SetItemsProcessed(state.iterations());
    state.counters["pool_ns"] = ns;
    const auto ratio = [&](const char* name, double allocator_ns) {
        state.counters[std::string("x_") + name] = ns / allocator_ns;
    };
#if MOVABLE_BENCH_HAVE_MIMALLOC
    mimalloc_allocator m;
    ratio(mimalloc_allocator::name, pair_nanoseconds(m));
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
    jemalloc_allocator j;
    ratio(jemalloc_allocator::name, pair_nanoseconds(j));
#endif
    glibc_allocator g;
    ratio(glibc_allocator::name, pair_nanoseconds(g));
}
BENCHMARK(pairs_zspage_pool);

// One thread's share of the 4-thread pairs: its own allocator handle and live set.
template <class Allocator>
struct pair_worker {
    explicit pair_worker(Allocator a) : allocator(std::move(a)), live(allocator, false) {}
    void step() { live.step(); }
    Allocator allocator;
    churn<Allocator> live;
};

// Wall nanoseconds per pair with 4 threads at once, each with its own live set of
// workload::live objects, on one pool (or one heap).
template <class Allocator>
double four_thread_pair_nanoseconds(const Allocator& prototype) {
    return movable::bench::threaded_nanoseconds_per_step(4, 4 * workload::steps, [&](unsigned) {
        return std::make_unique<pair_worker<Allocator>>(prototype);
    });
}

// The same pairs from 4 threads at once on one pool, as ratios to each allocator doing the same
// from 4 threads in this run (wall time per pair over all threads: inverse throughput).
void pairs_4_threads(benchmark::State& state) {
    arena_type arena(arena_bytes);
    pool_type pool(arena);
    double ns = 0;
    for (auto _ : state) {
        ns = four_thread_pair_nanoseconds(pool_allocator{pool});
    }
    state.counters["pool_ns"] = ns;
    const auto ratio = [&](const char* name, double allocator_ns) {
        state.counters[std::string("x_") + name] = ns / allocator_ns;
    };
#if MOVABLE_BENCH_HAVE_MIMALLOC
    ratio(mimalloc_allocator::name, four_thread_pair_nanoseconds(mimalloc_allocator{}));
#endif
#if MOVABLE_BENCH_HAVE_JEMALLOC
    ratio(jemalloc_allocator::name, four_thread_pair_nanoseconds(jemalloc_allocator{}));
#endif
    ratio(glibc_allocator::name, four_thread_pair_nanoseconds(glibc_allocator{}));
}
BENCHMARK(pairs_4_threads)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---- 2. footprint on the zram trace ---------------------------------------------------------
// The stream is bench/trace_footprint.hpp's (fill, random replacement, 70% freed, sizes from
// real compressed pages); each allocator and each arena size runs it in a fresh process.

using movable::bench::trace_run;
using movable::support::resident_bytes;

constexpr std::size_t large_arena_bytes = std::size_t{2} << 30;

// The pool's figures; all but live_bytes and growth_bytes are bytes per live byte.
enum pool_figure : std::size_t {
    rss_after_release,   // resident growth after compact(), arena compaction and release
    rss_before_compact,  // resident growth right after the stream
    frames_after,        // the pool's frames after compact() and arena compaction
    descriptors,         // resident frame descriptors (mincore)
    header_and_rounding, // live objects' headers and size-class rounding, huge class included
    unused_slots,        // free object slots in the pool's zspages
    zspage_tails,        // unused tails of the zspages
    other_memory,        // growth - frames - descriptors: handle table, zspage descriptors, ...
    heap_allocated,      // of which the process's malloc holds for the pool (jemalloc's count)
    zspage_descriptors,  // of which zspage descriptors in use
    live_bytes,
    growth_bytes,
    pool_figure_count
};

// Resident bytes of the arena's frame descriptors: the pages of their mapping that are mapped.
std::size_t resident_descriptor_bytes(arena_type& arena) {
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto start = reinterpret_cast<std::uintptr_t>(&arena.frame_at(0)) / page * page;
    const auto stop =
        reinterpret_cast<std::uintptr_t>(&arena.frame_at(arena.frame_count() - 1) + 1);
    std::vector<unsigned char> pages((stop - start + page - 1) / page);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the descriptors' own pages
    if (::mincore(reinterpret_cast<void*>(start), stop - start, pages.data()) != 0) {
        return 0;
    }
    return static_cast<std::size_t>(std::count_if(pages.begin(), pages.end(),
                                                  [](unsigned char p) { return (p & 1) != 0; })) *
           page;
}

// Bytes the process's malloc has handed out and not taken back, when it is jemalloc (its
// stats.allocated); 0 otherwise.
std::size_t heap_allocated_bytes() {
#if MOVABLE_BENCH_HAVE_JEMALLOC
    if (movable::bench::library_of(reinterpret_cast<const void*>(&::malloc)) ==
        movable::bench::library_of(reinterpret_cast<const void*>(&mallocx))) {
        std::uint64_t epoch = 1;
        std::size_t length = sizeof epoch;
        mallctl("epoch", &epoch, &length, &epoch, length);
        std::size_t allocated = 0;
        length = sizeof allocated;
        if (mallctl("stats.allocated", &allocated, &length, nullptr, 0) == 0) {
            return allocated;
        }
    }
#endif
    return 0;
}

// In the child: the pool's footprint on the trace in an arena of `arena_bytes`, measured from
// before the arena exists (so its descriptors and tables count), and where it goes.
std::vector<double> pool_footprint_here(std::size_t arena_bytes) {
    (void)movable::bench::the_trace();
    trace_run<pool_allocator> run;
    std::vector<double> figures(pool_figure_count);
    const std::size_t heap_before = heap_allocated_bytes();
    const std::size_t before = resident_bytes();
    arena_type arena(arena_bytes);
    pool_type pool(arena);
    pool_allocator allocator{pool};
    run.run(allocator);
    const auto live = static_cast<double>(run.live_bytes());
    figures[rss_before_compact] = static_cast<double>(resident_bytes() - before) / live;
    pool.compact();
    movable::compactor<arena_type>(arena).compact();
    arena.discard_free_memory(0);
    const std::size_t growth = resident_bytes() - before;
    const movable::zspage_pool_stats stats = pool.stats();
    const auto frames = static_cast<double>(stats.frames_in_use * frame_size);
    const auto descriptor_bytes = static_cast<double>(resident_descriptor_bytes(arena));
    for (const movable::zspage_class_stats& c : stats.classes) {
        const auto object = static_cast<double>(c.size_class.object_size);
        figures[header_and_rounding] +=
            static_cast<double>(c.objects_in_use) * object - static_cast<double>(c.bytes_in_use);
        figures[unused_slots] +=
            static_cast<double>(c.objects_allocated - c.objects_in_use) * object;
        figures[zspage_tails] += static_cast<double>(c.zspages * c.size_class.tail_bytes);
    }
    figures[header_and_rounding] /= live;
    figures[unused_slots] /= live;
    figures[zspage_tails] /= live;
    figures[rss_after_release] = static_cast<double>(growth) / live;
    figures[frames_after] = frames / live;
    figures[descriptors] = descriptor_bytes / live;
    figures[other_memory] = (static_cast<double>(growth) - frames - descriptor_bytes) / live;
    const std::size_t heap_after = heap_allocated_bytes();
    figures[heap_allocated] =
        heap_after == 0 ? -1.0 : static_cast<double>(heap_after - heap_before) / live;
    figures[zspage_descriptors] =
        static_cast<double>(stats.zspages * sizeof(movable::detail::zspage)) / live;
    figures[live_bytes] = live;
    figures[growth_bytes] = static_cast<double>(growth);
    run.free_all(allocator);
    return figures;
}

constexpr const char* footprint_child_flag = "--zspage-footprint-child=";
constexpr const char* pool_in_small_arena = "zspage_pool_256MiB";
constexpr const char* pool_in_large_arena = "zspage_pool_2GiB";
constexpr std::size_t allocator_figure_count = 3; // allocator_trace_footprint's

std::vector<double> footprint_child(const std::string& which) {
    using namespace movable::bench;
    std::vector<double> values;
    if (which == pool_in_small_arena) {
        values = pool_footprint_here(arena_bytes);
    } else if (which == pool_in_large_arena) {
        values = pool_footprint_here(large_arena_bytes);
    } else if (which == glibc_allocator::name) {
        values = allocator_trace_footprint<glibc_allocator>(&glibc_give_back);
#if MOVABLE_BENCH_HAVE_JEMALLOC
    } else if (which == jemalloc_allocator::name) {
        values = allocator_trace_footprint<jemalloc_allocator>(&jemalloc_give_back);
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
    } else if (which == mimalloc_allocator::name) {
        values = allocator_trace_footprint<mimalloc_allocator>(&mimalloc_give_back);
#endif
    } else {
        return {};
    }
    return values;
}

std::vector<double> footprint_in_fresh_process(const std::string& which, std::size_t count) {
    return movable::bench::figures_in_fresh_process(footprint_child_flag, which, count);
}

// Resident growth / live bytes on the zram trace: the pool (256 MiB arena) after compact(),
// arena compaction and release, where its bytes go, the same pool in a 2 GiB arena, and each
// allocator after giving back what it can.
void footprint(benchmark::State& state) {
    std::vector<double> pool;
    std::vector<double> pool_large;
    for (auto _ : state) {
        pool = footprint_in_fresh_process(pool_in_small_arena, pool_figure_count);
        pool_large = footprint_in_fresh_process(pool_in_large_arena, pool_figure_count);
    }
    if (pool.empty() || pool_large.empty()) {
        state.SkipWithError("a pool footprint process failed");
        return;
    }
    state.counters["pool_rss"] = pool[rss_after_release];
    state.counters["pool_rss_before_compact"] = pool[rss_before_compact];
    state.counters["pool_frames"] = pool[frames_after];
    state.counters["pool_descriptors"] = pool[descriptors];
    state.counters["pool_header_rounding"] = pool[header_and_rounding];
    state.counters["pool_unused_slots"] = pool[unused_slots];
    state.counters["pool_zspage_tails"] = pool[zspage_tails];
    state.counters["pool_other"] = pool[other_memory];
    state.counters["pool_heap"] = pool[heap_allocated];
    state.counters["pool_zspage_descriptors"] = pool[zspage_descriptors];
    state.counters["live_MiB"] = pool[live_bytes] / (1 << 20);
    state.counters["pool_rss_2GiB_arena"] = pool_large[rss_after_release];
    state.counters["rss_2GiB_vs_256MiB_arena"] = pool_large[growth_bytes] / pool[growth_bytes];
    const auto rss = [&](const char* which, const char* counter) {
        const std::vector<double> figures =
            footprint_in_fresh_process(which, allocator_figure_count);
        state.counters[std::string(counter) + "_rss"] = figures.empty() ? -1.0 : figures[0];
        state.counters[std::string(counter) + "_rss_kept"] = figures.empty() ? -1.0 : figures[1];
    };
    rss(glibc_allocator::name, "glibc");
#if MOVABLE_BENCH_HAVE_JEMALLOC
    rss(jemalloc_allocator::name, "jemalloc");
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
    rss(mimalloc_allocator::name, "mimalloc");
#endif
}
BENCHMARK(footprint)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---- 3. pinned access -----------------------------------------------------------------------

struct access_fixture {
    static constexpr std::size_t objects = 4096;
    arena_type arena{std::size_t{64} << 20};
    pool_type pool{arena};
    std::vector<std::uint32_t> sizes = compressed_page_sizes(objects, 5);
    std::vector<movable::zspage_handle> handles;
    std::vector<std::byte> buffer = std::vector<std::byte>(frame_size, std::byte{7});
    std::size_t spanning = 0;
    std::vector<std::size_t> in_one_frame;  // indexes of objects within one frame
    std::vector<std::size_t> across_frames; // and of those that span two (served by a copy)

    access_fixture() {
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            handles.push_back(pool.allocate(sizes[i]));
            pool.write(handles.back(), std::span(buffer).first(sizes[i]));
            const bool spans = pool.map(handles.back(), movable::zspage_access::read).copied();
            spanning += spans ? 1 : 0;
            (spans ? across_frames : in_one_frame).push_back(i);
        }
    }
    // Best nanoseconds per object of `run(k)` over the objects `which`, in their order.
    template <class Run>
    static double best_per_object(const std::vector<std::size_t>& which, Run&& run) {
        double best = 1e300;
        for (int round = 0; round < 7; ++round) {
            const auto start = std::chrono::steady_clock::now();
            for (const std::size_t k : which) {
                run(k);
            }
            const auto stop = std::chrono::steady_clock::now();
            best = std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() /
                                      static_cast<double>(which.size()));
        }
        return best;
    }
    std::vector<std::size_t> all() const {
        std::vector<std::size_t> every(objects);
        for (std::size_t i = 0; i < objects; ++i) {
            every[i] = i;
        }
        return every;
    }
    // Nanoseconds to memcpy the bytes of the objects `which` (same sizes, from a buffer of their
    // total size, in their order), per object.
    double memcpy_nanoseconds(const std::vector<std::size_t>& which) const {
        std::size_t total = 0;
        for (const std::size_t k : which) {
            total += sizes[k];
        }
        std::vector<std::byte> source(total, std::byte{1});
        std::vector<std::byte> target(frame_size);
        std::size_t offset = 0;
        return best_per_object(which, [&](std::size_t k) {
            if (offset + sizes[k] > total) {
                offset = 0;
            }
            std::memcpy(target.data(), source.data() + offset, sizes[k]);
            benchmark::DoNotOptimize(target.data());
            benchmark::ClobberMemory();
            offset += sizes[k];
        });
    }
    double memcpy_nanoseconds() const { return memcpy_nanoseconds(all()); }
};

template <class Access>
void run_access(benchmark::State& state, Access&& access) {
    access_fixture f;
    movable::bench::loop_timer timer;
    std::size_t i = 0;
    std::size_t bytes = 0;
    timer.start();
    for (auto _ : state) {
        const std::size_t k = i++ % access_fixture::objects;
        access(f, k);
        bytes += f.sizes[k];
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    const double memcpy_ns = f.memcpy_nanoseconds();
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
    state.counters["memcpy_ns"] = memcpy_ns;
    state.counters["x_memcpy"] = ns / memcpy_ns;
    state.counters["spanning_pct"] =
        100.0 * static_cast<double>(f.spanning) / static_cast<double>(access_fixture::objects);
}

void pinned_read(benchmark::State& state) {
    run_access(state, [](access_fixture& f, std::size_t k) {
        const pool_type::mapping m = f.pool.map(f.handles[k], movable::zspage_access::read);
        std::memcpy(f.buffer.data(), m.bytes().data(), m.bytes().size());
        benchmark::DoNotOptimize(f.buffer.data());
    });
}
BENCHMARK(pinned_read);

void pinned_write(benchmark::State& state) {
    run_access(state, [](access_fixture& f, std::size_t k) {
        pool_type::mapping m = f.pool.map(f.handles[k], movable::zspage_access::write);
        std::memcpy(m.writable_bytes().data(), f.buffer.data(), m.bytes().size());
        benchmark::ClobberMemory();
    });
}
BENCHMARK(pinned_write);

void read_copy(benchmark::State& state) {
    run_access(state, [](access_fixture& f, std::size_t k) {
        f.pool.read(f.handles[k], std::span(f.buffer).first(f.sizes[k]));
        benchmark::DoNotOptimize(f.buffer.data());
    });
}
BENCHMARK(read_copy);

// Pinned read and read() of the objects within one frame and of those that span two (a
// mapping serves those through a copy), each as a ratio to memcpy of the same objects' bytes.
void access_by_span(benchmark::State& state) {
    access_fixture f;
    const auto pinned_read = [&](std::size_t k) {
        const pool_type::mapping m = f.pool.map(f.handles[k], movable::zspage_access::read);
        std::memcpy(f.buffer.data(), m.bytes().data(), m.bytes().size());
        benchmark::DoNotOptimize(f.buffer.data());
    };
    const auto read = [&](std::size_t k) {
        f.pool.read(f.handles[k], std::span(f.buffer).first(f.sizes[k]));
        benchmark::DoNotOptimize(f.buffer.data());
    };
    for (auto _ : state) {
        const auto ratios = [&](const std::vector<std::size_t>& which, const char* counter) {
            const double memcpy_ns = f.memcpy_nanoseconds(which);
            const double pinned = access_fixture::best_per_object(which, pinned_read) / memcpy_ns;
            const double copied = access_fixture::best_per_object(which, read) / memcpy_ns;
            state.counters[std::string("pinned_read_x_memcpy_") + counter] = pinned;
            state.counters[std::string("read_x_memcpy_") + counter] = copied;
        };
        ratios(f.in_one_frame, "one_frame");
        ratios(f.across_frames, "two_frames");
    }
}
BENCHMARK(access_by_span)->Iterations(1)->Unit(benchmark::kMillisecond);

} // namespace

int main(int argc, char** argv) {
    if (const auto code =
            movable::bench::run_if_child(argc, argv, footprint_child_flag, footprint_child)) {
        return *code;
    }
    benchmark::AddCustomContext("sizes", "compressed 4 KiB pages: 10% 32..512 B, 70% ~N(1400, "
                                         "450) in 32..3264 B, 20% 2048..3264 B");
    if (!movable::bench::add_allocator_context("zspage_pool_bench")) {
        return 1;
    }
    movable::bench::summary_table table(argc, argv); // before Initialize takes the flags out
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    const char* const allocators[] = {"mimalloc", "jemalloc", "glibc"};
    for (const char* threads : {"pairs_zspage_pool", "pairs_4_threads"}) {
        for (const char* allocator : allocators) {
            table.add_row(
                threads, std::string("x_") + allocator,
                std::string("allocate+free pair, ") +
                    (threads == std::string("pairs_4_threads") ? "4 threads" : "1 thread") +
                    ": zspage_pool / " + allocator);
        }
    }
    table.add_row("pinned_read", "x_memcpy", "pinned read / memcpy, every object in turn");
    table.add_row("access_by_span", "pinned_read_x_memcpy_one_frame",
                  "pinned read / memcpy, objects within one frame");
    table.add_row("access_by_span", "pinned_read_x_memcpy_two_frames",
                  "pinned read / memcpy, objects spanning two frames");
    table.add_row("read_copy", "x_memcpy", "read() / memcpy, every object in turn");
    table.add_row("access_by_span", "read_x_memcpy_one_frame",
                  "read() / memcpy, objects within one frame");
    table.add_row("access_by_span", "read_x_memcpy_two_frames",
                  "read() / memcpy, objects spanning two frames");
    table.add_row("pinned_write", "x_memcpy", "pinned write / memcpy, every object in turn");
    table.add_row("footprint", "pool_rss",
                  "zram trace, resident growth / live: zspage_pool, 256 MiB arena");
    table.add_row("footprint", "pool_rss_2GiB_arena",
                  "zram trace, resident growth / live: zspage_pool, 2 GiB arena");
    for (const char* allocator : allocators) {
        table.add_row("footprint", std::string(allocator) + "_rss",
                      std::string("zram trace, resident growth / live: ") + allocator);
    }
    table.add_row("footprint", "rss_2GiB_vs_256MiB_arena",
                  "zram trace, resident growth of the pool: 2 GiB arena / 256 MiB arena");
    table.run("zspage_pool_bench: each ratio against its baseline measured in the same run");
    benchmark::Shutdown();
    return 0;
}
