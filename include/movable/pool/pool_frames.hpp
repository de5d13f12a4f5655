// How a pool takes a new movable frame, lets go of one and takes its lock to migrate one, shared
// by the pools. Letting go: the frame is locked (waiting is fine: the caller holds no pool
// lock), released with clear_movable, and freed to the arena, unless the core holds it isolated,
// in which case the core frees it.
#pragma once

#include <cstdint>
#include <cstring>
#include <mutex>

#include <movable/detail/contract.hpp>
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

// The pool lock for an owner's migrate callback (the core holds the frame locks): `async` only
// tries it, and the callback answers `retry` when this is false; the other modes wait for it
// (the pool holds it only briefly).
template <class Lock>
[[nodiscard]] bool lock_for_migration(Lock& guard, migrate_mode mode) {
    if (mode == migrate_mode::async) {
        return guard.try_lock();
    }
    guard.lock();
    return true;
}

// migrate for a pool with one descriptor per frame (`freeing`, `pins`, `frame* memory`; zbud's
// and z3fold's): with the pool lock (lock_for_migration), `busy` while the frame is being freed
// or pinned; else copies the frame into dst, points the descriptor at dst, calls
// relocated(descriptor) (the pool rewrites its objects' handles) and makes dst movable with
// src's private word. Counting is the pool's. `not_its_frame`: the contract message when src is
// not the descriptor's frame.
template <class Arena, class Owner, class Descriptor, class Lock, class Relocated>
migrate_status migrate_descriptor_frame(Arena& arena, Owner& owner, Descriptor& descriptor,
                                        Lock& pool_lock, frame& dst, frame& src, migrate_mode mode,
                                        const char* not_its_frame, Relocated&& relocated) noexcept {
    std::unique_lock guard(pool_lock, std::defer_lock);
    if (!lock_for_migration(guard, mode)) {
        return migrate_status::retry;
    }
    if (descriptor.freeing.load(std::memory_order_relaxed) != 0 ||
        descriptor.pins.load(std::memory_order_acquire) != 0) {
        return migrate_status::busy;
    }
    MOVABLE_CONTRACT(descriptor.memory == &src, not_its_frame);
    std::memcpy(arena.address_of(dst), arena.address_of(src), Arena::frame_size);
    descriptor.memory = &dst;
    relocated(descriptor);
    dst.set_private_word(src.private_word());
    set_movable(dst, owner);
    return migrate_status::success;
}

} // namespace movable::detail
