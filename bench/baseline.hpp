// Baselines measured in the same process as the benchmark that compares against them, so a
// ratio means "how many memcpys of the same bytes this costs" on this machine, right now.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

namespace movable::bench {

// Nanoseconds to memcpy `bytes` between two buffers that stay in cache when they fit: the
// best of several timed batches (the physical limit we compare against).
inline double memcpy_nanoseconds(std::size_t bytes) {
    std::vector<std::byte> source(bytes, std::byte{1});
    std::vector<std::byte> target(bytes);
    const std::size_t batch =
        std::max<std::size_t>(1, (std::size_t{64} << 20) / std::max<std::size_t>(bytes, 1) / 8);
    double best = 1e300;
    for (int round = 0; round < 7; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < batch; ++i) {
            std::memcpy(target.data(), source.data(), bytes);
            benchmark::DoNotOptimize(target.data());
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

} // namespace movable::bench
