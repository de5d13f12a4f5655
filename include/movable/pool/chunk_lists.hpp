// Chunked frames, shared by the buddy pools (zbud_pool, z3fold_pool): a frame is cut into
// 64-byte chunks, objects take whole chunks, and frames with room sit on lists indexed by the
// largest object they can still take in chunks (the kernel's unbuddied[] lists), so allocation
// takes the best fit: the frame with the fewest free chunks that hold the object. Under the
// pool's lock; no lock of its own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include <movable/pool/fullness_groups.hpp>

namespace movable::detail {

inline constexpr std::size_t pool_chunk_size = 64;

// Chunk arithmetic of a frame of FrameSize bytes.
template <std::size_t FrameSize>
struct frame_chunks {
    static_assert(FrameSize % pool_chunk_size == 0,
                  "a buddy pool's frame must be a whole number of 64-byte chunks");
    static constexpr std::size_t per_frame = FrameSize / pool_chunk_size;

    // Chunks an object of `size` bytes takes (1..per_frame for 1..FrameSize).
    static constexpr std::uint32_t of_size(std::size_t size) noexcept {
        return static_cast<std::uint32_t>((size + pool_chunk_size - 1) / pool_chunk_size);
    }
};
static_assert(frame_chunks<4096>::of_size(1) == 1 && frame_chunks<4096>::of_size(64) == 1 &&
                  frame_chunks<4096>::of_size(65) == 2 && frame_chunks<4096>::of_size(4096) == 64,
              "frame_chunks: sizes round up to whole chunks");

// The free-chunk lists: list i (1..ChunksPerFrame - 1) holds the frames that can take an
// object of i chunks but not of i + 1. Frame has `std::uint32_t list` (the list it is on, 0 for
// none) and the links `Frame* previous, *next` (fullness_list).
template <class Frame, std::size_t ChunksPerFrame>
struct free_chunk_lists {
    std::array<fullness_list<Frame>, ChunksPerFrame> lists{};
    std::size_t frames = 0;

    // Puts f on list `free_chunks`; on none when it is 0 (no room, or not to be allocated in).
    void file(Frame& f, std::uint32_t free_chunks) noexcept {
        f.list = free_chunks;
        if (free_chunks != 0) {
            lists[free_chunks].push_front(f);
            ++frames;
        }
    }
    void unfile(Frame& f) noexcept {
        if (f.list != 0) {
            lists[f.list].remove(f);
            f.list = 0;
            --frames;
        }
    }
    // The listed frame with the fewest free chunks that holds `chunks` chunks and that `usable`
    // accepts (the best fit); null if none. Leaves it on its list.
    template <class Usable>
    [[nodiscard]] Frame* find_best_fit(std::uint32_t chunks, Usable&& usable) const noexcept {
        for (std::size_t i = chunks; i < ChunksPerFrame; ++i) {
            for (Frame* f = lists[i].head; f != nullptr; f = f->next) {
                if (usable(*f)) {
                    return f;
                }
            }
        }
        return nullptr;
    }
};

// Every frame of a buddy pool, most recently allocated from at the front (eviction takes the
// oldest). Frame has the links `Frame* lru_newer, *lru_older`.
template <class Frame>
struct frame_lru {
    Frame* newest = nullptr;
    Frame* oldest = nullptr;
    std::size_t size = 0;

    void push_newest(Frame& f) noexcept {
        f.lru_newer = nullptr;
        f.lru_older = newest;
        (newest != nullptr ? newest->lru_newer : oldest) = &f;
        newest = &f;
        ++size;
    }
    void remove(Frame& f) noexcept {
        (f.lru_newer != nullptr ? f.lru_newer->lru_older : newest) = f.lru_older;
        (f.lru_older != nullptr ? f.lru_older->lru_newer : oldest) = f.lru_newer;
        f.lru_newer = f.lru_older = nullptr;
        --size;
    }
};

} // namespace movable::detail
