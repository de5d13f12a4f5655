// background_sources: what background_compactor keeps of each registered arena and source, behind
// a small virtual interface (one entry per registration), and the clocks it reads.
#pragma once

#include <time.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <utility>

#include <movable/arena.hpp>
#include <movable/compaction.hpp>
#include <movable/detail/arena_queries.hpp>

namespace movable::detail {

inline std::chrono::nanoseconds steady_now() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch());
}

// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
inline std::chrono::nanoseconds thread_cpu_now() noexcept {
    timespec now{};
    if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0) {
        return std::chrono::nanoseconds{0};
    }
    return std::chrono::seconds{now.tv_sec} + std::chrono::nanoseconds{now.tv_nsec};
}

// The compactor's Clock (a static now()) for the service's arenas: the wall clock of the service
// whose step runs on this thread, so that an injected clock bounds the compactor's passes too.
struct service_pass_clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<service_pass_clock>;
    static constexpr bool is_steady = true;
    // Set by background_compactor::step for the length of the step.
    static inline thread_local const std::function<std::chrono::nanoseconds()>* current = nullptr;
    static time_point now() { return time_point(current != nullptr ? (*current)() : steady_now()); }
};

// A registered arena: a compactor over it, driven pass by pass.
class arena_entry {
public:
    virtual ~arena_entry() = default;
    [[nodiscard]] virtual unsigned score() const = 0;
    virtual void begin(const compact_request& request) = 0;
    virtual compact_progress pass() = 0;
    [[nodiscard]] virtual const compact_stats& progress() const noexcept = 0;
    virtual compact_stats end() = 0;
    // Gives the arena's free blocks of at least 2^min_order frames (-1: max-order blocks) back to
    // the OS; the bytes that left the resident set (0 for an arena without discard_free_memory).
    virtual std::size_t discard(int min_order) = 0;
    bool running = false; // between begin() and end()
};

template <class Arena>
class typed_arena_entry final : public arena_entry {
public:
    explicit typed_arena_entry(Arena& arena) : arena_(arena), compaction_(arena) {}
    [[nodiscard]] unsigned score() const override { return fragmentation_score(arena_); }
    void begin(const compact_request& request) override { compaction_.begin(request); }
    compact_progress pass() override { return compaction_.pass(); }
    [[nodiscard]] const compact_stats& progress() const noexcept override {
        return compaction_.stats();
    }
    compact_stats end() override { return compaction_.end(); }
    std::size_t discard(int min_order) override {
        if constexpr (requires { arena_.discard_free_memory(0u); }) {
            return arena_.discard_free_memory(min_order < 0 ? Arena::max_order
                                                            : static_cast<unsigned>(min_order));
        } else {
            return 0;
        }
    }

private:
    Arena& arena_;
    compactor<Arena, service_pass_clock> compaction_;
};

// What one compact() of a source did.
struct source_slice {
    std::size_t frames_freed = 0;
    std::size_t objects_moved = 0;
};

// A registered source (a pool, or a user type modelling compactable_source).
class source_entry {
public:
    explicit source_entry(std::size_t high_frames) : high_frames(high_frames) {}
    virtual ~source_entry() = default;
    // Frames compact() could free now; empty for a source that cannot tell.
    [[nodiscard]] virtual std::optional<std::size_t> compactable_frames() const = 0;
    virtual source_slice compact() = 0;
    std::size_t high_frames; // compactable frames that start an episode
    bool pending = false;    // in the running episode, not finished yet
};

template <class Source>
concept source_reports_compactable_frames = requires(const Source& source) {
    { source.compactable_frames() } -> std::convertible_to<std::size_t>;
};

// A source whose stats() count the objects its compaction moved (the four pools).
template <class Source>
concept source_counts_objects_moved = requires(const Source& source) {
    { source.stats().objects_moved } -> std::convertible_to<std::size_t>;
};

template <class Source>
class typed_source_entry final : public source_entry {
public:
    typed_source_entry(Source& source, std::size_t high_frames)
        : source_entry(high_frames), source_(source) {}
    [[nodiscard]] std::optional<std::size_t> compactable_frames() const override {
        if constexpr (source_reports_compactable_frames<Source>) {
            return static_cast<std::size_t>(std::as_const(source_).compactable_frames());
        } else {
            return std::nullopt;
        }
    }
    source_slice compact() override {
        source_slice slice;
        if constexpr (source_counts_objects_moved<Source>) {
            // The pool's own counter: a compaction another thread runs meanwhile counts too
            // (pools run one compaction at a time, so only one that starts between the reads).
            const std::size_t before = std::as_const(source_).stats().objects_moved;
            slice.frames_freed = static_cast<std::size_t>(source_.compact());
            const std::size_t after = std::as_const(source_).stats().objects_moved;
            slice.objects_moved = after > before ? after - before : 0;
        } else {
            slice.frames_freed = static_cast<std::size_t>(source_.compact());
        }
        return slice;
    }

private:
    Source& source_;
};

} // namespace movable::detail
