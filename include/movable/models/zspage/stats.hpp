// zspage_pool's statistics: per class and per pool, and the printable table (the kernel's
// /sys/kernel/debug/zsmalloc/<pool>/classes).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <movable/models/zspage/zspage.hpp>
#include <movable/pool/size_classes.hpp>

namespace movable {

struct zspage_class_stats {
    zspage_size_class size_class;
    std::size_t objects_allocated = 0; // object slots in this class's zspages
    std::size_t objects_in_use = 0;
    std::size_t bytes_in_use = 0;     // sum of the allocated objects' requested sizes
    std::size_t objects_reserved = 0; // places reserved in threads' caches (no object)
    std::size_t zspages = 0;
    std::size_t frames = 0;
    std::array<std::size_t, zspage_fullness_groups> fullness{}; // zspages per in-use group
    std::size_t frames_freeable = 0; // what compaction could free (the kernel's zs_can_compact)
};

struct zspage_pool_stats {
    std::vector<zspage_class_stats> classes; // one per distinct class, smallest first
    std::size_t frame_size = 0;
    std::size_t frames_in_use = 0;
    std::size_t zspages = 0;
    std::size_t objects_in_use = 0;
    std::size_t bytes_stored = 0;    // sum of the live objects' requested sizes
    std::size_t frames_freeable = 0; // compactable_frames()
    std::size_t compactions = 0;     // compact() calls that ran
    std::size_t frames_freed_by_compaction = 0;
    std::size_t objects_moved = 0;                  // by compaction
    std::size_t frames_migrated = 0;                // frames moved through the core protocol
    std::size_t frames_released_while_isolated = 0; // freed zspages' frames the core freed
    std::size_t isolated_frames = 0;                // frames isolated by the core right now
    std::size_t handle_slots_retired = 0; // slots whose 32-bit generation ran out: never reused
    std::size_t migrate_pin_waits = 0;    // sync migrations that found their zspage pinned and
                                          // waited for the pins to drop (whatever came of it)
    std::size_t objects_reserved = 0;     // places reserved in threads' caches (no object)
    std::size_t reservations_stolen = 0;  // reservations compaction took back

    // A table like the kernel's /sys/kernel/debug/zsmalloc/<pool>/classes: one row per class
    // that has zspages, the fullness histogram, then totals.
    [[nodiscard]] std::string table() const;
};

inline std::string zspage_pool_stats::table() const {
    std::string out;
    char line[512];
    const auto append = [&](int written) {
        if (written > 0) {
            out.append(line, std::min(static_cast<std::size_t>(written), sizeof line - 1));
        }
    };
    append(std::snprintf(line, sizeof line, "%5s %5s", "class", "size"));
    static constexpr const char* group_names[zspage_fullness_groups] = {
        "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "99%", "100%"};
    for (const char* name : group_names) {
        append(std::snprintf(line, sizeof line, " %6s", name));
    }
    append(std::snprintf(line, sizeof line, " %13s %10s %11s %17s %8s\n", "obj_allocated",
                         "obj_used", "frames_used", "frames_per_zspage", "freeable"));
    std::array<std::size_t, zspage_fullness_groups> total_groups{};
    std::size_t total_allocated = 0;
    std::size_t total_used = 0;
    std::size_t total_frames = 0;
    std::size_t total_freeable = 0;
    for (std::size_t i = 0; i < classes.size(); ++i) {
        const zspage_class_stats& c = classes[i];
        if (c.zspages == 0) {
            continue;
        }
        append(std::snprintf(line, sizeof line, "%5zu %5zu", i, c.size_class.object_size));
        for (std::size_t g = 0; g < zspage_fullness_groups; ++g) {
            append(std::snprintf(line, sizeof line, " %6zu", c.fullness[g]));
            total_groups[g] += c.fullness[g];
        }
        append(std::snprintf(line, sizeof line, " %13zu %10zu %11zu %17zu %8zu\n",
                             c.objects_allocated, c.objects_in_use, c.frames,
                             c.size_class.frames_per_zspage, c.frames_freeable));
        total_allocated += c.objects_allocated;
        total_used += c.objects_in_use;
        total_frames += c.frames;
        total_freeable += c.frames_freeable;
    }
    append(std::snprintf(line, sizeof line, "\n%5s %5s", "Total", ""));
    for (std::size_t g = 0; g < zspage_fullness_groups; ++g) {
        append(std::snprintf(line, sizeof line, " %6zu", total_groups[g]));
    }
    append(std::snprintf(line, sizeof line, " %13zu %10zu %11zu %17s %8zu\n", total_allocated,
                         total_used, total_frames, "", total_freeable));
    append(std::snprintf(line, sizeof line,
                         "bytes stored %zu in %zu frames of %zu bytes; compacted %zu times: %zu "
                         "frames freed, %zu objects moved; %zu frames migrated\n",
                         bytes_stored, frames_in_use, frame_size, compactions,
                         frames_freed_by_compaction, objects_moved, frames_migrated));
    return out;
}

namespace detail {

// One class's statistics, read under its lock, with `reserved` places in threads' caches and
// `cached_bytes` counted by them.
inline zspage_class_stats class_stats_of(zspage_class& cls, std::size_t reserved,
                                         std::int64_t cached_bytes) {
    zspage_class_stats out;
    out.size_class = cls.info;
    std::lock_guard guard(cls.lock);
    out.zspages = cls.zspages;
    out.frames = cls.zspages * cls.info.frames_per_zspage;
    out.objects_allocated = cls.zspages * cls.info.objects_per_zspage;
    out.objects_reserved = std::min(reserved, cls.objects_in_use);
    out.objects_in_use = cls.objects_in_use - out.objects_reserved;
    const std::int64_t bytes = static_cast<std::int64_t>(cls.bytes_in_use) + cached_bytes;
    out.bytes_in_use = bytes > 0 ? static_cast<std::size_t>(bytes) : 0;
    out.fullness = cls.groups.histogram();
    out.frames_freeable = cls.frames_freeable(out.objects_reserved);
    return out;
}

// A pool's event counters: atomics in words of their own (different paths change them).
struct zspage_pool_counters {
    std::atomic<std::size_t> compactions{0};
    std::atomic<std::size_t> frames_freed_by_compaction{0};
    std::atomic<std::size_t> objects_moved{0};
    std::atomic<std::size_t> frames_migrated{0};
    std::atomic<std::size_t> frames_released_while_isolated{0};
    std::atomic<std::size_t> isolated_frames{0};
    std::atomic<std::size_t> migrate_pin_waits{0};
    std::atomic<std::size_t> reservations_stolen{0};
};

// A pool's statistics. Each class is looked at under its lock, one after another: the totals
// are a sum of per-class snapshots, not one snapshot of the pool.
inline zspage_pool_stats pool_stats_of(std::span<zspage_class> classes, std::size_t frame_size,
                                       const zspage_pool_counters& counters,
                                       std::size_t handle_slots_retired,
                                       std::span<const std::size_t> reserved,
                                       std::span<const std::int64_t> cached_bytes) {
    zspage_pool_stats result;
    result.frame_size = frame_size;
    result.classes.resize(classes.size());
    for (std::size_t c = 0; c < classes.size(); ++c) {
        const zspage_class_stats& out = result.classes[c] =
            class_stats_of(classes[c], reserved[c], cached_bytes[c]);
        result.objects_reserved += out.objects_reserved;
        result.frames_in_use += out.frames;
        result.zspages += out.zspages;
        result.objects_in_use += out.objects_in_use;
        result.bytes_stored += out.bytes_in_use;
        result.frames_freeable += out.frames_freeable;
    }
    constexpr auto relaxed = std::memory_order_relaxed;
    result.compactions = counters.compactions.load(relaxed);
    result.frames_freed_by_compaction = counters.frames_freed_by_compaction.load(relaxed);
    result.objects_moved = counters.objects_moved.load(relaxed);
    result.frames_migrated = counters.frames_migrated.load(relaxed);
    result.frames_released_while_isolated = counters.frames_released_while_isolated.load(relaxed);
    result.isolated_frames = counters.isolated_frames.load(relaxed);
    result.handle_slots_retired = handle_slots_retired;
    result.migrate_pin_waits = counters.migrate_pin_waits.load(relaxed);
    result.reservations_stolen = counters.reservations_stolen.load(relaxed);
    return result;
}

} // namespace detail
} // namespace movable
