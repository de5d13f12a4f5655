// zspage_pool::check_invariants: the pool's invariants, checked by walking every class's zspages
// and every handle slot, and the class-local subset the expensive tier
// (MOVABLE_EXPENSIVE_CHECKS) checks at the end of each allocation and free. zspage_pool's
// internals: users call zspage_pool::check_invariants().
//
// For each class c (under its lock), with objects = c.info.objects_per_zspage:
//   lists[0] is empty (an emptied zspage is freed, never listed)
//   lists[g].size == |zspages walked on lists[g]|, their previous/next links agree
//   for every zspage z on lists[g]:
//     z.group == g == fullness_group(z.in_use, objects)       (on exactly the list its count says)
//     z.class_id == c.id, !z.freeing
//     |free list of z| == objects - z.in_use, its entries distinct, < objects, with free headers
//   c.zspages == sum over g of lists[g].size
//   c.objects_in_use == sum over its zspages of z.in_use
// Full walk only (frames and handles):
//   z.frames[p] is an arena frame for p < frames_per_zspage, null after; movable_ops == the
//     pool's, owner == the pool, private word == zspage_link(z, p)
//   |arena frames whose owner is the pool| == |frames of listed zspages|
//   isolated_frames (counter) == |frames of listed zspages that are ISOLATED|
//   for every allocated slot s: its class is a class of the pool; its location names frame F and
//     object o with zspage_of(F) a listed zspage z of that class, o < objects,
//     F == z.frames[o * object_size / frame_size], header(z, o) == allocated(s),
//     1 <= size(s) <= c.info.max_payload
//   for every slot in a thread's cache (a reservation): not allocated; `stolen` (compaction took
//     its place back), or its location names a place of its class as above whose header names
//     it; |stolen ones of c| == c.stolen_pending
//   |allocated slots of c| + |reservations of c| == c.objects_in_use, sum of the allocated
//     slots' sizes == c.bytes_in_use + what the caches counted for c
//     (headers name one slot each, so slots -> objects is one-to-one; with equal counts it is
//     onto every allocated object)
//   handle table: |allocated| + |in caches| + |free stack| + retired == published; the free
//     stack's entries are distinct, published and marked free
// stats() reports c.zspages, c.objects_in_use, c.bytes_in_use and the counters, so these make
// the walk agree with stats().
//
// Locks: one class lock at a time (for each class in order; then, per allocated slot, the lock
// of the slot's class), no frame lock. It reads frame words and the handle table without their
// locks, so the pool must be quiescent: no call on it, and no isolation or migration of its frames
// in flight (frames the core holds isolated between calls are fine; objects may be mapped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/models/zspage/zspage.hpp>
#include <movable/operations.hpp>
#include <movable/pool/handle_table.hpp>

namespace movable::detail {

struct zspage_pool_invariants {
    // The whole pool. Quiescent pool only (see above).
    template <class Pool>
    static void check(const Pool& pool) {
        std::unordered_map<const zspage*, std::uint32_t> listed; // zspage -> class id
        std::vector<std::size_t> slots_of_class(pool.class_map_.size(), 0);
        std::vector<std::size_t> bytes_of_class(pool.class_map_.size(), 0);
        std::size_t isolated = 0;
        std::size_t frames = 0; // of listed zspages
        for (std::size_t c = 0; c < pool.class_map_.size(); ++c) {
            zspage_class& cls = pool.classes_[c];
            std::lock_guard guard(cls.lock);
            check_class(pool.arena_, cls, nullptr);
            for (const fullness_list<zspage>& list : cls.groups.lists) {
                for (const zspage* zs = list.head; zs != nullptr; zs = zs->next) {
                    listed.emplace(zs, cls.id);
                    for (std::size_t p = 0; p < zs->frames.size(); ++p) {
                        const frame* f = zs->frames[p];
                        if (p >= cls.info.frames_per_zspage) {
                            invariant(f == nullptr, "a zspage has a frame past its chain's length");
                            continue;
                        }
                        invariant(f != nullptr &&
                                      pool.arena_.index_of(*f) < pool.arena_.frame_count(),
                                  "a zspage's chain has a frame that is not the arena's");
                        invariant(movable_ops(*f) == &operations_for<Pool> &&
                                      f->owner() == static_cast<const void*>(&pool),
                                  "a zspage's frame is not movable with the pool as its owner");
                        invariant(f->private_word() ==
                                      zspage_link(const_cast<zspage*>(zs), p).raw(),
                                  "a zspage's frame does not link back to its zspage and "
                                  "position");
                        isolated += f->is_isolated() ? 1 : 0;
                        ++frames;
                    }
                }
            }
        }
        std::size_t owned = 0;
        for (std::size_t index = 0; index < pool.arena_.frame_count(); ++index) {
            owned += pool.arena_.frame_at(index).owner() == static_cast<const void*>(&pool) ? 1 : 0;
        }
        invariant(owned == frames, "the arena has frames owned by the pool outside its zspages");
        invariant(isolated == pool.counters_.isolated_frames.load(std::memory_order_relaxed),
                  "the isolated-frame count differs from the pool's frames that are isolated");

        // Threads' reservations: slot -> class, and the per-class bytes their fast paths counted.
        std::unordered_map<std::uint32_t, std::uint32_t> reserved_slots;
        std::vector<std::int64_t> cached_bytes(pool.class_map_.size(), 0);
        pool.caches_.for_each([&](const auto& m) {
            const auto* caches = m.classes();
            if (caches == nullptr) {
                return;
            }
            for (std::size_t c = 0; c < pool.class_map_.size(); ++c) {
                const auto& cache = caches[c];
                cached_bytes[c] += cache.bytes.load(std::memory_order_relaxed);
                for (std::uint32_t i = 0; i < cache.size(); ++i) {
                    invariant(reserved_slots.emplace(cache.slots[i], c).second,
                              "a handle slot is in threads' caches twice");
                }
            }
        });
        std::vector<std::size_t> reserved_of_class(pool.class_map_.size(), 0);
        std::vector<std::size_t> stolen_of_class(pool.class_map_.size(), 0);

        const handle_table& handles = *pool.handles_;
        const std::size_t published = handles.published();
        std::size_t allocated = 0;
        for (std::size_t index = 0; index < published; ++index) {
            const auto slot = static_cast<std::uint32_t>(index);
            const handle_slot& entry = handles.slot(slot);
            const std::uint64_t word = entry.word.load(std::memory_order_acquire);
            const auto reservation = reserved_slots.find(slot);
            if (reservation != reserved_slots.end()) {
                invariant(!slot_word::allocated(word),
                          "a slot in a thread's cache is marked allocated");
                if (word == Pool::magazine::stolen) {
                    ++stolen_of_class[reservation->second];
                    continue;
                }
                invariant(slot_word::class_id(word) == reservation->second,
                          "a reserved slot names another class than the cache it is in");
                check_place(pool, slot, word, listed);
                ++reserved_of_class[reservation->second];
                continue;
            }
            if (!slot_word::allocated(word)) {
                continue;
            }
            ++allocated;
            const std::uint32_t class_id = check_place(pool, slot, word, listed);
            const zspage_class& cls = pool.classes_[class_id];
            const std::size_t size = entry.pool_word.load(std::memory_order_relaxed);
            invariant(size >= 1 && size <= cls.info.max_payload,
                      "an allocated handle slot's size does not fit its class");
            ++slots_of_class[class_id];
            bytes_of_class[class_id] += size;
        }
        for (std::size_t c = 0; c < pool.class_map_.size(); ++c) {
            zspage_class& cls = pool.classes_[c];
            std::lock_guard guard(cls.lock);
            invariant(slots_of_class[c] + reserved_of_class[c] == cls.objects_in_use,
                      "a class's allocated and reserved handle slots differ from its objects in "
                      "use");
            invariant(static_cast<std::int64_t>(bytes_of_class[c]) ==
                          static_cast<std::int64_t>(cls.bytes_in_use) + cached_bytes[c],
                      "a class's bytes in use differ from the sum of its objects' sizes");
            invariant(stolen_of_class[c] == cls.stolen_pending.load(std::memory_order_relaxed),
                      "a class's count of reservations taken back differs from its caches'");
        }
        check_free_stack(handles, allocated + reserved_slots.size(), invariant);
    }

    // The place a slot word (an object's or a reservation's) names is a place of a listed zspage
    // of the word's class whose header names the slot; returns the class.
    template <class Pool, class Listed>
    static std::uint32_t check_place(const Pool& pool, std::uint32_t slot, std::uint64_t word,
                                     const Listed& listed) {
        constexpr std::size_t frame_size = Pool::frame_size;
        const std::uint32_t class_id = slot_word::class_id(word);
        invariant(class_id < pool.class_map_.size(),
                  "an allocated handle slot names a class the pool does not have");
        zspage_class& cls = pool.classes_[class_id];
        std::lock_guard guard(cls.lock);
        const std::uint64_t location = slot_word::location(word);
        const std::size_t frame_index = pool.locations_.frame_index(location);
        const std::uint32_t object = pool.locations_.object(location);
        invariant(frame_index < pool.arena_.frame_count(),
                  "an allocated handle slot's location names no frame of the arena");
        const frame& f = pool.arena_.frame_at(frame_index);
        const zspage* zs = zspage_link::from_raw(f.private_word()).pointer();
        const auto found = listed.find(zs);
        invariant(found != listed.end() && found->second == class_id,
                  "an allocated handle slot's location is not in a zspage of its class");
        invariant(object < cls.info.objects_per_zspage &&
                      zs->frames[std::size_t{object} * cls.info.object_size / frame_size] == &f,
                  "an allocated handle slot's location names an object index out of range "
                  "or a frame the object does not start in");
        const std::uint64_t header =
            zspage_read_header(pool.arena_, cls, const_cast<zspage&>(*zs), object);
        invariant(header == object_header::allocated(slot),
                  "an allocated handle slot's object header does not name that slot");
        return class_id;
    }

    // One class's lists and counts, and the free lists of its zspages (all of them when
    // `touched` is null, else only that one's, which may be off the lists). Class locked.
    template <class Arena>
    static void check_class(Arena& arena, zspage_class& cls, zspage* touched) {
        std::size_t zspages = 0;
        std::size_t in_use = 0;
        cls.groups.check(invariant, [&](zspage& zs) {
            invariant(zs.class_id == cls.id && zs.freeing.load(std::memory_order_relaxed) == 0,
                      "a listed zspage belongs to another class or is being freed");
            if (touched == nullptr) {
                check_free_list(arena, cls, zs);
            }
            in_use += zs.in_use;
            ++zspages;
        });
        if (touched != nullptr) {
            check_free_list(arena, cls, *touched);
        }
        invariant(zspages == cls.zspages, "a class's zspage count differs from its lists");
        invariant(in_use == cls.objects_in_use,
                  "a class's objects in use differ from the sum over its zspages");
    }

private:
    // in use + |free list| == objects per zspage; the free list's entries are distinct, in range
    // and have free headers.
    template <class Arena>
    static void check_free_list(Arena& arena, const zspage_class& cls, zspage& zs) {
        const std::size_t objects = cls.info.objects_per_zspage;
        invariant(zs.in_use <= objects, "a zspage has more objects in use than it holds");
        std::vector<bool> seen(objects, false);
        std::size_t free = 0;
        for (std::uint32_t object = zs.free_head; object != objects;) {
            invariant(object < objects && !seen[object] && ++free <= objects - zs.in_use,
                      "a zspage's free list is longer than its free count, repeats an object or "
                      "leaves the zspage");
            seen[object] = true;
            const std::uint64_t header = zspage_read_header(arena, cls, zs, object);
            invariant(!object_header::is_allocated(header),
                      "an object on a zspage's free list has an allocated header");
            object = object_header::next(header);
        }
        invariant(free + zs.in_use == objects,
                  "a zspage's in-use and free objects do not add up to its objects");
    }

    static void invariant(bool holds, const char* what) noexcept {
        if (!holds) {
            contract_violation("zspage_pool::check_invariants", what);
        }
    }
};

} // namespace movable::detail
