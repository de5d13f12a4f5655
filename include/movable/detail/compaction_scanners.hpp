// The scanners strategy of compactor (compaction.hpp includes this file at its end): the
// kernel's migration scanner walking up from frame 0 and free scanner walking down from the top,
// sweeping again while a sweep left free holes above the meeting point.
#pragma once

#include <movable/compaction.hpp>

namespace movable {

template <class Arena, class Clock>
bool compactor<Arena, Clock>::start_another_round() noexcept {
    // A sweep can leave free frames above the meeting point, between used ones (a target
    // whose source failed to migrate, a frame freed meanwhile). Sweep again from the meeting
    // point: every migration moves a frame to a higher index, so the sweeps end.
    free_unused_targets();
    if (request_.order >= 0 || round_migrated_ == 0 || highest_returned_ <= migrate_position_) {
        return false;
    }
    round_migrated_ = 0;
    highest_returned_ = 0;
    free_position_ = arena_.frame_count();
    ++stats_.rounds;
    return migrate_position_ < free_position_;
}

template <class Arena, class Clock>
frame* compactor<Arena, Clock>::scan_for_free_frame() noexcept {
    // Walk down from the free scanner's position, never below the migration scanner.
    while (free_position_ > migrate_position_ && may_scan()) {
        const std::size_t index = --free_position_;
        ++stats_.free_scanned;
        scanned_one();
        if (arena_.is_free(index)) {
            if (frame* f = arena_.try_take_free_frame(index)) {
                return f;
            }
        }
    }
    return nullptr; // the scanners met, or this pass may not scan further
}

template <class Arena, class Clock>
frame* compactor<Arena, Clock>::next_target() noexcept {
    if (frame* f = targets_.pop_front()) {
        return f;
    }
    return scan_for_free_frame();
}

template <class Arena, class Clock>
bool compactor<Arena, Clock>::isolate_next(frame_list& batch) {
    const bool use_hints = !full_;
    while (migrate_position_ < free_position_) {
        const std::size_t index = migrate_position_;
        const std::size_t block = index >> Arena::max_order;
        if (index % frames_per_block == 0) {
            block_isolated_ = 0;
            if (use_hints && skip_[block]) {
                ++stats_.blocks_skipped;
                migrate_position_ = index + frames_per_block;
                continue;
            }
        }
        if (!may_scan()) {
            return false;
        }
        ++stats_.migrate_scanned;
        scanned_one();
        if (arena_.is_free(index)) {
            // Nothing to isolate in a free run: jump to its end (never past the free scanner).
            migrate_position_ = std::min(detail::free_run_end(arena_, index), free_position_);
        } else {
            ++migrate_position_;
        }
        frame& f = arena_.frame_at(index);
        const bool isolated = migrate_position_ == index + 1 && !arena_.is_free(index) &&
                              isolate_movable_frame(f, request_.mode);
        if (isolated) {
            batch.push_back(f);
            ++stats_.isolated;
            ++block_isolated_;
        }
        // Leaving a block in which nothing could be isolated: hint later compactions past it.
        if (migrate_position_ % frames_per_block == 0 && migrate_position_ > index &&
            block_isolated_ == 0) {
            skip_[block] = true;
        }
        if (isolated) {
            return true;
        }
    }
    return false;
}

template <class Arena, class Clock>
void compactor<Arena, Clock>::pair_batch(frame_list& batch, std::size_t limit) {
    // One target from the top, then one source from the bottom, in turn: each isolated frame
    // has a place to go, and the scanners meet where the used frames above balance the free
    // frames below, so no free frame is left between used ones.
    while (batch.size() < limit) {
        if (targets_.size() <= batch.size()) {
            frame* target = scan_for_free_frame();
            if (target == nullptr) {
                return;
            }
            targets_.push_back(*target);
        }
        if (!isolate_next(batch)) {
            return;
        }
    }
}

// One pass of the scanners: batches of isolated frames (one frame at a time under a time
// budget, so the clock is read after every frame) paired with targets from the free scanner.
template <class Arena, class Clock>
void compactor<Arena, Clock>::scanners_pass(std::size_t budget) {
    const std::size_t batch_limit =
        request_.max_duration_per_pass.count() != 0 ? std::size_t{1} : batch_frames;
    std::size_t isolated_this_pass = 0;
    while (isolated_this_pass < budget && may_scan() && !finished()) {
        frame_list batch;
        pair_batch(batch, std::min(batch_limit, budget - isolated_this_pass));
        if (batch.empty()) {
            continue; // the scanners met (finished() sees it) or the scan allowance ran out
        }
        isolated_this_pass += batch.size();
        free_scanner_targets targets{*this};
        // Targets were paired up front; should a retry need one more, let the free scanner
        // find it rather than stop the call for want of scan allowance.
        const std::size_t allowance = scan_allowance_;
        scan_allowance_ = std::numeric_limits<std::size_t>::max();
        const migrate_stats result = migrate_frames(batch, targets, request_.mode);
        scan_allowance_ = allowance;
        round_migrated_ += result.succeeded;
        count_migration(result, batch);
        if (out_of_time()) {
            return;
        }
    }
}

} // namespace movable
