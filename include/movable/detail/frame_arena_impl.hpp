// frame_arena's member functions (the class and its documentation are in frame_arena.hpp, which
// includes this file at its end): construction, the buddy allocator with its fallback between
// kinds, freeing with buddy merging, statistics and release of free memory to the OS.
#pragma once

#include <movable/frame_arena.hpp>

namespace movable {

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::checked_frame_count(std::size_t bytes) {
    if (bytes < block_bytes) {
        throw std::invalid_argument("frame_arena: size " + std::to_string(bytes) +
                                    " is smaller than one max-order block (" +
                                    std::to_string(block_bytes) + " bytes)");
    }
    return bytes / block_bytes * block_frames;
}

// Reserves one extra frame when frames are larger than system pages, so the region can be
// aligned to FrameSize. Every member that allocates comes after region_ and descriptors_, so if
// one throws the reservations are unmapped on the way out. The descriptors are not constructed:
// the mapping reads as zero, and a zero descriptor is a default-constructed frame (frame.hpp).
template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::frame_arena(std::size_t bytes)
    : frame_count_(checked_frame_count(bytes)),
      page_size_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))),
      region_(frame_count_ * FrameSize + (FrameSize > page_size_ ? FrameSize : 0)),
      base_(region_.start() +
            (FrameSize - reinterpret_cast<std::uintptr_t>(region_.start()) % FrameSize) %
                FrameSize),
      descriptors_(descriptor_bytes(frame_count_, page_size_)),
      frames_(static_cast<frame*>(static_cast<void*>(descriptors_.start()))),
      blocks_(block_count()) {
    // Every block starts discarded (nothing of it touched, its descriptors included). From the
    // top down, so the lowest block is first on the list: a new arena fills from its low end.
    for (std::size_t block = block_count(); block != 0; --block) {
        blocks_.add_discarded(static_cast<std::uint32_t>(block - 1));
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::~frame_arena() {
    if constexpr (detail::contracts_enabled) {
        detail::frame_arena_invariants::check_all_free_at_destruction(*this);
    }
    if (poisoned_.load(std::memory_order_relaxed)) {
        detail::unpoison_memory(base_, size_bytes()); // the region's next user starts clean
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::set_head(std::size_t index, buddy::head_state state,
                                                unsigned order, frame_kind kind) noexcept {
    frame& f = frames_[index];
    f.set_allocator_word(buddy::head(f.allocator_word(), state, order, kind));
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::clear_head(std::size_t index) noexcept {
    frame& f = frames_[index];
    f.set_allocator_word(buddy::not_a_head(f.allocator_word()));
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::push_free_block(std::size_t head, unsigned order) noexcept {
    blocks_.push(block_of(head), frames_[head], order);
    set_head(head, buddy::free_head, order, frame_kind::movable);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::remove_free_block(std::size_t head,
                                                         unsigned order) noexcept {
    blocks_.remove(block_of(head), frames_[head], order);
    clear_head(head);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::mark_allocated(std::size_t head, unsigned order,
                                                      frame_kind kind) noexcept {
    const std::size_t count = std::size_t{1} << order;
    if (shake_poisons_for_asan && poisoned_.load(std::memory_order_relaxed)) {
        detail::unpoison_memory(base_ + head * FrameSize, count * FrameSize);
    }
    for (std::size_t i = head; i < head + count; ++i) {
        frames_[i].set_allocator_word(buddy::touched_bit); // in use: its memory may be resident
        if (order > 0) {
            frames_[i].set_multi_frame(true);
        }
    }
    set_head(head, buddy::allocated_head, order, kind);
    if (kind == frame_kind::unmovable) {
        blocks_.add_unmovable(block_of(head), count);
    }
    frames_[head].acquire_first_reference();
}

template <std::size_t FrameSize, unsigned MaxOrder>
bool frame_arena<FrameSize, MaxOrder>::find_free_block(std::size_t index, std::size_t& head,
                                                       unsigned& order) const noexcept {
    if (blocks_.is_discarded(block_of(index))) { // its descriptors read as zero: not asked
        head = index & ~(block_frames - 1);
        order = MaxOrder;
        return true;
    }
    for (unsigned k = 0; k <= MaxOrder; ++k) {
        const std::size_t candidate = index & ~((std::size_t{1} << k) - 1);
        const std::uint32_t word = frames_[candidate].allocator_word();
        const buddy::head_state state = buddy::state(word);
        if (state != buddy::not_head && buddy::order(word) >= k) {
            // The innermost head covering `index` decides.
            if (state == buddy::free_head) {
                head = candidate;
                order = buddy::order(word);
                return true;
            }
            return false;
        }
    }
    return false;
}

template <std::size_t FrameSize, unsigned MaxOrder>
bool frame_arena<FrameSize, MaxOrder>::is_free(std::size_t index) const noexcept {
    std::size_t head = 0;
    unsigned order = 0;
    return index < frame_count_ && find_free_block(index, head, order);
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::free_block_end(std::size_t index) const noexcept {
    std::size_t head = 0;
    unsigned order = 0;
    if (index >= frame_count_ || !find_free_block(index, head, order)) {
        return index;
    }
    return std::min(head + (std::size_t{1} << order), frame_count_);
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame_kind frame_arena<FrameSize, MaxOrder>::allocation_kind(std::size_t index) const noexcept {
    for (unsigned k = 0; k <= MaxOrder; ++k) {
        const std::size_t candidate = index & ~((std::size_t{1} << k) - 1);
        const std::uint32_t word = frames_[candidate].allocator_word();
        if (buddy::state(word) != buddy::not_head && buddy::order(word) >= k) {
            return buddy::kind(word);
        }
    }
    return frame_kind::movable;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::take_block_locked(std::size_t head, unsigned order,
                                                           unsigned wanted,
                                                           frame_kind kind) noexcept {
    remove_free_block(head, order);
    // Split: give back the upper halves (to their block's kind) until the block has the
    // requested order.
    for (unsigned split = order; split > wanted; --split) {
        push_free_block(head + (std::size_t{1} << (split - 1)), split - 1);
    }
    mark_allocated(head, wanted, kind);
    return &frames_[head];
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::allocate_locked(unsigned order, frame_kind kind) noexcept {
    const auto take_first = [&](std::uint32_t block, unsigned k) {
        restore_block_locked(block);
        return take_block_locked(index_of(*blocks_.free_block(block, k)), k, order, kind);
    };
    // Our own kind's blocks, smallest free block first.
    for (unsigned k = order; k <= MaxOrder; ++k) {
        if (const std::uint32_t block = blocks_.first(kind, k); block != blocks_.none) {
            return take_first(block, k);
        }
    }
    // Claim: the block of the other kind's largest free block, if the kernel's rule lets us;
    // then allocate from it smallest piece first.
    const frame_kind other = other_kind(kind);
    for (int k = MaxOrder; k >= static_cast<int>(order); --k) {
        const std::uint32_t block = blocks_.first(other, static_cast<unsigned>(k));
        if (block != blocks_.none && blocks_.may_claim(block, kind)) {
            blocks_.claim(block, kind);
            ++blocks_claimed_;
            return take_first(block,
                              static_cast<unsigned>(blocks_.smallest_free_order(block, order)));
        }
    }
    // Steal: the other kind's smallest free block that fits; its block keeps its kind.
    for (unsigned k = order; k <= MaxOrder; ++k) {
        if (const std::uint32_t block = blocks_.first(other, k); block != blocks_.none) {
            frames_stolen_ += std::size_t{1} << order;
            return take_first(block, k);
        }
    }
    return nullptr;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::try_allocate(unsigned order, frame_kind kind) noexcept {
    if (order > MaxOrder) {
        return nullptr;
    }
    std::lock_guard guard(mutex_);
    frame* f = allocate_locked(order, kind);
    if constexpr (detail::expensive_checks_enabled) {
        blocks_.check_invariants();
    }
    return f;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame& frame_arena<FrameSize, MaxOrder>::allocate(unsigned order, frame_kind kind) {
    if (order > MaxOrder) {
        throw std::invalid_argument("frame_arena::allocate: order " + std::to_string(order) +
                                    " is above max_order " + std::to_string(MaxOrder));
    }
    frame* f = try_allocate(order, kind);
    if (f == nullptr) {
        throw std::bad_alloc();
    }
    return *f;
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::deallocate(frame& first, unsigned order) noexcept {
    const bool unmovable = prepare_free(first, order);
    const std::size_t head = index_of(first);
    std::lock_guard guard(mutex_);
    free_locked(head, order, unmovable);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::free_frame_batch(frame_list& frames) noexcept {
    if (frames.empty()) {
        return;
    }
    // The checks and each frame's reset first (release_last_reference may wait out a transient
    // reference), then every merge under one lock.
    std::array<frame_list, 2> by_kind;
    while (frame* f = frames.pop_front()) {
        by_kind[prepare_free(*f, 0) ? 1U : 0U].push_back(*f);
    }
    std::lock_guard guard(mutex_);
    for (unsigned unmovable = 0; unmovable < 2; ++unmovable) {
        while (frame* f = by_kind[unmovable].pop_front()) {
            free_locked(index_of(*f), 0, unmovable == 1);
        }
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
bool frame_arena<FrameSize, MaxOrder>::prepare_free(frame& first, unsigned order) noexcept {
    MOVABLE_CONTRACT(owns(first), "frame_arena::deallocate: frame is not in this arena");
    MOVABLE_CONTRACT(order <= MaxOrder, "frame_arena::deallocate: order above max_order");
    MOVABLE_CONTRACT(movable_ops(first) == nullptr,
                     "frame_arena::deallocate: frame is still owned (call clear_movable first)");
    {
        const std::uint32_t word = first.allocator_word();
        MOVABLE_CONTRACT(buddy::state(word) == buddy::allocated_head,
                         "frame_arena::deallocate: frame is not an allocated block (double "
                         "free?)");
        MOVABLE_CONTRACT(buddy::order(word) == order,
                         "frame_arena::deallocate: order differs from the allocation's");
    }
    const bool unmovable = buddy::kind(first.allocator_word()) == frame_kind::unmovable;
    first.release_last_reference(); // waits out transient references; resets the frame
    if (shake_.enabled()) {
        // Shake mode: a stale pointer into the freed memory reads the pattern or trips ASan.
        poisoned_.store(true, std::memory_order_relaxed);
        detail::poison_memory(address_of(first), FrameSize << order);
    }
    if (order > 0) {
        const std::size_t head = index_of(first);
        for (std::size_t i = head; i < head + (std::size_t{1} << order); ++i) {
            frames_[i].set_multi_frame(false);
        }
    }
    return unmovable;
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::free_locked(std::size_t head, unsigned order,
                                                   bool unmovable) noexcept {
    if (unmovable) {
        blocks_.remove_unmovable(block_of(head), std::size_t{1} << order);
    }
    clear_head(head);
    // Merge with free buddies of the same order.
    while (order < MaxOrder) {
        const std::size_t buddy = head ^ (std::size_t{1} << order);
        const std::uint32_t word = frames_[buddy].allocator_word();
        if (buddy::state(word) != buddy::free_head || buddy::order(word) != order) {
            break;
        }
        remove_free_block(buddy, order);
        head = head < buddy ? head : buddy;
        ++order;
    }
    push_free_block(head, order);
    if constexpr (detail::expensive_checks_enabled) {
        blocks_.check_invariants();
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::try_take_free_frame(std::size_t index) noexcept {
    if (index >= frame_count_) {
        return nullptr;
    }
    std::lock_guard guard(mutex_);
    return take_frame_locked(index);
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::take_free_frames(std::size_t first, std::size_t end,
                                                               std::size_t max,
                                                               frame_list& out) noexcept {
    end = end < frame_count_ ? end : frame_count_;
    std::size_t taken = 0;
    std::lock_guard guard(mutex_);
    for (std::size_t index = first; index < end && taken < max;) {
        if (kind_of_block_locked(index) != frame_kind::movable) {
            index = (index | (block_frames - 1)) + 1; // no targets in an unmovable block
            continue;
        }
        std::size_t head = 0;
        unsigned order = 0;
        if (!find_free_block(index, head, order)) {
            ++index;
            continue;
        }
        // Every frame of this free block from `index` on is a target, as far as wanted.
        const std::size_t block_end = head + (std::size_t{1} << order);
        for (; index < block_end && index < end && taken < max; ++index) {
            out.push_back(*take_frame_locked(index));
            ++taken;
        }
    }
    return taken;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::take_frame_locked(std::size_t index) noexcept {
    std::size_t head = 0;
    unsigned order = 0;
    if (!find_free_block(index, head, order) || kind_of_block_locked(head) != frame_kind::movable) {
        return nullptr;
    }
    restore_block_locked(block_of(head));
    remove_free_block(head, order);
    // Split towards `index`, giving back the halves that do not contain it.
    while (order > 0) {
        --order;
        const std::size_t half = std::size_t{1} << order;
        if (index >= head + half) {
            push_free_block(head, order);
            head += half;
        } else {
            push_free_block(head + half, order);
        }
    }
    mark_allocated(head, 0, frame_kind::movable);
    return &frames_[head];
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::free_frames() const noexcept {
    std::lock_guard guard(mutex_);
    return blocks_.free_frames();
}

template <std::size_t FrameSize, unsigned MaxOrder>
int frame_arena<FrameSize, MaxOrder>::largest_free_order() const noexcept {
    std::lock_guard guard(mutex_);
    return blocks_.largest_free_order();
}

template <std::size_t FrameSize, unsigned MaxOrder>
auto frame_arena<FrameSize, MaxOrder>::stats() const -> stats_type {
    std::lock_guard guard(mutex_);
    stats_type result;
    result.total_frames = frame_count_;
    result.free_frames = blocks_.free_frames();
    result.largest_free_order = blocks_.largest_free_order();
    result.blocks_claimed = blocks_claimed_;
    result.frames_stolen = frames_stolen_;
    result.discard_failures = discard_failures_;
    result.free_blocks = blocks_.free_block_counts();
    blocks_.for_each_free_block(0, [&](const frame& f, unsigned order) {
        const std::size_t head = index_of(f);
        for (std::size_t i = head; i < head + (std::size_t{1} << order); ++i) {
            result.discarded_frames += buddy::touched(frames_[i].allocator_word()) ? 0 : 1;
        }
    });
    result.discarded_blocks = blocks_.discarded_count();
    result.discarded_frames += result.discarded_blocks * block_frames;
    for (std::size_t block = 0; block < block_count(); ++block) {
        ++result.max_order_blocks_by_kind[static_cast<unsigned>(blocks_.kind(block))];
    }
    return result;
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::check_order(unsigned order, const char* caller) {
    if (order > MaxOrder) {
        throw std::invalid_argument(std::string(caller) + ": order above max_order");
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
auto frame_arena<FrameSize, MaxOrder>::free_summary(unsigned order) const noexcept -> free_space {
    std::lock_guard guard(mutex_);
    free_space summary;
    for (const auto& by_kind : blocks_.free_block_counts()) {
        for (unsigned k = 0; k <= MaxOrder; ++k) {
            const std::size_t blocks = by_kind[k];
            summary.blocks += blocks;
            summary.frames += blocks << k;
            if (k >= order) {
                summary.suitable_blocks += blocks;
                summary.suitable_frames += blocks << k;
            }
        }
    }
    return summary;
}

template <std::size_t FrameSize, unsigned MaxOrder>
double frame_arena<FrameSize, MaxOrder>::fragmentation_index(unsigned order) const {
    check_order(order, "frame_arena::fragmentation_index");
    return movable::fragmentation_index(free_summary(order), order);
}

template <std::size_t FrameSize, unsigned MaxOrder>
double frame_arena<FrameSize, MaxOrder>::unusable_free_index(unsigned order) const {
    check_order(order, "frame_arena::unusable_free_index");
    return movable::unusable_free_index(free_summary(order));
}

template <std::size_t FrameSize, unsigned MaxOrder>
unsigned frame_arena<FrameSize, MaxOrder>::fragmentation_score() const noexcept {
    const free_space free = free_summary(MaxOrder);
    return movable::fragmentation_score(free.frames, free.suitable_frames);
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::discard_locked(std::size_t first,
                                                             std::size_t end) noexcept {
    // Only whole system pages: discarding a page that a frame outside the run shares would
    // zero memory in use.
    const auto start = reinterpret_cast<std::uintptr_t>(base_ + first * FrameSize);
    const auto stop = reinterpret_cast<std::uintptr_t>(base_ + end * FrameSize);
    const std::uintptr_t page_start = (start + page_size_ - 1) / page_size_ * page_size_;
    const std::uintptr_t page_stop = stop / page_size_ * page_size_;
    if (page_start >= page_stop) {
        return 0;
    }
    // The page-aligned start as an offset from base_, so the pointer keeps base_'s provenance.
    std::byte* const discard_start = base_ + (page_start - reinterpret_cast<std::uintptr_t>(base_));
    if (discard_(discard_start, page_stop - page_start) != 0) {
        ++discard_failures_;
        return 0;
    }
    // The frames wholly inside the discarded pages are untouched again.
    const std::size_t first_discarded =
        (page_start - reinterpret_cast<std::uintptr_t>(base_) + FrameSize - 1) / FrameSize;
    const std::size_t end_discarded =
        (page_stop - reinterpret_cast<std::uintptr_t>(base_)) / FrameSize;
    for (std::size_t i = first_discarded; i < end_discarded; ++i) {
        frames_[i].set_allocator_word(frames_[i].allocator_word() & ~buddy::touched_bit);
    }
    return (end_discarded - first_discarded) * FrameSize;
}

// The block is on no list any more once pageblocks marks it discarded, so its descriptors are
// nobody's: the head's word is cleared (every other word is zero already: free frames hold no
// reference, no mapping and no flag, and untouched non-heads have a zero allocator word), then the
// whole system pages of descriptors inside the block go back to the OS and read as zero, the same
// state. Lockless readers (is_free, free_block_end) ask pageblocks first; one that read the flag
// just before it was set sees the old words or zeros, a stale "not free" hint either way.
template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::discard_block_locked(std::uint32_t block) noexcept {
    const std::size_t head = std::size_t{block} << MaxOrder;
    blocks_.discard(block, frames_[head]);
    frames_[head].set_allocator_word(0);
    const auto start = reinterpret_cast<std::uintptr_t>(frames_ + head);
    const auto stop = reinterpret_cast<std::uintptr_t>(frames_ + head + block_frames);
    const std::uintptr_t page_start = (start + page_size_ - 1) / page_size_ * page_size_;
    const std::uintptr_t page_stop = stop / page_size_ * page_size_;
    if (page_start < page_stop) {
        // Offsets from the mapping's start, so the pointer keeps its provenance. A failure leaves
        // the descriptors resident, in the same (zero) state.
        std::byte* const first =
            descriptors_.start() +
            (page_start - reinterpret_cast<std::uintptr_t>(descriptors_.start()));
        if (::madvise(first, page_stop - page_start, MADV_DONTNEED) != 0) {
            ++discard_failures_;
        }
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::restore_block_locked(std::uint32_t block) noexcept {
    if (!blocks_.is_discarded(block)) {
        return;
    }
    const std::size_t head = std::size_t{block} << MaxOrder;
    set_head(head, buddy::free_head, MaxOrder, frame_kind::movable);
    blocks_.restore(block, frames_[head]);
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::discard_free_memory(unsigned min_order) {
    if (min_order > MaxOrder) {
        throw std::invalid_argument("frame_arena::discard_free_memory: order above max_order");
    }
    // Under the arena lock: a free block cannot be allocated (and written) while we discard it.
    std::lock_guard guard(mutex_);
    std::size_t released = 0;
    blocks_.for_each_free_block(min_order, [&](const frame& f, unsigned order) {
        const std::size_t head = index_of(f);
        const std::size_t end = head + (std::size_t{1} << order);
        std::size_t run = head; // start of the current run of touched frames
        for (std::size_t i = head; i < end; ++i) {
            if (!buddy::touched(frames_[i].allocator_word())) {
                released += discard_locked(run, i);
                run = i + 1;
            }
        }
        released += discard_locked(run, end);
    });
    // Wholly free blocks whose frames are all discarded now give back their descriptors.
    for (std::uint32_t block = 0; block < block_count(); ++block) {
        const frame* head =
            blocks_.is_discarded(block) ? nullptr : blocks_.free_block(block, MaxOrder);
        if (head == nullptr) {
            continue;
        }
        bool all_discarded = true;
        for (std::size_t i = index_of(*head); i < index_of(*head) + block_frames; ++i) {
            all_discarded = all_discarded && !buddy::touched(frames_[i].allocator_word());
        }
        if (all_discarded) {
            discard_block_locked(block);
        }
    }
    return released;
}

} // namespace movable
