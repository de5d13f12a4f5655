// How a pool takes a new movable frame and lets go of one, shared by the pools. Letting go: the
// frame is locked
// (waiting is fine: the caller holds no pool lock), released with clear_movable, and freed to
// the arena, unless the core holds it isolated, in which case the core frees it.
#pragma once

#include <cstdint>
#include <mutex>

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

// A new frame from `arena` for `descriptor` (a pool's frame descriptor, with `frame* memory`):
// descriptor.memory and the frame's private word (&descriptor) are set before the frame is made
// movable with `owner` as its owner, so the core, which may isolate and migrate it from then on,
// sees both. False when the arena is exhausted. No lock of the pool held.
template <class Arena, class Owner, class Descriptor>
bool new_pool_frame(Arena& arena, Owner& owner, Descriptor& descriptor) noexcept {
    frame* f = arena.try_allocate(0, frame_kind::movable);
    if (f == nullptr) {
        return false;
    }
    descriptor.memory = f;
    f->set_private_word(reinterpret_cast<std::uintptr_t>(&descriptor));
    std::lock_guard guard(*f);
    set_movable(*f, owner);
    return true;
}

} // namespace movable::detail
