// Shake mode's mechanics (shake.hpp says what shake mode is): moving frames to new places through
// the core protocol, for the arena's compactor (every movable frame), a pool (every frame it owns)
// and a pin that ends (the frames holding the object). Shared by every pool; never copied.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <type_traits>
#include <vector>

#include <movable/arena.hpp>
#include <movable/frame.hpp>
#include <movable/migrate.hpp>
#include <movable/operations.hpp>
#include <movable/shake.hpp>

namespace movable::detail {

// migrate_frames' Targets for a shake: any free movable frame of the arena (try_allocate when the
// arena has it; else the free frames try_take_free_frame gives, lowest first, two sweeps). A
// source is allocated, so its target is always another frame. Migrated sources are held back
// (release() frees them) rather than reused as targets, so that after a shake no old place holds
// another frame's data and every one is poisoned (frame_arena under shake); they are freed early
// only when the arena runs out of targets.
template <class Arena>
struct shake_targets {
    Arena& arena;
    frame_list held;
    std::size_t cursor = 0;
    bool wrapped = false;

    frame* allocate(const frame& /*source*/) noexcept {
        if (frame* f = take_free()) {
            return f;
        }
        if (held.empty()) {
            return nullptr;
        }
        release();
        wrapped = false;
        return take_free();
    }
    void free(frame& f) noexcept { held.push_back(f); }
    void release() noexcept {
        while (frame* f = held.pop_front()) {
            arena.free_frame(*f);
        }
    }

private:
    frame* take_free() noexcept {
        if constexpr (arena_has_try_allocate<Arena>) {
            return arena.try_allocate(0, frame_kind::movable);
        } else {
            for (;;) {
                for (; cursor < arena.frame_count(); ++cursor) {
                    if (frame* f = arena.try_take_free_frame(cursor)) {
                        ++cursor;
                        return f;
                    }
                }
                if (wrapped) {
                    return nullptr;
                }
                wrapped = true;
                cursor = 0;
            }
        }
    }
};

// Moves every frame of `indices` (frames of `arena`) that can be isolated now to a new frame, in
// batches; a frame that is free, unowned, pinned or busy by now stays where it is. Returns the
// frames moved. No lock of an owner may be held (the owners' callbacks take theirs).
template <class Arena>
std::size_t shake_frames(Arena& arena, std::span<const std::size_t> indices,
                         migrate_mode mode) noexcept {
    constexpr std::size_t batch_frames = 32;
    shake_targets<Arena> targets{arena, {}};
    std::size_t moved = 0;
    frame_list batch;
    const auto migrate_batch = [&] {
        moved += migrate_frames(batch, targets, mode).succeeded;
        // async: frames whose lock was busy at putback are still isolated; put them back now.
        (void)putback_movable_frames(batch, targets);
    };
    for (const std::size_t index : indices) {
        frame& f = arena.frame_at(index);
        if (!isolate_movable_frame(f, mode)) {
            continue;
        }
        batch.push_back(f);
        if (batch.size() == batch_frames) {
            migrate_batch();
        }
    }
    migrate_batch();
    targets.release();
    return moved;
}

// Indices of the allocated frames of `arena` that pick(frame&) selects (a snapshot: frames move
// to new places while they are shaken, and must not be shaken twice). Throws std::bad_alloc.
template <class Arena, class Pick>
std::vector<std::size_t> allocated_frames(Arena& arena, Pick&& pick) {
    std::vector<std::size_t> indices;
    for (std::size_t index = 0; index < arena.frame_count();) {
        if (arena.is_free(index)) {
            if constexpr (compactable_arena_optional_members<Arena>::free_block_end) {
                index = arena.free_block_end(index);
            } else {
                ++index;
            }
            continue;
        }
        if (pick(arena.frame_at(index))) {
            indices.push_back(index);
        }
        ++index;
    }
    return indices;
}

// Compaction under shake: moves every movable allocated frame of `arena`. Returns the frames
// moved. Throws std::bad_alloc (the snapshot).
template <class Arena>
std::size_t shake_arena(Arena& arena, migrate_mode mode) {
    const std::vector<std::size_t> indices =
        allocated_frames(arena, [](const frame& f) { return is_movable(f); });
    return shake_frames(arena, indices, mode);
}

// A pool's shake (compact() and every N-th allocation under shake): moves every frame `pool`
// owns, counted in pool.shake(). A snapshot that cannot be allocated skips the shake. No lock of
// the pool may be held.
template <class Pool>
void shake_pool(const Pool& pool) noexcept {
    auto& arena = pool.arena();
    const void* const owner = &pool;
    try {
        const std::vector<std::size_t> indices = allocated_frames(
            arena, [owner](const frame& f) { return is_movable(f) && f.owner() == owner; });
        pool.shake().count_shake(shake_frames(arena, indices, migrate_mode::sync_light));
    } catch (const std::bad_alloc&) {
        // A debugging aid that cannot run this time; the pool is unchanged.
    }
}

// Every N-th allocation of `pool` under shake (shake_options::every_nth_allocation) shakes it.
// No lock of the pool may be held.
template <class Pool>
void shake_after_allocation(const Pool& pool) noexcept {
    if (pool.shake().allocation_due()) {
        shake_pool(pool);
    }
}

// compact() under shake moves every frame of the pool afterwards. No lock of the pool held.
template <class Pool>
void shake_after_compaction(const Pool& pool) noexcept {
    if (pool.shake().enabled()) {
        shake_pool(pool);
    }
}

// The end of a pin under shake: moves the frame(s) holding the first and the last byte of the
// object (in `pool`'s arena), when no other pin holds them (sync_light: a pinned frame answers
// busy at once). The unpin_shake hook of a pool's pins points here.
template <class Pool>
void shake_unpinned(const void* pool, const void* first_byte, const void* last_byte) noexcept {
    const Pool& p = *static_cast<const Pool*>(pool);
    auto& arena = p.arena();
    constexpr std::size_t frame_size = std::remove_reference_t<decltype(arena)>::frame_size;
    const auto base = reinterpret_cast<std::uintptr_t>(arena.address_of(arena.frame_at(0)));
    const auto first = reinterpret_cast<std::uintptr_t>(first_byte);
    const auto last = reinterpret_cast<std::uintptr_t>(last_byte);
    if (first < base || last < base || (first - base) / frame_size >= arena.frame_count() ||
        (last - base) / frame_size >= arena.frame_count()) {
        return; // not in the arena: nothing of the arena to move
    }
    const std::array<std::size_t, 2> indices{(first - base) / frame_size,
                                             (last - base) / frame_size};
    const std::size_t count = indices[0] == indices[1] ? 1 : 2;
    p.shake().count_shake(
        shake_frames(arena, std::span(indices.data(), count), migrate_mode::sync_light));
}

// The hook a pool gives a pin it makes: empty when shake is off.
template <class Pool>
unpin_shake unpin_shake_for(const Pool& pool) noexcept {
    if (!pool.shake().enabled()) {
        return {};
    }
    return {&shake_unpinned<Pool>, &pool};
}

} // namespace movable::detail
