// zbud_pool::check_invariants: the pool's invariants, checked by walking every frame (the LRU
// list) and every handle slot. zbud_pool's internals: users call zbud_pool::check_invariants().
//
// With N = chunks per frame, under the pool lock:
//   lru.size == frames_ == |frames walked on the LRU list|, their newer/older links agree
//   for every frame z on it:
//     0 < z.chunks[first] + z.chunks[last] <= N, !z.freeing, !z.reclaiming
//     z.memory is an arena frame, movable with the pool as its owner, private word == &z
//     z.list == N - used chunks when exactly one buddy is used and a chunk is free, else 0;
//       a listed frame is on lists[z.list]
//     for each used buddy b: slot s = z.slots[b] is allocated, its location names (z.memory, b),
//       (z.chunks[b] - 1) * 64 < size(s) <= z.chunks[b] * 64
//   unbuddied.frames == sum of the lists' sizes == |listed frames walked|
//   objects_, bytes_, chunks_ == the sums over used buddies
//   isolated_frames (counter) == |frames that are ISOLATED|
//   handle table: |allocated| + |free stack| + retired == published, |allocated| == objects_
// stats() reports these counts, so the walk agrees with stats().
//
// It reads frame words and the handle table without their locks, so the pool must be quiescent:
// no call on it, no migration of its frames in flight (frames the core holds isolated between
// calls are fine; objects may be mapped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/models/zbud/zbud_frame.hpp>
#include <movable/operations.hpp>
#include <movable/pool/handle_table.hpp>

namespace movable::detail {

struct zbud_pool_invariants {
    template <class Pool>
    static void check(const Pool& pool) {
        constexpr std::size_t chunks_per_frame = Pool::chunks_per_frame;
        std::lock_guard guard(pool.lock_);
        std::size_t frames = 0;
        std::size_t listed = 0;
        std::size_t objects = 0;
        std::size_t bytes = 0;
        std::size_t chunks = 0;
        std::size_t isolated = 0;
        const zbud_frame* newer = nullptr;
        for (const zbud_frame* z = pool.lru_.newest; z != nullptr; newer = z, z = z->lru_older) {
            invariant(++frames <= pool.frames_, "the LRU list is longer than the frame count");
            invariant(z->lru_newer == newer, "the LRU list's links disagree");
            const std::uint32_t used = z->used_chunks();
            invariant(used > 0 && used <= chunks_per_frame,
                      "a frame is empty or holds more chunks than a frame has");
            invariant(z->freeing.load(std::memory_order_relaxed) == 0 && !z->reclaiming,
                      "a listed frame is being freed or evicted");
            const frame* f = z->memory;
            invariant(f != nullptr && pool.arena_.owns(*f) &&
                          movable_ops(*f) == &operations_for<Pool> &&
                          f->owner() == static_cast<const void*>(&pool) && zbud_frame_of(*f) == z,
                      "a frame is not movable with the pool as its owner and its descriptor");
            isolated += f->is_isolated() ? 1 : 0;
            const bool one_buddy = z->used(zbud_buddy::first) != z->used(zbud_buddy::last);
            const auto free_chunks = static_cast<std::uint32_t>(chunks_per_frame - used);
            const std::uint32_t expected_list = one_buddy && free_chunks > 0 ? free_chunks : 0;
            invariant(z->list == expected_list,
                      "a frame is not on the unbuddied list its free chunks say");
            listed += z->list != 0 ? 1 : 0;
            for (const zbud_buddy buddy : {zbud_buddy::first, zbud_buddy::last}) {
                if (!z->used(buddy)) {
                    continue;
                }
                const std::uint32_t c = z->chunks[static_cast<std::size_t>(buddy)];
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
                invariant(size > (std::size_t{c} - 1) * zbud_chunk_size &&
                              size <= std::size_t{c} * zbud_chunk_size,
                          "a buddy's chunks do not fit its object's size");
                ++objects;
                bytes += size;
                chunks += c;
            }
        }
        invariant(frames == pool.frames_ && pool.lru_.size == frames,
                  "the frame count differs from the LRU list");
        std::size_t on_lists = 0;
        for (std::size_t i = 0; i < chunks_per_frame; ++i) {
            std::size_t walked = 0;
            for (const zbud_frame* z = pool.unbuddied_.lists[i].head; z != nullptr; z = z->next) {
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
    static void invariant(bool holds, const char* what) noexcept {
        if (!holds) {
            contract_violation("zbud_pool::check_invariants", what);
        }
    }
};

} // namespace movable::detail
