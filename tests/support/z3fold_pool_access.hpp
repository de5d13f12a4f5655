// Lets the z3fold_pool tests reach inside a pool: hold its lock (to force the `retry` path), find
// the frame an object lives in and its descriptor (to corrupt it in death tests of
// check_invariants).
#pragma once

#include <atomic>
#include <cstdint>

#include <movable/models/z3fold_pool.hpp>

namespace movable::detail {

template <class Pool>
struct z3fold_pool_test_access {
    static contended_mutex& lock(Pool& pool) { return pool.lock_; }
    // The frame the object lives in (its handle's location). Single-threaded use only.
    static frame& frame_of(Pool& pool, z3fold_handle h) {
        const std::uint64_t w =
            pool.handles_->word(handle_value::slot(h.value())).load(std::memory_order_acquire);
        return pool.arena_.frame_at(pool.locations_.frame_index(slot_word::location(w)));
    }
    // The object's buddy: first (0), middle (1) or last (2).
    static z3fold_buddy buddy_of(Pool& pool, z3fold_handle h) {
        const std::uint64_t w =
            pool.handles_->word(handle_value::slot(h.value())).load(std::memory_order_acquire);
        return static_cast<z3fold_buddy>(pool.locations_.object(slot_word::location(w)));
    }
    static z3fold_frame& descriptor_of(Pool& pool, z3fold_handle h) {
        return *z3fold_frame_of(frame_of(pool, h));
    }
};

} // namespace movable::detail
