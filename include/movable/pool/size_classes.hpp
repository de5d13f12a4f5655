// zspage_pool's size classes: the options that shape them, the class table (zsmalloc's classes
// spaced by frame_size/256, chains of 1..N frames for least tail waste, merged classes, a huge
// class) and the map from an object size to its class (detail::size_class_map). Knows nothing
// of arenas or frames.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace movable {

struct zspage_pool_options {
    // Longest zspage chain, 1..zspage_max_chain_frames (the kernel's CONFIG_ZSMALLOC_CHAIN_SIZE).
    std::size_t max_frames_per_zspage = 8;
    // How long migration in `sync` mode waits for the pins of a frame's zspage to drop (reads,
    // writes and mappings in progress, taken after the frame was isolated) before it answers
    // `busy`: this many looks, a yield before each. Enough for a read or a write to finish;
    // far too few for a mapping a caller keeps. 0: `sync` answers `busy` at once, as
    // `sync_light` and `async` always do.
    std::size_t sync_pin_wait_attempts = 64;
    // Per-thread caches: each thread keeps up to zspage_pool::magazine_capacity reserved places
    // per size class (taken places with a handle slot, no object) that only it touches, so
    // its common allocate and deallocate take no class lock. Compaction takes idle reservations
    // back; a thread gives its own back when it exits and on release_thread_cache(). Off: every
    // call takes its class's lock.
    bool thread_cache = true;
};

inline constexpr std::size_t zspage_max_chain_frames = 16;
inline constexpr std::size_t zspage_min_object_size = 32;
// Every object of a non-huge class starts with one word naming its handle and size.
inline constexpr std::size_t zspage_object_header_bytes = 8;

// One distinct size class.
struct zspage_size_class {
    std::size_t object_size = 0;        // bytes per object (header included)
    std::size_t max_payload = 0;        // largest allocate() size this class serves
    std::size_t frames_per_zspage = 0;  // zspage length chosen for least tail waste
    std::size_t objects_per_zspage = 0; // frames_per_zspage * frame_size / object_size
    std::size_t tail_bytes = 0;         // unused bytes at the end of each zspage
    bool huge = false;                  // one object per single frame; no header
};

// The size classes for `frame_size` and chains of up to `max_frames_per_zspage` frames,
// smallest first: candidate sizes from 32 bytes up to a frame in steps of frame_size/256; each
// takes the zspage length (1..N frames) whose unused tail is the smallest fraction of the
// zspage (ties: fewer frames); walking from the largest size down, a size with the same frames
// and objects per zspage as the class above it merges into that class. Throws
// std::invalid_argument for a frame size that is not a power of two of at least 4096 bytes or
// a chain length outside 1..zspage_max_chain_frames.
[[nodiscard]] std::vector<zspage_size_class> zspage_class_table(std::size_t frame_size,
                                                                std::size_t max_frames_per_zspage);

namespace detail {

// The zspage length with the smallest unused tail, as a fraction of the zspage.
inline std::size_t frames_for_least_waste(std::size_t object_size, std::size_t frame_size,
                                          std::size_t max_frames) noexcept {
    std::size_t best = 1;
    std::size_t best_waste = frame_size % object_size;
    for (std::size_t frames = 2; frames <= max_frames; ++frames) {
        const std::size_t waste = frames * frame_size % object_size;
        // waste / frames < best_waste / best, without division
        if (waste * best < best_waste * frames) {
            best = frames;
            best_waste = waste;
        }
    }
    return best;
}

constexpr std::size_t size_class_count(std::size_t frame_size) noexcept {
    const std::size_t spacing = frame_size / 256;
    return (frame_size - zspage_min_object_size + spacing - 1) / spacing + 1;
}

// The candidate size index serving objects of `needed` bytes (header included).
inline std::size_t size_class_index(std::size_t needed, std::size_t frame_size) noexcept {
    if (needed <= zspage_min_object_size) {
        return 0;
    }
    const std::size_t spacing = frame_size / 256;
    return std::min((needed - zspage_min_object_size + spacing - 1) / spacing,
                    size_class_count(frame_size) - 1);
}

// The distinct classes (smallest first) and, per candidate index, its distinct class.
inline void build_class_table(std::size_t frame_size, std::size_t max_frames,
                              std::vector<zspage_size_class>& classes,
                              std::vector<std::uint16_t>& class_of_index) {
    if (!std::has_single_bit(frame_size) || frame_size < 4096) {
        throw std::invalid_argument("zspage_pool: frame size must be a power of two of at least "
                                    "4096 bytes");
    }
    if (max_frames == 0 || max_frames > zspage_max_chain_frames) {
        throw std::invalid_argument("zspage_pool: max_frames_per_zspage must be 1.." +
                                    std::to_string(zspage_max_chain_frames) + ", not " +
                                    std::to_string(max_frames));
    }
    const std::size_t count = size_class_count(frame_size);
    const std::size_t spacing = frame_size / 256;
    std::vector<zspage_size_class> largest_first;
    std::vector<std::size_t> index_to_largest_first(count);
    for (std::size_t i = count; i-- > 0;) {
        const std::size_t object_size = std::min(zspage_min_object_size + i * spacing, frame_size);
        const std::size_t frames = frames_for_least_waste(object_size, frame_size, max_frames);
        const std::size_t objects = frames * frame_size / object_size;
        if (!largest_first.empty() && largest_first.back().frames_per_zspage == frames &&
            largest_first.back().objects_per_zspage == objects) {
            index_to_largest_first[i] = largest_first.size() - 1; // merges into the class above
            continue;
        }
        zspage_size_class cls;
        cls.object_size = object_size;
        cls.frames_per_zspage = frames;
        cls.objects_per_zspage = objects;
        cls.tail_bytes = frames * frame_size - objects * object_size;
        cls.huge = frames == 1 && objects == 1;
        cls.max_payload =
            object_size == frame_size ? frame_size : object_size - zspage_object_header_bytes;
        largest_first.push_back(cls);
        index_to_largest_first[i] = largest_first.size() - 1;
    }
    classes.assign(largest_first.rbegin(), largest_first.rend());
    class_of_index.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        class_of_index[i] =
            static_cast<std::uint16_t>(largest_first.size() - 1 - index_to_largest_first[i]);
    }
}

// A pool's distinct classes and the map from an allocate() size to the one that serves it:
// the class table and, per candidate size index, its distinct class. Read-only once built.
class size_class_map {
public:
    // Throws std::invalid_argument as zspage_class_table does.
    size_class_map(std::size_t frame_size, std::size_t max_frames) : frame_size_(frame_size) {
        build_class_table(frame_size, max_frames, classes_, class_of_index_);
    }

    // The distinct classes, smallest first.
    [[nodiscard]] const std::vector<zspage_size_class>& classes() const noexcept {
        return classes_;
    }
    [[nodiscard]] std::size_t size() const noexcept { return classes_.size(); }
    // The most objects a zspage of any class holds (at least 1).
    [[nodiscard]] std::size_t max_objects_per_zspage() const noexcept {
        std::size_t most = 1;
        for (const zspage_size_class& cls : classes_) {
            most = std::max(most, cls.objects_per_zspage);
        }
        return most;
    }
    // The index in classes() of the class serving allocate(payload), 1 <= payload <= frame size.
    [[nodiscard]] std::size_t class_for_payload(std::size_t payload) const noexcept {
        return class_of_index_[size_class_index(payload + zspage_object_header_bytes, frame_size_)];
    }

private:
    std::size_t frame_size_;
    std::vector<zspage_size_class> classes_;
    std::vector<std::uint16_t> class_of_index_; // candidate size index -> distinct class
};

} // namespace detail

inline std::vector<zspage_size_class> zspage_class_table(std::size_t frame_size,
                                                         std::size_t max_frames_per_zspage) {
    std::vector<zspage_size_class> classes;
    std::vector<std::uint16_t> class_of_index;
    detail::build_class_table(frame_size, max_frames_per_zspage, classes, class_of_index);
    return classes;
}

} // namespace movable
