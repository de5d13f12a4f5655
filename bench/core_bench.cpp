// The core protocol's costs: tagged pointer, is_movable, isolate + putback, and migrating one
// 4 KiB frame through the engine compared with a plain 4 KiB memcpy in the same run.
#include <movable/migrate.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "baseline.hpp"

namespace {

using namespace movable;
constexpr std::size_t frame_size = 4096;

// Two frames over real memory and an owner that migrates one page back and forth between them.
struct ping_pong {
    frame frames[2];
    std::byte* memory =
        static_cast<std::byte*>(::operator new (2 * frame_size, std::align_val_t{frame_size}));
    frame* free_frame = &frames[1];

    ping_pong() {
        std::memset(memory, 0x5a, 2 * frame_size);
        frames[0].acquire_first_reference();
        std::unique_lock<frame> guard(frames[0]);
        set_movable(frames[0], *this);
    }
    ~ping_pong() { ::operator delete (memory, std::align_val_t{frame_size}); }
    std::byte* address_of(const frame& f) { return memory + (&f - frames) * frame_size; }

    // owner protocol
    bool isolate(frame&, migrate_mode) noexcept { return true; }
    migrate_status migrate(frame& dst, frame& src, migrate_mode) noexcept {
        std::memcpy(address_of(dst), address_of(src), frame_size);
        set_movable(dst, *this);
        return migrate_status::success;
    }
    void putback(frame&) noexcept {}

    // targets
    frame* allocate(const frame&) {
        frame* f = free_frame;
        free_frame = nullptr;
        f->acquire_first_reference();
        return f;
    }
    void free(frame& f) {
        f.release_last_reference();
        free_frame = &f;
    }
    frame& used() { return free_frame == &frames[1] ? frames[0] : frames[1]; }
};

void tagged_ptr_encode_decode(benchmark::State& state) {
    alignas(8) static long objects[64];
    std::size_t i = 0;
    for (auto _ : state) {
        const tagged_ptr<long, 3> packed(&objects[i & 63], i & 7);
        auto* pointer = packed.pointer();
        auto tag = packed.tag();
        benchmark::DoNotOptimize(pointer);
        benchmark::DoNotOptimize(tag);
        ++i;
    }
}
BENCHMARK(tagged_ptr_encode_decode);

void is_movable_check(benchmark::State& state) {
    ping_pong pp;
    for (auto _ : state) {
        bool movable = is_movable(pp.frames[0]);
        benchmark::DoNotOptimize(movable);
    }
}
BENCHMARK(is_movable_check);

void isolate_putback_round_trip(benchmark::State& state) {
    ping_pong pp;
    for (auto _ : state) {
        const bool isolated = isolate_movable_frame(pp.frames[0], migrate_mode::async);
        benchmark::DoNotOptimize(isolated);
        (void)putback_movable_frame(pp.frames[0]);
    }
}
BENCHMARK(isolate_putback_round_trip);

void memcpy_4k(benchmark::State& state) {
    ping_pong pp;
    for (auto _ : state) {
        std::memcpy(pp.memory + frame_size, pp.memory, frame_size);
        benchmark::DoNotOptimize(pp.memory);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_size));
}
BENCHMARK(memcpy_4k);

// Isolate, migrate_frames (lock both frames, owner copies 4 KiB, source freed).
void migrate_one_4k_frame(benchmark::State& state) {
    ping_pong pp;
    const double memcpy_ns = movable::bench::memcpy_nanoseconds(frame_size);
    movable::bench::loop_timer timer;
    timer.start();
    for (auto _ : state) {
        frame& f = pp.used();
        frame_list list;
        if (!isolate_movable_frame(f, migrate_mode::async)) {
            state.SkipWithError("isolation failed");
            break;
        }
        list.push_back(f);
        const migrate_stats stats = migrate_frames(list, pp, migrate_mode::async);
        benchmark::DoNotOptimize(stats.succeeded);
    }
    const double ns = timer.nanoseconds_per_iteration(state);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_size));
    state.counters["memcpy_ns"] = memcpy_ns;
    state.counters["x_memcpy"] = ns / memcpy_ns;
    state.counters["overhead_ns"] = ns - memcpy_ns;
}
BENCHMARK(migrate_one_4k_frame);

} // namespace

BENCHMARK_MAIN();
