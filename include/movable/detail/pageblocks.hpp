// pageblocks: frame_arena's free blocks, kept per max-order block (the kernel's pageblock) and
// found per kind and order in O(1), so a pageblock changes kind in O(MaxOrder).
//
// Each pageblock keeps its own free lists by order, its kind and two counters; each kind keeps,
// per order, an intrusive list of the pageblocks that have a free block of that order. All of it
// is protected by the arena lock (the caller's). Invariants, per pageblock:
//   free_frames + unmovable_used + (frames in movable allocations) == frames per pageblock
//   free_frames == sum over k of free[k].size() << k
//   the pageblock is on kinds_[kind][k] exactly when free[k] is not empty
// and, over the arena: free_block_count(kind, k) == sum of free[k].size() over pageblocks of kind.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <movable/arena.hpp>
#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>

namespace movable::detail {

template <unsigned MaxOrder>
class pageblocks {
public:
    static constexpr std::uint32_t none = 0xffffffff;
    static constexpr std::size_t frames_per_block = std::size_t{1} << MaxOrder;

    // Allocates the per-pageblock state (throws std::bad_alloc); every pageblock is movable and
    // has no free block until push() gives it some.
    explicit pageblocks(std::size_t count)
        : count_(count), blocks_(std::make_unique<block_state[]>(count)) {
        for (auto& by_kind : kinds_) {
            by_kind.fill(none);
        }
    }
    ~pageblocks() {
        for (std::size_t block = 0; block < count_; ++block) {
            for (frame_list& list : blocks_[block].free) {
                while (list.pop_front() != nullptr) {
                }
            }
        }
    }
    pageblocks(const pageblocks&) = delete;
    pageblocks& operator=(const pageblocks&) = delete;

    [[nodiscard]] std::size_t count() const noexcept { return count_; }
    [[nodiscard]] frame_kind kind(std::size_t block) const noexcept { return blocks_[block].kind; }

    // The first pageblock of `kind` with a free block of exactly `order`, or none.
    [[nodiscard]] std::uint32_t first(frame_kind kind, unsigned order) const noexcept {
        return kinds_[index(kind)][order];
    }
    // A free block of exactly `order` in `block`, or null.
    [[nodiscard]] frame* free_block(std::uint32_t block, unsigned order) const noexcept {
        return blocks_[block].free[order].front();
    }
    // The smallest order >= `order` at which `block` has a free block, or -1.
    [[nodiscard]] int smallest_free_order(std::uint32_t block, unsigned order) const noexcept {
        for (unsigned k = order; k <= MaxOrder; ++k) {
            if (!blocks_[block].free[k].empty()) {
                return static_cast<int>(k);
            }
        }
        return -1;
    }

    // A free block (head frame `f`) of `order` enters / leaves `block`'s free lists.
    void push(std::uint32_t block, frame& f, unsigned order) noexcept {
        block_state& state = blocks_[block];
        if (state.free[order].empty()) {
            link(block, order);
        }
        state.free[order].push_back(f);
        state.free_frames += std::uint32_t{1} << order;
        ++free_blocks_[index(state.kind)][order];
    }
    void remove(std::uint32_t block, frame& f, unsigned order) noexcept {
        block_state& state = blocks_[block];
        state.free[order].remove(f);
        if (state.free[order].empty()) {
            unlink(block, order);
        }
        state.free_frames -= std::uint32_t{1} << order;
        --free_blocks_[index(state.kind)][order];
    }

    // Frames of unmovable allocations in `block`, counted for the claim rule.
    void add_unmovable(std::uint32_t block, std::size_t frames) noexcept {
        blocks_[block].unmovable_used += static_cast<std::uint32_t>(frames);
    }
    void remove_unmovable(std::uint32_t block, std::size_t frames) noexcept {
        blocks_[block].unmovable_used -= static_cast<std::uint32_t>(frames);
    }
    [[nodiscard]] std::size_t unmovable_frames(std::uint32_t block) const noexcept {
        return blocks_[block].unmovable_used;
    }

    // The kernel's rule for re-tagging a pageblock on fallback (try_to_claim_block): at least
    // half of it is free or already used by the claiming kind.
    [[nodiscard]] bool may_claim(std::uint32_t block, frame_kind kind) const noexcept {
        const block_state& state = blocks_[block];
        const std::size_t unmovable = state.unmovable_used;
        const std::size_t used_by_kind = kind == frame_kind::unmovable
                                             ? unmovable
                                             : frames_per_block - state.free_frames - unmovable;
        return state.free_frames + used_by_kind >= frames_per_block / 2;
    }
    // Re-tags `block` as `kind`; its free blocks move to that kind's lists. O(MaxOrder).
    void claim(std::uint32_t block, frame_kind kind) noexcept {
        block_state& state = blocks_[block];
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            if (!state.free[order].empty()) {
                unlink(block, order);
                free_blocks_[index(state.kind)][order] -= state.free[order].size();
                free_blocks_[index(kind)][order] += state.free[order].size();
            }
        }
        state.kind = kind;
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            if (!state.free[order].empty()) {
                link(block, order);
            }
        }
    }

    // Free blocks of `order` in pageblocks of `kind`; free frames; the largest free order.
    [[nodiscard]] std::size_t free_block_count(frame_kind kind, unsigned order) const noexcept {
        return free_blocks_[index(kind)][order];
    }
    [[nodiscard]] const std::array<std::array<std::size_t, MaxOrder + 1>, 2>&
    free_block_counts() const noexcept {
        return free_blocks_;
    }
    [[nodiscard]] std::size_t free_frames() const noexcept {
        std::size_t total = 0;
        for (const auto& by_kind : free_blocks_) {
            for (unsigned order = 0; order <= MaxOrder; ++order) {
                total += by_kind[order] << order;
            }
        }
        return total;
    }
    [[nodiscard]] int largest_free_order() const noexcept {
        for (int order = MaxOrder; order >= 0; --order) {
            const auto k = static_cast<unsigned>(order);
            if (free_blocks_[0][k] + free_blocks_[1][k] != 0) {
                return order;
            }
        }
        return -1;
    }
    // Calls fn(head frame, order) for every free block of at least `min_order`.
    template <class Fn>
    void for_each_free_block(unsigned min_order, Fn&& fn) const {
        for (std::size_t block = 0; block < count_; ++block) {
            for (unsigned order = min_order; order <= MaxOrder; ++order) {
                for (const frame& f : blocks_[block].free[order]) {
                    fn(f, order);
                }
            }
        }
    }

    // Aborts (contract_violation, in every build) naming the first equation above that does not
    // hold. O(pageblocks * MaxOrder + free blocks). Caller holds the arena lock.
    void check_invariants() const {
        std::array<std::array<std::size_t, MaxOrder + 1>, 2> listed{};
        for (unsigned kind = 0; kind < 2; ++kind) {
            for (unsigned order = 0; order <= MaxOrder; ++order) {
                std::uint32_t previous = none;
                for (std::uint32_t b = kinds_[kind][order]; b != none; b = blocks_[b].next[order]) {
                    invariant(b < count_ && index(blocks_[b].kind) == kind,
                              "a pageblock is on the list of the other kind");
                    invariant(
                        !blocks_[b].free[order].empty(),
                        "a pageblock is on a kind's list for an order it has no free block of");
                    invariant(blocks_[b].previous[order] == previous,
                              "a kind's list of pageblocks is not linked both ways");
                    invariant(++listed[kind][order] <= count_, "a kind's list of pageblocks loops");
                    previous = b;
                }
            }
        }
        std::array<std::array<std::size_t, MaxOrder + 1>, 2> blocks_with_free{};
        std::array<std::array<std::size_t, MaxOrder + 1>, 2> free_blocks{};
        for (std::size_t b = 0; b < count_; ++b) {
            const block_state& state = blocks_[b];
            std::size_t free_frames = 0;
            for (unsigned order = 0; order <= MaxOrder; ++order) {
                free_frames += state.free[order].size() << order;
                free_blocks[index(state.kind)][order] += state.free[order].size();
                blocks_with_free[index(state.kind)][order] += state.free[order].empty() ? 0 : 1;
            }
            invariant(free_frames == state.free_frames,
                      "a pageblock's free_frames differs from its free lists");
            invariant(state.free_frames + state.unmovable_used <= frames_per_block,
                      "a pageblock's free and unmovable frames exceed its size");
        }
        invariant(blocks_with_free == listed,
                  "a pageblock with a free block of some order is missing from its kind's list");
        invariant(free_blocks == free_blocks_, "the free block counts differ from the free lists");
    }

private:
    static void invariant(bool holds, const char* what) noexcept {
        if (!holds) {
            contract_violation("frame_arena::check_invariants", what);
        }
    }

    struct block_state {
        frame_kind kind = frame_kind::movable;
        std::uint32_t free_frames = 0;
        std::uint32_t unmovable_used = 0;
        std::array<frame_list, MaxOrder + 1> free;                  // its free blocks by order
        std::array<std::uint32_t, MaxOrder + 1> next{}, previous{}; // links in kinds_ lists
    };

    static unsigned index(frame_kind kind) noexcept { return static_cast<unsigned>(kind); }

    void link(std::uint32_t block, unsigned order) noexcept {
        std::uint32_t& head = kinds_[index(blocks_[block].kind)][order];
        blocks_[block].previous[order] = none;
        blocks_[block].next[order] = head;
        if (head != none) {
            blocks_[head].previous[order] = block;
        }
        head = block;
    }
    void unlink(std::uint32_t block, unsigned order) noexcept {
        const std::uint32_t next = blocks_[block].next[order];
        const std::uint32_t previous = blocks_[block].previous[order];
        if (previous != none) {
            blocks_[previous].next[order] = next;
        } else {
            kinds_[index(blocks_[block].kind)][order] = next;
        }
        if (next != none) {
            blocks_[next].previous[order] = previous;
        }
    }

    std::size_t count_;
    std::unique_ptr<block_state[]> blocks_;
    // kinds_[kind][order]: first of the pageblocks of that kind with a free block of that order
    std::array<std::array<std::uint32_t, MaxOrder + 1>, 2> kinds_;
    std::array<std::array<std::size_t, MaxOrder + 1>, 2> free_blocks_{};
};

} // namespace movable::detail
