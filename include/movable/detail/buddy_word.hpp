// buddy_word: frame_arena's allocator word (frame::allocator_word), packed and unpacked here only.
//   bits 0..1   head state: 0 not the head of a block, 1 head of a free block, 2 head of an
//               allocated block
//   bits 2..6   order of the block (heads only)
//   bit 7       allocated heads: the allocation is unmovable
//   bit 8       any frame: touched, i.e. allocated since the arena was created or its memory was
//               last discarded (madvise), so its memory may be resident
// A word of zero (what a discarded, zero-filled descriptor reads as) is an untouched frame that
// heads no block.
#pragma once

#include <cstdint>

#include <movable/arena.hpp>

namespace movable::detail {

struct buddy_word {
    enum head_state : std::uint32_t { not_head = 0, free_head = 1, allocated_head = 2 };

    static constexpr std::uint32_t state_mask = 0x3;
    static constexpr unsigned order_shift = 2;
    static constexpr std::uint32_t order_mask = 0x1f << order_shift;
    static constexpr std::uint32_t unmovable_bit = 1u << 7;
    static constexpr std::uint32_t touched_bit = 1u << 8;

    // A head word; `word` is the frame's current word, whose touched bit is kept.
    static constexpr std::uint32_t head(std::uint32_t word, head_state state, unsigned order,
                                        frame_kind kind) noexcept {
        return state | (order << order_shift) |
               (kind == frame_kind::unmovable ? unmovable_bit : 0) | (word & touched_bit);
    }
    // Not a head any more; the touched bit is kept.
    static constexpr std::uint32_t not_a_head(std::uint32_t word) noexcept {
        return word & touched_bit;
    }
    static constexpr head_state state(std::uint32_t word) noexcept {
        return static_cast<head_state>(word & state_mask);
    }
    static constexpr unsigned order(std::uint32_t word) noexcept {
        return (word & order_mask) >> order_shift;
    }
    static constexpr frame_kind kind(std::uint32_t word) noexcept {
        return (word & unmovable_bit) != 0 ? frame_kind::unmovable : frame_kind::movable;
    }
    static constexpr bool touched(std::uint32_t word) noexcept { return (word & touched_bit) != 0; }
};

static_assert((buddy_word::state_mask & buddy_word::order_mask) == 0 &&
                  ((buddy_word::state_mask | buddy_word::order_mask) & buddy_word::unmovable_bit) ==
                      0 &&
                  ((buddy_word::state_mask | buddy_word::order_mask | buddy_word::unmovable_bit) &
                   buddy_word::touched_bit) == 0,
              "buddy_word: the fields must not overlap");
static_assert(buddy_word::state(0) == buddy_word::not_head && !buddy_word::touched(0),
              "buddy_word: a zero word (a discarded descriptor) must be an untouched non-head");
static_assert(buddy_word::order(buddy_word::head(0, buddy_word::allocated_head, 20,
                                                 frame_kind::unmovable)) == 20,
              "buddy_word: the order field must hold every order up to 20 (frame_arena's limit)");

} // namespace movable::detail
