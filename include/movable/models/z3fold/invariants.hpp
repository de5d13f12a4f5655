// z3fold_pool::check_invariants: the pool's invariants, checked by walking every frame (the
// frame list) and every handle slot. z3fold_pool's internals: users call
// z3fold_pool::check_invariants().
//
// With N = chunks per frame, under the pool lock:
//   frames_list.size == frames_ == |frames walked|, their newer/older links agree
//   for every frame z on it:
//     z holds 1..3 buddies, !z.freeing
//     z.memory is an arena frame, movable with the pool as its owner, private word == &z
//     first ends at or before the middle starts, the middle ends at or before the last starts,
//       the last ends at N (first + last <= N without a middle)
//     z.list == layout::largest_new(z); a listed frame is on lists[z.list]
//     for each used buddy b: slot s = z.slots[b] is allocated, its location names (z.memory, b),
//       (z.chunks[b] - 1) * 64 < size(s) <= z.chunks[b] * 64
//   unbuddied.frames == sum of the lists' sizes == |listed frames walked|
//   objects_, bytes_, chunks_ == the sums over used buddies
//   isolated_frames (counter) == |frames that are ISOLATED|
//   handle table: |allocated| + |free stack| + retired == published, |allocated| == objects_
//
// It reads frame words and the handle table without their locks, so the pool must be quiescent:
// no call on it, no migration of its frames in flight (objects may be mapped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/models/z3fold/z3fold_frame.hpp>
#include <movable/operations.hpp>
#include <movable/pool/chunk_lists.hpp>
#include <movable/pool/handle_table.hpp>

namespace movable::detail {

struct z3fold_pool_invariants {
    template <class Pool>
    static void check(const Pool& pool) {
        constexpr auto n = static_cast<std::uint32_t>(Pool::chunks_per_frame);
        using layout = z3fold_layout<n>;
        std::lock_guard guard(pool.lock_);
        std::size_t frames = 0;
        std::size_t listed = 0;
        std::size_t objects = 0;
        std::size_t bytes = 0;
        std::size_t chunks = 0;
        std::size_t isolated = 0;
        const z3fold_frame* newer = nullptr;
        for (const z3fold_frame* z = pool.frames_list_.newest; z != nullptr;
             newer = z, z = z->lru_older) {
            invariant(++frames <= pool.frames_, "the frame list is longer than the frame count");
            invariant(z->lru_newer == newer, "the frame list's links disagree");
            invariant(!z->empty() && z->freeing.load(std::memory_order_relaxed) == 0,
                      "a listed frame is empty or being freed");
            const frame* f = z->memory;
            invariant(f != nullptr && pool.arena_.owns(*f) &&
                          movable_ops(*f) == &operations_for<Pool> &&
                          f->owner() == static_cast<const void*>(&pool) && z3fold_frame_of(*f) == z,
                      "a frame is not movable with the pool as its owner and its descriptor");
            isolated += f->is_isolated() ? 1 : 0;
            check_layout<n>(*z);
            invariant(z->list == layout::largest_new(*z),
                      "a frame is not on the unbuddied list its free chunks say");
            listed += z->list != 0 ? 1 : 0;
            for (const z3fold_buddy buddy : z3fold_buddies) {
                if (!z->used(buddy)) {
                    continue;
                }
                const std::uint32_t c = z->chunks_of(buddy);
                const std::uint32_t slot = z->slots[static_cast<std::size_t>(buddy)];
                invariant(pool.handles_->contains(slot), "a buddy names a slot never handed out");
                const handle_slot& entry = pool.handles_->slot(slot);
                const std::uint64_t w = entry.word.load(std::memory_order_relaxed);
                const std::uint64_t location = slot_word::location(w);
                invariant(slot_word::allocated(w) &&
                              pool.locations_.frame_index(location) == pool.arena_.index_of(*f) &&
                              pool.locations_.object(location) == static_cast<std::uint32_t>(buddy),
                          "a buddy's handle slot is free or names another place");
                const std::size_t size = entry.pool_word.load(std::memory_order_relaxed);
                invariant(size > (std::size_t{c} - 1) * pool_chunk_size &&
                              size <= std::size_t{c} * pool_chunk_size,
                          "a buddy's chunks do not fit its object's size");
                ++objects;
                bytes += size;
                chunks += c;
            }
        }
        invariant(frames == pool.frames_ && pool.frames_list_.size == frames,
                  "the frame count differs from the frame list");
        std::size_t on_lists = 0;
        for (std::size_t i = 0; i < Pool::chunks_per_frame; ++i) {
            std::size_t walked = 0;
            for (const z3fold_frame* z = pool.unbuddied_.lists[i].head; z != nullptr; z = z->next) {
                invariant(i != 0 && z->list == i && ++walked <= pool.unbuddied_.lists[i].size,
                          "an unbuddied list holds a frame of another list or is longer than "
                          "its size");
            }
            invariant(walked == pool.unbuddied_.lists[i].size, "an unbuddied list's size is off");
            on_lists += walked;
        }
        invariant(on_lists == listed && listed == pool.unbuddied_.frames,
                  "the unbuddied lists' frames differ from the frames that say they are listed");
        invariant(objects == pool.objects_ && bytes == pool.bytes_ && chunks == pool.chunks_,
                  "the pool's object, byte or chunk count differs from its frames");
        invariant(isolated == pool.counters_.isolated_frames.load(std::memory_order_relaxed),
                  "the isolated-frame counter differs from the frames the core holds");
        check_handle_slots(*pool.handles_, objects, invariant);
    }

private:
    // The buddies lie in the frame in address order and do not overlap.
    template <std::uint32_t N>
    static void check_layout(const z3fold_frame& z) {
        const std::uint32_t f = z.chunks_of(z3fold_buddy::first);
        const std::uint32_t m = z.chunks_of(z3fold_buddy::middle);
        const std::uint32_t l = z.chunks_of(z3fold_buddy::last);
        const bool fits =
            f <= N && l <= N - f &&
            (m == 0 || (f <= z.start_middle && z.start_middle <= N && m <= N - l - z.start_middle));
        invariant(fits, "a frame's buddies overlap or leave the frame");
    }

    static void invariant(bool holds, const char* what) noexcept {
        if (!holds) {
            contract_violation("z3fold_pool::check_invariants", what);
        }
    }
};

} // namespace movable::detail
