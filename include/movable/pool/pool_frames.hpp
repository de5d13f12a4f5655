// How a pool lets go of one of its movable frames, shared by the pools: the frame is locked
// (waiting is fine: the caller holds no pool lock), released with clear_movable, and freed to
// the arena, unless the core holds it isolated, in which case the core frees it.
#pragma once

#include <movable/frame.hpp>
#include <movable/operations.hpp>

namespace movable::detail {

// True when the core holds `f` isolated and frees it itself; false when it went back to the
// arena here. After this no owner callback reaches the pool through `f`.
template <class Arena>
bool free_pool_frame(Arena& arena, frame& f) noexcept {
    f.lock();
    const bool core_frees_it = clear_movable(f);
    f.unlock();
    if (!core_frees_it) {
        arena.deallocate(f, 0);
    }
    return core_frees_it;
}

} // namespace movable::detail
