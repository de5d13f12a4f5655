// The zbud frame descriptor (one frame holding up to two buddies, "first" from the start and
// "last" from the end, in 64-byte chunks), the chunk arithmetic, the unbuddied lists (frames with
// one buddy free, by free chunks) and the LRU list (every frame, most recently allocated from
// first). zbud_pool's internals: users never name these.
//
// The descriptor lives outside its frame (the kernel keeps a header in the frame's first chunk):
// every chunk of the frame holds data, the largest object is a whole frame, and migration only
// swaps the frame the descriptor points at: the lists link descriptors, which never move.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include <movable/frame.hpp>
#include <movable/pool/chunk_lists.hpp>

namespace movable::detail {

inline constexpr std::size_t zbud_chunk_size = pool_chunk_size;

// The two buddies of a frame: first grows from the frame's start, last ends at its end.
enum class zbud_buddy : std::uint32_t { first = 0, last = 1 };

// Chunk arithmetic of a frame of FrameSize bytes (pool/chunk_lists.hpp) and where a buddy lies.
template <std::size_t FrameSize>
struct zbud_chunks : frame_chunks<FrameSize> {
    // Byte offset in the frame of a buddy of `chunks` chunks.
    static constexpr std::size_t offset(zbud_buddy buddy, std::uint32_t chunks) noexcept {
        return buddy == zbud_buddy::first ? 0 : FrameSize - std::size_t{chunks} * zbud_chunk_size;
    }
};
static_assert(zbud_chunks<4096>::of_size(1) == 1 && zbud_chunks<4096>::of_size(64) == 1 &&
                  zbud_chunks<4096>::of_size(65) == 2 && zbud_chunks<4096>::of_size(4096) == 64 &&
                  zbud_chunks<4096>::offset(zbud_buddy::last, 2) == 4096 - 128,
              "zbud_chunks: sizes round up to whole chunks; last buddies end at the frame's end");

// One frame of a zbud_pool. Cache-line aligned: the frame's private word points at it.
//   chunks[first] + chunks[last] <= chunks per frame; a frame on no list has no free buddy,
//   no free chunk, or is held by evict (reclaiming); an empty frame is freed, never kept.
struct alignas(64) zbud_frame {
    // Under the pool lock.
    frame* memory = nullptr;               // the frame holding the buddies; changed by migration
    std::array<std::uint32_t, 2> chunks{}; // per buddy (zbud_buddy): chunks used, 0 when free
    std::array<std::uint32_t, 2> slots{};  // per buddy: its handle slot, when used
    std::uint32_t list = 0;         // the unbuddied list it is on (its free chunks), 0 when none
    bool reclaiming = false;        // evict holds it: off every list, not refiled by frees
    zbud_frame* previous = nullptr; // unbuddied list links (fullness_list)
    zbud_frame* next = nullptr;
    zbud_frame* lru_newer = nullptr; // LRU list links
    zbud_frame* lru_older = nullptr;
    // Lock-free words.
    std::atomic<std::uint64_t> pins{0};    // reads, writes and mappings in progress (container_pin)
    std::atomic<std::uint32_t> freeing{0}; // 1 once empty and on its way back to the arena

    [[nodiscard]] bool used(zbud_buddy buddy) const noexcept {
        return chunks[static_cast<std::size_t>(buddy)] != 0;
    }
    [[nodiscard]] bool empty() const noexcept { return chunks[0] == 0 && chunks[1] == 0; }
    [[nodiscard]] std::uint32_t used_chunks() const noexcept { return chunks[0] + chunks[1]; }
    // The buddy a new object goes into: first when free, else last.
    [[nodiscard]] zbud_buddy free_buddy() const noexcept {
        return used(zbud_buddy::first) ? zbud_buddy::last : zbud_buddy::first;
    }
};

// The frame's descriptor as its private word holds it.
inline zbud_frame* zbud_frame_of(const frame& f) noexcept {
    return reinterpret_cast<zbud_frame*>(f.private_word()); // NOLINT(performance-no-int-to-ptr)
}

// Every frame of a pool, most recently allocated from at the front: eviction takes the oldest.
using zbud_lru = frame_lru<zbud_frame>;

// The unbuddied lists (the kernel's zbud unbuddied[]): list i holds the frames with one buddy
// used and i chunks free, i in 1..chunks_per_frame - 1. Allocation of n chunks takes a frame
// from the first non-empty list from n up: the best fit (pool/chunk_lists.hpp).
template <std::size_t ChunksPerFrame>
struct zbud_unbuddied : free_chunk_lists<zbud_frame, ChunksPerFrame> {
    // Puts f on the list its free chunks say, when it has one buddy used and room; else on none.
    void file(zbud_frame& f) noexcept {
        const std::uint32_t free_chunks =
            static_cast<std::uint32_t>(ChunksPerFrame) - f.used_chunks();
        const bool one_buddy = f.used(zbud_buddy::first) != f.used(zbud_buddy::last);
        free_chunk_lists<zbud_frame, ChunksPerFrame>::file(
            f, one_buddy && !f.reclaiming ? free_chunks : 0);
    }
};

} // namespace movable::detail
