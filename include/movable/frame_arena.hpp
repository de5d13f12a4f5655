// frame_arena: one contiguous region of frames (mmap), a buddy allocator over it with mobility
// grouping, fragmentation statistics and release of free memory to the OS. It models
// compactable_arena (arena.hpp) with every optional member the compactor uses.
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
// blocks that have a free block of that order (detail/pageblocks.hpp), so a claim moves one
// block between lists in O(MaxOrder), never scanning it: allocations that alternate kinds
// inside one block cost a few times what one kind costs, at any MaxOrder.
//
// Footprint: the frame descriptors (64 bytes per frame) live in their own no-reserve mapping, like
// the frames, and are never constructed one by one: a descriptor whose bytes are zero is a free,
// untouched frame (frame's default state is all zero bytes; tests check it). So a descriptor
// costs memory only once its frame's block is used, and a reservation much larger than the data
// costs (nearly) nothing. When discard_free_memory gives a wholly free max-order block back to the
// OS it gives back that block's descriptors too (the whole system pages they fill: all of them
// with 4 KiB frames and MaxOrder >= 6) and keeps the block's state in detail/pageblocks.hpp
// until an allocation takes from the block again.
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
// Shake mode (shake.hpp): while shake() is enabled, every frame or block the arena frees is
// poisoned (AddressSanitizer poisoning, else filled with shake_poison_byte) until it is
// allocated again, and the compactor moves every movable frame at each compaction. The arena
// itself never reads the memory of free frames (their descriptors live apart; discarding is a
// madvise), so poisoning costs it nothing.
//
// Errors: bad sizes and orders throw std::invalid_argument (the try_ forms return null
// instead), exhaustion throws std::bad_alloc (try_ forms: null), an address outside the arena
// throws std::out_of_range (try_frame_of: null). Freeing a frame that is not an allocated block
// of that order is a contract violation (abort in Debug and MOVABLE_HARDENED builds).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <movable/arena.hpp>
#include <movable/detail/buddy_word.hpp>
#include <movable/detail/contract.hpp>
#include <movable/detail/frame_arena_invariants.hpp>
#include <movable/detail/mapped_region.hpp>
#include <movable/detail/pageblocks.hpp>
#include <movable/fragmentation.hpp>
#include <movable/frame.hpp>
#include <movable/operations.hpp>
#include <movable/shake.hpp>

namespace movable {

namespace detail {
struct frame_arena_test_access;
struct frame_arena_invariants;
} // namespace detail

template <unsigned MaxOrder>
struct arena_stats {
    std::size_t total_frames = 0;
    std::size_t free_frames = 0;
    // free frames whose memory is not resident: given back to the OS, or never used since the
    // arena was created
    std::size_t discarded_frames = 0;
    // wholly free max-order blocks whose frame descriptors were given back to the OS too (or
    // never touched)
    std::size_t discarded_blocks = 0;
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
    // max-order block, std::system_error when the reservation (of the frames or of their
    // descriptors) fails, std::bad_alloc when the per-block state cannot be allocated; nothing is
    // left mapped or allocated when it throws. Touches no descriptor.
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
        MOVABLE_CONTRACT(index < frame_count_, "frame_arena::frame_at: index out of range");
        return frames_[index];
    }
    [[nodiscard]] std::size_t index_of(const frame& f) const noexcept {
        MOVABLE_CONTRACT(owns(f), "frame_arena::index_of: frame is not in this arena");
        return static_cast<std::size_t>(&f - frames_);
    }
    [[nodiscard]] bool is_free(std::size_t index) const noexcept;
    // One past the last frame of the free block holding `index`; `index` when it is not free.
    // A lockless hint like is_free; the compactor uses it to jump over free space.
    [[nodiscard]] std::size_t free_block_end(std::size_t index) const noexcept;
    // Only frames of movable blocks are handed out, so compaction never fills the holes of an
    // unmovable block with movable frames (the kernel's suitable_migration_target).
    [[nodiscard]] frame* try_take_free_frame(std::size_t index) noexcept;
    void free_frame(frame& f) noexcept { deallocate(f, 0); }
    // Batched forms, one arena lock for the whole batch (the compactor's optional members):
    // take_free_frames takes up to `max` free frames of movable blocks in [first, end), lowest
    // first, as try_take_free_frame does each, and appends them to `out`; it returns how many.
    // free_frame_batch frees every frame of `frames` (each as free_frame) and empties the list.
    std::size_t take_free_frames(std::size_t first, std::size_t end, std::size_t max,
                                 frame_list& out) noexcept;
    void free_frame_batch(frame_list& frames) noexcept;

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
        return &f >= frames_ && &f < frames_ + frame_count_;
    }
    [[nodiscard]] std::byte* data() const noexcept { return base_; }
    [[nodiscard]] std::size_t size_bytes() const noexcept { return frame_count_ * FrameSize; }

    // ---- mobility
    // --------------------------------------------------------------------------------
    [[nodiscard]] frame_kind block_kind(std::size_t block) const noexcept {
        std::lock_guard guard(mutex_);
        return blocks_.kind(block);
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
        return order > MaxOrder ? 0
                                : blocks_.free_block_count(frame_kind::movable, order) +
                                      blocks_.free_block_count(frame_kind::unmovable, order);
    }
    [[nodiscard]] bool has_free_block(unsigned order) const noexcept {
        return largest_free_order() >= static_cast<int>(order);
    }
    // The metrics of fragmentation.hpp over this arena's free lists. The kernel's fragmentation
    // index for an allocation of 2^order frames: -1 when a free block of that order exists,
    // else within [0, 1] (towards 1 when the failure is for fragmentation).
    [[nodiscard]] double fragmentation_index(unsigned order) const;
    // Fraction of free memory in blocks smaller than 2^order frames (unusable for that order).
    [[nodiscard]] double unusable_free_index(unsigned order) const;
    // 0..100: the unusable free index for max-order blocks as a percentage; what proactive
    // compaction keeps low (the kernel's fragmentation score).
    [[nodiscard]] unsigned fragmentation_score() const noexcept;

    // ---- memory back to the OS -----------------------------------------------------------------
    // madvise(MADV_DONTNEED) every touched free frame (allocated at least once since the arena
    // was created or since its memory was last discarded) in free blocks of at least 2^min_order
    // frames; returns the bytes of frame memory that left the resident set: frames never touched
    // are not counted (they were never resident), only whole system pages are discarded (a frame
    // that shares a page with a frame outside the run stays), and a range whose madvise fails is
    // neither counted nor marked discarded (stats().discard_failures counts the failures).
    // Discarded frames read as zero when allocated again. A wholly free max-order block whose
    // frames are all discarded now gives back its frame descriptors too (not counted in the
    // result; stats().discarded_blocks).
    std::size_t discard_free_memory(unsigned min_order = MaxOrder);

    // ---- shake mode (shake.hpp) ----------------------------------------------------------------
    [[nodiscard]] shake_switch& shake() noexcept { return shake_; }
    [[nodiscard]] const shake_switch& shake() const noexcept { return shake_; }

    // ---- invariants ----------------------------------------------------------------------------
    // Walks every frame and checks the arena's invariants (detail/frame_arena_invariants.hpp);
    // aborts naming the first that does not hold, in every build. O(frames). Call it when no
    // allocation or free is in flight (it reads frame words a free changes before taking the
    // arena lock). With MOVABLE_EXPENSIVE_CHECKS defined, every allocation and free checks the
    // free lists' equations (those the arena lock protects) as it finishes.
    void check_invariants() const { detail::frame_arena_invariants::check(*this); }

private:
    friend struct detail::frame_arena_test_access;
    friend struct detail::frame_arena_invariants;

    using buddy = detail::buddy_word; // the allocator word's encoding

    static frame_kind other_kind(frame_kind kind) noexcept {
        return kind == frame_kind::movable ? frame_kind::unmovable : frame_kind::movable;
    }

    static std::uint32_t block_of(std::size_t index) noexcept {
        return static_cast<std::uint32_t>(index >> MaxOrder);
    }
    frame_kind kind_of_block_locked(std::size_t index) const noexcept {
        return blocks_.kind(block_of(index));
    }
    // Head index and order of the free block containing `index`, or false.
    bool find_free_block(std::size_t index, std::size_t& head, unsigned& order) const noexcept;
    void set_head(std::size_t index, buddy::head_state state, unsigned order,
                  frame_kind kind) noexcept;
    void clear_head(std::size_t index) noexcept;
    void push_free_block(std::size_t head, unsigned order) noexcept;
    void remove_free_block(std::size_t head, unsigned order) noexcept;
    void mark_allocated(std::size_t head, unsigned order, frame_kind kind) noexcept;
    frame* allocate_locked(unsigned order, frame_kind kind) noexcept;
    // Allocates the free frame `index` (in a free block of a movable pageblock) alone, giving
    // back the rest of its free block; null when it is not such a frame.
    frame* take_frame_locked(std::size_t index) noexcept;
    // deallocate in two halves: the checks and the frame's reset (no lock), then the merge
    // with free buddies (under the arena lock).
    bool prepare_free(frame& first, unsigned order) noexcept; // true: an unmovable allocation
    void free_locked(std::size_t head, unsigned order, bool unmovable) noexcept;
    // Takes the free block at `head` (of `order`), splits it down to `wanted` and allocates it.
    frame* take_block_locked(std::size_t head, unsigned order, unsigned wanted,
                             frame_kind kind) noexcept;
    // madvise(MADV_DONTNEED) of the whole system pages inside frames [first, end); marks the
    // frames it discarded untouched and returns their bytes.
    std::size_t discard_locked(std::size_t first, std::size_t end) noexcept;
    // The wholly free, wholly discarded max-order `block` gives back its descriptors.
    void discard_block_locked(std::uint32_t block) noexcept;
    // A discarded `block` gets its head descriptor back before anything is taken from it.
    void restore_block_locked(std::uint32_t block) noexcept;
    static std::size_t descriptor_bytes(std::size_t frames, std::size_t page_size) noexcept {
        return (frames * sizeof(frame) + page_size - 1) / page_size * page_size;
    }
    // Free blocks and frames in all, and in blocks of at least 2^order frames.
    free_space free_summary(unsigned order) const noexcept; // order <= MaxOrder
    // Throws std::invalid_argument, naming `caller`, for an order above MaxOrder.
    static void check_order(unsigned order, const char* caller);

    static std::size_t checked_frame_count(std::size_t bytes);
    static int discard_pages(void* start, std::size_t bytes) noexcept {
        return ::madvise(start, bytes, MADV_DONTNEED);
    }

    // Declaration order is construction order: the reservations first, so they are unmapped if a
    // later member's allocation throws.
    std::size_t frame_count_;
    std::size_t page_size_;
    detail::mapped_region region_;
    std::byte* base_;
    detail::mapped_region descriptors_; // frame_count_ descriptors, zero (free) until touched
    frame* frames_;
    mutable std::mutex mutex_;
    detail::pageblocks<MaxOrder> blocks_; // free blocks and kinds; under mutex_
    std::size_t blocks_claimed_ = 0;
    std::size_t frames_stolen_ = 0;
    std::size_t discard_failures_ = 0;
    int (*discard_)(void*, std::size_t) noexcept = &discard_pages; // tests inject failures
    shake_switch shake_;
    // Set once a freed frame was poisoned: allocations unpoison from then on (AddressSanitizer
    // only), so an arena never shaken never writes shadow memory.
    std::atomic<bool> poisoned_{false};
};

} // namespace movable

#include <movable/detail/frame_arena_impl.hpp>
