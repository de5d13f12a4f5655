// pageblocks: frame_arena's free blocks, kept per max-order block (the kernel's pageblock) and
// found per kind and order in O(1), so a pageblock changes kind in O(MaxOrder).
//
// Each pageblock keeps its own free lists by order, its kind and two counters; each kind keeps,
// per order, an intrusive list of the pageblocks that have a free block of that order. All of it
// is protected by the arena lock (the caller's).
//
// A pageblock may be *discarded*: wholly free, its memory and its frame descriptors given back to
// the OS (or never touched: a new arena's pageblocks all start discarded). Its one free block of
// max order is then kept here, not on its free list (the list threads through the descriptors,
// which read as zero now), and the arena writes a head descriptor again (restore) before it takes
// from the block. The discarded flag is the one field read without the arena lock (is_discarded:
// lockless free-space hints), so it is set before the descriptors are discarded and cleared after
// they are written again.
//
// Invariants, per pageblock (has_free(k): free[k] is not empty, or k == MaxOrder and discarded):
//   free_frames + unmovable_used + (frames in movable allocations) == frames per pageblock
//   free_frames == sum over k of free[k].size() << k, + frames per pageblock when discarded
//   discarded: every free list is empty and free_frames == frames per pageblock
//   the pageblock is on kinds_[kind][k] exactly when has_free(k)
// and, over the arena: free_block_count(kind, k) == sum of free[k].size() over pageblocks of kind
// (+ discarded pageblocks of kind, for k == MaxOrder).
#pragma once

#include <array>
#include <atomic>
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
    // A free block of exactly `order` in `block`, or null. Not for a discarded block (restore it
    // first).
    [[nodiscard]] frame* free_block(std::uint32_t block, unsigned order) const noexcept {
        MOVABLE_CONTRACT(!is_discarded(block),
                         "frame_arena: a discarded pageblock's free block was asked for before "
                         "the pageblock was restored");
        return blocks_[block].free[order].front();
    }
    // The smallest order >= `order` at which `block` has a free block, or -1.
    [[nodiscard]] int smallest_free_order(std::uint32_t block, unsigned order) const noexcept {
        for (unsigned k = order; k <= MaxOrder; ++k) {
            if (has_free(blocks_[block], k)) {
                return static_cast<int>(k);
            }
        }
        return -1;
    }

    // A free block (head frame `f`) of `order` enters / leaves `block`'s free lists.
    void push(std::uint32_t block, frame& f, unsigned order) noexcept {
        block_state& state = blocks_[block];
        MOVABLE_CONTRACT(!is_discarded(block), "frame_arena: a block was freed into a discarded "
                                               "pageblock");
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

    // ---- discarded pageblocks (see the top of the file) ----
    // Lockless: `block` is discarded (wholly free, its descriptors not to be read).
    [[nodiscard]] bool is_discarded(std::size_t block) const noexcept {
        return blocks_[block].discarded.load(std::memory_order_acquire);
    }
    // A new arena's pageblock, never touched: enters as a discarded free block of max order.
    void add_discarded(std::uint32_t block) noexcept {
        block_state& state = blocks_[block];
        state.discarded.store(true, std::memory_order_relaxed);
        state.free_frames = frames_per_block;
        link(block, MaxOrder);
        ++free_blocks_[index(state.kind)][MaxOrder];
    }
    // `block`, wholly free as the one free block `head` of max order, becomes discarded: `head`
    // leaves the free list (its descriptor may be discarded after this returns); the counts and
    // the kind's list do not change.
    void discard(std::uint32_t block, frame& head) noexcept {
        block_state& state = blocks_[block];
        MOVABLE_CONTRACT(state.free[MaxOrder].size() == 1 && state.free[MaxOrder].front() == &head,
                         "frame_arena: only a wholly free pageblock can be discarded");
        state.discarded.store(true, std::memory_order_release);
        state.free[MaxOrder].remove(head);
    }
    // A discarded `block` whose head descriptor the arena has written again (a free head of max
    // order) holds its free block on its free list again.
    void restore(std::uint32_t block, frame& head) noexcept {
        block_state& state = blocks_[block];
        MOVABLE_CONTRACT(is_discarded(block), "frame_arena: restored a pageblock not discarded");
        state.free[MaxOrder].push_back(head);
        state.discarded.store(false, std::memory_order_release);
    }
    [[nodiscard]] std::size_t discarded_count() const noexcept {
        std::size_t discarded = 0;
        for (std::size_t block = 0; block < count_; ++block) {
            discarded += is_discarded(block) ? 1 : 0;
        }
        return discarded;
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
            if (has_free(state, order)) {
                const std::size_t blocks = free_blocks_of(state, order);
                unlink(block, order);
                free_blocks_[index(state.kind)][order] -= blocks;
                free_blocks_[index(kind)][order] += blocks;
            }
        }
        state.kind = kind;
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            if (has_free(state, order)) {
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
    // Calls fn(head frame, order) for every free block of at least `min_order`, except the free
    // blocks of discarded pageblocks.
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
                        has_free(blocks_[b], order),
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
            std::size_t free_frames = is_discarded(b) ? frames_per_block : 0;
            for (unsigned order = 0; order <= MaxOrder; ++order) {
                invariant(!is_discarded(b) || state.free[order].empty(),
                          "a discarded pageblock has a free block on its free lists");
                free_frames += state.free[order].size() << order;
                free_blocks[index(state.kind)][order] += free_blocks_of(state, order);
                blocks_with_free[index(state.kind)][order] += has_free(state, order) ? 1 : 0;
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
        std::atomic<bool> discarded{false}; // written under the arena lock, read without it
        frame_kind kind = frame_kind::movable;
        std::uint32_t free_frames = 0;
        std::uint32_t unmovable_used = 0;
        std::array<frame_list, MaxOrder + 1> free;                  // its free blocks by order
        std::array<std::uint32_t, MaxOrder + 1> next{}, previous{}; // links in kinds_ lists
    };

    static unsigned index(frame_kind kind) noexcept { return static_cast<unsigned>(kind); }
    // Free blocks of `order` in a pageblock, its discarded max-order block included.
    static std::size_t free_blocks_of(const block_state& state, unsigned order) noexcept {
        const bool discarded_block =
            order == MaxOrder && state.discarded.load(std::memory_order_relaxed);
        return state.free[order].size() + (discarded_block ? 1 : 0);
    }
    static bool has_free(const block_state& state, unsigned order) noexcept {
        return free_blocks_of(state, order) != 0;
    }

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
