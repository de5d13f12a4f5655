// The footprint workload on the zram trace (zram_trace.hpp), shared by every allocator the pool
// benchmarks measure: fill, random replacement, then freeing 70% of the objects, each object's
// bytes written as a store would; then each allocator is asked to give back all it can (glibc
// malloc_trim(0), jemalloc's tcache flush and arena.<all>.purge, mimalloc mi_collect(true)), and
// the figure is the process's resident growth over the live bytes. Run it in a fresh process per
// allocator (bench/zspage_pool_bench.cpp does) so no allocator starts warm or pollutes another's
// resident set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "allocators.hpp"
#include "examples/support/resident.hpp"
#include "zram_trace.hpp"

namespace movable::bench {

// The same stream for every allocator; everything here is built before the first reading.
struct trace_workload {
    static constexpr std::size_t fill = 98304;         // objects written first
    static constexpr std::size_t replacements = 98304; // then one freed and one allocated, each
    static constexpr unsigned freed_percent = 70;      // then this share of the objects freed
    std::vector<std::uint32_t> initial = zram_trace::sizes(fill, 11);
    std::vector<std::uint32_t> replacement_sizes = zram_trace::sizes(replacements, 12);
    std::vector<std::uint32_t> victims = indices(replacements, 13);
    std::vector<std::uint32_t> freed = [] { // a shuffle's first 70%: exactly that many
        std::vector<std::uint32_t> order(fill);
        for (std::size_t i = 0; i < fill; ++i) {
            order[i] = static_cast<std::uint32_t>(i);
        }
        std::mt19937_64 rng(14);
        for (std::size_t i = fill - 1; i > 0; --i) {
            std::swap(order[i], order[rng() % (i + 1)]);
        }
        order.resize(fill * freed_percent / 100);
        return order;
    }();

    static std::vector<std::uint32_t> indices(std::size_t count, std::uint64_t seed) {
        std::mt19937_64 rng(seed);
        std::vector<std::uint32_t> result(count);
        for (std::uint32_t& i : result) {
            i = static_cast<std::uint32_t>(rng() % fill);
        }
        return result;
    }
};

inline const trace_workload& the_trace() {
    static const trace_workload trace;
    return trace;
}

// The live set of one run: containers sized up front, so the run allocates only objects.
template <class Allocator>
class trace_run {
public:
    trace_run() : objects_(trace_workload::fill), sizes_(trace_workload::fill) {}

    // Fill, replacements, free 70%: the whole stream.
    void run(Allocator& allocator) {
        const trace_workload& trace = the_trace();
        for (std::size_t i = 0; i < trace_workload::fill; ++i) {
            place(allocator, i, trace.initial[i], i);
        }
        for (std::size_t k = 0; k < trace_workload::replacements; ++k) {
            const std::size_t victim = trace.victims[k];
            allocator.deallocate(objects_[victim], sizes_[victim]);
            place(allocator, victim, trace.replacement_sizes[k], k);
        }
        for (std::uint32_t victim : trace.freed) {
            allocator.deallocate(objects_[victim], sizes_[victim]);
            objects_[victim] = {};
        }
    }
    void free_all(Allocator& allocator) {
        for (std::size_t i = 0; i < objects_.size(); ++i) {
            if (objects_[i]) {
                allocator.deallocate(objects_[i], sizes_[i]);
                objects_[i] = {};
            }
        }
    }
    [[nodiscard]] std::size_t live_bytes() const {
        std::size_t bytes = 0;
        for (std::size_t i = 0; i < objects_.size(); ++i) {
            bytes += objects_[i] ? sizes_[i] : 0;
        }
        return bytes;
    }

private:
    void place(Allocator& allocator, std::size_t index, std::uint32_t size, std::size_t stamp) {
        sizes_[index] = size;
        objects_[index] = allocator.allocate(size);
        allocator.fill(objects_[index], size, static_cast<int>(stamp & 0xff));
    }

    std::vector<typename Allocator::handle> objects_;
    std::vector<std::uint32_t> sizes_;
};

// ---- giving back all an allocator can -------------------------------------------------------

inline void glibc_give_back() {
    if (glibc().malloc_trim != nullptr) {
        glibc().malloc_trim(0);
    }
}
#if MOVABLE_BENCH_HAVE_JEMALLOC
inline void jemalloc_give_back() {
    mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    const std::string purge = "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
    mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0);
}
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
inline void mimalloc_give_back() {
    mi_collect(true);
}
#endif

// In a fresh process: {resident growth / live bytes after the allocator gave back what it
// could, the same before it was asked, live bytes}.
template <class Allocator>
std::vector<double> allocator_trace_footprint(void (*give_back)()) {
    Allocator allocator;
    (void)the_trace();
    trace_run<Allocator> run;
    const std::size_t before = support::resident_bytes();
    run.run(allocator);
    const auto live = static_cast<double>(run.live_bytes());
    const auto growth = [&] {
        return static_cast<double>(support::resident_bytes() - before) / live;
    };
    const double kept = growth();
    give_back();
    const double given_back = growth();
    run.free_all(allocator);
    return {given_back, kept, live};
}

} // namespace movable::bench
