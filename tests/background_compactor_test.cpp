// background_compactor in manual mode: step() with injected wall and CPU clocks, so every
// watermark, budget and back-off decision is checked without waiting (no timing threshold).
#include <movable/service/background_compactor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include <movable/models/object_pool.hpp>
#include <movable/models/z3fold_pool.hpp>
#include <movable/models/zbud_pool.hpp>
#include <movable/models/zspage_pool.hpp>

#include "support/arena_frames.hpp"

using namespace movable;
using namespace std::chrono_literals;
using reason = background_compactor_reason;

namespace {

// Wall and CPU time the test moves; sources "spend" time when they compact.
struct fake_time {
    std::chrono::nanoseconds wall{0};
    std::chrono::nanoseconds cpu{0};
    background_clocks clocks() {
        return {[this] { return wall; }, [this] { return cpu; }};
    }
    void spend(std::chrono::nanoseconds d) {
        wall += d;
        cpu += d;
    }
    // What the thread does between steps.
    void sleep(const background_step& step) { wall += step.sleep; }
};

// A user type modelling compactable_source: frees `per_call` frames per compact() (a slice),
// spending `cost` of CPU each time.
struct sliced_source {
    fake_time* time = nullptr;
    std::size_t compactable = 0;
    std::size_t per_call = 1;
    std::chrono::nanoseconds cost = 1ms;
    std::size_t calls = 0;
    [[nodiscard]] std::size_t compactable_frames() const { return compactable; }
    std::size_t compact() {
        ++calls;
        time->spend(cost);
        const std::size_t freed = std::min(per_call, compactable);
        compactable -= freed;
        return freed;
    }
};
static_assert(compactable_source<sliced_source>);

// A source that cannot say what it could free.
struct blind_source {
    std::size_t calls = 0;
    std::size_t compact() {
        ++calls;
        return 0;
    }
};
static_assert(compactable_source<blind_source>);
static_assert(!compactable_source<int>);
static_assert(compactable_source<zspage_pool<>> && compactable_source<object_pool<long>> &&
              compactable_source<zbud_pool<>> && compactable_source<z3fold_pool<>>);

background_compactor_options quick_options() {
    background_compactor_options options;
    options.check_interval = 500ms;
    options.cycle = 100ms;
    options.cpu_percent_min = 10;
    options.cpu_percent_max = 10;
    options.high_watermark = 30;
    options.low_watermark = 10;
    options.source_high_frames = 8;
    options.source_low_frames = 0;
    options.pass_frames = 4;
    return options;
}

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
constexpr std::size_t block = arena_type::block_frames;
using owner_type = test::arena_owner<arena_type>;

// An arena filled with pages, then `freed` of them released at random: fragmented.
struct churned {
    churned(std::size_t blocks, std::size_t freed)
        : arena(blocks * arena_type::block_bytes), frames{arena}, owner(frames) {
        pages = arena.frame_count();
        for (std::size_t page = 0; page < pages; ++page) {
            REQUIRE(owner.add_page(page) != nullptr);
        }
        std::vector<std::size_t> order(pages);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), std::mt19937(7));
        for (std::size_t i = 0; i < freed; ++i) {
            owner.release_page(order[i]);
        }
        released.insert(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(freed));
    }
    bool all_pages_intact() {
        for (std::size_t page = 0; page < pages; ++page) {
            if (released.count(page) == 0 && !owner.page_intact(page)) {
                return false;
            }
        }
        return true;
    }
    arena_type arena;
    test::arena_frames<arena_type> frames;
    owner_type owner;
    std::size_t pages = 0;
    std::set<std::size_t> released;
};

// Steps (sleeping as the thread would) until an episode ends; the steps taken.
std::vector<background_step> run_episode(background_compactor& service, fake_time& time) {
    std::vector<background_step> steps;
    for (int i = 0; i < 10000; ++i) {
        const background_step step = service.step();
        steps.push_back(step);
        time.sleep(step);
        if (step.reason != reason::cpu_budget) {
            break;
        }
    }
    return steps;
}

} // namespace

TEST_CASE("an arena above the high watermark is compacted down to the low watermark") {
    churned c(16, 16 * block / 2);
    REQUIRE(c.arena.fragmentation_score() > 30);
    fake_time time;
    background_compactor service(quick_options(), time.clocks());
    service.add_arena(c.arena);
    const std::vector<background_step> steps = run_episode(service, time);
    CHECK(steps.back().reason == reason::low_watermark_reached);
    CHECK(c.arena.fragmentation_score() <= 10);
    CHECK(c.all_pages_intact());
    const background_compactor_stats stats = service.stats();
    CHECK(stats.episodes == 1);
    CHECK(stats.episodes_by_watermark == 1);
    CHECK(stats.frames_moved > 0);
    CHECK(stats.passes >= stats.frames_moved / 4); // pass_frames = 4
    CHECK(stats.last_reason == reason::low_watermark_reached);
    // Below the high watermark again: the next step only looks, and sleeps check_interval.
    const background_step idle = service.step();
    CHECK(idle.reason == reason::below_watermarks);
    CHECK(idle.sleep == 500ms);
    CHECK(service.stats().episodes == 1);
}

TEST_CASE("an arena between the watermarks starts no episode") {
    churned c(16, 0);
    fake_time time;
    background_compactor_options options = quick_options();
    options.high_watermark = 100;
    background_compactor service(options, time.clocks());
    service.add_arena(c.arena);
    CHECK(service.step().reason == reason::below_watermarks);
    CHECK(service.stats().episodes == 0);
    CHECK(service.stats().passes == 0);
}

TEST_CASE("a source reaching its threshold starts an episode; below it, none") {
    fake_time time;
    background_compactor service(quick_options(), time.clocks());
    sliced_source source{&time, 7, 100};
    service.add_source(source);
    CHECK(service.step().reason == reason::below_watermarks);
    CHECK(source.calls == 0);
    source.compactable = 8; // source_high_frames
    CHECK(service.step().reason == reason::low_watermark_reached);
    CHECK(source.calls == 1);
    CHECK(source.compactable == 0);
    CHECK(service.stats().frames_freed == 8);
    CHECK(service.stats().episodes_by_watermark == 1);
}

TEST_CASE("a source's own threshold overrides the option") {
    fake_time time;
    background_compactor service(quick_options(), time.clocks());
    sliced_source source{&time, 20, 100};
    service.add_source(source, 50);
    CHECK(service.step().reason == reason::below_watermarks);
    CHECK(source.calls == 0);
    CHECK_THROWS_AS(service.add_source(source, 0), std::invalid_argument);
}

TEST_CASE("wake() starts an episode below the watermarks, once") {
    fake_time time;
    background_compactor service(quick_options(), time.clocks());
    sliced_source source{&time, 3, 100};
    blind_source blind;
    service.add_source(source);
    service.add_source(blind);
    CHECK(service.step().reason == reason::below_watermarks);
    service.wake();
    CHECK(service.step().reason == reason::low_watermark_reached);
    CHECK(source.calls == 1);
    CHECK(blind.calls == 1); // a source that cannot tell: once per episode
    CHECK(service.stats().episodes_by_wake == 1);
    CHECK(service.step().reason == reason::below_watermarks);
    CHECK(blind.calls == 1);
}

TEST_CASE("forced_interval starts an episode on a period and caps the sleeps") {
    fake_time time;
    background_compactor_options options = quick_options();
    options.forced_interval = 2s;
    background_compactor service(options, time.clocks());
    blind_source blind;
    service.add_source(blind);
    int idle_steps = 0;
    background_step step = service.step();
    while (step.reason == reason::below_watermarks) {
        time.sleep(step);
        ++idle_steps;
        step = service.step();
    }
    CHECK(step.reason == reason::low_watermark_reached);
    CHECK(blind.calls == 1);
    // Never asked: 500 ms looks at 0, 0.5, 1, 1.5 s, the episode at 2 s.
    CHECK(idle_steps == 4);
    CHECK(time.wall == 2s);
    CHECK(service.stats().episodes_by_period == 1);
    // The sleep before the next forced episode is capped at what is left of the period.
    time.wall += 1800ms;
    const background_step next = service.step();
    CHECK(next.reason == reason::below_watermarks);
    CHECK(next.sleep == 200ms);
}

TEST_CASE("the CPU budget limits the passes per cycle and sets the sleep") {
    fake_time time;
    background_compactor service(quick_options(), time.clocks()); // 10% of a 100 ms cycle
    sliced_source source{&time, 100, 1, 1ms};
    service.add_source(source);
    const background_step first = service.step();
    CHECK(first.reason == reason::cpu_budget);
    CHECK(source.calls == 10);  // 10 ms of CPU per cycle, 1 ms per pass
    CHECK(first.sleep == 90ms); // 10 ms in 100 ms: 10%
    CHECK(service.stats().cpu_time_ns == 10'000'000);
    CHECK(service.stats().cpu_percent == 10);
    time.sleep(first);
    CHECK(service.step().reason == reason::cpu_budget);
    CHECK(source.calls == 20);
    // A pass that runs past the slice ends the cycle after it; the sleep keeps the share.
    source.cost = 30ms;
    const background_step long_pass = service.step();
    CHECK(source.calls == 21);
    CHECK(long_pass.sleep == 270ms);
    CHECK(service.stats().longest_pass_ns == 30'000'000);
}

TEST_CASE("the CPU share grows from min to max with the pressure") {
    fake_time time;
    background_compactor_options options = quick_options();
    options.cpu_percent_min = 5;
    options.cpu_percent_max = 25;
    background_compactor service(options, time.clocks());
    sliced_source source{&time, 8, 1, 1ms}; // at the threshold: the minimum
    service.add_source(source);
    CHECK(service.step().reason == reason::cpu_budget);
    CHECK(service.stats().cpu_percent == 5);
    CHECK(source.calls == 5);
    service.wake();
    source.compactable = 16; // twice the threshold: the maximum
    (void)service.step();
    CHECK(service.stats().cpu_percent == 25);
}

TEST_CASE("episodes that free nothing back off exponentially, up to the cap; progress resets") {
    fake_time time;
    background_compactor_options options = quick_options();
    options.max_backoff_shift = 2;
    background_compactor service(options, time.clocks());
    sliced_source source{&time, 8, 0, 0ms}; // frees nothing, costs nothing
    service.add_source(source);
    CHECK(service.step().reason == reason::nothing_to_move);
    CHECK(source.calls == 1);
    // Deferred check_interval * 2^0, then 2^1, 2^2, 2^2 (the cap).
    const std::chrono::nanoseconds expected[] = {500ms, 1000ms, 2000ms, 2000ms};
    for (const std::chrono::nanoseconds deferral : expected) {
        const std::chrono::nanoseconds episode_end = time.wall;
        background_step step = service.step();
        while (step.reason == reason::backing_off) {
            time.sleep(step);
            step = service.step();
        }
        CHECK(step.reason == reason::nothing_to_move);
        CHECK(time.wall - episode_end == deferral);
    }
    CHECK(service.stats().backoff_shift == 2);
    CHECK(service.stats().episodes_deferred >= 4);
    // wake() is not deferred; an episode that frees something resets the back-off.
    source.per_call = 100;
    service.wake();
    CHECK(service.step().reason == reason::low_watermark_reached);
    CHECK(service.stats().backoff_shift == 0);
    source.compactable = 8;
    CHECK(service.step().reason == reason::low_watermark_reached);
}

TEST_CASE("free memory goes back to the OS at the end of an episode, unless turned off") {
    for (const bool release : {true, false}) {
        CAPTURE(release);
        churned c(16, 16 * block / 2);
        fake_time time;
        background_compactor_options options = quick_options();
        options.release_free_memory = release;
        background_compactor service(options, time.clocks());
        service.add_arena(c.arena);
        (void)run_episode(service, time);
        const std::size_t released = service.stats().bytes_released;
        const std::size_t touched_free = c.arena.free_frames() - c.arena.stats().discarded_frames;
        if (release) {
            CHECK(released > 0);
            CHECK(c.arena.stats().discarded_frames > 0);
        } else {
            CHECK(released == 0);
            CHECK(touched_free > 0);
        }
    }
}

TEST_CASE("pools are sources: a fragmented object_pool is compacted, its contents kept") {
    frame_arena<> arena(std::size_t{64} << 20);
    object_pool<std::uint64_t> pool(arena);
    std::vector<object_handle<std::uint64_t>> handles;
    for (std::uint64_t i = 0; i < 20000; ++i) {
        handles.push_back(pool.emplace(i));
    }
    std::vector<object_handle<std::uint64_t>> kept;
    std::vector<std::uint64_t> values;
    for (std::size_t i = 0; i < handles.size(); ++i) {
        if (i % 4 == 0) {
            kept.push_back(handles[i]);
            values.push_back(i);
        } else {
            pool.destroy(handles[i]);
        }
    }
    pool.release_thread_cache();
    REQUIRE(pool.compactable_frames() >= 8);
    fake_time time;
    background_compactor service(quick_options(), time.clocks());
    service.add_source(pool);
    service.add_arena(arena);
    (void)run_episode(service, time);
    CHECK(pool.compactable_frames() == 0);
    const background_compactor_stats stats = service.stats();
    CHECK(stats.frames_freed > 0);
    CHECK(stats.objects_moved > 0);
    for (std::size_t i = 0; i < kept.size(); ++i) {
        CHECK(*pool.pin(kept[i]) == values[i]);
    }
    pool.check_invariants();
}

TEST_CASE("zspage, zbud and z3fold pools register as sources") {
    frame_arena<> arena(std::size_t{16} << 20);
    zspage_pool<> zspages(arena);
    zbud_pool<> zbuds(arena);
    z3fold_pool<> z3folds(arena);
    fake_time time;
    background_compactor service(quick_options(), time.clocks());
    service.add_source(zspages);
    service.add_source(zbuds); // no compactable_frames(): compacted once per episode
    service.add_source(z3folds);
    service.wake();
    CHECK(service.step().reason == reason::low_watermark_reached);
    CHECK(service.stats().passes == 2); // zspages has nothing to compact
}

TEST_CASE("stats name why the service last stopped or slept") {
    CHECK(std::string(to_string(reason::not_run)) == "not_run");
    CHECK(std::string(to_string(reason::below_watermarks)) == "below_watermarks");
    CHECK(std::string(to_string(reason::backing_off)) == "backing_off");
    CHECK(std::string(to_string(reason::cpu_budget)) == "cpu_budget");
    CHECK(std::string(to_string(reason::low_watermark_reached)) == "low_watermark_reached");
    CHECK(std::string(to_string(reason::nothing_to_move)) == "nothing_to_move");
    CHECK(std::string(to_string(reason::stop_requested)) == "stop_requested");
    fake_time time;
    const background_compactor service(quick_options(), time.clocks());
    CHECK(service.stats().last_reason == reason::not_run);
    CHECK(service.stats().steps == 0);
}

TEST_CASE("bad options are rejected with a message naming them") {
    const auto rejects = [](background_compactor_options options, const char* what) {
        CAPTURE(what);
        try {
            const background_compactor service(options);
            FAIL("accepted");
        } catch (const std::invalid_argument& error) {
            CHECK(std::string(error.what()).find(what) != std::string::npos);
        }
    };
    background_compactor_options o;
    o.high_watermark = 101;
    rejects(o, "high_watermark");
    o = {};
    o.low_watermark = 40;
    o.high_watermark = 30;
    rejects(o, "low_watermark");
    o = {};
    o.cpu_percent_min = 0;
    rejects(o, "cpu percents");
    o = {};
    o.cpu_percent_min = 30;
    o.cpu_percent_max = 20;
    rejects(o, "cpu percents");
    o = {};
    o.cpu_percent_max = 101;
    rejects(o, "cpu percents");
    o = {};
    o.check_interval = 0s;
    rejects(o, "check_interval");
    o = {};
    o.cycle = -1ms;
    rejects(o, "cycle");
    o = {};
    o.pass_duration = 0s;
    rejects(o, "pass_duration");
    o = {};
    o.source_high_frames = 0;
    rejects(o, "source_high_frames");
    o = {};
    o.max_backoff_shift = 17;
    rejects(o, "max_backoff_shift");
    o = {};
    o.forced_interval = -1s;
    rejects(o, "forced_interval");
    o = {};
    o.release_min_order = -2;
    rejects(o, "release_min_order");
    o.release_min_order = 5;
    background_compactor service(o);
    arena_type arena(arena_type::block_bytes); // max_order 4
    CHECK_THROWS_AS(service.add_arena(arena), std::invalid_argument);
    CHECK_THROWS_AS(background_compactor({}, background_clocks{nullptr, nullptr}),
                    std::invalid_argument);
}
