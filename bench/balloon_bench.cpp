// What moving one balloon frame costs: no bytes are copied, so it is the core protocol (isolate,
// lock both frames, a target from the arena, the source back to it) plus the balloon's
// bookkeeping (host lock, list lock, list and counters) and the host notification. Reported in
// ns and as a ratio to the core protocol alone, measured in the same run with a trivial owner
// that copies nothing either. Also: inflate + deflate of one frame.
#include <movable/frame_arena.hpp>
#include <movable/migrate.hpp>
#include <movable/models/balloon.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>

#include "baseline.hpp"

namespace {

using namespace movable;
using arena_type = frame_arena<4096, 4>;

// A trivial owner of one frame: isolate, migrate and putback do nothing but the protocol.
struct trivial_owner {
    frame* current = nullptr;
    bool isolate(frame&, migrate_mode) noexcept { return true; }
    migrate_status migrate(frame& dst, frame&, migrate_mode) noexcept {
        set_movable(dst, *this);
        current = &dst;
        return migrate_status::success;
    }
    void putback(frame&) noexcept {}
};

// A host that only remembers which frame it holds (the benchmark needs it to find the frame).
struct null_host {
    frame* current = nullptr;
    bool lend(frame& f) noexcept {
        current = &f;
        return true;
    }
    void reclaim(frame&) noexcept {}
    balloon_replace_result replace(frame& new_frame, frame&) noexcept {
        current = &new_frame;
        return balloon_replace_result::replaced;
    }
};

// The same without replace: the balloon calls lend(new), then reclaim(old).
struct lend_reclaim_host {
    frame* current = nullptr;
    bool lend(frame& f) noexcept {
        current = &f;
        return true;
    }
    void reclaim(frame&) noexcept {}
};

// Isolates `f` and migrates it to a fresh arena frame; the old one goes back to the arena.
bool move_once(arena_type& arena, frame& f) {
    if (!isolate_movable_frame(f, migrate_mode::async)) {
        return false;
    }
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::async);
    benchmark::DoNotOptimize(stats.succeeded);
    return stats.succeeded == 1;
}

// ns per move of a trivial owner's frame: the best of several timed batches.
double core_protocol_nanoseconds() {
    arena_type arena(arena_type::block_bytes);
    trivial_owner owner;
    owner.current = &arena.allocate();
    {
        std::lock_guard guard(*owner.current);
        set_movable(*owner.current, owner);
    }
    constexpr int batch = 20000;
    double best = 1e300;
    for (int round = 0; round < 7; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < batch; ++i) {
            move_once(arena, *owner.current);
        }
        const auto stop = std::chrono::steady_clock::now();
        best =
            std::min(best, std::chrono::duration<double, std::nano>(stop - start).count() / batch);
    }
    {
        std::lock_guard guard(*owner.current);
        (void)clear_movable(*owner.current);
    }
    arena.deallocate(*owner.current);
    return best;
}

void core_protocol_move_no_copy(benchmark::State& state) {
    arena_type arena(arena_type::block_bytes);
    trivial_owner owner;
    owner.current = &arena.allocate();
    {
        std::lock_guard guard(*owner.current);
        set_movable(*owner.current, owner);
    }
    for (auto _ : state) {
        if (!move_once(arena, *owner.current)) {
            state.SkipWithError("the frame did not move");
            break;
        }
    }
    {
        std::lock_guard guard(*owner.current);
        (void)clear_movable(*owner.current);
    }
    arena.deallocate(*owner.current);
}
BENCHMARK(core_protocol_move_no_copy);

template <class Host>
void balloon_move_one_frame(benchmark::State& state) {
    arena_type arena(arena_type::block_bytes);
    Host host;
    balloon b(arena, host);
    (void)b.inflate(1);
    const double core_ns = core_protocol_nanoseconds();
    movable::bench::loop_timer timer;
    timer.start();
    for (auto _ : state) {
        if (!move_once(arena, *host.current)) {
            state.SkipWithError("the balloon frame did not move");
            break;
        }
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    state.counters["core_ns"] = core_ns;
    state.counters["x_core"] = ns / core_ns;
    state.counters["balloon_overhead_ns"] = ns - core_ns;
}
// Host with replace(): one host call per move.
BENCHMARK(balloon_move_one_frame<null_host>)->Name("balloon_move_one_frame/replace_host");
// Host with lend and reclaim only: two host calls per move.
BENCHMARK(balloon_move_one_frame<lend_reclaim_host>)
    ->Name("balloon_move_one_frame/lend_reclaim_host");

// Inflate one frame (arena allocation, host told, list) and deflate it again.
void balloon_inflate_deflate_one_frame(benchmark::State& state) {
    arena_type arena(arena_type::block_bytes);
    null_host host;
    balloon b(arena, host);
    for (auto _ : state) {
        const balloon_inflate_result result = b.inflate(1);
        benchmark::DoNotOptimize(result.inflated);
        benchmark::DoNotOptimize(b.deflate(1));
    }
}
BENCHMARK(balloon_inflate_deflate_one_frame);

} // namespace

BENCHMARK_MAIN();
