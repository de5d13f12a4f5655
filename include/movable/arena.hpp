// frame_arena: one contiguous region of frames (mmap), a buddy allocator over it with mobility
// grouping, fragmentation statistics and release of free memory to the OS. And the
// compactable_arena concept, which is all the compactor needs from any arena.
//
// Layout: the region is cut into max-order blocks of 2^MaxOrder frames (the kernel's
// pageblocks). Each block is tagged movable or unmovable; an allocation takes free space from
// blocks of its own kind first and claims a whole block of the other kind only when it must,
// so unmovable frames gather in few blocks instead of pinning free space everywhere.
//
// Locking: one mutex (the arena lock) protects the free lists, block kinds and counters. It is
// never held while calling an owner, and no frame lock is taken under it. Lookups (frame_at,
// index_of, address_of, frame_of) and is_free are lockless; is_free is a hint that may be
// stale by the time the caller acts on it (try_take_free_frame re-checks under the lock).
//
// Errors: bad sizes and orders throw std::invalid_argument (the try_ forms return null
// instead), exhaustion throws std::bad_alloc (try_ forms: null), an address outside the arena
// throws std::out_of_range (try_frame_of: null). Freeing a frame that is not an allocated block
// of that order is a contract violation (abort in Debug and MOVABLE_HARDENED builds).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/migrate.hpp>
#include <movable/operations.hpp>

namespace movable {

// What the compactor needs from an arena. frame_arena models it; so can any arena that hands
// out fixed-size frames with a frame descriptor each.
//   frame_size, max_order       bytes per frame; 2^max_order frames make the largest block
//   frame_count()               frames in the arena
//   frame_at(i), index_of(f)    index <-> descriptor
//   is_free(i)                  lockless hint: frame i is free
//   try_take_free_frame(i)      if frame i is free and may hold a movable frame, allocate
//                               exactly it (count 1) as a migration target, else null
//   release_frame(f)            give back one frame (count 1, not movable, not isolated)
template <class Arena>
concept compactable_arena = requires(Arena& arena, const Arena& const_arena, std::size_t index,
                                     frame& f) {
    { Arena::frame_size } -> std::convertible_to<std::size_t>;
    { Arena::max_order } -> std::convertible_to<unsigned>;
    { const_arena.frame_count() } -> std::same_as<std::size_t>;
    { arena.frame_at(index) } -> std::same_as<frame&>;
    { const_arena.index_of(f) } -> std::same_as<std::size_t>;
    { const_arena.is_free(index) } -> std::same_as<bool>;
    { arena.try_take_free_frame(index) } -> std::same_as<frame*>;
    arena.release_frame(f);
};

// Mobility of an allocation and of a max-order block.
enum class frame_kind : std::uint8_t { movable = 0, unmovable = 1 };

template <unsigned MaxOrder>
struct arena_stats {
    std::size_t total_frames = 0;
    std::size_t free_frames = 0;
    std::size_t released_frames = 0; // free frames whose memory was given back to the OS
    // free_blocks[kind][order]: free blocks of 2^order frames in blocks of that kind
    std::array<std::array<std::size_t, MaxOrder + 1>, 2> free_blocks{};
    std::array<std::size_t, 2> max_order_blocks_by_kind{}; // pageblocks tagged movable/unmovable
    int largest_free_order = -1;                           // -1: no free frame
    std::size_t blocks_claimed = 0; // times a pageblock was claimed from the other kind

    [[nodiscard]] std::size_t free_blocks_of_order(unsigned order) const noexcept {
        return free_blocks[0][order] + free_blocks[1][order];
    }
};

template <std::size_t FrameSize = 4096, unsigned MaxOrder = 10>
class frame_arena {
    static_assert(std::has_single_bit(FrameSize) && FrameSize >= 4096,
                  "frame_arena: FrameSize must be a power of two and at least 4096 bytes");
    static_assert(MaxOrder <= 20, "frame_arena: MaxOrder above 20 (4 GiB blocks) is not supported");

public:
    static constexpr std::size_t frame_size = FrameSize;
    static constexpr unsigned max_order = MaxOrder;
    static constexpr std::size_t block_frames = std::size_t{1} << MaxOrder;
    static constexpr std::size_t block_bytes = block_frames * FrameSize;
    using stats_type = arena_stats<MaxOrder>;

    // Reserves `bytes` (rounded down to whole max-order blocks) of anonymous memory, not
    // committed until touched. Throws std::invalid_argument when `bytes` is smaller than one
    // max-order block, std::system_error when the reservation fails.
    explicit frame_arena(std::size_t bytes);
    ~frame_arena();
    frame_arena(const frame_arena&) = delete;
    frame_arena& operator=(const frame_arena&) = delete;

    // ---- allocation ------------------------------------------------------------------------
    // A block of 2^order frames of `kind`; its first frame is returned with reference count 1.
    // Throws std::invalid_argument for order > max_order, std::bad_alloc when no block fits.
    [[nodiscard]] frame& allocate(unsigned order = 0, frame_kind kind = frame_kind::movable);
    // As allocate, but null for exhaustion and for order > max_order. Never throws.
    [[nodiscard]] frame* try_allocate(unsigned order = 0,
                                      frame_kind kind = frame_kind::movable) noexcept;
    // Frees the block of 2^order frames starting at `first` (allocated with that order, count
    // 1, not isolated, no longer owned) and merges it with its free buddies.
    void deallocate(frame& first, unsigned order = 0) noexcept;

    // ---- compactable_arena -------------------------------------------------------------------
    [[nodiscard]] std::size_t frame_count() const noexcept { return frame_count_; }
    [[nodiscard]] frame& frame_at(std::size_t index) noexcept {
        detail::contract(index < frame_count_, "frame_arena::frame_at: index out of range");
        return frames_[index];
    }
    [[nodiscard]] std::size_t index_of(const frame& f) const noexcept {
        detail::contract(owns(f), "frame_arena::index_of: frame is not in this arena");
        return static_cast<std::size_t>(&f - frames_.get());
    }
    [[nodiscard]] bool is_free(std::size_t index) const noexcept;
    // One past the last frame of the free block holding `index`; `index` when it is not free.
    // A lockless hint like is_free; the compactor uses it to jump over free space.
    [[nodiscard]] std::size_t free_block_end(std::size_t index) const noexcept;
    // Only frames of movable blocks are handed out, so compaction never fills the holes of an
    // unmovable block with movable frames (the kernel's suitable_migration_target).
    [[nodiscard]] frame* try_take_free_frame(std::size_t index) noexcept;
    void release_frame(frame& f) noexcept { deallocate(f, 0); }

    // ---- addresses -----------------------------------------------------------------------------
    [[nodiscard]] std::byte* address_of(const frame& f) const noexcept {
        return base_ + index_of(f) * FrameSize;
    }
    // The frame holding `address`; std::out_of_range when it is outside the arena.
    [[nodiscard]] frame& frame_of(const void* address) {
        frame* f = try_frame_of(address);
        if (f == nullptr) {
            throw std::out_of_range("frame_arena::frame_of: address is outside the arena");
        }
        return *f;
    }
    [[nodiscard]] frame* try_frame_of(const void* address) noexcept {
        const auto offset =
            reinterpret_cast<std::uintptr_t>(address) - reinterpret_cast<std::uintptr_t>(base_);
        return offset < size_bytes() ? &frames_[offset / FrameSize] : nullptr;
    }
    [[nodiscard]] bool owns(const frame& f) const noexcept {
        return &f >= frames_.get() && &f < frames_.get() + frame_count_;
    }
    [[nodiscard]] std::byte* data() const noexcept { return base_; }
    [[nodiscard]] std::size_t size_bytes() const noexcept { return frame_count_ * FrameSize; }

    // ---- mobility
    // --------------------------------------------------------------------------------
    [[nodiscard]] frame_kind block_kind(std::size_t block) const noexcept {
        std::lock_guard guard(mutex_);
        return block_kind_[block];
    }
    // Kind of the allocation that frame `index` belongs to; meaningful only while allocated.
    [[nodiscard]] frame_kind allocation_kind(std::size_t index) const noexcept;
    [[nodiscard]] std::size_t block_count() const noexcept { return frame_count_ / block_frames; }

    // ---- statistics
    // ------------------------------------------------------------------------------
    [[nodiscard]] stats_type stats() const;
    [[nodiscard]] std::size_t free_frames() const noexcept;
    [[nodiscard]] int largest_free_order() const noexcept;
    // Free blocks of exactly 2^order frames, both kinds.
    [[nodiscard]] std::size_t free_block_count(unsigned order) const noexcept {
        std::lock_guard guard(mutex_);
        return order > MaxOrder ? 0 : free_lists_[0][order].size() + free_lists_[1][order].size();
    }
    [[nodiscard]] bool has_free_block(unsigned order) const noexcept {
        return largest_free_order() >= static_cast<int>(order);
    }
    // The kernel's fragmentation index for an allocation of 2^order frames: -1 when a free
    // block of that order exists; otherwise in [0, 1], towards 0 when the failure is for lack
    // of memory, towards 1 when it is for fragmentation. 0 when nothing is free.
    [[nodiscard]] double fragmentation_index(unsigned order) const;
    // Fraction of free memory in blocks smaller than 2^order frames (unusable for that order).
    [[nodiscard]] double unusable_free_index(unsigned order) const;
    // 0..100: the unusable free index for max-order blocks as a percentage; what proactive
    // compaction keeps low (the kernel's fragmentation score).
    [[nodiscard]] unsigned fragmentation_score() const;

    // ---- memory back to the OS
    // ------------------------------------------------------------------- madvise(MADV_DONTNEED)
    // every free frame in free blocks of at least 2^min_order frames that was not released already;
    // returns the bytes released. Released frames read as zero when allocated again.
    std::size_t release_free_memory(unsigned min_order = MaxOrder);

private:
    // allocator_word layout
    static constexpr std::uint32_t head_mask = 0x3;
    static constexpr std::uint32_t free_head = 0x1;
    static constexpr std::uint32_t allocated_head = 0x2;
    static constexpr unsigned order_shift = 2;
    static constexpr std::uint32_t order_mask = 0x1f << order_shift;
    static constexpr std::uint32_t unmovable_bit = 1u << 7;
    static constexpr std::uint32_t released_bit = 1u << 8;

    static std::uint32_t head_word(std::uint32_t state, unsigned order, frame_kind kind,
                                   std::uint32_t released) noexcept {
        return state | (order << order_shift) |
               (kind == frame_kind::unmovable ? unmovable_bit : 0) | released;
    }
    static unsigned order_of(std::uint32_t word) noexcept {
        return (word & order_mask) >> order_shift;
    }

    std::size_t block_of(std::size_t index) const noexcept { return index >> MaxOrder; }
    frame_list& free_list(frame_kind kind, unsigned order) noexcept {
        return free_lists_[static_cast<unsigned>(kind)][order];
    }
    frame_kind kind_of_block_locked(std::size_t index) const noexcept {
        return block_kind_[block_of(index)];
    }
    // Head index and order of the free block containing `index`, or false.
    bool find_free_block(std::size_t index, std::size_t& head, unsigned& order) const noexcept;
    void set_head(std::size_t index, std::uint32_t state, unsigned order, frame_kind kind) noexcept;
    void clear_head(std::size_t index) noexcept;
    void push_free_block(std::size_t head, unsigned order) noexcept;
    void remove_free_block(std::size_t head, unsigned order) noexcept;
    void mark_allocated(std::size_t head, unsigned order, frame_kind kind) noexcept;
    frame* allocate_locked(unsigned order, frame_kind kind) noexcept;
    void claim_block_locked(std::size_t block, frame_kind kind) noexcept;
    std::size_t free_frames_locked() const noexcept;
    int largest_free_order_locked() const noexcept;
    // Free blocks and frames in all, and in blocks of at least 2^order frames.
    struct free_space {
        std::size_t blocks = 0;
        std::size_t frames = 0;
        std::size_t suitable_blocks = 0;
        std::size_t suitable_frames = 0;
    };
    free_space free_summary(unsigned order, const char* caller) const;

    std::byte* base_ = nullptr;
    std::size_t mapping_bytes_ = 0;
    std::byte* mapping_ = nullptr;
    std::size_t frame_count_ = 0;
    std::unique_ptr<frame[]> frames_;
    mutable std::mutex mutex_;
    std::array<std::array<frame_list, MaxOrder + 1>, 2> free_lists_;
    std::vector<frame_kind> block_kind_;
    std::size_t blocks_claimed_ = 0;
};

// Adapts an arena to migrate_frames' Targets: targets are fresh movable frames from anywhere.
// (The compactor uses its own free scanner instead, to take targets from the arena's top.)
template <class Arena>
struct arena_targets {
    Arena& arena;
    frame* allocate(const frame& /*source*/) noexcept {
        return arena.try_allocate(0, frame_kind::movable);
    }
    void release(frame& f) noexcept { arena.release_frame(f); }
};

// ---- implementation ----------------------------------------------------------------------------

template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::frame_arena(std::size_t bytes) {
    if (bytes < block_bytes) {
        throw std::invalid_argument("frame_arena: size " + std::to_string(bytes) +
                                    " is smaller than one max-order block (" +
                                    std::to_string(block_bytes) + " bytes)");
    }
    frame_count_ = bytes / block_bytes * block_frames;
    // Reserve one extra frame so the region can be aligned to FrameSize.
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    mapping_bytes_ = size_bytes() + (FrameSize > page ? FrameSize : 0);
    void* mapped = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapped == MAP_FAILED) {
        throw std::system_error(errno, std::generic_category(), "frame_arena: mmap");
    }
    mapping_ = static_cast<std::byte*>(mapped);
    const auto address = reinterpret_cast<std::uintptr_t>(mapping_);
    base_ = mapping_ + ((FrameSize - address % FrameSize) % FrameSize);

    frames_.reset(new frame[frame_count_]);
    block_kind_.assign(block_count(), frame_kind::movable);
    for (std::size_t head = 0; head < frame_count_; head += block_frames) {
        push_free_block(head, MaxOrder);
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::~frame_arena() {
    for (auto& by_kind : free_lists_) {
        for (auto& list : by_kind) {
            while (list.pop_front() != nullptr) {
            }
        }
    }
    ::munmap(mapping_, mapping_bytes_);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::set_head(std::size_t index, std::uint32_t state,
                                                unsigned order, frame_kind kind) noexcept {
    frame& f = frames_[index];
    f.set_allocator_word(head_word(state, order, kind, f.allocator_word() & released_bit));
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::clear_head(std::size_t index) noexcept {
    frame& f = frames_[index];
    f.set_allocator_word(f.allocator_word() & released_bit);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::push_free_block(std::size_t head, unsigned order) noexcept {
    const frame_kind kind = kind_of_block_locked(head);
    set_head(head, free_head, order, kind);
    free_list(kind, order).push_back(frames_[head]);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::remove_free_block(std::size_t head,
                                                         unsigned order) noexcept {
    free_list(kind_of_block_locked(head), order).remove(frames_[head]);
    clear_head(head);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::mark_allocated(std::size_t head, unsigned order,
                                                      frame_kind kind) noexcept {
    const std::size_t count = std::size_t{1} << order;
    for (std::size_t i = head; i < head + count; ++i) {
        frames_[i].set_allocator_word(0); // in use: no longer released
    }
    set_head(head, allocated_head, order, kind);
    frames_[head].acquire_first_reference();
}

template <std::size_t FrameSize, unsigned MaxOrder>
bool frame_arena<FrameSize, MaxOrder>::find_free_block(std::size_t index, std::size_t& head,
                                                       unsigned& order) const noexcept {
    for (unsigned k = 0; k <= MaxOrder; ++k) {
        const std::size_t candidate = index & ~((std::size_t{1} << k) - 1);
        const std::uint32_t word = frames_[candidate].allocator_word();
        const std::uint32_t state = word & head_mask;
        if (state != 0 && order_of(word) >= k) {
            // The innermost head covering `index` decides.
            if (state == free_head) {
                head = candidate;
                order = order_of(word);
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
        if ((word & head_mask) != 0 && order_of(word) >= k) {
            return (word & unmovable_bit) != 0 ? frame_kind::unmovable : frame_kind::movable;
        }
    }
    return frame_kind::movable;
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::claim_block_locked(std::size_t block,
                                                          frame_kind kind) noexcept {
    // Move every free block inside the pageblock to the lists of its new kind.
    const std::size_t first = block * block_frames;
    std::vector<std::pair<std::size_t, unsigned>> free_blocks;
    for (std::size_t index = first; index < first + block_frames;) {
        const std::uint32_t word = frames_[index].allocator_word();
        const unsigned order = order_of(word);
        if ((word & head_mask) == free_head) {
            free_blocks.emplace_back(index, order);
        }
        index += std::size_t{1} << order;
    }
    for (auto [head, order] : free_blocks) {
        remove_free_block(head, order);
    }
    block_kind_[block] = kind;
    for (auto [head, order] : free_blocks) {
        push_free_block(head, order);
    }
    ++blocks_claimed_;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::allocate_locked(unsigned order, frame_kind kind) noexcept {
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (unsigned k = order; k <= MaxOrder; ++k) {
            frame* f = free_list(kind, k).front();
            if (f == nullptr) {
                continue;
            }
            const std::size_t head = index_of(*f);
            remove_free_block(head, k);
            // Split: give back the upper halves until the block has the requested order.
            for (unsigned split = k; split > order; --split) {
                push_free_block(head + (std::size_t{1} << (split - 1)), split - 1);
            }
            mark_allocated(head, order, kind);
            return &frames_[head];
        }
        // Nothing of our kind: claim the pageblock holding the other kind's largest free block.
        const frame_kind other =
            kind == frame_kind::movable ? frame_kind::unmovable : frame_kind::movable;
        bool claimed = false;
        for (int k = MaxOrder; k >= static_cast<int>(order) && !claimed; --k) {
            if (frame* f = free_list(other, static_cast<unsigned>(k)).front()) {
                claim_block_locked(block_of(index_of(*f)), kind);
                claimed = true;
            }
        }
        if (!claimed) {
            return nullptr;
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
    return allocate_locked(order, kind);
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
    detail::contract(owns(first), "frame_arena::deallocate: frame is not in this arena");
    detail::contract(order <= MaxOrder, "frame_arena::deallocate: order above max_order");
    detail::contract(movable_ops(first) == nullptr,
                     "frame_arena::deallocate: frame is still owned (call clear_movable first)");
    std::size_t head = index_of(first);
    {
        const std::uint32_t word = first.allocator_word();
        detail::contract((word & head_mask) == allocated_head,
                         "frame_arena::deallocate: frame is not an allocated block (double "
                         "free?)");
        detail::contract(order_of(word) == order,
                         "frame_arena::deallocate: order differs from the allocation's");
    }
    first.release_last_reference(); // waits out transient references; resets the frame
    std::lock_guard guard(mutex_);
    clear_head(head);
    // Merge with free buddies of the same order.
    while (order < MaxOrder) {
        const std::size_t buddy = head ^ (std::size_t{1} << order);
        const std::uint32_t word = frames_[buddy].allocator_word();
        if ((word & head_mask) != free_head || order_of(word) != order) {
            break;
        }
        remove_free_block(buddy, order);
        head = head < buddy ? head : buddy;
        ++order;
    }
    push_free_block(head, order);
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::try_take_free_frame(std::size_t index) noexcept {
    if (index >= frame_count_) {
        return nullptr;
    }
    std::lock_guard guard(mutex_);
    std::size_t head = 0;
    unsigned order = 0;
    if (!find_free_block(index, head, order) || kind_of_block_locked(head) != frame_kind::movable) {
        return nullptr;
    }
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
std::size_t frame_arena<FrameSize, MaxOrder>::free_frames_locked() const noexcept {
    std::size_t total = 0;
    for (const auto& by_kind : free_lists_) {
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            total += by_kind[order].size() << order;
        }
    }
    return total;
}

template <std::size_t FrameSize, unsigned MaxOrder>
int frame_arena<FrameSize, MaxOrder>::largest_free_order_locked() const noexcept {
    for (int order = MaxOrder; order >= 0; --order) {
        for (const auto& by_kind : free_lists_) {
            if (!by_kind[static_cast<unsigned>(order)].empty()) {
                return order;
            }
        }
    }
    return -1;
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::free_frames() const noexcept {
    std::lock_guard guard(mutex_);
    return free_frames_locked();
}

template <std::size_t FrameSize, unsigned MaxOrder>
int frame_arena<FrameSize, MaxOrder>::largest_free_order() const noexcept {
    std::lock_guard guard(mutex_);
    return largest_free_order_locked();
}

template <std::size_t FrameSize, unsigned MaxOrder>
auto frame_arena<FrameSize, MaxOrder>::stats() const -> stats_type {
    std::lock_guard guard(mutex_);
    stats_type result;
    result.total_frames = frame_count_;
    result.free_frames = free_frames_locked();
    result.largest_free_order = largest_free_order_locked();
    result.blocks_claimed = blocks_claimed_;
    for (unsigned kind = 0; kind < 2; ++kind) {
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            result.free_blocks[kind][order] = free_lists_[kind][order].size();
            for (const frame& f : free_lists_[kind][order]) {
                const std::size_t head = index_of(f);
                for (std::size_t i = head; i < head + (std::size_t{1} << order); ++i) {
                    result.released_frames += (frames_[i].allocator_word() & released_bit) ? 1 : 0;
                }
            }
        }
    }
    for (frame_kind kind : block_kind_) {
        ++result.max_order_blocks_by_kind[static_cast<unsigned>(kind)];
    }
    return result;
}

template <std::size_t FrameSize, unsigned MaxOrder>
auto frame_arena<FrameSize, MaxOrder>::free_summary(unsigned order, const char* caller) const
    -> free_space {
    if (order > MaxOrder) {
        throw std::invalid_argument(std::string(caller) + ": order above max_order");
    }
    std::lock_guard guard(mutex_);
    free_space summary;
    for (const auto& by_kind : free_lists_) {
        for (unsigned k = 0; k <= MaxOrder; ++k) {
            const std::size_t blocks = by_kind[k].size();
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
    const free_space free = free_summary(order, "frame_arena::fragmentation_index");
    if (free.blocks == 0) {
        return 0.0;
    }
    if (free.suitable_blocks != 0) {
        return -1.0;
    }
    const double requested = static_cast<double>(std::size_t{1} << order);
    return 1.0 -
           (1.0 + static_cast<double>(free.frames) / requested) / static_cast<double>(free.blocks);
}

template <std::size_t FrameSize, unsigned MaxOrder>
double frame_arena<FrameSize, MaxOrder>::unusable_free_index(unsigned order) const {
    const free_space free = free_summary(order, "frame_arena::unusable_free_index");
    if (free.frames == 0) {
        return 0.0;
    }
    return static_cast<double>(free.frames - free.suitable_frames) /
           static_cast<double>(free.frames);
}

template <std::size_t FrameSize, unsigned MaxOrder>
unsigned frame_arena<FrameSize, MaxOrder>::fragmentation_score() const {
    return static_cast<unsigned>(unusable_free_index(MaxOrder) * 100.0 + 0.5);
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::release_free_memory(unsigned min_order) {
    if (min_order > MaxOrder) {
        throw std::invalid_argument("frame_arena::release_free_memory: order above max_order");
    }
    // Under the arena lock: a free block cannot be allocated (and written) while we discard it.
    std::lock_guard guard(mutex_);
    std::size_t released = 0;
    auto discard = [&](std::size_t first, std::size_t end) {
        if (first < end) {
            ::madvise(base_ + first * FrameSize, (end - first) * FrameSize, MADV_DONTNEED);
            released += (end - first) * FrameSize;
        }
    };
    for (auto& by_kind : free_lists_) {
        for (unsigned order = min_order; order <= MaxOrder; ++order) {
            for (frame& f : by_kind[order]) {
                const std::size_t head = index_of(f);
                const std::size_t end = head + (std::size_t{1} << order);
                std::size_t run = head; // start of the current run of frames not yet released
                for (std::size_t i = head; i < end; ++i) {
                    frame& member = frames_[i];
                    if ((member.allocator_word() & released_bit) != 0) {
                        discard(run, i);
                        run = i + 1;
                    } else {
                        member.set_allocator_word(member.allocator_word() | released_bit);
                    }
                }
                discard(run, end);
            }
        }
    }
    return released;
}

} // namespace movable
