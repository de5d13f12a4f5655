// The least_moves strategy of compactor (compaction.hpp includes this file at its end): plan
// which regions to empty (detail/compaction_plan.hpp), then empty them one at a time, cheapest
// first, into the holes of the densest blocks. Each region is looked at again when its turn
// comes (owners allocate and free meanwhile): one that holds a frame that will not move is
// given up and the next cheapest candidate opened in its place.
#pragma once

#include <movable/compaction.hpp>

namespace movable {

// migrate_frames' Targets for least_moves: free frames of the destination blocks, taken `want`
// at a time (one arena lock for a batch's targets). A frame handed back is a source (in a block
// being emptied: it goes back to the arena when this object ends, one arena lock for all) or an
// unused target (kept for the next frame).
template <class Arena, class Clock>
struct compactor<Arena, Clock>::plan_targets {
    compactor& self;
    std::size_t want = 1; // targets still to come in this batch, at least 1
    frame_list sources{};
    ~plan_targets() { detail::free_frames(self.arena_, sources); }
    frame* allocate(const frame& /*source*/) noexcept {
        if (frame* f = self.targets_.pop_front()) {
            return f;
        }
        const std::size_t count = want;
        want = want > 1 ? want - 1 : 1;
        return self.take_destination_frames(count) ? self.targets_.pop_front() : nullptr;
    }
    void free(frame& f) noexcept {
        if (self.is_source(self.arena_.index_of(f))) {
            sources.push_back(f);
        } else {
            self.targets_.push_front(f);
        }
    }
};

template <class Arena, class Clock>
void compactor<Arena, Clock>::plan(const compact_request& request) {
    const unsigned order =
        request.order >= 0 ? static_cast<unsigned>(request.order) : Arena::max_order;
    detail::region_census census = detail::take_census(arena_, order);
    region_frames_ = census.region_frames;
    std::size_t regions = 0;
    if (request.order >= 0) {
        if (census.free_regions == 0 && detail::largest_free_order(arena_) < request.order) {
            detail::keep_fitting_regions(census);
            regions = census.candidates.empty() ? 0 : 1;
        }
    } else if (request.stop_at_score >= 0) {
        regions = detail::regions_to_empty_for_score(census,
                                                     static_cast<unsigned>(request.stop_at_score));
    } else {
        regions = detail::regions_to_empty_for_full(census);
    }
    stats_.minimum_moves = detail::moves_of(census, regions);
    if (request.strategy != compact_strategy::least_moves) {
        return; // the scanners report what an ideal plan would move, and go their own way
    }
    regions_left_ = regions;
    plan_next_ = 0;
    region_open_ = false;
    region_first_ = 0;
    region_end_ = 0;
    destinations_ = regions == 0 ? std::vector<std::size_t>{}
                                 : detail::destination_blocks(census, frames_per_block);
    destination_rank_.assign(census.used_of_block.size(), destinations_.size());
    for (std::size_t rank = 0; rank < destinations_.size(); ++rank) {
        destination_rank_[destinations_[rank]] = rank;
    }
    destination_next_ = 0;
    destination_cursor_ = 0;
    out_of_destinations_ = false;
    plan_ = std::move(census.candidates);
    plan_opened_.assign(plan_.size(), false);
    source_block_.assign(arena_.frame_count() >> Arena::max_order, false);
    target_block_.assign(source_block_.size(), false);
    // The planned regions' blocks are reserved from the start: no target goes there, even
    // before their turn comes (the destinations run densest first, and a block that cannot be
    // emptied may be sparser than the planned ones).
    // (An order-targeted region smaller than a block reserves only itself: the holes around it
    // in its block take targets.)
    for (std::size_t i = 0; i < regions && i < plan_.size() && region_frames_ == frames_per_block;
         ++i) {
        source_block_[plan_[i].first >> Arena::max_order] = true;
    }
}

template <class Arena, class Clock>
bool compactor<Arena, Clock>::plan_finished() noexcept {
    // Unused targets are free frames the arena counts as allocated: judge it without them.
    if (request_.order >= 0 && !region_open_) {
        free_unused_targets();
        if (detail::largest_free_order(arena_) >= request_.order) {
            stats_.outcome = compact_outcome::order_available;
            return true;
        }
    }
    if (request_.stop_at_score >= 0 && !region_open_) {
        free_unused_targets();
        if (static_cast<int>(detail::fragmentation_score(arena_)) <= request_.stop_at_score) {
            stats_.outcome = compact_outcome::score_reached;
            return true;
        }
    }
    if (!region_open_ &&
        (regions_left_ == 0 || plan_next_ >= plan_.size() || out_of_destinations_)) {
        free_unused_targets();
        stats_.outcome = compact_outcome::planned;
        return true;
    }
    return false;
}

// Opens the next candidate that can still be emptied: every used frame movable (a hint), and
// no target placed in its block by this compaction (that would move a frame twice), unless a
// region was given up (then one that received targets may stand in for it: the failure is the
// cause). A region found free meanwhile counts as emptied. False when the plan has none left.
template <class Arena, class Clock>
bool compactor<Arena, Clock>::open_next_region() {
    // First the candidates no target went to; after a region was given up, also the others.
    for (int round = 0; round < 2 && regions_left_ > 0; ++round) {
        if (round == 1 && stats_.regions_given_up == 0) {
            break;
        }
        for (std::size_t i = plan_next_; i < plan_.size() && regions_left_ > 0; ++i) {
            const detail::region_cost region = plan_[i];
            const std::size_t block = region.first >> Arena::max_order;
            if (plan_opened_[i] || (round == 0 && target_block_[block])) {
                continue;
            }
            plan_opened_[i] = true;
            while (plan_next_ < plan_.size() && plan_opened_[plan_next_]) {
                ++plan_next_;
            }
            std::size_t used = 0;
            bool movable_now = true;
            for (std::size_t f = region.first; f < region.first + region_frames_; ++f) {
                if (!arena_.is_free(f)) {
                    ++used;
                    movable_now = movable_now && detail::may_move(arena_, f);
                }
            }
            if (!movable_now) {
                ++stats_.regions_given_up;
                release_reserved_block(block);
                continue;
            }
            if (used == 0) {
                --regions_left_;
                continue;
            }
            source_block_[block] = region_frames_ == frames_per_block;
            region_first_ = region.first;
            region_end_ = region.first + region_frames_;
            region_cursor_ = region.first;
            region_open_ = true;
            return true;
        }
    }
    regions_left_ = 0; // nothing left to open
    return false;
}

// Takes up to `count` free frames of the destination blocks, densest first, outside every block
// being emptied and the open region, onto targets_ (one arena lock per block looked at where
// the arena has take_free_frames). False when there is none left (the compaction then stops).
template <class Arena, class Clock>
bool compactor<Arena, Clock>::take_destination_frames(std::size_t count) noexcept {
    const std::size_t held = targets_.size();
    while (destination_next_ < destinations_.size()) {
        const std::size_t block = destinations_[destination_next_];
        const std::size_t first = block << Arena::max_order;
        const std::size_t end = first + frames_per_block;
        std::size_t index = std::max(destination_cursor_, first);
        while (!source_block_[block] && index < end) {
            if (region_open_ && index >= region_first_ && index < region_end_) {
                index = region_end_; // the region being emptied
                continue;
            }
            const bool region_ahead = region_open_ && region_first_ > index && region_first_ < end;
            const std::size_t before = targets_.size();
            index = detail::take_free_frames(arena_, index, region_ahead ? region_first_ : end,
                                             count, targets_, stats_.free_scanned);
            const std::size_t taken = targets_.size() - before;
            target_block_[block] = target_block_[block] || taken > 0;
            count -= taken;
            if (count == 0) {
                destination_cursor_ = index;
                return true;
            }
        }
        ++destination_next_;
        destination_cursor_ = 0;
    }
    if (targets_.size() > held) {
        return true;
    }
    out_of_destinations_ = true;
    return false;
}

// An unused target at `index` went back to the arena: the destination walk, which took more
// than a batch used, goes back to it so that the hole is filled after all.
template <class Arena, class Clock>
void compactor<Arena, Clock>::rewind_destinations(std::size_t index) noexcept {
    const std::size_t rank = destination_rank_[index >> Arena::max_order];
    if (rank < destination_next_ || (rank == destination_next_ && index < destination_cursor_)) {
        destination_next_ = rank;
        destination_cursor_ = index;
        out_of_destinations_ = false;
    }
}

// Gives up the open region: a frame in it will not move. Its holes may then take targets (the
// frames they receive were never in it). Another candidate is opened in its place.
template <class Arena, class Clock>
void compactor<Arena, Clock>::give_up_region() noexcept {
    ++stats_.regions_given_up;
    region_open_ = false;
    release_reserved_block(region_first_ >> Arena::max_order);
}

// A block no longer to be emptied may take targets; the destinations passed over it are
// looked at again.
template <class Arena, class Clock>
void compactor<Arena, Clock>::release_reserved_block(std::size_t block) noexcept {
    source_block_[block] = false;
    destination_next_ = 0;
    destination_cursor_ = 0;
}

// One pass of least_moves: empties the open region (opening the next one when it is done),
// batch by batch (one frame at a time under a time budget, so the clock is read after every
// frame), until the budget or the plan runs out.
template <class Arena, class Clock>
void compactor<Arena, Clock>::least_moves_pass(std::size_t budget) {
    const std::size_t batch_limit =
        request_.max_duration_per_pass.count() != 0 ? std::size_t{1} : batch_frames;
    std::size_t isolated_this_pass = 0;
    while (isolated_this_pass < budget && !finished()) {
        if (!region_open_ && !open_next_region()) {
            continue; // nothing left to open: finished() says `planned`
        }
        frame_list batch;
        bool blocked = false;
        const std::size_t limit = std::min(batch_limit, budget - isolated_this_pass);
        while (batch.size() < limit && region_cursor_ < region_end_) {
            const std::size_t index = region_cursor_;
            ++stats_.migrate_scanned;
            if (arena_.is_free(index)) {
                region_cursor_ = std::min(detail::free_run_end(arena_, index), region_end_);
                continue;
            }
            ++region_cursor_;
            frame& f = arena_.frame_at(index);
            if (!isolate_movable_frame(f, request_.mode)) {
                // Not movable (any more), refused by its owner, or freed meanwhile.
                blocked = !arena_.is_free(index);
                if (blocked) {
                    break;
                }
                continue;
            }
            batch.push_back(f);
            ++stats_.isolated;
        }
        isolated_this_pass += batch.size();
        plan_targets targets{*this, std::max<std::size_t>(batch.size(), 1)};
        if (blocked) {
            // The region cannot be emptied: give it up without moving what was isolated (async:
            // a frame whose lock is busy stays isolated for a later pass, as migrate_frames
            // leaves it).
            end_isolations(batch, targets);
            give_up_region();
            continue;
        }
        if (!batch.empty()) {
            const migrate_stats result = migrate_frames(batch, targets, request_.mode);
            count_migration(result, batch);
            if (result.failed > 0 || result.target_exhausted) {
                give_up_region();
            }
        }
        if (region_open_ && region_cursor_ >= region_end_) {
            region_open_ = false;
            --regions_left_;
        }
        if (out_of_time()) {
            return;
        }
    }
}

} // namespace movable
