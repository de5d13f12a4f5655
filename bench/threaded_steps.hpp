// Wall time per step when several threads run steps at once: each thread builds its own state
// (untimed), all start together at a barrier, and the clock runs until the last one finishes.
// For "allocate+free pairs with 4 threads" as a ratio to an allocator measured the same way in
// the same run.
#pragma once

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

namespace movable::bench {

// Best wall nanoseconds per step (over all threads' steps) of `rounds` rounds in which each of
// `threads` threads makes `make_worker(thread)` (any object with a `step()`), then runs `steps`
// steps of it.
template <class MakeWorker>
double threaded_nanoseconds_per_step(unsigned threads, std::size_t steps, MakeWorker make_worker,
                                     int rounds = 3) {
    double best = 1e300;
    for (int round = 0; round < rounds; ++round) {
        std::barrier ready(static_cast<std::ptrdiff_t>(threads) + 1);
        std::barrier done(static_cast<std::ptrdiff_t>(threads) + 1);
        std::vector<std::jthread> workers;
        workers.reserve(threads);
        for (unsigned t = 0; t < threads; ++t) {
            workers.emplace_back([&, t] {
                auto worker = make_worker(t);
                ready.arrive_and_wait();
                for (std::size_t i = 0; i < steps; ++i) {
                    worker->step();
                }
                done.arrive_and_wait();
            });
        }
        ready.arrive_and_wait();
        const auto start = std::chrono::steady_clock::now();
        done.arrive_and_wait();
        const auto stop = std::chrono::steady_clock::now();
        workers.clear(); // joins; each worker's state ends on its own thread
        best = std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() /
                                  static_cast<double>(steps * threads));
    }
    return best;
}

} // namespace movable::bench
