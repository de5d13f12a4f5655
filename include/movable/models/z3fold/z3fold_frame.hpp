// The z3fold frame descriptor (one frame holding up to three buddies in 64-byte chunks: "first"
// from the frame's start, "last" ending at its end, "middle" anywhere between), its layout
// arithmetic (the free runs, where a new buddy goes, where in-frame compaction moves the middle
// buddy) and the unbuddied lists. z3fold_pool's internals: users never name these.
//
// As zbud's, the descriptor lives outside its frame: every chunk holds data, and migration only
// swaps the frame the descriptor points at.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include <movable/frame.hpp>
#include <movable/pool/chunk_lists.hpp>

namespace movable::detail {

// The three buddies of a frame, in address order.
enum class z3fold_buddy : std::uint32_t { first = 0, middle = 1, last = 2 };
inline constexpr std::array<z3fold_buddy, 3> z3fold_buddies{
    z3fold_buddy::first, z3fold_buddy::middle, z3fold_buddy::last};

// In-frame compaction moves the middle buddy only when that merges at least this many chunks
// into a usable free run (the kernel's BIG_CHUNK_GAP), except when the middle is alone (it then
// becomes the first buddy, always).
inline constexpr std::uint32_t z3fold_big_gap = 3;

// One frame of a z3fold_pool. Cache-line aligned: the frame's private word points at it.
//   first takes chunks [0, chunks[first]), last [N - chunks[last], N), middle
//   [start_middle, start_middle + chunks[middle]); they do not overlap. An empty frame is freed,
//   never kept.
struct alignas(64) z3fold_frame {
    // Under the pool lock.
    frame* memory = nullptr;               // the frame holding the buddies; changed by migration
    std::array<std::uint32_t, 3> chunks{}; // per buddy (z3fold_buddy): chunks used, 0 when free
    std::array<std::uint32_t, 3> slots{};  // per buddy: its handle slot, when used
    std::uint32_t start_middle = 0;        // the middle buddy's first chunk, when used
    std::uint32_t list = 0; // the unbuddied list it is on (its largest new buddy), 0 when none
    z3fold_frame* previous = nullptr; // unbuddied list links (fullness_list)
    z3fold_frame* next = nullptr;
    z3fold_frame* lru_newer = nullptr; // all frames, most recently allocated from first
    z3fold_frame* lru_older = nullptr;
    // Lock-free words.
    std::atomic<std::uint64_t> pins{0};    // reads, writes and mappings in progress (container_pin)
    std::atomic<std::uint32_t> freeing{0}; // 1 once empty and on its way back to the arena

    [[nodiscard]] std::uint32_t chunks_of(z3fold_buddy b) const noexcept {
        return chunks[static_cast<std::size_t>(b)];
    }
    [[nodiscard]] bool used(z3fold_buddy b) const noexcept { return chunks_of(b) != 0; }
    [[nodiscard]] bool empty() const noexcept {
        return chunks[0] == 0 && chunks[1] == 0 && chunks[2] == 0;
    }
    [[nodiscard]] std::uint32_t used_chunks() const noexcept {
        return chunks[0] + chunks[1] + chunks[2];
    }
    [[nodiscard]] std::uint32_t objects() const noexcept {
        return (chunks[0] != 0 ? 1U : 0U) + (chunks[1] != 0 ? 1U : 0U) + (chunks[2] != 0 ? 1U : 0U);
    }
};

// The frame's descriptor as its private word holds it.
inline z3fold_frame* z3fold_frame_of(const frame& f) noexcept {
    return reinterpret_cast<z3fold_frame*>(f.private_word()); // NOLINT(performance-no-int-to-ptr)
}

// Where a buddy goes: which one and its first chunk.
struct z3fold_place {
    z3fold_buddy buddy = z3fold_buddy::first;
    std::uint32_t start = 0;
};

// The layout arithmetic of a frame of N chunks.
template <std::uint32_t N>
struct z3fold_layout {
    // The buddy's first chunk.
    static std::uint32_t start(const z3fold_frame& z, z3fold_buddy b) noexcept {
        switch (b) {
        case z3fold_buddy::first:
            return 0;
        case z3fold_buddy::middle:
            return z.start_middle;
        case z3fold_buddy::last:
            break;
        }
        return N - z.chunks_of(z3fold_buddy::last);
    }
    // The free run before the middle buddy when the first buddy is free, and after it when the
    // last is free (0 when that buddy is used): where a new first / last buddy can go.
    static std::uint32_t run_before_middle(const z3fold_frame& z) noexcept {
        return z.used(z3fold_buddy::first) ? 0 : z.start_middle;
    }
    static std::uint32_t run_after_middle(const z3fold_frame& z) noexcept {
        return z.used(z3fold_buddy::last) ? 0
                                          : N - z.start_middle - z.chunks_of(z3fold_buddy::middle);
    }
    // The largest new buddy the frame can take, in chunks (0 when none): its unbuddied list.
    static std::uint32_t largest_new(const z3fold_frame& z) noexcept {
        if (z.empty()) {
            return 0;
        }
        if (!z.used(z3fold_buddy::middle)) { // one run between first and last
            return N - z.chunks_of(z3fold_buddy::first) - z.chunks_of(z3fold_buddy::last);
        }
        return std::max(run_before_middle(z), run_after_middle(z));
    }
    // Where a new buddy of `chunks` chunks goes (largest_new(z) >= chunks): with no middle, the
    // first when free, else the last when free, else the middle right after the first; with a
    // middle, the smaller of the runs before and after it that holds the buddy.
    static z3fold_place place(const z3fold_frame& z, std::uint32_t chunks) noexcept {
        if (!z.used(z3fold_buddy::middle)) {
            if (!z.used(z3fold_buddy::first)) {
                return {z3fold_buddy::first, 0};
            }
            if (!z.used(z3fold_buddy::last)) {
                return {z3fold_buddy::last, N - chunks};
            }
            return {z3fold_buddy::middle, z.chunks_of(z3fold_buddy::first)};
        }
        const std::uint32_t before = run_before_middle(z);
        const std::uint32_t after = run_after_middle(z);
        const bool first_fits = before >= chunks;
        const bool last_fits = after >= chunks;
        if (first_fits && (!last_fits || before <= after)) {
            return {z3fold_buddy::first, 0};
        }
        return {z3fold_buddy::last, N - chunks};
    }
    // Where in-frame compaction moves the middle buddy (as the kernel's z3fold_compact_page):
    // alone, to the frame's start as the first buddy; beside the first when the last is free,
    // beside the last when the first is free, when that merges at least `min_gap` chunks into
    // the free run. False when it stays.
    static bool compaction_target(const z3fold_frame& z, std::uint32_t min_gap,
                                  z3fold_place& to) noexcept {
        if (!z.used(z3fold_buddy::middle)) {
            return false;
        }
        const std::uint32_t f = z.chunks_of(z3fold_buddy::first);
        const std::uint32_t m = z.chunks_of(z3fold_buddy::middle);
        const std::uint32_t l = z.chunks_of(z3fold_buddy::last);
        if (f == 0 && l == 0) {
            to = {z3fold_buddy::first, 0};
            return true;
        }
        if (f != 0 && l == 0 && z.start_middle - f >= min_gap) {
            to = {z3fold_buddy::middle, f};
            return true;
        }
        if (f == 0 && l != 0 && N - l - m - z.start_middle >= min_gap) {
            to = {z3fold_buddy::middle, N - l - m};
            return true;
        }
        return false;
    }
};

// The unbuddied lists (the kernel's z3fold unbuddied[]): list i holds the frames whose largest
// new buddy is i chunks (pool/chunk_lists.hpp: best fit).
template <std::size_t ChunksPerFrame>
struct z3fold_unbuddied : free_chunk_lists<z3fold_frame, ChunksPerFrame> {
    // Puts f on the list its largest new buddy says; on none when it takes none.
    void file(z3fold_frame& f) noexcept {
        free_chunk_lists<z3fold_frame, ChunksPerFrame>::file(
            f, z3fold_layout<static_cast<std::uint32_t>(ChunksPerFrame)>::largest_new(f));
    }
};

} // namespace movable::detail
