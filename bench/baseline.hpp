// Baselines measured in the same process as the benchmark that compares against them, so a
// ratio means "how many memcpys of the same bytes this costs" on this machine, right now.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace movable::bench {

// Nanoseconds to memcpy `bytes` between two buffers that stay in cache when they fit: the
// best of several timed batches (the physical limit we compare against). Both buffers start on
// a page, as frames do: two heap buffers whose distance is 16 bytes past a multiple of 4 KiB copy
// 4 KiB four times slower (4K aliasing of loads with earlier stores), which made this baseline
// change with where malloc happened to put them.
inline double memcpy_nanoseconds(std::size_t bytes) {
    struct page_aligned_delete {
        void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{4096}); }
    };
    const std::size_t allocated = std::max<std::size_t>(bytes, 1);
    const std::unique_ptr<std::byte[], page_aligned_delete> source(new (std::align_val_t{4096})
                                                                       std::byte[allocated]);
    const std::unique_ptr<std::byte[], page_aligned_delete> target(new (std::align_val_t{4096})
                                                                       std::byte[allocated]);
    std::memset(source.get(), 1, allocated);
    std::memset(target.get(), 0, allocated);
    const std::size_t batch =
        std::max<std::size_t>(1, (std::size_t{64} << 20) / std::max<std::size_t>(bytes, 1) / 8);
    double best = 1e300;
    for (int round = 0; round < 7; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < batch; ++i) {
            std::memcpy(target.get(), source.get(), bytes);
            benchmark::DoNotOptimize(target.get());
            benchmark::ClobberMemory();
        }
        const auto stop = std::chrono::steady_clock::now();
        best = std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() /
                                  static_cast<double>(batch));
    }
    return best;
}

// Wall time of the benchmark's own loop, for ratios: call start() before and per_iteration()
// after `for (auto _ : state)`.
class loop_timer {
public:
    void start() { start_ = std::chrono::steady_clock::now(); }
    double nanoseconds_per_iteration(const benchmark::State& state) const {
        const auto elapsed = std::chrono::steady_clock::now() - start_;
        return std::chrono::duration<double, std::nano>(elapsed).count() /
               static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
    }

private:
    std::chrono::steady_clock::time_point start_;
};

// Bytes of the last-level cache, as the kernel reports it (sysfs, what lscpu prints; sysconf's
// figure is wrong on some VMs); 32 MiB when it cannot be read.
inline std::size_t last_level_cache_bytes() {
    std::size_t largest = 0;
    for (int index = 0; index < 8; ++index) {
        std::ifstream file("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) +
                           "/size");
        std::string size;
        if (!(file >> size) || size.empty()) {
            break;
        }
        std::size_t bytes = std::strtoull(size.c_str(), nullptr, 10);
        bytes <<= size.back() == 'K' ? 10 : size.back() == 'M' ? 20 : 0;
        largest = std::max(largest, bytes);
    }
    return largest != 0 ? largest : std::size_t{32} << 20;
}

// Reads and writes one word of every cache line of a buffer twice the last-level cache (at
// least 64 MiB), so that what the next timed step touches comes from memory: for measurements
// "cold", as a step that runs between other work finds the caches.
inline void evict_caches() {
    static std::vector<std::uint64_t> sweep(
        std::max(std::size_t{64} << 20, 2 * last_level_cache_bytes()) / sizeof(std::uint64_t));
    for (std::size_t i = 0; i < sweep.size(); i += 64 / sizeof(std::uint64_t)) {
        sweep[i] += 1;
    }
    benchmark::DoNotOptimize(sweep.data());
    benchmark::ClobberMemory();
}

} // namespace movable::bench
