// Statistics as JSON, for programs to read: write_json(std::ostream&, const X&) and
// to_json(const X&) for a frame_arena, a compaction's compact_stats and each pool's statistics
// (zspage_pool, object_pool, zbud_pool, z3fold_pool). Every object names its schema and version
// ("schema": "movable.<kind>/<major>"); docs/stats.md describes every field.
//
// The stats structs stay plain: each gets one write_json_object(detail::json_writer&, const X&)
// overload, below, and the generic write_json and to_json serve every type that has one (found
// by argument-dependent lookup, so a struct declared in another header gets both from a
// write_json_object next to it). Objects nest: a writer for a struct holding a compact_stats
// calls write_json_object for it after writing the key.
#pragma once

#include <array>
#include <cstddef>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include <movable/compaction.hpp>
#include <movable/detail/json_writer.hpp>
#include <movable/fragmentation.hpp>
#include <movable/frame_arena.hpp>
#include <movable/models/object/handle.hpp>
#include <movable/models/z3fold/stats.hpp>
#include <movable/models/zbud/stats.hpp>
#include <movable/models/zspage/stats.hpp>
#include <movable/pool/fullness_groups.hpp>
#include <movable/service/background_compactor.hpp>

namespace movable {

// The types write_json and to_json accept: those with a write_json_object overload.
template <class Stats>
concept json_writable = requires(detail::json_writer& out, const Stats& stats) {
    write_json_object(out, stats);
};

// Writes `stats` as one JSON object (no trailing newline); returns `out`. Only the stream's
// own buffer allocates.
template <json_writable Stats>
std::ostream& write_json(std::ostream& out, const Stats& stats) {
    detail::json_writer writer(out);
    write_json_object(writer, stats);
    return out;
}

// The same JSON as a string.
template <json_writable Stats>
[[nodiscard]] std::string to_json(const Stats& stats) {
    std::ostringstream out;
    write_json(out, stats);
    return std::move(out).str();
}

// ---- the objects ------------------------------------------------------------------------------
// The schema names and their major versions; a field is added in a minor change (the name
// stays), renamed or removed only with a new major (docs/stats.md).
inline constexpr std::string_view frame_arena_json_schema = "movable.frame_arena/1";
inline constexpr std::string_view compact_stats_json_schema = "movable.compact_stats/1";
inline constexpr std::string_view zspage_pool_json_schema = "movable.zspage_pool/1";
inline constexpr std::string_view object_pool_json_schema = "movable.object_pool/1";
inline constexpr std::string_view zbud_pool_json_schema = "movable.zbud_pool/1";
inline constexpr std::string_view z3fold_pool_json_schema = "movable.z3fold_pool/1";
inline constexpr std::string_view background_compactor_json_schema =
    "movable.background_compactor/1";

// An arena's statistics from one stats() snapshot; the fragmentation metrics are computed from
// that snapshot (fragmentation.hpp's formulas, as the arena's own members compute them).
template <unsigned MaxOrder>
void write_json_object(detail::json_writer& out, const arena_stats<MaxOrder>& stats,
                       std::size_t frame_size);
template <std::size_t FrameSize, unsigned MaxOrder>
void write_json_object(detail::json_writer& out, const frame_arena<FrameSize, MaxOrder>& arena) {
    write_json_object(out, arena.stats(), FrameSize);
}

inline void write_json_object(detail::json_writer& out, const compact_stats& stats);
inline void write_json_object(detail::json_writer& out, const zspage_pool_stats& stats);
inline void write_json_object(detail::json_writer& out, const object_pool_stats& stats);
inline void write_json_object(detail::json_writer& out, const zbud_pool_stats& stats);
inline void write_json_object(detail::json_writer& out, const z3fold_pool_stats& stats);
inline void write_json_object(detail::json_writer& out, const background_compactor_stats& stats);

// The name a compaction's outcome has in JSON ("running", "scanners_met", ...).
[[nodiscard]] constexpr std::string_view compact_outcome_name(compact_outcome outcome) noexcept {
    switch (outcome) {
    case compact_outcome::running:
        return "running";
    case compact_outcome::scanners_met:
        return "scanners_met";
    case compact_outcome::order_available:
        return "order_available";
    case compact_outcome::score_reached:
        return "score_reached";
    case compact_outcome::deferred:
        return "deferred";
    case compact_outcome::planned:
        return "planned";
    }
    return "unknown";
}

// ---- implementation -----------------------------------------------------------------------------

namespace detail {

// The free space an allocation of 2^order frames sees, from a stats snapshot: what
// frame_arena::free_summary computes from its free lists.
template <unsigned MaxOrder>
free_space free_space_of(const arena_stats<MaxOrder>& stats, unsigned order) noexcept {
    free_space summary;
    for (const auto& by_kind : stats.free_blocks) {
        for (unsigned k = 0; k <= MaxOrder; ++k) {
            summary.blocks += by_kind[k];
            summary.frames += by_kind[k] << k;
            if (k >= order) {
                summary.suitable_blocks += by_kind[k];
                summary.suitable_frames += by_kind[k] << k;
            }
        }
    }
    return summary;
}

// The counts of an in-use fullness histogram, [0]: under 10% ... [9]: under 100%, [10]: full.
inline void write_fullness(json_writer& out,
                           const std::array<std::size_t, fullness_group_count>& fullness) {
    out.array_field("fullness", fullness);
}

} // namespace detail

template <unsigned MaxOrder>
void write_json_object(detail::json_writer& out, const arena_stats<MaxOrder>& stats,
                       std::size_t frame_size) {
    constexpr auto movable_kind = static_cast<std::size_t>(frame_kind::movable);
    constexpr auto unmovable_kind = static_cast<std::size_t>(frame_kind::unmovable);
    out.begin_object();
    out.field("schema", frame_arena_json_schema);
    out.field("frame_size", frame_size);
    out.field("max_order", MaxOrder);
    out.field("total_frames", stats.total_frames);
    out.field("free_frames", stats.free_frames);
    out.field("total_bytes", stats.total_frames * frame_size);
    out.field("free_bytes", stats.free_frames * frame_size);
    out.field("resident_bytes", (stats.total_frames - stats.discarded_frames) * frame_size);
    out.field("discarded_bytes", stats.discarded_frames * frame_size);
    out.field("discarded_frames", stats.discarded_frames);
    out.field("discarded_blocks", stats.discarded_blocks);
    out.field("discard_failures", stats.discard_failures);
    out.key("max_order_blocks").begin_object();
    out.field("movable", stats.max_order_blocks_by_kind[movable_kind]);
    out.field("unmovable", stats.max_order_blocks_by_kind[unmovable_kind]);
    out.end_object();
    out.key("free_blocks").begin_object();
    out.array_field("movable", stats.free_blocks[movable_kind]);
    out.array_field("unmovable", stats.free_blocks[unmovable_kind]);
    out.key("all").begin_array();
    for (unsigned order = 0; order <= MaxOrder; ++order) {
        out.value(stats.free_blocks_of_order(order));
    }
    out.end_array();
    out.end_object();
    out.field("largest_free_order", stats.largest_free_order);
    out.field("blocks_claimed", stats.blocks_claimed);
    out.field("frames_stolen", stats.frames_stolen);
    out.key("fragmentation").begin_object();
    const free_space for_max_order = detail::free_space_of(stats, MaxOrder);
    out.field("score", fragmentation_score(for_max_order.frames, for_max_order.suitable_frames));
    out.key("index").begin_array();
    for (unsigned order = 0; order <= MaxOrder; ++order) {
        out.value(fragmentation_index(detail::free_space_of(stats, order), order));
    }
    out.end_array();
    out.key("unusable_free_index").begin_array();
    for (unsigned order = 0; order <= MaxOrder; ++order) {
        out.value(unusable_free_index(detail::free_space_of(stats, order)));
    }
    out.end_array();
    out.end_object();
    out.end_object();
}

inline void write_json_object(detail::json_writer& out, const compact_stats& stats) {
    out.begin_object();
    out.field("schema", compact_stats_json_schema);
    out.field("outcome", compact_outcome_name(stats.outcome));
    out.field("migrate_scanned", stats.migrate_scanned);
    out.field("free_scanned", stats.free_scanned);
    out.field("minimum_moves", stats.minimum_moves);
    out.field("regions_given_up", stats.regions_given_up);
    out.field("isolated", stats.isolated);
    out.field("migrated", stats.migrated);
    out.field("failed", stats.failed);
    out.field("released", stats.released);
    out.field("bytes_moved", stats.bytes_moved);
    out.field("blocks_skipped", stats.blocks_skipped);
    out.field("max_order_blocks_freed", stats.max_order_blocks_freed);
    out.field("passes", stats.passes);
    out.field("passes_timed_out", stats.passes_timed_out);
    out.field("rounds", stats.rounds);
    out.end_object();
}

inline void write_json_object(detail::json_writer& out, const zspage_pool_stats& stats) {
    out.begin_object();
    out.field("schema", zspage_pool_json_schema);
    out.field("frame_size", stats.frame_size);
    out.field("frames_in_use", stats.frames_in_use);
    out.field("zspages", stats.zspages);
    out.field("objects_in_use", stats.objects_in_use);
    out.field("bytes_stored", stats.bytes_stored);
    out.field("frames_freeable", stats.frames_freeable);
    out.field("compactions", stats.compactions);
    out.field("frames_freed_by_compaction", stats.frames_freed_by_compaction);
    out.field("objects_moved", stats.objects_moved);
    out.field("frames_migrated", stats.frames_migrated);
    out.field("frames_released_while_isolated", stats.frames_released_while_isolated);
    out.field("isolated_frames", stats.isolated_frames);
    out.field("handle_slots_retired", stats.handle_slots_retired);
    out.field("migrate_pin_waits", stats.migrate_pin_waits);
    out.field("objects_reserved", stats.objects_reserved);
    out.field("reservations_stolen", stats.reservations_stolen);
    out.key("classes").begin_array();
    for (std::size_t i = 0; i < stats.classes.size(); ++i) {
        const zspage_class_stats& c = stats.classes[i];
        out.begin_object();
        out.field("index", i);
        out.field("object_size", c.size_class.object_size);
        out.field("max_payload", c.size_class.max_payload);
        out.field("frames_per_zspage", c.size_class.frames_per_zspage);
        out.field("objects_per_zspage", c.size_class.objects_per_zspage);
        out.field("tail_bytes", c.size_class.tail_bytes);
        out.field("huge", c.size_class.huge);
        out.field("zspages", c.zspages);
        out.field("frames", c.frames);
        out.field("objects_allocated", c.objects_allocated);
        out.field("objects_in_use", c.objects_in_use);
        out.field("bytes_in_use", c.bytes_in_use);
        out.field("objects_reserved", c.objects_reserved);
        out.field("frames_freeable", c.frames_freeable);
        detail::write_fullness(out, c.fullness);
        out.end_object();
    }
    out.end_array();
    out.end_object();
}

inline void write_json_object(detail::json_writer& out, const object_pool_stats& stats) {
    out.begin_object();
    out.field("schema", object_pool_json_schema);
    out.field("object_size", stats.object_size);
    out.field("object_stride", stats.object_stride);
    out.field("objects_per_frame", stats.objects_per_frame);
    out.field("frame_size", stats.frame_size);
    out.field("objects", stats.objects);
    out.field("frames", stats.frames);
    out.field("reserve_frames", stats.reserve_frames);
    out.field("min_frames", stats.min_frames);
    out.field("frames_per_min_frame", stats.frames_per_min_frame());
    out.field("frames_freeable", stats.frames_freeable);
    detail::write_fullness(out, stats.fullness);
    out.field("compactions", stats.compactions);
    out.field("objects_moved", stats.objects_moved);
    out.field("frames_freed_by_compaction", stats.frames_freed_by_compaction);
    out.field("objects_skipped_pinned", stats.objects_skipped_pinned);
    out.field("compaction_yields", stats.compaction_yields);
    out.field("frames_migrated", stats.frames_migrated);
    out.field("migrations_refused", stats.migrations_refused);
    out.field("frames_released_while_isolated", stats.frames_released_while_isolated);
    out.field("isolated_frames", stats.isolated_frames);
    out.field("handle_slots_retired", stats.handle_slots_retired);
    out.field("reserved_places", stats.reserved_places);
    out.field("reservations_stolen", stats.reservations_stolen);
    out.end_object();
}

inline void write_json_object(detail::json_writer& out, const zbud_pool_stats& stats) {
    out.begin_object();
    out.field("schema", zbud_pool_json_schema);
    out.field("frame_size", stats.frame_size);
    out.field("frames_in_use", stats.frames_in_use);
    out.field("objects_in_use", stats.objects_in_use);
    out.field("bytes_stored", stats.bytes_stored);
    out.field("chunks_in_use", stats.chunks_in_use);
    out.field("unbuddied_frames", stats.unbuddied_frames);
    out.field("compactions", stats.compactions);
    out.field("frames_freed_by_compaction", stats.frames_freed_by_compaction);
    out.field("objects_moved", stats.objects_moved);
    out.field("frames_migrated", stats.frames_migrated);
    out.field("frames_released_while_isolated", stats.frames_released_while_isolated);
    out.field("isolated_frames", stats.isolated_frames);
    out.field("frames_evicted", stats.frames_evicted);
    out.field("objects_evicted", stats.objects_evicted);
    out.field("handle_slots_retired", stats.handle_slots_retired);
    out.end_object();
}

inline void write_json_object(detail::json_writer& out, const z3fold_pool_stats& stats) {
    out.begin_object();
    out.field("schema", z3fold_pool_json_schema);
    out.field("frame_size", stats.frame_size);
    out.field("frames_in_use", stats.frames_in_use);
    out.field("objects_in_use", stats.objects_in_use);
    out.field("bytes_stored", stats.bytes_stored);
    out.field("chunks_in_use", stats.chunks_in_use);
    out.field("unbuddied_frames", stats.unbuddied_frames);
    out.field("compactions", stats.compactions);
    out.field("frames_freed_by_compaction", stats.frames_freed_by_compaction);
    out.field("middles_moved", stats.middles_moved);
    out.field("objects_moved", stats.objects_moved);
    out.field("frames_migrated", stats.frames_migrated);
    out.field("frames_released_while_isolated", stats.frames_released_while_isolated);
    out.field("isolated_frames", stats.isolated_frames);
    out.field("handle_slots_retired", stats.handle_slots_retired);
    out.end_object();
}

inline void write_json_object(detail::json_writer& out, const background_compactor_stats& stats) {
    out.begin_object();
    out.field("schema", background_compactor_json_schema);
    out.field("steps", stats.steps);
    out.field("episodes", stats.episodes);
    out.field("episodes_by_watermark", stats.episodes_by_watermark);
    out.field("episodes_by_wake", stats.episodes_by_wake);
    out.field("episodes_by_period", stats.episodes_by_period);
    out.field("episodes_deferred", stats.episodes_deferred);
    out.field("passes", stats.passes);
    out.field("frames_moved", stats.frames_moved);
    out.field("objects_moved", stats.objects_moved);
    out.field("frames_freed", stats.frames_freed);
    out.field("bytes_released", stats.bytes_released);
    out.field("cpu_time_ns", stats.cpu_time_ns);
    out.field("longest_pass_ns", stats.longest_pass_ns);
    out.field("last_sleep_ns", stats.last_sleep_ns);
    out.field("cpu_percent", stats.cpu_percent);
    out.field("backoff_shift", stats.backoff_shift);
    out.field("last_reason", std::string_view(to_string(stats.last_reason)));
    out.end_object();
}

} // namespace movable
