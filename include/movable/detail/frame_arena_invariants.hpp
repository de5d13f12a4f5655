// frame_arena::check_invariants: the arena's invariants, checked by walking every frame, and the
// destructor's check that nothing is still allocated. The
// expensive tier of its contracts: tests and the fuzzer call it, and with MOVABLE_EXPENSIVE_CHECKS
// defined the arena checks itself after every allocation and free.
//
// Over the frames, walking block by block from frame 0 (each head's order says where the next
// block starts):
//   every frame is inside exactly one block, free or allocated, aligned to its size
//   a free block's frames have count 0 and no multi-frame mark; no two free buddies of the same
//     order coexist (they would have merged)
//   an allocated block's first frame has count >= 1; its frames carry the multi-frame mark
//     exactly when its order is above 0; only heads have a head state
//   per pageblock, frames in unmovable allocations == unmovable_used
//   a discarded pageblock (detail/pageblocks.hpp) is wholly free and unclaimed by unmovable
//     allocations, and its descriptors are zero (free, untouched, no head); only those on
//     resident pages are read (mincore), so the check maps no page a discarded block gave back
// and pageblocks' own equations (detail/pageblocks.hpp).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <vector>

#include <movable/detail/buddy_word.hpp>
#include <movable/detail/contract.hpp>
#include <movable/operations.hpp>

namespace movable::detail {

struct frame_arena_invariants {
    template <class Arena>
    static void check(const Arena& arena) {
        using buddy = buddy_word;
        std::lock_guard guard(arena.mutex_);
        arena.blocks_.check_invariants();
        const std::size_t count = arena.frame_count_;
        std::size_t index = 0;
        std::size_t unmovable_in_block = 0;
        while (index < count) {
            if (index % Arena::block_frames == 0 &&
                arena.blocks_.is_discarded(index / Arena::block_frames)) {
                invariant(arena.blocks_.unmovable_frames(
                              static_cast<std::uint32_t>(index / Arena::block_frames)) == 0,
                          "a discarded pageblock counts unmovable frames");
                check_discarded_descriptors(arena.frames_ + index, Arena::block_frames);
                index += Arena::block_frames;
                continue;
            }
            const std::uint32_t word = arena.frames_[index].allocator_word();
            const buddy::head_state state = buddy::state(word);
            invariant(state != buddy::not_head, "a frame is in no block (not covered by a head)");
            const unsigned order = buddy::order(word);
            const std::size_t size = std::size_t{1} << order;
            invariant(order <= Arena::max_order && index % size == 0 && index + size <= count,
                      "a block is larger than max_order, misaligned or past the arena's end");
            const bool is_free = state == buddy::free_head;
            if (is_free && order < Arena::max_order) {
                const std::uint32_t buddy_word_of = arena.frames_[index ^ size].allocator_word();
                invariant(!(buddy::state(buddy_word_of) == buddy::free_head &&
                            buddy::order(buddy_word_of) == order),
                          "two free buddies of the same order did not merge");
            }
            invariant(is_free ? arena.frames_[index].reference_count() == 0
                              : arena.frames_[index].reference_count() >= 1,
                      "a free block's head has a reference, or an allocated one has none");
            for (std::size_t i = index; i < index + size; ++i) {
                const frame& f = arena.frames_[i];
                invariant(i == index || buddy::state(f.allocator_word()) == buddy::not_head,
                          "a frame inside a block is marked as a head");
                invariant(f.is_multi_frame() == (!is_free && order > 0),
                          "the multi-frame mark differs from the block's order");
                invariant(!is_free || (f.reference_count() == 0 && !f.is_isolated()),
                          "a free frame is referenced or isolated");
            }
            if (!is_free && buddy::kind(word) == frame_kind::unmovable) {
                unmovable_in_block += size;
            }
            index += size;
            if (index % Arena::block_frames == 0) {
                invariant(unmovable_in_block ==
                              arena.blocks_.unmovable_frames(
                                  static_cast<std::uint32_t>((index - 1) / Arena::block_frames)),
                          "a pageblock's unmovable count differs from its allocations");
                unmovable_in_block = 0;
            }
        }
    }

    // The arena's destructor, in contract builds: every frame must be free. Aborts naming the
    // arena and what is still allocated.
    template <class Arena>
    static void check_all_free_at_destruction(const Arena& arena) noexcept {
        const std::size_t free = arena.free_frames();
        if (free == arena.frame_count_) {
            return;
        }
        std::size_t movable = 0;
        std::size_t isolated = 0;
        for (std::size_t i = 0; i < arena.frame_count_; ++i) {
            movable += is_movable(arena.frames_[i]) ? 1 : 0;
            isolated += arena.frames_[i].is_isolated() ? 1 : 0;
        }
        char message[320];
        std::snprintf(message, sizeof message,
                      "frame_arena::~frame_arena: the arena at %p (%zu frames of %zu bytes) is "
                      "destroyed while %zu of its frames are still allocated (%zu movable, %zu "
                      "isolated); destroy its pools, balloons, owners and compactors first",
                      static_cast<void*>(arena.base_), arena.frame_count_, Arena::frame_size,
                      arena.frame_count_ - free, movable, isolated);
        contract_violation(message);
    }

private:
    // The descriptors [first, first + count) of a discarded block that sit on resident pages are
    // zero, as a free, untouched frame (a page not resident reads as zero: nothing to check).
    static void check_discarded_descriptors(const frame* first, std::size_t count) {
        const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
        const auto start = reinterpret_cast<std::uintptr_t>(first) / page * page;
        const auto stop = reinterpret_cast<std::uintptr_t>(first + count);
        std::vector<unsigned char> resident((stop - start + page - 1) / page);
        // NOLINTNEXTLINE(performance-no-int-to-ptr): the descriptors' own pages
        if (::mincore(reinterpret_cast<void*>(start), stop - start, resident.data()) != 0) {
            return; // cannot tell which pages are resident: read none
        }
        for (const frame* f = first; f != first + count; ++f) {
            if ((resident[(reinterpret_cast<std::uintptr_t>(f) - start) / page] & 1) == 0) {
                continue;
            }
            invariant(f->reference_count() == 0 && !f->is_isolated(),
                      "a free frame is referenced or isolated (in a discarded pageblock)");
            invariant(f->allocator_word() == 0 && !f->is_multi_frame() && !f->is_locked() &&
                          f->hook.list == nullptr,
                      "a discarded pageblock's descriptor is not a free, untouched frame");
        }
    }

    static void invariant(bool holds, const char* what) noexcept {
        if (!holds) {
            contract_violation("frame_arena::check_invariants", what);
        }
    }
};

} // namespace movable::detail
