// Lets the zspage_pool tests reach inside a pool: hold a class lock or the compaction lock (to
// force the `retry` and "compaction already running" paths), find the frames an object lives
// in, see whether a frame's zspage is being freed, and move a free handle slot's generation
// near its end (instead of 4 billion reuses), and corrupt a zspage or a slot word for the death
// tests of check_invariants.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <movable/models/zspage_pool.hpp>

namespace movable::detail {

template <class Pool>
struct zspage_pool_test_access {
    // The lock of the class that allocate(payload) uses.
    static contended_mutex& class_lock(Pool& pool, std::size_t payload) {
        return pool.class_of_payload(payload).lock;
    }
    static std::mutex& compaction_lock(Pool& pool) { return pool.compaction_lock_; }

    // The handle table slot a handle names.
    static std::uint32_t slot(zspage_handle h) { return handle_value::slot(h.value()); }
    // The generation the next handle of a free `slot` gets. Single-threaded use only.
    static void set_generation(Pool& pool, std::uint32_t slot, std::uint32_t generation) {
        pool.handles_->slot(slot).generation.store(generation, std::memory_order_relaxed);
    }
    // The frame the object starts in (its handle's location). Single-threaded use only.
    static frame& start_frame(Pool& pool, zspage_handle h) {
        return pool.frame_of(
            slot_word::location(pool.handles_->word(slot(h)).load(std::memory_order_acquire)));
    }
    // Whether the zspage of `f` is marked freeing (its last object freed, or the pool being
    // destroyed). Someone must hold f's lock, so that the zspage cannot be released meanwhile.
    static bool zspage_being_freed(const frame& f) {
        return Pool::zspage_of(f)->freeing.load(std::memory_order_acquire) != 0;
    }
    // The object's zspage and its handle's slot word, for corrupting them in death tests of
    // check_invariants. Single-threaded use only.
    static zspage& zspage_of(Pool& pool, zspage_handle h) {
        return *Pool::zspage_of(start_frame(pool, h));
    }
    static std::atomic<std::uint64_t>& slot_word(Pool& pool, zspage_handle h) {
        return pool.handles_->word(slot(h));
    }
    // A reader's pin on the object's zspage, taken as an unlocked reader takes it (one that may
    // have followed a stale location); empty when a mover holds the zspage. Single-threaded use
    // only.
    static zspage_pin pin_zspage(Pool& pool, zspage_handle h) {
        zspage& zs = zspage_of(pool, h);
        return container_claim::try_pin(zs.pins) ? zspage_pin::adopt(zs) : zspage_pin();
    }
    // The frames of the object's zspage, in chain order. Single-threaded use only.
    static std::vector<frame*> zspage_frames(Pool& pool, zspage_handle h) {
        const zspage* zs = Pool::zspage_of(start_frame(pool, h));
        const std::size_t frames = pool.classes_[zs->class_id].info.frames_per_zspage;
        return {zs->frames.begin(), zs->frames.begin() + static_cast<std::ptrdiff_t>(frames)};
    }
};

} // namespace movable::detail
