// Shake mode: find owners that keep raw pointers into frames (Valkey's DEBUG_FORCE_DEFRAG for
// this library). Anything an owner reaches through a handle, a pin or its own page table may move
// whenever the owner is not holding it; code that caches an address instead works until the day
// compaction happens to move that frame. Under shake, things move all the time, so such code
// fails at once, in tests:
//
//   * frame_arena: every compaction (compactor::begin) first moves every movable allocated frame
//     to a new place, even when the arena is compact (compact_stats::shaken counts them), and
//     every frame the arena frees is poisoned: under AddressSanitizer its bytes are poisoned
//     (a stale read or write is reported as use-after-poison), otherwise they are filled with
//     shake_poison_byte (0xDB). A frame is unpoisoned when it is allocated again.
//   * the pools (zspage_pool, zbud_pool, z3fold_pool, object_pool): the end of every pin (a
//     mapping's unmap, a pinned<T>'s reset) moves the frame(s) holding that object to a new place
//     when it can (not while other pins hold it); every compact() moves every frame of the pool
//     after compacting, so every object moves; and, with every_nth_allocation = N, every N-th
//     allocation does the same.
//
// Frames move through the core protocol (isolate, migrate_frames, putback), so the owners'
// callbacks and locks are exercised, not bypassed. The poisoning is the arena's: turn shake on
// for the arena too to catch a stale pointer into a frame a pool let go of.
//
// Switching it on: define MOVABLE_SHAKE (to 1) for the whole program to make it the default of
// every arena and pool, or at run time `arena.shake().set({.enabled = true})`,
// `pool.shake().set({.enabled = true, .every_nth_allocation = 16})`. Off by default; when off it
// costs one relaxed load where a hook would run. It is a debugging mode: a shake ignores the
// compaction's budgets and moves O(frames) frames per event.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#define MOVABLE_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOVABLE_DETAIL_ASAN 1
#endif
#endif
#if defined(MOVABLE_DETAIL_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#ifndef MOVABLE_SHAKE
#define MOVABLE_SHAKE 0
#endif

namespace movable {

// True when the program is built with MOVABLE_SHAKE (non-zero): shake is on by default.
inline constexpr bool shake_by_default = MOVABLE_SHAKE != 0;
// True when built with AddressSanitizer: freed frames are poisoned for it, not only filled.
#if defined(MOVABLE_DETAIL_ASAN)
inline constexpr bool shake_poisons_for_asan = true;
#else
inline constexpr bool shake_poisons_for_asan = false;
#endif
// What a frame the arena freed under shake is filled with.
inline constexpr unsigned char shake_poison_byte = 0xDB;

struct shake_options {
    bool enabled = shake_by_default;
    // Pools: every N-th allocation (allocate, try_allocate, emplace) moves every frame of the
    // pool; 0 never. The arena ignores it.
    std::size_t every_nth_allocation = 0;
};

// The shake switch of one arena or pool (its `shake()` member): the options, readable from any
// thread while another sets them, and what shaking did. One type for every arena and pool.
class shake_switch {
public:
    shake_switch() noexcept = default;
    explicit shake_switch(const shake_options& options) noexcept { set(options); }
    shake_switch(const shake_switch&) = delete;
    shake_switch& operator=(const shake_switch&) = delete;

    void set(const shake_options& options) noexcept {
        every_nth_allocation_.store(options.every_nth_allocation, std::memory_order_relaxed);
        enabled_.store(options.enabled, std::memory_order_relaxed);
    }
    [[nodiscard]] shake_options options() const noexcept {
        return {enabled(), every_nth_allocation_.load(std::memory_order_relaxed)};
    }
    [[nodiscard]] bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }
    // Frames moved by shakes (not by ordinary compaction or migration).
    [[nodiscard]] std::size_t frames_moved() const noexcept {
        return frames_moved_.load(std::memory_order_relaxed);
    }
    // Shakes run: unpins, compactions and allocations that moved (or tried to move) frames.
    [[nodiscard]] std::size_t shakes() const noexcept {
        return shakes_.load(std::memory_order_relaxed);
    }

    // ---- for the arenas and pools ------------------------------------------------------------
    // Counts an allocation; true when it is the N-th since the last true (shake on, N > 0).
    [[nodiscard]] bool allocation_due() const noexcept {
        if (!enabled()) {
            return false;
        }
        const std::size_t every = every_nth_allocation_.load(std::memory_order_relaxed);
        return every != 0 &&
               (allocations_.fetch_add(1, std::memory_order_relaxed) + 1) % every == 0;
    }
    void count_shake(std::size_t frames_moved) const noexcept {
        shakes_.fetch_add(1, std::memory_order_relaxed);
        frames_moved_.fetch_add(frames_moved, std::memory_order_relaxed);
    }

private:
    std::atomic<bool> enabled_{shake_by_default};
    std::atomic<std::size_t> every_nth_allocation_{0};
    mutable std::atomic<std::size_t> allocations_{0};
    mutable std::atomic<std::size_t> shakes_{0};
    mutable std::atomic<std::size_t> frames_moved_{0};
};

namespace detail {

// The bytes of a freed frame (or block): filled with shake_poison_byte, then poisoned for
// AddressSanitizer when the program has it. The memory must be the caller's (not yet on a free
// list) and must not be read again before unpoison_memory.
inline void poison_memory(void* start, std::size_t bytes) noexcept {
    std::memset(start, shake_poison_byte, bytes);
#if defined(MOVABLE_DETAIL_ASAN)
    __asan_poison_memory_region(start, bytes);
#endif
}

// Makes memory addressable again (AddressSanitizer); nothing to do without it. The arena calls it
// for every block it hands out and for its whole region when it is destroyed.
inline void unpoison_memory([[maybe_unused]] void* start,
                            [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(MOVABLE_DETAIL_ASAN)
    __asan_unpoison_memory_region(start, bytes);
#endif
}

// A pin's shake hook: set by a pool when it pins an object with shake on, run (with the object's
// address and size) once the pin is dropped. Empty (no call) when shake was off.
struct unpin_shake {
    void (*move)(const void* pool, const void* first_byte,
                 const void* last_byte) noexcept = nullptr;
    const void* pool = nullptr;

    [[nodiscard]] explicit operator bool() const noexcept { return move != nullptr; }
    // For an object that is contiguous in the arena.
    void run(const void* address, std::size_t size) const noexcept {
        if (move != nullptr && address != nullptr) {
            const auto* first = static_cast<const std::byte*>(address);
            move(pool, first, first + (size == 0 ? 0 : size - 1));
        }
    }
};

} // namespace detail
} // namespace movable
