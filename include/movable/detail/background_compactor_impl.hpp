// background_compactor's step: triggers, episodes, the CPU-budgeted cycle and back-off
// (background_compactor.hpp says what each does).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <mutex>

#include <movable/service/background_compactor.hpp>

namespace movable {

inline background_step background_compactor::step_locked() {
    using std::chrono::nanoseconds;
    ++work_stats_.steps;
    // The arena compactors read the injected wall clock through service_pass_clock.
    struct pass_clock_scope {
        const std::function<nanoseconds()>* previous = detail::service_pass_clock::current;
        explicit pass_clock_scope(const std::function<nanoseconds()>& wall) {
            detail::service_pass_clock::current = &wall;
        }
        ~pass_clock_scope() { detail::service_pass_clock::current = previous; }
        pass_clock_scope(const pass_clock_scope&) = delete;
        pass_clock_scope& operator=(const pass_clock_scope&) = delete;
    } const scope(clocks_.wall);

    // A wake() during an episode is kept for the step after it (the episode may have passed the
    // source the caller cares about).
    bool woken = false;
    if (!in_episode_) {
        const std::scoped_lock lock(state_mutex_);
        woken = std::exchange(wake_requested_, false);
    }
    const nanoseconds start = clocks_.wall();
    // The time until the next forced episode caps every sleep.
    const auto capped = [&](nanoseconds sleep, nanoseconds now) {
        if (options_.forced_interval.count() > 0) {
            const nanoseconds due = last_episode_end_ + options_.forced_interval - now;
            sleep = std::min(sleep, std::max(due, nanoseconds{0}));
        }
        return sleep;
    };
    background_step result;
    const auto publish = [&] {
        work_stats_.last_reason = result.reason;
        work_stats_.last_sleep_ns = static_cast<std::uint64_t>(result.sleep.count());
        work_stats_.backoff_shift = backoff_shift_;
        const std::scoped_lock lock(state_mutex_);
        stats_ = work_stats_;
        in_episode_published_ = in_episode_;
        return result;
    };

    if (!in_episode_) {
        const trigger why = find_trigger(start, woken);
        if (why == trigger::none) {
            if (start < backoff_until_ && backoff_started_) {
                result = {background_compactor_reason::backing_off,
                          capped(backoff_until_ - start, start)};
            } else {
                result = {background_compactor_reason::below_watermarks,
                          capped(options_.check_interval, start)};
            }
            return publish();
        }
        start_episode(why);
    }

    // One cycle: passes until the CPU slice is spent (or the cycle's wall time is up).
    const unsigned percent = cpu_percent();
    work_stats_.cpu_percent = percent;
    const nanoseconds slice = std::max(options_.cycle * percent / 100, nanoseconds{1});
    const nanoseconds cpu_start = clocks_.thread_cpu();
    bool more = true;
    nanoseconds cpu_used{0};
    nanoseconds wall_used{0};
    do {
        more = run_one_pass();
        cpu_used = clocks_.thread_cpu() - cpu_start;
        wall_used = clocks_.wall() - start;
    } while (more && cpu_used < slice && wall_used < options_.cycle &&
             !stop_token_.stop_requested());
    work_stats_.cpu_time_ns +=
        static_cast<std::uint64_t>(std::max(cpu_used, nanoseconds{0}).count());
    // Sleep so that this cycle used at most `percent` of one core.
    const nanoseconds budget_sleep = std::max(cpu_used * 100 / percent - wall_used, nanoseconds{0});
    if (more) {
        result = {background_compactor_reason::cpu_budget, budget_sleep};
        return publish();
    }
    const nanoseconds now = start + wall_used;
    result.reason = end_episode(now);
    result.sleep = capped(std::max(budget_sleep, options_.check_interval), now);
    return publish();
}

inline background_compactor::trigger
background_compactor::find_trigger(std::chrono::nanoseconds now, bool woken) {
    if (woken) {
        return trigger::wake;
    }
    if (options_.forced_interval.count() > 0 &&
        now - last_episode_end_ >= options_.forced_interval) {
        return trigger::period;
    }
    bool crossed = std::any_of(arenas_.begin(), arenas_.end(), [&](const auto& arena) {
        return arena->score() > options_.high_watermark;
    });
    crossed = crossed || std::any_of(sources_.begin(), sources_.end(), [](const auto& source) {
                  const std::optional<std::size_t> frames = source->compactable_frames();
                  return frames && *frames >= source->high_frames;
              });
    if (!crossed) {
        return trigger::none;
    }
    if (backoff_started_ && now < backoff_until_) {
        ++work_stats_.episodes_deferred;
        return trigger::none;
    }
    return trigger::watermark;
}

inline void background_compactor::start_episode(trigger why) {
    in_episode_ = true;
    arena_cursor_ = 0;
    episode_progress_ = 0;
    episode_stuck_ = false;
    ++work_stats_.episodes;
    switch (why) {
    case trigger::watermark:
        ++work_stats_.episodes_by_watermark;
        break;
    case trigger::wake:
        ++work_stats_.episodes_by_wake;
        break;
    case trigger::period:
    case trigger::none:
        ++work_stats_.episodes_by_period;
        break;
    }
    for (const auto& source : sources_) {
        const std::optional<std::size_t> frames = source->compactable_frames();
        // A source that cannot tell is compacted once in every episode.
        source->pending = !frames || *frames > options_.source_low_frames;
    }
}

inline bool background_compactor::run_one_pass() {
    return run_source_pass() || run_arena_pass();
}

inline bool background_compactor::run_source_pass() {
    const auto next = std::find_if(sources_.begin(), sources_.end(),
                                   [](const auto& source) { return source->pending; });
    if (next == sources_.end()) {
        return false;
    }
    detail::source_entry& source = **next;
    const std::chrono::nanoseconds pass_start = clocks_.wall();
    const detail::source_slice slice = source.compact();
    record(clocks_.wall() - pass_start);
    work_stats_.frames_freed += slice.frames_freed;
    work_stats_.objects_moved += slice.objects_moved;
    episode_progress_ += slice.frames_freed;
    const std::optional<std::size_t> left = source.compactable_frames();
    const bool above_low = left && *left > options_.source_low_frames;
    // Again while it frees something and stays above its low mark; a source that cannot tell
    // gets one pass.
    source.pending = slice.frames_freed != 0 && above_low;
    if (slice.frames_freed == 0 && above_low) {
        episode_stuck_ = true;
    }
    return true;
}

inline bool background_compactor::run_arena_pass() {
    while (arena_cursor_ < arenas_.size()) {
        detail::arena_entry& arena = *arenas_[arena_cursor_];
        if (!arena.running) {
            if (arena.score() <= options_.low_watermark) {
                ++arena_cursor_;
                continue;
            }
            compact_request request;
            request.mode = options_.mode;
            request.strategy = options_.strategy;
            request.stop_at_score = static_cast<int>(options_.low_watermark);
            request.max_duration_per_pass = options_.pass_duration;
            request.max_frames_per_pass = options_.pass_frames;
            arena.begin(request);
            arena.running = true;
        }
        const std::size_t passes_before = arena.progress().passes;
        const std::size_t migrated_before = arena.progress().migrated;
        const std::chrono::nanoseconds pass_start = clocks_.wall();
        const compact_progress progress = arena.pass();
        const bool did_work = arena.progress().passes != passes_before;
        if (did_work) {
            record(clocks_.wall() - pass_start);
        }
        const std::size_t moved = arena.progress().migrated - migrated_before;
        work_stats_.frames_moved += moved;
        episode_progress_ += moved;
        if (progress == compact_progress::done) {
            const compact_stats finished = arena.end();
            arena.running = false;
            if (finished.outcome != compact_outcome::score_reached &&
                arena.score() > options_.low_watermark) {
                episode_stuck_ = true;
            }
            ++arena_cursor_;
        }
        if (did_work) {
            return true;
        }
    }
    return false;
}

inline background_compactor_reason background_compactor::end_episode(std::chrono::nanoseconds now) {
    in_episode_ = false;
    if (options_.release_free_memory) {
        for (const auto& arena : arenas_) {
            work_stats_.bytes_released += arena->discard(options_.release_min_order);
        }
    }
    last_episode_end_ = now;
    if (episode_progress_ != 0) {
        backoff_shift_ = 0;
        backoff_started_ = false;
    } else if (episode_stuck_) {
        // Nothing freed and something still above its low mark: defer the next one.
        if (backoff_started_) {
            backoff_shift_ = std::min(backoff_shift_ + 1, options_.max_backoff_shift);
        }
        backoff_started_ = true;
        backoff_until_ = now + options_.check_interval * (std::int64_t{1} << backoff_shift_);
    }
    return episode_stuck_ ? background_compactor_reason::nothing_to_move
                          : background_compactor_reason::low_watermark_reached;
}

inline void background_compactor::abandon_episode() noexcept {
    for (const auto& arena : arenas_) {
        if (arena->running) {
            const std::size_t migrated_before = arena->progress().migrated;
            const compact_stats finished = arena->end();
            work_stats_.frames_moved += finished.migrated - migrated_before;
            arena->running = false;
        }
    }
    in_episode_ = false;
}

inline unsigned background_compactor::cpu_percent() const {
    double pressure = 0.0;
    const unsigned high = options_.high_watermark;
    if (high < 100) {
        for (const auto& arena : arenas_) {
            const unsigned score = arena->score();
            if (score > high) {
                pressure = std::max(pressure, static_cast<double>(score - high) / (100 - high));
            }
        }
    }
    for (const auto& source : sources_) {
        const std::optional<std::size_t> frames = source->compactable_frames();
        if (frames && *frames > source->high_frames) {
            pressure = std::max(pressure, static_cast<double>(*frames - source->high_frames) /
                                              static_cast<double>(source->high_frames));
        }
    }
    pressure = std::min(pressure, 1.0);
    const unsigned span = options_.cpu_percent_max - options_.cpu_percent_min;
    return options_.cpu_percent_min + static_cast<unsigned>(std::lround(span * pressure));
}

inline void background_compactor::record(std::chrono::nanoseconds pass_time) {
    ++work_stats_.passes;
    const auto ns = static_cast<std::uint64_t>(std::max(pass_time.count(), std::int64_t{0}));
    work_stats_.longest_pass_ns = std::max(work_stats_.longest_pass_ns, ns);
}

} // namespace movable
