// frame_arena: one contiguous region of frames (mmap), a buddy allocator over it with mobility
// grouping, fragmentation statistics and release of free memory to the OS. And the
// compactable_arena concept, which is all the compactor needs from any arena.
//
// Layout: the region is cut into max-order blocks of 2^MaxOrder frames (the kernel's
// pageblocks). Each block is tagged movable or unmovable; an allocation takes free space from
// blocks of its own kind first, so unmovable frames gather in few blocks instead of pinning
// free space everywhere. When its own kind has no free block large enough, it falls back to the
// other kind, as the kernel's __rmqueue_fallback: it re-tags (claims) the block holding the
// other kind's largest free block when at least half of that block is free or already used by
// its own kind, and then allocates from it smallest piece first; otherwise it takes the
// smallest free block of the other kind that fits and leaves that block's kind alone (a steal).
// Free blocks are kept per max-order block, and each kind keeps, per order, the list of its
// blocks that have a free block of that order, so a claim moves one block between lists in
// O(MaxOrder), never scanning it: allocations that alternate kinds inside one block cost what
// one kind costs.
//
// Lifetime: the arena must outlive everything that holds its frames (pools, balloons, owners,
// compactors). Destroying it with frames still allocated is a contract violation (abort naming
// the arena and what is still allocated, in Debug and MOVABLE_HARDENED builds).
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
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
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

namespace detail {
struct frame_arena_test_access;
}

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
    std::size_t blocks_claimed = 0;   // times a pageblock was claimed from the other kind
    std::size_t frames_stolen = 0;    // frames allocated in a block of the other kind, unclaimed
    std::size_t discard_failures = 0; // madvise(MADV_DONTNEED) calls that failed (errno kept)

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
    // max-order block, std::system_error when the reservation fails, std::bad_alloc when the
    // frame descriptors cannot be allocated; nothing is left mapped or allocated when it throws.
    explicit frame_arena(std::size_t bytes);
    // Every frame must be free by now (contract: destroy the arena's pools, balloons, owners and
    // compactors first).
    ~frame_arena();
    frame_arena(const frame_arena&) = delete;
    frame_arena& operator=(const frame_arena&) = delete;

    // ---- allocation ------------------------------------------------------------------------
    // A block of 2^order frames of `kind`; its first frame is returned with reference count 1.
    // Throws std::invalid_argument for order > max_order, std::bad_alloc when no block fits.
    // The frames of a block of order > 0 are marked multi-frame (frame::is_multi_frame), so
    // set_movable refuses them: only single frames can be movable.
    [[nodiscard]] frame& allocate(unsigned order = 0, frame_kind kind = frame_kind::movable);
    // As allocate, but null for exhaustion and for order > max_order. Never throws and never
    // allocates heap memory (claiming a block of the other kind included).
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
        return blocks_[block].kind;
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
        return order > MaxOrder ? 0 : free_block_count_[0][order] + free_block_count_[1][order];
    }
    [[nodiscard]] bool has_free_block(unsigned order) const noexcept {
        return largest_free_order() >= static_cast<int>(order);
    }
    // The kernel's fragmentation index for an allocation of 2^order frames: -1 when a free
    // block of that order exists; otherwise in [0, 1], towards 0 when the failure is for lack
    // of memory, towards 1 when it is for fragmentation. 0 when nothing is free. (The kernel's
    // formula, 1 - (1 + free/requested) / free_blocks, goes below 0 when there is less free
    // memory than one request per free block, e.g. one free frame asked at order 1: that is a
    // failure for lack of memory, so the result is clamped to 0.)
    [[nodiscard]] double fragmentation_index(unsigned order) const;
    // Fraction of free memory in blocks smaller than 2^order frames (unusable for that order).
    [[nodiscard]] double unusable_free_index(unsigned order) const;
    // 0..100: the unusable free index for max-order blocks as a percentage; what proactive
    // compaction keeps low (the kernel's fragmentation score).
    [[nodiscard]] unsigned fragmentation_score() const noexcept;

    // ---- memory back to the OS -----------------------------------------------------------------
    // madvise(MADV_DONTNEED) every free frame in free blocks of at least 2^min_order frames that
    // was not released already; returns the bytes that really left: only whole system pages are
    // discarded (a frame that shares a page with a frame outside the run stays), and a range
    // whose madvise fails is neither counted nor marked released (stats().discard_failures
    // counts the failures). Released frames read as zero when allocated again.
    std::size_t release_free_memory(unsigned min_order = MaxOrder);

private:
    friend struct detail::frame_arena_test_access;

    // The reservation: unmapped when the arena is destroyed, or when its constructor throws
    // after mapping.
    class mapped_region {
    public:
        mapped_region(std::size_t bytes);
        ~mapped_region() { ::munmap(start_, bytes_); }
        mapped_region(const mapped_region&) = delete;
        mapped_region& operator=(const mapped_region&) = delete;
        [[nodiscard]] std::byte* start() const noexcept { return start_; }

    private:
        std::byte* start_;
        std::size_t bytes_;
    };

    static constexpr std::uint32_t no_block = 0xffffffff;

    // Per max-order block, under the arena lock:
    //   free_frames + unmovable_used + (frames in movable allocations) == block_frames
    //   free_frames == sum over k of free[k].size() << k
    //   the block is on kind_blocks_[kind][k] exactly when free[k] is not empty
    struct block_state {
        frame_kind kind = frame_kind::movable;
        std::uint32_t free_frames = 0;
        std::uint32_t unmovable_used = 0;
        std::array<frame_list, MaxOrder + 1> free;                  // its free blocks by order
        std::array<std::uint32_t, MaxOrder + 1> next{}, previous{}; // kind_blocks_ links
    };

    // allocator_word layout. An allocated head's kind bit is the kind of the allocation (a free
    // head's is not used).
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

    static frame_kind kind_of(std::uint32_t word) noexcept {
        return (word & unmovable_bit) != 0 ? frame_kind::unmovable : frame_kind::movable;
    }
    static frame_kind other_kind(frame_kind kind) noexcept {
        return kind == frame_kind::movable ? frame_kind::unmovable : frame_kind::movable;
    }

    std::size_t block_of(std::size_t index) const noexcept { return index >> MaxOrder; }
    // The first block of `kind` with a free block of exactly `order`, or no_block.
    std::uint32_t first_block(frame_kind kind, unsigned order) const noexcept {
        return kind_blocks_[static_cast<unsigned>(kind)][order];
    }
    void link_block(std::uint32_t block, unsigned order) noexcept;
    void unlink_block(std::uint32_t block, unsigned order) noexcept;
    void claim_block_locked(std::uint32_t block, frame_kind kind) noexcept;
    frame_kind kind_of_block_locked(std::size_t index) const noexcept {
        return blocks_[block_of(index)].kind;
    }
    // Head index and order of the free block containing `index`, or false.
    bool find_free_block(std::size_t index, std::size_t& head, unsigned& order) const noexcept;
    void set_head(std::size_t index, std::uint32_t state, unsigned order, frame_kind kind) noexcept;
    void clear_head(std::size_t index) noexcept;
    void push_free_block(std::size_t head, unsigned order) noexcept;
    void remove_free_block(std::size_t head, unsigned order) noexcept;
    void mark_allocated(std::size_t head, unsigned order, frame_kind kind) noexcept;
    frame* allocate_locked(unsigned order, frame_kind kind) noexcept;
    // Takes the free block at `head` (of `order`), splits it down to `wanted` and allocates it.
    frame* take_block_locked(std::size_t head, unsigned order, unsigned wanted,
                             frame_kind kind) noexcept;
    // The smallest free block of at least `wanted` in `block`, allocated; null if none.
    frame* take_smallest_in_block_locked(std::uint32_t block, unsigned wanted,
                                         frame_kind kind) noexcept;
    // The kernel's rule for re-tagging a pageblock on fallback: enough of it is free or already
    // used by the claiming kind.
    bool may_claim_locked(std::size_t block, frame_kind kind) const noexcept;
    // madvise(MADV_DONTNEED) of the whole system pages inside frames [first, end); marks the
    // frames it discarded released and returns their bytes.
    std::size_t discard_locked(std::size_t first, std::size_t end) noexcept;
    std::size_t free_frames_locked() const noexcept;
    int largest_free_order_locked() const noexcept;
    // Free blocks and frames in all, and in blocks of at least 2^order frames.
    struct free_space {
        std::size_t blocks = 0;
        std::size_t frames = 0;
        std::size_t suitable_blocks = 0;
        std::size_t suitable_frames = 0;
    };
    free_space free_summary(unsigned order) const noexcept; // order <= MaxOrder
    // Throws std::invalid_argument, naming `caller`, for an order above MaxOrder.
    static void check_order(unsigned order, const char* caller);
    // Fraction of the free frames in `free` that are outside suitable blocks; 0 with none free.
    static double unusable_fraction(const free_space& free) noexcept;

    static std::size_t checked_frame_count(std::size_t bytes);
    static int discard_pages(void* start, std::size_t bytes) noexcept {
        return ::madvise(start, bytes, MADV_DONTNEED);
    }

    // Declaration order is construction order: the reservation first, so it is unmapped if a
    // later member's allocation throws.
    std::size_t frame_count_;
    std::size_t page_size_;
    mapped_region region_;
    std::byte* base_;
    std::unique_ptr<frame[]> frames_;
    std::unique_ptr<block_state[]> blocks_;
    mutable std::mutex mutex_;
    // kind_blocks_[kind][order]: first of the blocks of that kind with a free block of that order
    std::array<std::array<std::uint32_t, MaxOrder + 1>, 2> kind_blocks_;
    // free_block_count_[kind][order]: free blocks of that order in blocks of that kind
    std::array<std::array<std::size_t, MaxOrder + 1>, 2> free_block_count_{};
    std::size_t blocks_claimed_ = 0;
    std::size_t frames_stolen_ = 0;
    std::size_t discard_failures_ = 0;
    int (*discard_)(void*, std::size_t) noexcept = &discard_pages; // tests inject failures
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
std::size_t frame_arena<FrameSize, MaxOrder>::checked_frame_count(std::size_t bytes) {
    if (bytes < block_bytes) {
        throw std::invalid_argument("frame_arena: size " + std::to_string(bytes) +
                                    " is smaller than one max-order block (" +
                                    std::to_string(block_bytes) + " bytes)");
    }
    return bytes / block_bytes * block_frames;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::mapped_region::mapped_region(std::size_t bytes) : bytes_(bytes) {
    void* mapped = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapped == MAP_FAILED) {
        throw std::system_error(errno, std::generic_category(), "frame_arena: mmap");
    }
    start_ = static_cast<std::byte*>(mapped);
}

// Reserves one extra frame when frames are larger than system pages, so the region can be
// aligned to FrameSize. Every member that allocates comes after region_, so if one throws the
// reservation is unmapped (and the descriptors freed) on the way out.
template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::frame_arena(std::size_t bytes)
    : frame_count_(checked_frame_count(bytes)),
      page_size_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))),
      region_(frame_count_ * FrameSize + (FrameSize > page_size_ ? FrameSize : 0)),
      base_(region_.start() +
            (FrameSize - reinterpret_cast<std::uintptr_t>(region_.start()) % FrameSize) %
                FrameSize),
      frames_(std::make_unique<frame[]>(frame_count_)),
      blocks_(std::make_unique<block_state[]>(block_count())) {
    for (auto& by_kind : kind_blocks_) {
        by_kind.fill(no_block);
    }
    // From the top down, so the lowest block is first on the list: a new arena fills from its
    // low end.
    for (std::size_t head = frame_count_; head != 0; head -= block_frames) {
        push_free_block(head - block_frames, MaxOrder);
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame_arena<FrameSize, MaxOrder>::~frame_arena() {
    if constexpr (detail::contracts_enabled) {
        const std::size_t free = free_frames();
        if (free != frame_count_) {
            std::size_t movable = 0;
            std::size_t isolated = 0;
            for (std::size_t i = 0; i < frame_count_; ++i) {
                movable += is_movable(frames_[i]) ? 1 : 0;
                isolated += frames_[i].is_isolated() ? 1 : 0;
            }
            char message[320];
            std::snprintf(message, sizeof message,
                          "frame_arena::~frame_arena: the arena at %p (%zu frames of %zu bytes) is "
                          "destroyed while %zu of its frames are still allocated (%zu movable, "
                          "%zu isolated); destroy its pools, balloons, owners and compactors "
                          "first",
                          static_cast<void*>(base_), frame_count_, FrameSize, frame_count_ - free,
                          movable, isolated);
            detail::contract_violation(message);
        }
    }
    for (std::size_t block = 0; block < block_count(); ++block) {
        for (frame_list& list : blocks_[block].free) {
            while (list.pop_front() != nullptr) {
            }
        }
    }
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
    const auto index = static_cast<std::uint32_t>(block_of(head));
    block_state& block = blocks_[index];
    if (block.free[order].empty()) {
        link_block(index, order);
    }
    block.free[order].push_back(frames_[head]);
    block.free_frames += std::uint32_t{1} << order;
    ++free_block_count_[static_cast<unsigned>(block.kind)][order];
    set_head(head, free_head, order, frame_kind::movable);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::remove_free_block(std::size_t head,
                                                         unsigned order) noexcept {
    const auto index = static_cast<std::uint32_t>(block_of(head));
    block_state& block = blocks_[index];
    block.free[order].remove(frames_[head]);
    if (block.free[order].empty()) {
        unlink_block(index, order);
    }
    block.free_frames -= std::uint32_t{1} << order;
    --free_block_count_[static_cast<unsigned>(block.kind)][order];
    clear_head(head);
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::link_block(std::uint32_t block, unsigned order) noexcept {
    std::uint32_t& first = kind_blocks_[static_cast<unsigned>(blocks_[block].kind)][order];
    blocks_[block].previous[order] = no_block;
    blocks_[block].next[order] = first;
    if (first != no_block) {
        blocks_[first].previous[order] = block;
    }
    first = block;
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::unlink_block(std::uint32_t block, unsigned order) noexcept {
    const std::uint32_t next = blocks_[block].next[order];
    const std::uint32_t previous = blocks_[block].previous[order];
    if (previous != no_block) {
        blocks_[previous].next[order] = next;
    } else {
        kind_blocks_[static_cast<unsigned>(blocks_[block].kind)][order] = next;
    }
    if (next != no_block) {
        blocks_[next].previous[order] = previous;
    }
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::claim_block_locked(std::uint32_t block,
                                                          frame_kind kind) noexcept {
    block_state& state = blocks_[block];
    for (unsigned order = 0; order <= MaxOrder; ++order) {
        if (!state.free[order].empty()) {
            unlink_block(block, order);
        }
    }
    for (unsigned order = 0; order <= MaxOrder; ++order) {
        free_block_count_[static_cast<unsigned>(state.kind)][order] -= state.free[order].size();
        free_block_count_[static_cast<unsigned>(kind)][order] += state.free[order].size();
    }
    state.kind = kind;
    for (unsigned order = 0; order <= MaxOrder; ++order) {
        if (!state.free[order].empty()) {
            link_block(block, order);
        }
    }
    ++blocks_claimed_;
}

template <std::size_t FrameSize, unsigned MaxOrder>
void frame_arena<FrameSize, MaxOrder>::mark_allocated(std::size_t head, unsigned order,
                                                      frame_kind kind) noexcept {
    const std::size_t count = std::size_t{1} << order;
    for (std::size_t i = head; i < head + count; ++i) {
        frames_[i].set_allocator_word(0); // in use: no longer released
        if (order > 0) {
            frames_[i].set_multi_frame(true);
        }
    }
    set_head(head, allocated_head, order, kind);
    if (kind == frame_kind::unmovable) {
        blocks_[block_of(head)].unmovable_used += static_cast<std::uint32_t>(count);
    }
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
bool frame_arena<FrameSize, MaxOrder>::may_claim_locked(std::size_t block,
                                                        frame_kind kind) const noexcept {
    const block_state& state = blocks_[block];
    const std::size_t unmovable = state.unmovable_used;
    const std::size_t used_by_kind =
        kind == frame_kind::unmovable ? unmovable : block_frames - state.free_frames - unmovable;
    return state.free_frames + used_by_kind >= block_frames / 2;
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
frame* frame_arena<FrameSize, MaxOrder>::take_smallest_in_block_locked(std::uint32_t block,
                                                                       unsigned wanted,
                                                                       frame_kind kind) noexcept {
    for (unsigned k = wanted; k <= MaxOrder; ++k) {
        if (frame* f = blocks_[block].free[k].front()) {
            return take_block_locked(index_of(*f), k, wanted, kind);
        }
    }
    return nullptr;
}

template <std::size_t FrameSize, unsigned MaxOrder>
frame* frame_arena<FrameSize, MaxOrder>::allocate_locked(unsigned order, frame_kind kind) noexcept {
    // Our own kind's blocks, smallest free block first.
    for (unsigned k = order; k <= MaxOrder; ++k) {
        const std::uint32_t block = first_block(kind, k);
        if (block != no_block) {
            return take_block_locked(index_of(*blocks_[block].free[k].front()), k, order, kind);
        }
    }
    // Claim: the block of the other kind's largest free block, if the kernel's rule lets us.
    const frame_kind other = other_kind(kind);
    for (int k = MaxOrder; k >= static_cast<int>(order); --k) {
        const std::uint32_t block = first_block(other, static_cast<unsigned>(k));
        if (block != no_block && may_claim_locked(block, kind)) {
            claim_block_locked(block, kind);
            return take_smallest_in_block_locked(block, order, kind);
        }
    }
    // Steal: the other kind's smallest free block that fits; its block keeps its kind.
    for (unsigned k = order; k <= MaxOrder; ++k) {
        const std::uint32_t block = first_block(other, k);
        if (block != no_block) {
            frames_stolen_ += std::size_t{1} << order;
            return take_block_locked(index_of(*blocks_[block].free[k].front()), k, order, kind);
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
    const bool unmovable = kind_of(first.allocator_word()) == frame_kind::unmovable;
    first.release_last_reference(); // waits out transient references; resets the frame
    if (order > 0) {
        for (std::size_t i = head; i < head + (std::size_t{1} << order); ++i) {
            frames_[i].set_multi_frame(false);
        }
    }
    std::lock_guard guard(mutex_);
    if (unmovable) {
        blocks_[block_of(head)].unmovable_used -= std::uint32_t{1} << order;
    }
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
    for (const auto& by_kind : free_block_count_) {
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            total += by_kind[order] << order;
        }
    }
    return total;
}

template <std::size_t FrameSize, unsigned MaxOrder>
int frame_arena<FrameSize, MaxOrder>::largest_free_order_locked() const noexcept {
    for (int order = MaxOrder; order >= 0; --order) {
        const auto k = static_cast<unsigned>(order);
        if (free_block_count_[0][k] + free_block_count_[1][k] != 0) {
            return order;
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
    result.frames_stolen = frames_stolen_;
    result.discard_failures = discard_failures_;
    result.free_blocks = free_block_count_;
    for (std::size_t block = 0; block < block_count(); ++block) {
        for (unsigned order = 0; order <= MaxOrder; ++order) {
            for (const frame& f : blocks_[block].free[order]) {
                const std::size_t head = index_of(f);
                for (std::size_t i = head; i < head + (std::size_t{1} << order); ++i) {
                    result.released_frames += (frames_[i].allocator_word() & released_bit) ? 1 : 0;
                }
            }
        }
    }
    for (std::size_t block = 0; block < block_count(); ++block) {
        ++result.max_order_blocks_by_kind[static_cast<unsigned>(blocks_[block].kind)];
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
    for (const auto& by_kind : free_block_count_) {
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
    const free_space free = free_summary(order);
    if (free.blocks == 0) {
        return 0.0;
    }
    if (free.suitable_blocks != 0) {
        return -1.0;
    }
    const double requested = static_cast<double>(std::size_t{1} << order);
    const double index = 1.0 - (1.0 + static_cast<double>(free.frames) / requested) /
                                   static_cast<double>(free.blocks);
    return index < 0.0 ? 0.0 : index; // below 0: too little memory, not fragmentation
}

template <std::size_t FrameSize, unsigned MaxOrder>
double frame_arena<FrameSize, MaxOrder>::unusable_free_index(unsigned order) const {
    check_order(order, "frame_arena::unusable_free_index");
    return unusable_fraction(free_summary(order));
}

template <std::size_t FrameSize, unsigned MaxOrder>
double frame_arena<FrameSize, MaxOrder>::unusable_fraction(const free_space& free) noexcept {
    if (free.frames == 0) {
        return 0.0;
    }
    return static_cast<double>(free.frames - free.suitable_frames) /
           static_cast<double>(free.frames);
}

template <std::size_t FrameSize, unsigned MaxOrder>
unsigned frame_arena<FrameSize, MaxOrder>::fragmentation_score() const noexcept {
    return static_cast<unsigned>(std::lround(unusable_fraction(free_summary(MaxOrder)) * 100.0));
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
    // The frames wholly inside the discarded pages are released.
    const std::size_t first_released =
        (page_start - reinterpret_cast<std::uintptr_t>(base_) + FrameSize - 1) / FrameSize;
    const std::size_t end_released =
        (page_stop - reinterpret_cast<std::uintptr_t>(base_)) / FrameSize;
    for (std::size_t i = first_released; i < end_released; ++i) {
        frames_[i].set_allocator_word(frames_[i].allocator_word() | released_bit);
    }
    return (end_released - first_released) * FrameSize;
}

template <std::size_t FrameSize, unsigned MaxOrder>
std::size_t frame_arena<FrameSize, MaxOrder>::release_free_memory(unsigned min_order) {
    if (min_order > MaxOrder) {
        throw std::invalid_argument("frame_arena::release_free_memory: order above max_order");
    }
    // Under the arena lock: a free block cannot be allocated (and written) while we discard it.
    std::lock_guard guard(mutex_);
    std::size_t released = 0;
    for (std::size_t block = 0; block < block_count(); ++block) {
        for (unsigned order = min_order; order <= MaxOrder; ++order) {
            for (const frame& f : blocks_[block].free[order]) {
                const std::size_t head = index_of(f);
                const std::size_t end = head + (std::size_t{1} << order);
                std::size_t run = head; // start of the current run of frames not yet released
                for (std::size_t i = head; i < end; ++i) {
                    if ((frames_[i].allocator_word() & released_bit) != 0) {
                        released += discard_locked(run, i);
                        run = i + 1;
                    }
                }
                released += discard_locked(run, end);
            }
        }
    }
    return released;
}

} // namespace movable
