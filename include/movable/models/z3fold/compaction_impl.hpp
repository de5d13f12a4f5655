// z3fold_pool's compaction (the class, its lock order and its documentation are in
// models/z3fold_pool.hpp, which includes this file at its end): moving the middle buddy inside
// frames, moving single objects into other frames, and emptying frames whose objects all fit in
// other frames' free chunks.
#pragma once

#include <movable/models/z3fold_pool.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

namespace movable {

// Where the objects of a frame go when it is emptied: the buddy from[i] moves into to[i], in
// order (the moves into one frame must be made in the order planned: place() depends on them).
template <class Arena>
struct z3fold_pool<Arena>::emptying {
    std::array<detail::z3fold_buddy, 3> from{};
    std::array<detail::z3fold_frame*, 3> to{};
    std::size_t moves = 0;

    [[nodiscard]] bool targets(const detail::z3fold_frame* f) const noexcept {
        return std::find(to.begin(), to.begin() + static_cast<std::ptrdiff_t>(moves), f) !=
               to.begin() + static_cast<std::ptrdiff_t>(moves);
    }
};

template <class Arena>
void z3fold_pool<Arena>::move_buddy_locked(detail::z3fold_frame& src, detail::z3fold_buddy from,
                                           detail::z3fold_frame& dst) noexcept {
    const auto b = static_cast<std::size_t>(from);
    const std::uint32_t slot = src.slots[b];
    const std::uint32_t chunks = src.chunks[b];
    unbuddied_.unfile(dst);
    const detail::z3fold_place to = layout::place(dst, chunks);
    put_buddy_locked(dst, to, slot, chunks);
    // Only the requested bytes: the rest of the chunks is nobody's.
    std::memcpy(bytes_of(dst, to.buddy), bytes_of(src, from), size_of(slot));
    src.chunks[b] = 0;
    if (from == detail::z3fold_buddy::middle) {
        src.start_middle = 0;
    }
    unbuddied_.file(dst);
    counters_.objects_moved.fetch_add(1, std::memory_order_relaxed);
}

template <class Arena>
bool z3fold_pool<Arena>::move_single_locked() noexcept {
    for (std::size_t list = chunks_per_frame; list-- > 1;) {
        for (detail::z3fold_frame* src = unbuddied_.lists[list].head; src != nullptr;
             src = src->next) {
            if (src->objects() != 1 || src->pins.load(std::memory_order_acquire) != 0) {
                continue;
            }
            detail::z3fold_buddy from = detail::z3fold_buddy::first; // its only buddy
            for (const detail::z3fold_buddy b : detail::z3fold_buddies) {
                from = src->used(b) ? b : from;
            }
            detail::z3fold_frame* dst = unbuddied_.find_best_fit(
                src->chunks_of(from), [&](const detail::z3fold_frame& f) { return &f != src; });
            if (dst == nullptr) {
                continue;
            }
            unbuddied_.unfile(*src);
            move_buddy_locked(*src, from, *dst);
            retire_frame_locked(*src);
            src->next = emptied_;
            emptied_ = src;
            return true;
        }
    }
    return false;
}

template <class Arena>
bool z3fold_pool<Arena>::plan_emptying_locked(const detail::z3fold_frame& src,
                                              emptying& plan) const noexcept {
    plan.moves = 0;
    for (const detail::z3fold_buddy b : detail::z3fold_buddies) {
        if (src.used(b)) {
            plan.from[plan.moves++] = b;
        }
    }
    // The largest first: it has the fewest frames to choose from.
    std::sort(plan.from.begin(), plan.from.begin() + static_cast<std::ptrdiff_t>(plan.moves),
              [&](detail::z3fold_buddy a, detail::z3fold_buddy b) {
                  return src.chunks_of(a) > src.chunks_of(b);
              });
    // The frames the plan fills, as they will be once its moves into them are made.
    std::array<detail::z3fold_frame*, 3> filled{};
    std::array<detail::z3fold_frame, 3> after;
    std::size_t filled_count = 0;
    const auto planned = [&](const detail::z3fold_frame& f) {
        return std::find(filled.begin(), filled.begin() + static_cast<std::ptrdiff_t>(filled_count),
                         &f) != filled.begin() + static_cast<std::ptrdiff_t>(filled_count);
    };
    for (std::size_t i = 0; i < plan.moves; ++i) {
        const std::uint32_t chunks = src.chunks_of(plan.from[i]);
        detail::z3fold_frame* best = unbuddied_.find_best_fit(
            chunks, [&](const detail::z3fold_frame& f) { return &f != &src && !planned(f); });
        std::uint32_t best_room = best != nullptr ? best->list : 0;
        std::size_t in = filled_count; // best's index in filled
        for (std::size_t k = 0; k < filled_count; ++k) {
            const std::uint32_t room = layout::largest_new(after[k]);
            if (room >= chunks && (best == nullptr || room <= best_room)) {
                best = filled[k];
                best_room = room;
                in = k;
            }
        }
        if (best == nullptr) {
            return false;
        }
        if (in == filled_count) {
            filled[filled_count] = best;
            after[filled_count].chunks = best->chunks;
            after[filled_count].start_middle = best->start_middle;
            ++filled_count;
        }
        const detail::z3fold_place to = layout::place(after[in], chunks);
        after[in].chunks[static_cast<std::size_t>(to.buddy)] = chunks;
        if (to.buddy == detail::z3fold_buddy::middle) {
            after[in].start_middle = to.start;
        }
        plan.to[i] = best;
    }
    return true;
}

// Terminates: every frame it empties is freed, and room only shrinks while it runs (a plan
// fills frames and takes none back), so a frame it cannot empty stays so; the scan passes each
// listed frame once per list it is on, and a frame changes list only when a plan fills it, to a
// lower list or the front of its own (its largest new buddy never grows).
template <class Arena>
bool z3fold_pool<Arena>::empty_frames_locked() noexcept {
    for (std::size_t list = chunks_per_frame; list-- > 1;) {
        detail::z3fold_frame* src = unbuddied_.lists[list].head;
        while (src != nullptr) {
            emptying plan;
            if (src->pins.load(std::memory_order_acquire) != 0 ||
                !plan_emptying_locked(*src, plan)) {
                src = src->next;
                continue;
            }
            // The frames the plan fills leave this place in the list: go on after them.
            detail::z3fold_frame* next = src->next;
            while (next != nullptr && plan.targets(next)) {
                next = next->next;
            }
            unbuddied_.unfile(*src);
            for (std::size_t i = 0; i < plan.moves; ++i) {
                move_buddy_locked(*src, plan.from[i], *plan.to[i]);
            }
            retire_frame_locked(*src);
            src->next = emptied_;
            emptied_ = src;
            if (lock_.contended()) {
                return true;
            }
            src = next;
        }
    }
    return false;
}

template <class Arena>
std::size_t z3fold_pool<Arena>::compact() {
    std::unique_lock only_one(compaction_lock_, std::try_to_lock);
    if (!only_one.owns_lock()) {
        return 0;
    }
    std::size_t freed = 0;
    const auto release_emptied = [&](pool_lock& guard) {
        detail::z3fold_frame* chain = std::exchange(emptied_, nullptr);
        guard.unlock();
        while (chain != nullptr) {
            release_frame(std::exchange(chain, chain->next));
            ++freed;
        }
    };
    pool_lock guard(lock_);
    for (detail::z3fold_frame* zf = frames_list_.newest; zf != nullptr; zf = zf->lru_older) {
        if (zf->pins.load(std::memory_order_acquire) == 0 &&
            zf->used(detail::z3fold_buddy::middle)) {
            unbuddied_.unfile(*zf);
            compact_in_frame_locked(*zf, 1);
            unbuddied_.file(*zf);
        }
    }
    const auto yield_to_waiters = [&] {
        release_emptied(guard);
        std::this_thread::yield();
        guard.lock();
    };
    while (move_single_locked()) {
        if (lock_.contended()) {
            yield_to_waiters();
        }
    }
    while (empty_frames_locked()) { // it stopped for a waiter
        yield_to_waiters();
    }
    release_emptied(guard);
    counters_.compactions.fetch_add(1, std::memory_order_relaxed);
    counters_.frames_freed_by_compaction.fetch_add(freed, std::memory_order_relaxed);
    only_one.unlock();
    detail::shake_after_compaction(*this);
    return freed;
}

} // namespace movable
