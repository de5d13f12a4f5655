// object_pool::check_invariants: the pool's invariants, checked by walking its slabs, its handle
// slots and the arena's frames. object_pool's internals: users call check_invariants().
//
// Under the pool lock, with capacity = objects_per_frame:
//   the fullness lists are consistent (fullness_groups::check), every listed slab on the list
//     its in-use count says; slabs_ == listed slabs + (1 if a spare); taken_ == sum of in_use
//   the spare, if any: in_use == 0, on no list
//   for every listed slab and the spare s: !s.freeing, s.capacity == capacity; |free list of s| ==
//     capacity - s.in_use, its places distinct and free; s.home is an arena frame, movable
//     with the pool as owner, its private word == s
//   for every taken place p of s, owned by slot k: k's word holds location (index_of(s.home),
//     p), marked allocated (an object) or not (a reservation in a thread's magazine; no emplace
//     is in flight); k's pin word is not claimed (no mover, builder or destroyer is in flight)
// Full walk:
//   |arena frames owned by the pool| == slabs_; isolated_frames == |those that are ISOLATED|
//   every allocated slot is owned by exactly one taken place; |allocated slots| == size()
//   handle table: |allocated| + |reserved| + |free stack| + retired == published
//   |reserved| == the reservations in the threads' magazines, each a reserved slot, none twice
// The pool must be quiescent: no call on it and no migration of its frames in flight (frames the
// core holds isolated between calls are fine; objects may be pinned).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/models/object/slab.hpp>
#include <movable/operations.hpp>
#include <movable/pool/handle_table.hpp>
#include <movable/pool/pins.hpp>

namespace movable {

namespace detail {
struct object_pool_invariants {
    template <class Pool>
    static void check(const Pool& pool) {
        const handle_table& handles = *pool.handles_;
        const std::size_t published = handles.published();
        std::vector<bool> owned(published, false); // slots owned by a taken place
        std::size_t slabs = 0;
        std::size_t taken = 0;
        std::vector<bool> reserved(published, false); // slots of reserved places
        {
            std::lock_guard guard(pool.lock_);
            pool.groups_.check(invariant, [&](object_slab& slab) {
                ++slabs;
                taken += slab.in_use;
                check_slab(pool, slab, owned, reserved);
            });
            if (const object_slab* spare = pool.spare_) {
                invariant(spare->in_use == 0 &&
                              spare->group == fullness_groups<object_slab>::unlisted,
                          "the spare slab has objects or is on a fullness list");
                ++slabs;
                check_slab(pool, *spare, owned, reserved);
            }
            invariant(slabs == pool.slabs_,
                      "the slab count differs from the fullness lists and the spare");
            invariant(taken == pool.taken_, "the taken places differ from the sum over slabs");
        }
        std::size_t allocated = 0;
        for (std::uint32_t slot = 0; slot < published; ++slot) {
            if (slot_word::allocated(handles.word(slot).load(std::memory_order_acquire))) {
                invariant(owned[slot], "an allocated handle slot is owned by no slab place");
                ++allocated;
            }
        }
        invariant(allocated == pool.size(), "the allocated handle slots differ from size()");
        std::size_t on_stack = 0;
        const bool stack_ends = handles.walk_free_stack([&](std::uint32_t slot) {
            invariant(!owned[slot] &&
                          !slot_word::allocated(handles.word(slot).load(std::memory_order_relaxed)),
                      "the handle table's free stack has a slot in use");
            ++on_stack;
            return true;
        });
        invariant(stack_ends, "the handle table's free stack leaves the published slots");
        const auto reserved_count =
            static_cast<std::size_t>(std::count(reserved.begin(), reserved.end(), true));
        std::size_t in_magazines = 0;
        std::size_t stolen = 0; // slots whose place compact() took back, still in a magazine
        pool.caches_.for_each([&](const auto& magazine) {
            for (std::uint32_t i = 0; i < magazine.count; ++i) {
                const std::uint32_t slot = magazine.slots[i];
                invariant(slot < published, "a magazine holds a slot the table never gave out");
                if (handles.word(slot).load(std::memory_order_relaxed) == magazine.stolen) {
                    invariant(!owned[slot], "a stolen reservation's slot still owns a place");
                    owned[slot] = true; // so a slot held twice is caught
                    ++stolen;
                    continue;
                }
                invariant(reserved[slot], "a magazine holds a slot that owns no reserved place");
                reserved[slot] = false; // so a slot held twice is caught
                ++in_magazines;
            }
        });
        invariant(in_magazines == reserved_count,
                  "the reserved places differ from the reservations in the threads' magazines");
        invariant(allocated + reserved_count + stolen + on_stack + handles.retired() == published,
                  "allocated + reserved + stolen + free + retired handle slots != published");

        std::size_t frames = 0;
        std::size_t isolated = 0;
        for (std::size_t i = 0; i < pool.arena_.frame_count(); ++i) {
            const frame& f = pool.arena_.frame_at(i);
            if (movable_ops(f) == &operations_for<Pool> &&
                f.owner() == static_cast<const void*>(&pool)) {
                ++frames;
                isolated += f.is_isolated() ? 1 : 0;
            }
        }
        invariant(frames == slabs, "the arena's frames owned by the pool differ from its slabs");
        invariant(isolated == pool.counters_.isolated_frames.load(std::memory_order_relaxed),
                  "the isolated-frame count differs from the pool's isolated frames");
    }

private:
    template <class Pool>
    static void check_slab(const Pool& pool, const object_slab& slab, std::vector<bool>& owned,
                           std::vector<bool>& reserved) {
        invariant(slab.freeing.load(std::memory_order_relaxed) == 0 &&
                      slab.capacity == Pool::objects_per_frame,
                  "a listed slab is being freed or has the wrong capacity");
        const frame& home = *slab.home;
        invariant(pool.arena_.index_of(home) < pool.arena_.frame_count() &&
                      movable_ops(home) == &operations_for<Pool> &&
                      home.owner() == static_cast<const void*>(&pool) &&
                      slab_link::from_raw(home.private_word()).pointer() == &slab,
                  "a slab's frame is not movable with the pool as its owner and the slab as its "
                  "private word");
        std::vector<bool> seen(slab.capacity, false);
        std::size_t free = 0;
        for (std::uint32_t place = slab.free_head; place != slab.capacity;) {
            invariant(place < slab.capacity && !seen[place] &&
                          !slab_entry::is_taken(slab.entries()[place]) &&
                          ++free <= slab.capacity - slab.in_use,
                      "a slab's free list is longer than its free count, repeats a place, "
                      "leaves the slab or holds a taken place");
            seen[place] = true;
            place = slab_entry::next(slab.entries()[place]);
        }
        invariant(free + slab.in_use == slab.capacity,
                  "a slab's taken and free places do not add up to its capacity");
        const handle_table& handles = *pool.handles_;
        const std::size_t home_index = pool.arena_.index_of(home);
        for (std::uint32_t place = 0; place < slab.capacity; ++place) {
            const std::uint32_t entry = slab.entries()[place];
            if (!slab_entry::is_taken(entry)) {
                continue;
            }
            const std::uint32_t slot = slab_entry::slot(entry);
            invariant(handles.contains(slot) && !owned[slot],
                      "a slab place is owned by a slot the table never gave out, or by a slot "
                      "that owns another place");
            owned[slot] = true;
            const std::uint64_t word = handles.word(slot).load(std::memory_order_acquire);
            const std::uint32_t pins = handles.slot(slot).pool_word.load(std::memory_order_acquire);
            invariant(!pin_word::is_exclusive(pins),
                      "an object's pin word is claimed with no mover or destroyer in flight");
            reserved[slot] = !slot_word::allocated(word);
            const std::uint64_t location = slot_word::location(word);
            invariant(pool.locations_.frame_index(location) == home_index &&
                          pool.locations_.object(location) == place,
                      "a slot's location is not the slab place that owns it");
        }
    }

    static void invariant(bool holds, const char* what) noexcept {
        if (!holds) {
            contract_violation("object_pool::check_invariants", what);
        }
    }
};
} // namespace detail

template <class T, class Arena>
void object_pool<T, Arena>::check_invariants() const {
    detail::object_pool_invariants::check(*this);
}

} // namespace movable
