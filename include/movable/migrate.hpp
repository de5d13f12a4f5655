// The migration engine: isolate movable frames, migrate them to new frames, put back the ones
// that could not move.
//
// Lock ordering (the one rule every owner and every caller follows):
//     frame lock  ->  owner's locks
// The core calls isolate, migrate and putback with the frame locked (for migrate, src then dst),
// and the owner takes its own locks inside. So an owner holding its own lock must never wait
// for a frame lock: it may only try_lock a frame (and defer or skip when that fails). The core
// never waits for a frame lock while isolating, and in `async` mode never waits at all.
// `sync_light` and `sync` are the same to the core: both wait for frame locks (short: held
// across owner callbacks, whose waits the mode bounds) after the non-blocking passes and to
// put frames back; they differ in what the owner may wait for (operations.hpp), and the core
// passes the caller's mode to the owner unchanged in every pass.
//
// Reference counts (see frame.hpp): an allocated frame has its allocation reference (count 1);
// isolation adds one, held until the frame is put back, migrated or released. When the core
// frees a source frame (migrated, or released by its owner while isolated) it drops the
// isolation reference and hands the allocation reference to Targets::free.
//
// What happens to each frame handed to migrate_frames:
//   success   owner copied src to dst; src is freed via Targets::free.       -> succeeded
//   released  owner called clear_movable while src was isolated; no migrate, no
//             putback: src is freed via Targets::free.                        -> released
//   retry     tried again in a later pass, at most migrate_max_passes passes in all;
//             still `retry` after the last pass: failed, put back once.         -> retried
//   busy / failed  permanent for this call: put back once (owner's putback).      -> failed
//   no target      Targets::allocate returned null: the call stops, every frame
//                  not yet migrated is put back.                                   -> aborted
// On return `from` is empty, except in `async` mode: a frame whose lock was held by someone
// else when it was to be put back stays isolated on `from` (stats.left_isolated), because
// putting it back would mean waiting. Hand those to putback_movable_frames later.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>

#include <movable/arena.hpp>
#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/operations.hpp>

namespace movable {

// Passes over the list before a frame that keeps answering `retry` counts as failed (as the
// kernel's migrate_pages). In both sync modes the first migrate_nonblocking_passes passes only
// try-lock frames; the rest may wait for a frame lock. (The owner still gets the caller's
// mode in those first passes.)
inline constexpr int migrate_max_passes = 10;
inline constexpr int migrate_nonblocking_passes = 3;

// Where migrate_frames gets target frames and gives frames back.
//   frame* allocate(const frame& source): a free frame (count 1, not movable, not locked) to
//       copy `source` into, or nullptr when out of memory (the call then stops).
//   void free(frame& f): f (count 1, not movable, not isolated) goes back to the allocator:
//       unused targets, migrated sources and sources released while isolated.
template <class Targets>
concept migration_targets = requires(Targets& targets, const frame& source, frame& f) {
    { targets.allocate(source) } -> std::same_as<frame*>;
    targets.free(f);
};

// Adapts an arena with try_allocate(order, frame_kind) and free_frame(frame&) to
// migrate_frames' Targets: targets are fresh movable frames from anywhere in the arena. (The
// compactor uses its own free scanner instead, to take targets from the arena's top.)
template <class Arena>
struct arena_targets {
    Arena& arena;
    frame* allocate(const frame& /*source*/) noexcept {
        return arena.try_allocate(0, frame_kind::movable);
    }
    void free(frame& f) noexcept { arena.free_frame(f); }
};

struct migrate_stats {
    std::size_t succeeded = 0;     // frames migrated; their sources were freed
    std::size_t failed = 0;        // frames given up on (busy/failed, retries exhausted), put
                                   // back or, in async mode, left isolated
    std::size_t retried = 0;       // `retry` answers and lock contention, summed over passes
    std::size_t released = 0;      // frames their owner released while isolated; freed
    std::size_t put_back = 0;      // frames put back (failed + those left when aborted)
    std::size_t left_isolated = 0; // async only: still isolated on `from`, lock was busy
    int passes = 0;                // passes over the list
    bool target_exhausted = false; // Targets::allocate returned null; the call stopped early
};

// Isolates `f` for migration: takes a reference (fails when the count is zero), checks the
// MOVABLE bit locklessly, try-locks the frame (never waits), re-checks under the lock that it
// has an owner and is not already isolated, and asks the owner. On true, f is ISOLATED, the
// reference is kept and the caller owns f's list hook (put f on a frame_list).
[[nodiscard]] bool isolate_movable_frame(frame& f, migrate_mode mode) noexcept;

// What putback_movable_frame did with a frame.
enum class putback_result : std::uint8_t {
    returned_to_owner, // the owner's putback took it back
    released,          // its owner had released it: the caller now holds its allocation
                       // reference and must free it through its allocator
};

// Gives an isolated frame (not on any list) back to its owner: locks it (may wait), clears
// ISOLATED, calls the owner's putback and drops the isolation reference.
[[nodiscard]] putback_result putback_movable_frame(frame& f) noexcept;

// Puts back an isolated frame (on no list), or frees it through targets.free when its owner
// released it. In `async` mode it only try-locks the frame and answers nothing (std::nullopt)
// when the lock is busy: the frame stays isolated, for a later call. Other modes wait for the
// lock. migrate_frames and the compactor end every isolation they give up on with this.
template <class Targets>
requires migration_targets<Targets> std::optional<putback_result>
putback_or_free_movable_frame(frame& f, Targets& targets, migrate_mode mode)
noexcept;

// Puts back every frame of `frames`; frames whose owner released them go to targets.free.
// Returns the number of frames returned to their owners.
template <class Targets>
requires migration_targets<Targets> std::size_t putback_movable_frames(frame_list& frames,
                                                                       Targets& targets)
noexcept;

// Migrates every isolated frame on `from` (see the table at the top of this file).
template <class Targets>
migrate_stats migrate_frames(frame_list& from, Targets& targets, migrate_mode mode) noexcept;

// ---- implementation ----------------------------------------------------------------------------

namespace detail {

// Frame locked and isolated, its owner gone: make it a plain allocated frame again (count 1)
// so it can be handed to an allocator, and unlock it (one read-modify-write for both).
inline void unisolate_for_free_and_unlock(frame& f) noexcept {
    frame_access::store_mapping(f, 0, nullptr);
    f.set_private_word(0);
    frame_access::unlock_setting_isolated(f, false);
    f.put(); // the isolation reference; the allocation reference remains
}

enum class migrate_one_result : std::uint8_t { succeeded, released, retry, failed, no_target };

template <class Targets>
migrate_one_result migrate_one(frame& src, Targets& targets, migrate_mode mode,
                               bool may_wait) noexcept {
    if (may_wait) {
        src.lock();
    } else if (!src.try_lock()) {
        return migrate_one_result::retry;
    }
    const movable_operations* ops = movable_ops(src);
    if (ops == nullptr) {
        unisolate_for_free_and_unlock(src);
        targets.free(src);
        return migrate_one_result::released;
    }
    frame* dst = targets.allocate(src);
    if (dst == nullptr) {
        src.unlock();
        return migrate_one_result::no_target;
    }
    MOVABLE_CONTRACT(!is_movable(*dst) && dst->reference_count() >= 1,
                     "migrate_frames: Targets::allocate returned a frame that is movable or free");
    if (!dst->try_lock()) { // nobody should hold a fresh frame's lock; do not wait for it
        targets.free(*dst);
        src.unlock();
        return migrate_one_result::retry;
    }
    const migrate_status status = ops->migrate(*dst, src, mode);
    if (status == migrate_status::success) {
        // On in every build: one load of a word of dst, locked and in cache. Without it a frame
        // the owner forgot to mark would hold its data where no compaction, migration or free
        // ever reaches it.
        detail::release_check(movable_ops(*dst) != nullptr,
                              "migrate_frames: owner answered success without set_movable(dst)");
        dst->unlock();
        unisolate_for_free_and_unlock(src);
        targets.free(src);
        return migrate_one_result::succeeded;
    }
    // On in every build: one load, as above. Without it a frame freed while still marked
    // movable would be handed out again with a stale owner, whose callbacks a later compaction
    // would run on another user's data.
    detail::release_check(!is_movable(*dst),
                          "migrate_frames: owner left dst movable after a failed migrate");
    dst->unlock();
    targets.free(*dst);
    src.unlock();
    return status == migrate_status::retry ? migrate_one_result::retry : migrate_one_result::failed;
}

// putback_movable_frame with the frame already locked; unlocks it.
inline putback_result putback_locked(frame& f) noexcept {
    MOVABLE_CONTRACT(f.is_isolated(), "putback_movable_frame: frame is not isolated");
    const movable_operations* ops = movable_ops(f);
    if (ops == nullptr) {
        unisolate_for_free_and_unlock(f);
        return putback_result::released;
    }
    frame_access::set_isolated(f, false);
    ops->putback(f);
    f.unlock();
    f.put();
    return putback_result::returned_to_owner;
}

} // namespace detail

inline bool isolate_movable_frame(frame& f, migrate_mode mode) noexcept {
    if (!f.try_get()) {
        return false; // free, or being freed
    }
    if (!is_movable(f) || !f.try_lock()) {
        f.put();
        return false;
    }
    const movable_operations* ops = movable_ops(f);
    if (ops == nullptr || f.is_isolated() || !ops->isolate(f, mode)) {
        f.unlock();
        f.put();
        return false;
    }
    detail::frame_access::unlock_setting_isolated(f, true);
    return true;
}

inline putback_result putback_movable_frame(frame& f) noexcept {
    MOVABLE_CONTRACT(f.hook.list == nullptr,
                     "putback_movable_frame: frame is still on a list; remove it first");
    f.lock();
    return detail::putback_locked(f);
}

template <class Targets>
requires migration_targets<Targets> std::optional<putback_result>
putback_or_free_movable_frame(frame& f, Targets& targets, migrate_mode mode)
noexcept {
    MOVABLE_CONTRACT(f.hook.list == nullptr,
                     "putback_or_free_movable_frame: frame is still on a list; remove it first");
    if (mode == migrate_mode::async) {
        if (!f.try_lock()) {
            return std::nullopt;
        }
    } else {
        f.lock();
    }
    const putback_result result = detail::putback_locked(f);
    if (result == putback_result::released) {
        targets.free(f);
    }
    return result;
}

template <class Targets>
requires migration_targets<Targets> std::size_t putback_movable_frames(frame_list& frames,
                                                                       Targets& targets)
noexcept {
    std::size_t returned = 0;
    while (frame* f = frames.pop_front()) {
        if (putback_movable_frame(*f) == putback_result::released) {
            targets.free(*f);
        } else {
            ++returned;
        }
    }
    return returned;
}

template <class Targets>
migrate_stats migrate_frames(frame_list& from, Targets& targets, migrate_mode mode) noexcept {
    static_assert(
        requires(Targets & t, const frame& source) {
            { t.allocate(source) } -> std::same_as<frame*>;
        },
        "migration_targets: Targets needs `movable::frame* allocate(const movable::frame& "
        "source)`");
    static_assert(
        requires(Targets & t, frame & f) { t.free(f); },
        "migration_targets: Targets needs `void free(movable::frame&)`");

    migrate_stats stats;
    frame_list given_up; // busy/failed answers: put back after the passes, once each
    for (int pass = 0; pass < migrate_max_passes && !from.empty() && !stats.target_exhausted;
         ++pass) {
        ++stats.passes;
        const bool may_wait = mode != migrate_mode::async && pass >= migrate_nonblocking_passes;
        // Each pass looks at the frames that were on the list when it began, once.
        for (std::size_t left = from.size(); left > 0 && !stats.target_exhausted; --left) {
            frame& f = *from.pop_front();
            switch (detail::migrate_one(f, targets, mode, may_wait)) {
            case detail::migrate_one_result::succeeded:
                ++stats.succeeded;
                break;
            case detail::migrate_one_result::released:
                ++stats.released;
                break;
            case detail::migrate_one_result::failed:
                given_up.push_back(f);
                break;
            case detail::migrate_one_result::retry:
                ++stats.retried;
                from.push_back(f);
                break;
            case detail::migrate_one_result::no_target:
                from.push_front(f);
                stats.target_exhausted = true;
                break;
            }
        }
    }
    // Frames still on `from` ran out of passes (given up on, as busy ones) or, when targets ran
    // out, were cut off. All go back now, once. An owner may have released one meanwhile: it
    // is freed and counts as released, never also as failed.
    frame_list cut_off;
    (stats.target_exhausted ? cut_off : given_up).splice_back(from);
    auto end_isolation = [&](frame_list& frames, bool counts_as_failed) {
        while (frame* f = frames.pop_front()) {
            const std::optional<putback_result> result =
                putback_or_free_movable_frame(*f, targets, mode);
            if (!result) {
                from.push_back(*f); // async: left isolated for the caller
                ++stats.left_isolated;
                stats.failed += counts_as_failed ? 1 : 0;
            } else if (*result == putback_result::released) {
                ++stats.released;
            } else {
                ++stats.put_back;
                stats.failed += counts_as_failed ? 1 : 0;
            }
        }
    };
    end_isolation(given_up, true);
    end_isolation(cut_off, false);
    return stats;
}

} // namespace movable
