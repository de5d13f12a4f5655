// compactor<Arena>: moves movable frames so that an arena's free space gathers into whole
// max-order blocks (or one free block of a requested order), which can then be allocated or
// handed back to the OS. Two strategies (compact_request::strategy):
//
// least_moves (the default): plans first (detail/compaction_plan.hpp). A full compaction
// empties the max-order blocks with the fewest used frames, as many as the free space allows,
// into the holes of the densest blocks: the fewest moves that free the most blocks, and none
// at all for an arena that is already compact. An order-targeted compaction empties the
// cheapest aligned region of that order; a proactive one empties the cheapest blocks until the
// fragmentation score is low enough. Owners keep allocating and freeing meanwhile, so each
// region is checked again when its turn comes: a region that can no longer be emptied (a frame
// that will not move) is given up and the next cheapest tried; frames are moved only into
// blocks that are not being emptied, so none moves twice without cause. compact_stats says what
// an ideal plan moves (minimum_moves) beside what was moved (migrated).
//
// scanners: the kernel's two scanners (mm/compaction.c), kept for fidelity and comparison: the
// migration scanner walks up from frame 0 isolating movable frames in batches; the free scanner
// walks down from the top taking free frames as migration targets. Compaction stops when they
// meet, when a free block of the requested order exists (order-targeted), or when the
// fragmentation score drops to the requested level (proactive). It moves every movable frame
// below their meeting point, whether that frees a block or not.
//
// Run it in one call, compact(request), or in slices: begin(request), then pass() until it
// answers `done` (each pass migrates at most max_frames_per_pass frames and
// max_bytes_per_pass bytes, and stops after the frame that takes it past
// max_duration_per_pass on Clock, so a pass is a bounded pause), then end() for the statistics.
//
// Skip hints (scanners): a max-order block in which the migration scanner found nothing it could
// isolate is skipped by later order-targeted compactions until the next full compaction. Deferral:
// an order-targeted compaction that fails makes the next 1, 2, 4 ... 64 requests for that order or
// above return at once (deferred); a success resets it.
//
// Shake mode (shake.hpp): when the arena's shake() is enabled (an arena with a `shake()`
// member, as frame_arena), begin() first moves every movable allocated frame to a new place,
// whatever the strategy, the budgets or the layout (compact_stats::shaken), so an owner that
// keeps a raw pointer into its frames fails at once instead of the day compaction happens to
// move that frame. Then the compaction runs as requested.
//
// Destroying a compactor ends a compaction it is running (see ~compactor). The arena must
// outlive it. A compactor is used by one thread at a time; several compactors (or the arena's other
// users, and the owners) may run concurrently on the same arena.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

#include <movable/arena.hpp>
#include <movable/detail/arena_queries.hpp>
#include <movable/detail/compaction_deferral.hpp>
#include <movable/detail/compaction_plan.hpp>
#include <movable/detail/shake_frames.hpp>
#include <movable/fragmentation.hpp>
#include <movable/frame.hpp>
#include <movable/frame_arena.hpp>
#include <movable/migrate.hpp>

namespace movable {

enum class compact_strategy : std::uint8_t {
    least_moves, // plan the fewest moves that free the most blocks (the default)
    scanners,    // the kernel's migration and free scanners
};

struct compact_request {
    int order = -1; // -1: full compaction; else stop once 2^order is free
    migrate_mode mode = migrate_mode::sync;
    std::size_t max_frames_per_pass = 0; // 0: no limit
    std::size_t max_bytes_per_pass = 0;  // 0: no limit; else at least one frame's size
    // 0: no limit; else a pass stops after the frame during which this much time has passed
    // since the pass began (the clock is read after every frame; a pass moves at least one).
    std::chrono::nanoseconds max_duration_per_pass{0};
    int stop_at_score = -1; // >= 0: stop once fragmentation_score() <= this
    compact_strategy strategy = compact_strategy::least_moves;
};

enum class compact_progress : std::uint8_t { incomplete, done };

// Why a compaction finished.
enum class compact_outcome : std::uint8_t {
    running,         // not finished yet
    scanners_met,    // scanned the whole arena
    order_available, // order-targeted: a free block of the requested order exists
    score_reached,   // proactive: fragmentation score at or below the requested level
    deferred,        // order-targeted: skipped, an earlier one for this order failed
    planned,         // least_moves: every region of the plan was emptied or given up
};

struct compact_stats {
    std::size_t migrate_scanned = 0; // frames looked at for sources (least_moves: in the
                                     // regions it empties)
    std::size_t free_scanned = 0;    // frames looked at for targets
    // What an ideal plan moves, worked out from the arena at begin(), for both strategies
    // (least_moves carries that plan out).
    std::size_t minimum_moves = 0;
    std::size_t regions_given_up = 0; // least_moves: regions found unmovable when their turn came
    std::size_t isolated = 0;         // frames isolated for migration
    std::size_t migrated = 0;         // frames moved
    std::size_t failed = 0;           // isolated but not moved (busy, failed, retries out)
    std::size_t released = 0;         // released by their owner while isolated; freed
    std::size_t bytes_moved = 0;      // migrated * frame_size
    std::size_t blocks_skipped = 0;   // max-order blocks skipped on a hint
    std::size_t max_order_blocks_freed = 0; // free max-order blocks gained
    std::size_t passes = 0;                 // pass() calls that did work
    std::size_t passes_timed_out = 0;       // passes stopped by max_duration_per_pass
    std::size_t rounds = 0;                 // scanner sweeps (full compaction sweeps again while
                            // the last sweep left free holes above the meeting point)
    std::size_t shaken = 0; // shake mode: frames begin() moved before compacting (not in migrated)
    compact_outcome outcome = compact_outcome::running;
};

// Clock: a type with a static now() returning a std::chrono::time_point (tests inject one).
template <class Arena, class Clock = std::chrono::steady_clock>
class compactor {
    static_assert(compactable_arena<Arena>,
                  "compactor: Arena must model movable::compactable_arena (frame_size, max_order, "
                  "frame_count, frame_at, index_of, is_free, try_take_free_frame, free_frame)");

public:
    static constexpr std::size_t batch_frames = 32; // frames isolated per migrate_frames call
    static constexpr unsigned max_defer_shift = detail::compaction_deferral::max_shift;
    // A pass with a budget of n frames looks at most at n * this many frames (and at least
    // 1024), counting both scanners.
    static constexpr std::size_t scan_frames_per_budget_frame = 8;

    explicit compactor(Arena& arena)
        : arena_(arena), skip_(arena.frame_count() >> Arena::max_order, false) {}
    // Ends a compaction still running, as end() does: unused targets go back to the arena and
    // frames an async pass left isolated are put back (waiting for their locks) or freed. So a
    // compactor destroyed between begin() and end(), or unwound past by an exception thrown
    // between passes, loses no frame.
    ~compactor() {
        if (running_) {
            (void)end();
        }
    }
    compactor(const compactor&) = delete;
    compactor& operator=(const compactor&) = delete;

    // Compacts in one call.
    compact_stats compact(const compact_request& request = {}) {
        begin(request);
        while (pass() == compact_progress::incomplete) {
        }
        return end();
    }

    // Starts an incremental compaction. Throws std::invalid_argument for an order above
    // max_order (or below -1), a byte budget smaller than one frame, or a score above 100. Under
    // shake (see above) it first moves every movable frame; std::bad_alloc if it cannot.
    void begin(const compact_request& request);
    // Migrates at most the per-pass budget; `done` once finished.
    compact_progress pass();
    // Finishes (gives back unused targets, puts back anything still isolated) and returns
    // the statistics of the whole compaction.
    compact_stats end();
    // The statistics so far, between passes.
    [[nodiscard]] const compact_stats& stats() const noexcept { return stats_; }

    // Proactive compaction (the kernel's vm.compaction_proactiveness, 0..100): compaction is
    // due when the fragmentation score exceeds the high watermark, and proactive_request
    // compacts until it is at or below the low one. Needs an arena with fragmentation_score().
    struct watermarks {
        unsigned low;
        unsigned high;
    };
    static watermarks proactive_watermarks(unsigned proactiveness) noexcept {
        const unsigned low = std::max(100u - std::min(proactiveness, 100u), 5u);
        return {low, std::min(low + 10, 100u)};
    }
    bool should_compact(unsigned proactiveness) const {
        return proactiveness > 0 &&
               arena_.fragmentation_score() > proactive_watermarks(proactiveness).high;
    }
    static compact_request proactive_request(unsigned proactiveness,
                                             migrate_mode mode = migrate_mode::sync) {
        compact_request request;
        request.mode = mode;
        request.stop_at_score = static_cast<int>(proactive_watermarks(proactiveness).low);
        return request;
    }

    // Deferral state, for inspection.
    [[nodiscard]] bool is_deferred(int order) const noexcept {
        return deferral_.is_deferred(order);
    }
    [[nodiscard]] unsigned defer_shift() const noexcept { return deferral_.shift(); }
    [[nodiscard]] bool skip_hint(std::size_t block) const noexcept { return skip_[block]; }

private:
    // migrate_frames' Targets: free frames the free scanner takes from the top of the arena.
    // Targets always lie at or above the free scanner, sources below the migration scanner,
    // so free() can tell an unused target (kept for the next frame) from a source.
    struct free_scanner_targets {
        compactor& self;
        frame* allocate(const frame& /*source*/) noexcept { return self.next_target(); }
        void free(frame& f) noexcept {
            if (self.arena_.index_of(f) >= self.free_position_) {
                self.targets_.push_front(f);
            } else {
                self.arena_.free_frame(f);
            }
        }
    };

    static constexpr std::size_t frames_per_block = std::size_t{1} << Arena::max_order;

    bool finished() noexcept;
    bool out_of_time() noexcept;
    // Calls fn(targets) with the strategy's migration targets.
    template <class Fn>
    decltype(auto) with_targets(Fn&& fn) {
        if (request_.strategy == compact_strategy::least_moves) {
            plan_targets targets{*this};
            return fn(targets);
        }
        free_scanner_targets targets{*this};
        return fn(targets);
    }
    template <class Targets>
    void end_isolations(frame_list& frames, Targets& targets) noexcept;
    void count_migration(const migrate_stats& result, frame_list& left) noexcept;
    // least_moves
    struct plan_targets;
    void plan(const compact_request& request);
    bool plan_finished() noexcept;
    bool open_next_region();
    void give_up_region() noexcept;
    void release_reserved_block(std::size_t block) noexcept;
    bool take_destination_frames(std::size_t count) noexcept;
    void rewind_destinations(std::size_t index) noexcept;
    // A frame of a block being emptied, or of the (last) region opened: handed back, it goes to
    // the arena, not to the unused targets.
    bool is_source(std::size_t index) const noexcept {
        return source_block_[index >> Arena::max_order] ||
               (index >= region_first_ && index < region_end_);
    }
    void least_moves_pass(std::size_t budget);
    // scanners
    void scanners_pass(std::size_t budget);
    frame* next_target() noexcept;
    frame* scan_for_free_frame() noexcept;
    void free_unused_targets() noexcept;
    bool start_another_round() noexcept;
    bool isolate_next(frame_list& batch);
    bool may_scan() noexcept { return scan_allowance_ > 0; }
    void scanned_one() noexcept { scan_allowance_ -= scan_allowance_ > 0 ? 1 : 0; }
    void pair_batch(frame_list& batch, std::size_t limit);

    Arena& arena_;
    std::vector<bool> skip_;
    compact_request request_;
    compact_stats stats_;
    bool running_ = false;
    bool full_ = true;
    std::size_t migrate_position_ = 0; // next frame the migration scanner looks at
    std::size_t free_position_ = 0;    // frames at or above this were scanned by the free scanner
    std::size_t block_isolated_ = 0;   // isolated in the migration scanner's current block
    std::size_t free_blocks_before_ = 0;
    std::size_t round_migrated_ = 0;   // frames migrated in this sweep
    std::size_t highest_returned_ = 0; // highest unused target given back in this sweep
    std::size_t scan_allowance_ = 0;   // frames the scanners may still look at this pass
    frame_list targets_;               // free frames taken, not used yet
    frame_list left_isolated_;         // async: frames migrate_frames could not put back
    detail::compaction_deferral deferral_;
    typename Clock::time_point pass_start_{};
    // least_moves: the plan, the region being emptied, where targets come from.
    std::vector<detail::region_cost> plan_; // candidate regions, cheapest first
    std::vector<bool> plan_opened_;         // candidates opened (or found unmovable) already
    std::size_t region_frames_ = 0;
    std::size_t plan_next_ = 0;    // next candidate to open
    std::size_t regions_left_ = 0; // regions still to empty
    bool region_open_ = false;
    std::size_t region_first_ = 0;
    std::size_t region_end_ = 0;
    std::size_t region_cursor_ = 0;  // next frame of the open region to look at
    std::vector<bool> source_block_; // max-order blocks planned or being emptied (no targets)
    std::vector<bool> target_block_; // max-order blocks that received a target (never emptied)
    std::vector<std::size_t> destinations_;     // max-order blocks to take targets from, in order
    std::vector<std::size_t> destination_rank_; // block -> its place in destinations_
    std::size_t destination_next_ = 0;
    std::size_t destination_cursor_ = 0;
    bool out_of_destinations_ = false;
};

// ---- implementation: begin, pass and end, for both strategies ---------------------------------

template <class Arena, class Clock>
void compactor<Arena, Clock>::begin(const compact_request& request) {
    MOVABLE_CONTRACT(!running_, "compactor::begin: a compaction is already running; call end()");
    if (request.order < -1 || request.order > static_cast<int>(Arena::max_order)) {
        throw std::invalid_argument("compactor::begin: order must be -1 or 0..max_order");
    }
    if (request.max_bytes_per_pass != 0 && request.max_bytes_per_pass < Arena::frame_size) {
        throw std::invalid_argument(
            "compactor::begin: max_bytes_per_pass is smaller than one frame");
    }
    if (request.stop_at_score > 100) {
        throw std::invalid_argument("compactor::begin: stop_at_score above 100");
    }
    if (request.max_duration_per_pass.count() < 0) {
        throw std::invalid_argument("compactor::begin: max_duration_per_pass is negative");
    }
    request_ = request;
    stats_ = {};
    if constexpr (requires { arena_.shake().enabled(); }) {
        if (arena_.shake().enabled()) {
            stats_.shaken = detail::shake_arena(arena_, request.mode);
            arena_.shake().count_shake(stats_.shaken);
        }
    }
    running_ = true;
    full_ = request.order < 0 && request.stop_at_score < 0;
    migrate_position_ = 0;
    free_position_ = arena_.frame_count();
    block_isolated_ = 0;
    round_migrated_ = 0;
    highest_returned_ = 0;
    stats_.rounds = 1;
    free_blocks_before_ = detail::free_max_order_blocks(arena_);
    if (full_) {
        std::fill(skip_.begin(), skip_.end(), false);
    }
    if (request.order >= 0) {
        if (deferral_.consider(request.order)) {
            stats_.outcome = compact_outcome::deferred;
        } else if (deferral_.restarting(request.order)) {
            // Restarting after the longest deferral: the hints may be stale (the kernel's
            // compaction_restarting), so look at every block again.
            std::fill(skip_.begin(), skip_.end(), false);
        }
    }
    if (stats_.outcome != compact_outcome::deferred) {
        plan(request); // least_moves' plan; for the scanners, only minimum_moves
    }
}

template <class Arena, class Clock>
bool compactor<Arena, Clock>::finished() noexcept {
    if (stats_.outcome != compact_outcome::running) {
        return true;
    }
    if (request_.strategy == compact_strategy::least_moves) {
        return plan_finished();
    }
    // Targets taken but not used yet are free frames the arena counts as allocated, so the
    // arena is judged only without them: with every free frame held, its fragmentation score
    // would read 0. They are given back when the scanners meet and at the end of every pass.
    const bool scanners_met = migrate_position_ >= free_position_;
    if (scanners_met) {
        free_unused_targets();
    }
    if (targets_.empty() && request_.order >= 0 &&
        detail::largest_free_order(arena_) >= request_.order) {
        stats_.outcome = compact_outcome::order_available;
    } else if (targets_.empty() && request_.stop_at_score >= 0 &&
               static_cast<int>(detail::fragmentation_score(arena_)) <= request_.stop_at_score) {
        stats_.outcome = compact_outcome::score_reached;
    } else if (scanners_met && !start_another_round()) {
        stats_.outcome = compact_outcome::scanners_met;
    }
    return stats_.outcome != compact_outcome::running;
}

// True, once, when a time-budgeted pass has run past its budget (read after every frame).
// Puts back (or, when their owner released them, frees) the isolated frames of `frames`, in the
// request's mode: in async mode a frame whose lock is busy stays isolated, on left_isolated_,
// for a later pass or end().
template <class Arena, class Clock>
template <class Targets>
void compactor<Arena, Clock>::end_isolations(frame_list& frames, Targets& targets) noexcept {
    while (frame* f = frames.pop_front()) {
        const std::optional<putback_result> result =
            putback_or_free_movable_frame(*f, targets, request_.mode);
        if (!result) {
            left_isolated_.push_back(*f);
        } else if (*result == putback_result::released) {
            ++stats_.released;
        }
    }
}

// Adds what one migrate_frames call did to the statistics; what it left isolated (async) goes
// to left_isolated_.
template <class Arena, class Clock>
void compactor<Arena, Clock>::count_migration(const migrate_stats& result,
                                              frame_list& left) noexcept {
    stats_.migrated += result.succeeded;
    stats_.failed += result.failed;
    stats_.released += result.released;
    stats_.bytes_moved += result.succeeded * Arena::frame_size;
    left_isolated_.splice_back(left);
}

template <class Arena, class Clock>
bool compactor<Arena, Clock>::out_of_time() noexcept {
    if (request_.max_duration_per_pass.count() == 0 ||
        Clock::now() - pass_start_ < request_.max_duration_per_pass) {
        return false;
    }
    ++stats_.passes_timed_out;
    return true;
}

template <class Arena, class Clock>
compact_progress compactor<Arena, Clock>::pass() {
    MOVABLE_CONTRACT(running_, "compactor::pass: no compaction running; call begin()");
    pass_start_ = Clock::now();
    // Frames an async pass could not put back (their lock was busy): try again, still
    // without waiting in async mode; end() puts back whatever is left.
    frame_list still_busy;
    still_busy.splice_back(left_isolated_);
    with_targets([&](auto& targets) { end_isolations(still_busy, targets); });
    // A released frame handed to Targets::free above may have joined the unused targets: give
    // it back now, so that between passes (and after the last) no free frame is held.
    free_unused_targets();
    if (finished()) {
        return compact_progress::done;
    }
    ++stats_.passes;
    std::size_t budget = std::numeric_limits<std::size_t>::max();
    if (request_.max_frames_per_pass != 0) {
        budget = request_.max_frames_per_pass;
    }
    if (request_.max_bytes_per_pass != 0) {
        budget = std::min(budget, request_.max_bytes_per_pass / Arena::frame_size);
    }
    // A budgeted pass also bounds how far the scanners look, so a pass over a long stretch of
    // used or free frames is a bounded pause too.
    scan_allowance_ = budget == std::numeric_limits<std::size_t>::max()
                          ? std::numeric_limits<std::size_t>::max()
                          : std::max<std::size_t>(budget * scan_frames_per_budget_frame, 1024);
    if (request_.strategy == compact_strategy::least_moves) {
        least_moves_pass(budget);
    } else {
        scanners_pass(budget);
    }
    free_unused_targets();
    return finished() ? compact_progress::done : compact_progress::incomplete;
}

template <class Arena, class Clock>
void compactor<Arena, Clock>::free_unused_targets() noexcept {
    // Unused targets go back, and the scanner (free_position_) or the destination walk
    // (rewind_destinations) will see them again next pass.
    for (frame& f : targets_) {
        const std::size_t index = arena_.index_of(f);
        free_position_ = std::max(free_position_, index + 1);
        highest_returned_ = std::max(highest_returned_, index);
        if (request_.strategy == compact_strategy::least_moves) {
            rewind_destinations(index);
        }
    }
    detail::free_frames(arena_, targets_);
}

template <class Arena, class Clock>
compact_stats compactor<Arena, Clock>::end() {
    MOVABLE_CONTRACT(running_, "compactor::end: no compaction running");
    free_unused_targets();
    const std::size_t left_isolated = left_isolated_.size();
    const std::size_t put_back = with_targets(
        [&](auto& targets) { return putback_movable_frames(left_isolated_, targets); });
    stats_.released += left_isolated - put_back;
    free_unused_targets(); // a released frame handed to Targets::free may have joined them
    running_ = false;
    const std::size_t blocks_after = detail::free_max_order_blocks(arena_);
    stats_.max_order_blocks_freed =
        blocks_after > free_blocks_before_ ? blocks_after - free_blocks_before_ : 0;
    if (request_.order >= 0 && stats_.outcome != compact_outcome::deferred) {
        if (detail::largest_free_order(arena_) >= request_.order) {
            deferral_.succeeded(request_.order);
        } else {
            deferral_.failed(request_.order);
        }
    }
    if (stats_.outcome == compact_outcome::running) {
        finished();
    }
    return stats_;
}

} // namespace movable

#include <movable/detail/compaction_least_moves.hpp>
#include <movable/detail/compaction_scanners.hpp>
