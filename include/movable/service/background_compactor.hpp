// background_compactor: a service thread that keeps arenas and pools compact (the kernel's
// kcompactd with proactive compaction, and Redis's active defragmentation cycle).
//
// It serves one or more arenas (any compactable_arena; its fragmentation score is watched) and
// sources: the four pools and any user type modelling compactable_source (compact() frees what
// it can, compactable_frames() says how much that would be). It wakes
//   * every check_interval, to look at the watermarks: an episode starts when an arena's
//     fragmentation score is above high_watermark, or a source's compactable frames reach its
//     threshold (source_high_frames);
//   * on wake(): an episode starts whatever the watermarks say;
//   * every forced_interval (if set): the same, on a period.
// An episode compacts, in budgeted passes, the sources first (each compact() is one pass; a
// source is compacted again while its compactable frames stay above source_low_frames and its
// last compact() freed something), then every arena whose score is above low_watermark, with a
// proactive compaction (compactor begin/pass/end, stop_at_score = low_watermark, each pass
// bounded by pass_duration and pass_frames) until it reaches the low watermark or nothing more
// can be moved. At the end of an episode it gives free memory back to the OS
// (discard_free_memory, if release_free_memory).
//
// CPU budget (Redis's active-defrag-cycle-min/max): passes run in cycles; a cycle runs passes
// until it has used cycle * percent / 100 of the thread's CPU time (at least one pass), then
// sleeps long enough that the cycle used at most `percent` of one core: sleep = cpu * 100 /
// percent - wall. `percent` goes from cpu_percent_min to cpu_percent_max with the pressure: the
// worst arena's score between high_watermark (min) and 100 (max), or a source's compactable
// frames between its threshold (min) and twice it (max).
//
// Back-off (the kernel's compaction deferral): an episode that frees nothing (no frame migrated,
// no frame freed by a source) defers the next watermark-started episode by check_interval *
// 2^shift, shift growing by one up to max_backoff_shift; an episode that frees something resets
// it. wake() and forced_interval are not deferred.
//
// Manual mode: without start(), step() runs what the thread runs once and returns how long the
// thread would sleep; with injected clocks (background_clocks) tests check watermarks, budgets and
// back-off without waiting. The injected wall clock also bounds the arena compactors' passes.
//
// Locks: registration, step() and the thread's cycles take the service's work lock; pools and
// arenas take their own locks under it (never the other way round: nothing they call comes back
// into the service), so a source's compact() must not register anything. The thread sleeps
// holding no lock of the service, a pool or an arena. stats() and wake() take only the state
// lock, never waited for across a pass. Every registered arena and source must outlive the service
// (or its stop()).
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <movable/arena.hpp>
#include <movable/compaction.hpp>
#include <movable/detail/background_sources.hpp>
#include <movable/operations.hpp>

namespace movable {

// What the service can compact besides arenas: compact() frees what it can now (one pass;
// returns the frames freed). Optional: `compactable_frames() const`, the frames compact() could
// free now (a source without it never starts an episode; it is compacted once in every episode
// something else starts), and `stats().objects_moved` (counted in the service's statistics).
template <class Source>
concept compactable_source = requires(Source& source) {
    { source.compact() } -> std::convertible_to<std::size_t>;
};

struct background_compactor_options {
    // Arena fragmentation score (0..100, fragmentation.hpp): above high, an episode starts; it
    // compacts each arena down to low. low <= high <= 100.
    unsigned high_watermark = 30;
    unsigned low_watermark = 10;
    // A source's compactable frames that start an episode (at least 1), and below or at which it
    // is done (< high) (add_source may give a source its own high threshold).
    std::size_t source_high_frames = 64;
    std::size_t source_low_frames = 0;
    // How often the idle thread looks at the watermarks (> 0), and (if > 0) how often an episode
    // runs whatever they say.
    std::chrono::nanoseconds check_interval = std::chrono::milliseconds(500);
    std::chrono::nanoseconds forced_interval{0};
    // CPU budget, in percent of one core (1 <= min <= max <= 100), per cycle (> 0).
    unsigned cpu_percent_min = 1;
    unsigned cpu_percent_max = 25;
    std::chrono::nanoseconds cycle = std::chrono::milliseconds(100);
    // Each arena compaction pass: compact_request::max_duration_per_pass (> 0) and
    // max_frames_per_pass (0: no limit), in this migrate mode.
    std::chrono::nanoseconds pass_duration = std::chrono::milliseconds(1);
    std::size_t pass_frames = 0;
    migrate_mode mode = migrate_mode::sync_light;
    compact_strategy strategy = compact_strategy::least_moves;
    // Deferral after episodes that freed nothing: up to check_interval * 2^max_backoff_shift
    // (max_backoff_shift <= 16).
    unsigned max_backoff_shift = 6;
    // Give free memory back to the OS at the end of each episode: the arenas' free blocks of at
    // least 2^release_min_order frames (-1: max-order blocks, what compaction gathers; 0: every
    // free frame, as pool compaction leaves them scattered, at one madvise per free block, under
    // the arena's lock).
    bool release_free_memory = true;
    int release_min_order = -1;
};

// Why the service last stopped an episode, or slept.
enum class background_compactor_reason : std::uint8_t {
    not_run,               // no step yet
    below_watermarks,      // slept: no watermark crossed, nothing asked for
    backing_off,           // slept: a watermark is crossed, but earlier episodes freed nothing
    cpu_budget,            // slept in an episode: the cycle's CPU share is spent
    low_watermark_reached, // episode ended: every arena and source at or below its low mark
    nothing_to_move,       // episode ended above a low mark: nothing more could be moved
    stop_requested,        // the thread stopped
};

[[nodiscard]] constexpr const char* to_string(background_compactor_reason reason) noexcept {
    switch (reason) {
    case background_compactor_reason::not_run:
        return "not_run";
    case background_compactor_reason::below_watermarks:
        return "below_watermarks";
    case background_compactor_reason::backing_off:
        return "backing_off";
    case background_compactor_reason::cpu_budget:
        return "cpu_budget";
    case background_compactor_reason::low_watermark_reached:
        return "low_watermark_reached";
    case background_compactor_reason::nothing_to_move:
        return "nothing_to_move";
    case background_compactor_reason::stop_requested:
        return "stop_requested";
    }
    return "unknown";
}

// Plain numbers (durations in nanoseconds) and one enum.
struct background_compactor_stats {
    std::size_t steps = 0;    // wake-ups (thread) or step() calls
    std::size_t episodes = 0; // episodes started
    std::size_t episodes_by_watermark = 0;
    std::size_t episodes_by_wake = 0;
    std::size_t episodes_by_period = 0;
    std::size_t episodes_deferred = 0; // steps that found a watermark crossed but backed off
    std::size_t passes = 0;            // arena compaction passes + source compact() calls
    std::size_t frames_moved = 0;      // frames migrated by arena compaction
    std::size_t objects_moved = 0;     // objects moved by sources' compaction (their stats)
    std::size_t frames_freed = 0;      // frames sources' compact() gave back to their arena
    std::size_t bytes_released = 0;    // left the resident set (discard_free_memory)
    std::uint64_t cpu_time_ns = 0;     // the service's CPU time in cycles
    std::uint64_t longest_pass_ns = 0; // wall time of the longest pass
    std::uint64_t last_sleep_ns = 0;   // what the last step asked to sleep
    unsigned cpu_percent = 0;          // the last cycle's budget
    unsigned backoff_shift = 0;        // current deferral: check_interval * 2^shift
    background_compactor_reason last_reason = background_compactor_reason::not_run;
};

// The clocks the service reads, in nanoseconds from any fixed origin: wall time (default
// steady_clock) and the CPU time of the thread calling it (default
// clock_gettime(CLOCK_THREAD_CPUTIME_ID)). Tests inject both; they must not throw.
struct background_clocks {
    std::function<std::chrono::nanoseconds()> wall = &detail::steady_now;
    std::function<std::chrono::nanoseconds()> thread_cpu = &detail::thread_cpu_now;
};

// What one step did and how long the thread sleeps after it (wake() cuts a sleep short).
struct background_step {
    background_compactor_reason reason = background_compactor_reason::not_run;
    std::chrono::nanoseconds sleep{0};
};

class background_compactor {
public:
    // Throws std::invalid_argument naming the first option out of range, or an empty clock.
    explicit background_compactor(background_compactor_options options = {},
                                  background_clocks clocks = {});
    // Stops the thread (as stop()).
    ~background_compactor() { stop(); }
    background_compactor(const background_compactor&) = delete;
    background_compactor& operator=(const background_compactor&) = delete;

    // Registration, before start() or while the thread runs (waits for a running cycle). The
    // arena or source must outlive the service (or stop()).
    // Throws std::invalid_argument when release_min_order is above the arena's max_order.
    template <compactable_arena Arena>
    void add_arena(Arena& arena) {
        if (options_.release_min_order > static_cast<int>(Arena::max_order)) {
            throw std::invalid_argument(
                "background_compactor::add_arena: release_min_order above the arena's max_order");
        }
        auto entry = std::make_unique<detail::typed_arena_entry<Arena>>(arena);
        const std::scoped_lock lock(work_mutex_);
        arenas_.push_back(std::move(entry));
    }
    template <compactable_source Source>
    void add_source(Source& source) {
        add_source(source, options_.source_high_frames);
    }
    // With its own threshold (at least 1; throws std::invalid_argument otherwise).
    template <compactable_source Source>
    void add_source(Source& source, std::size_t high_frames) {
        if (high_frames == 0 || high_frames <= options_.source_low_frames) {
            throw std::invalid_argument(
                "background_compactor::add_source: high_frames must be above source_low_frames");
        }
        auto entry = std::make_unique<detail::typed_source_entry<Source>>(source, high_frames);
        const std::scoped_lock lock(work_mutex_);
        sources_.push_back(std::move(entry));
    }

    // Starts the thread. Throws std::logic_error if it runs already.
    void start();
    // Asks the thread to stop and joins it; it ends a running arena compaction first (putting
    // back what it holds) but does not finish the episode. No-op when not running.
    void stop() noexcept;
    // Asks the thread to stop without waiting for it (it ends its cycle after the running pass);
    // stop() or the destructor joins it.
    void request_stop() noexcept { thread_.request_stop(); }
    [[nodiscard]] bool running() const noexcept { return thread_.joinable(); }
    // Starts an episode at the next step whatever the watermarks say (wakes the thread).
    void wake();

    // Manual mode: runs once what the thread runs after each wake-up, on the calling thread,
    // and returns how long the thread would sleep now. Throws std::logic_error while the
    // thread runs.
    background_step step();

    [[nodiscard]] background_compactor_stats stats() const;
    [[nodiscard]] const background_compactor_options& options() const noexcept { return options_; }

private:
    enum class trigger : std::uint8_t { none, watermark, wake, period };

    void run(const std::stop_token& token);
    background_step step_locked();
    trigger find_trigger(std::chrono::nanoseconds now, bool woken);
    void start_episode(trigger why);
    // One pass of the episode's next piece of work; false when the episode has nothing left.
    bool run_one_pass();
    bool run_source_pass();
    bool run_arena_pass();
    background_compactor_reason end_episode(std::chrono::nanoseconds now);
    void abandon_episode() noexcept;
    unsigned cpu_percent() const;
    void record(std::chrono::nanoseconds pass_time);

    background_compactor_options options_;
    background_clocks clocks_;
    // Work lock: the registrations and the episode's state below; held for a step (a cycle).
    std::mutex work_mutex_;
    std::vector<std::unique_ptr<detail::arena_entry>> arenas_;
    std::vector<std::unique_ptr<detail::source_entry>> sources_;
    bool in_episode_ = false;
    std::size_t arena_cursor_ = 0; // next arena of the episode
    std::size_t episode_progress_ = 0;
    bool episode_stuck_ =
        false; // an arena ended above the low watermark, or a source with frames left
    bool backoff_started_ = false;
    std::chrono::nanoseconds last_episode_end_{0};
    std::chrono::nanoseconds backoff_until_{0};
    unsigned backoff_shift_ = 0;
    background_compactor_stats work_stats_; // the work lock's copy, published after each step
    // State lock: the published statistics, the wake flag; the thread sleeps on it.
    mutable std::mutex state_mutex_;
    std::condition_variable_any wake_cv_;
    bool wake_requested_ = false;
    bool in_episode_published_ = false; // a wake() does not cut an episode's budget sleep short
    std::stop_token stop_token_;        // the thread's (manual mode: never stops); work lock
    background_compactor_stats stats_;
    std::jthread thread_;
};

// ---- implementation ---------------------------------------------------------------------------

inline background_compactor::background_compactor(background_compactor_options options,
                                                  background_clocks clocks)
    : options_(options), clocks_(std::move(clocks)) {
    const auto reject = [](const char* what) {
        throw std::invalid_argument(std::string("background_compactor: ") + what);
    };
    if (options_.high_watermark > 100) {
        reject("high_watermark above 100");
    }
    if (options_.low_watermark > options_.high_watermark) {
        reject("low_watermark above high_watermark");
    }
    if (options_.source_high_frames == 0 ||
        options_.source_high_frames <= options_.source_low_frames) {
        reject("source_high_frames must be above source_low_frames");
    }
    if (options_.check_interval.count() <= 0) {
        reject("check_interval must be positive");
    }
    if (options_.forced_interval.count() < 0) {
        reject("forced_interval is negative");
    }
    if (options_.cpu_percent_min == 0 || options_.cpu_percent_min > options_.cpu_percent_max ||
        options_.cpu_percent_max > 100) {
        reject("cpu percents must satisfy 1 <= cpu_percent_min <= cpu_percent_max <= 100");
    }
    if (options_.cycle.count() <= 0) {
        reject("cycle must be positive");
    }
    if (options_.pass_duration.count() <= 0) {
        reject("pass_duration must be positive");
    }
    if (options_.release_min_order < -1) {
        reject("release_min_order below -1");
    }
    if (options_.max_backoff_shift > 16) {
        reject("max_backoff_shift above 16");
    }
    if (!clocks_.wall || !clocks_.thread_cpu) {
        reject("a clock is empty");
    }
    last_episode_end_ = clocks_.wall();
}

inline void background_compactor::start() {
    if (thread_.joinable()) {
        throw std::logic_error("background_compactor::start: the thread runs already");
    }
    thread_ = std::jthread([this](const std::stop_token& token) { run(token); });
}

inline void background_compactor::stop() noexcept {
    if (thread_.joinable()) {
        thread_.request_stop(); // wakes the condition variable's stop_token wait
        thread_.join();
    }
}

inline void background_compactor::wake() {
    {
        const std::scoped_lock lock(state_mutex_);
        wake_requested_ = true;
    }
    wake_cv_.notify_all();
}

inline background_compactor_stats background_compactor::stats() const {
    const std::scoped_lock lock(state_mutex_);
    return stats_;
}

inline background_step background_compactor::step() {
    if (thread_.joinable()) {
        throw std::logic_error("background_compactor::step: the thread runs; step is for manual "
                               "mode (no start())");
    }
    const std::scoped_lock lock(work_mutex_);
    return step_locked();
}

inline void background_compactor::run(const std::stop_token& token) {
    {
        const std::scoped_lock lock(work_mutex_);
        stop_token_ = token;
    }
    while (!token.stop_requested()) {
        background_step next;
        {
            const std::scoped_lock lock(work_mutex_);
            next = step_locked();
        }
        // Sleeps holding only the state lock (released while waiting).
        std::unique_lock lock(state_mutex_);
        wake_cv_.wait_for(lock, token, next.sleep,
                          [this] { return wake_requested_ && !in_episode_published_; });
    }
    const std::scoped_lock work(work_mutex_);
    abandon_episode();
    stop_token_ = {};
    work_stats_.last_reason = background_compactor_reason::stop_requested;
    const std::scoped_lock lock(state_mutex_);
    stats_ = work_stats_;
    in_episode_published_ = false;
}

} // namespace movable

#include <movable/detail/background_compactor_impl.hpp>
