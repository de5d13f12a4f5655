// Lets the object_pool tests reach inside a pool: hold the pool lock or the compaction lock (to
// force the `retry` and "compaction already running" paths), move a free handle slot's
// generation near its end (instead of 4 billion reuses), and corrupt a slot word for the death
// tests of check_invariants.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include <movable/models/object_pool.hpp>

namespace movable::detail {

template <class Pool>
struct object_pool_test_access {
    static contended_mutex& lock(Pool& pool) { return pool.lock_; }
    static std::mutex& compaction_lock(Pool& pool) { return pool.compaction_lock_; }
    // The generation the next handle of a free `slot` gets. Single-threaded use only.
    static void set_generation(Pool& pool, std::uint32_t slot, std::uint32_t generation) {
        pool.handles_->slot(slot).generation.store(generation, std::memory_order_relaxed);
    }
    // Marks the slab of `f` as being freed (or not), as destroy does before it frees the frame.
    static void set_freeing(frame& f, bool freeing) {
        detail::slab_link::from_raw(f.private_word())
            .pointer()
            ->freeing.store(freeing ? 1 : 0, std::memory_order_release);
    }
    // The handle table's slot word of `slot`.
    static std::atomic<std::uint64_t>& slot_word(Pool& pool, std::uint32_t slot) {
        return pool.handles_->word(slot);
    }
};

} // namespace movable::detail
