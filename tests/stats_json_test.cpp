// Statistics as JSON (stats_json.hpp, detail/json_writer.hpp): the output is valid JSON that a
// strict parser reads back, and every number in it is the number in the struct it came from.
#include <movable/stats_json.hpp>

#include <movable/models/object_pool.hpp>
#include <movable/models/z3fold_pool.hpp>
#include <movable/models/zbud_pool.hpp>
#include <movable/models/zspage_pool.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "examples/page_store.hpp"
#include "support/death_test.hpp"
#include "support/json_parse.hpp"

namespace {

using test_json::value;

value parsed(const std::string& text) {
    const std::optional<value> result = test_json::parse(text);
    INFO(text);
    REQUIRE(result.has_value());
    return *result;
}

template <class Range>
void check_array(const value& array, const Range& expected) {
    REQUIRE(array.type == value::kind::array);
    REQUIRE(array.size() == expected.size());
    std::size_t i = 0;
    for (const auto& e : expected) {
        CHECK(array[i++].as_unsigned() == e);
    }
}

void check_fullness(const value& json,
                    const std::array<std::size_t, movable::fullness_group_count>& fullness) {
    check_array(json["fullness"], fullness);
}

using arena_type = movable::frame_arena<4096, 4>; // blocks of 16 frames

void check_arena(const value& json, const arena_type& arena) {
    const auto stats = arena.stats();
    CHECK(json["schema"].as_string() == "movable.frame_arena/1");
    CHECK(json["frame_size"].as_unsigned() == 4096);
    CHECK(json["max_order"].as_unsigned() == 4);
    CHECK(json["total_frames"].as_unsigned() == stats.total_frames);
    CHECK(json["free_frames"].as_unsigned() == stats.free_frames);
    CHECK(json["total_bytes"].as_unsigned() == arena.size_bytes());
    CHECK(json["free_bytes"].as_unsigned() == stats.free_frames * 4096);
    CHECK(json["discarded_frames"].as_unsigned() == stats.discarded_frames);
    CHECK(json["discarded_bytes"].as_unsigned() == stats.discarded_frames * 4096);
    CHECK(json["resident_bytes"].as_unsigned() ==
          (stats.total_frames - stats.discarded_frames) * 4096);
    CHECK(json["discarded_blocks"].as_unsigned() == stats.discarded_blocks);
    CHECK(json["discard_failures"].as_unsigned() == stats.discard_failures);
    CHECK(json["max_order_blocks"]["movable"].as_unsigned() == stats.max_order_blocks_by_kind[0]);
    CHECK(json["max_order_blocks"]["unmovable"].as_unsigned() == stats.max_order_blocks_by_kind[1]);
    check_array(json["free_blocks"]["movable"], stats.free_blocks[0]);
    check_array(json["free_blocks"]["unmovable"], stats.free_blocks[1]);
    for (unsigned order = 0; order <= 4; ++order) {
        CHECK(json["free_blocks"]["all"][order].as_unsigned() == arena.free_block_count(order));
    }
    CHECK(json["largest_free_order"].as_signed() == arena.largest_free_order());
    CHECK(json["blocks_claimed"].as_unsigned() == stats.blocks_claimed);
    CHECK(json["frames_stolen"].as_unsigned() == stats.frames_stolen);
    const value& fragmentation = json["fragmentation"];
    CHECK(fragmentation["score"].as_unsigned() == arena.fragmentation_score());
    for (unsigned order = 0; order <= 4; ++order) {
        CHECK(fragmentation["index"][order].as_double() == arena.fragmentation_index(order));
        CHECK(fragmentation["unusable_free_index"][order].as_double() ==
              arena.unusable_free_index(order));
    }
}

std::vector<std::byte> page_of(std::size_t number) {
    return std::vector<std::byte>(4096, static_cast<std::byte>(number));
}

} // namespace

TEST_CASE("json_writer escapes quotes, backslashes and control characters, and nothing else") {
    std::ostringstream out;
    movable::detail::json_writer writer(out);
    const std::string nasty = std::string("a\"b\\c/d\n\r\t\b\f") + '\x01' + '\x1f' + '\0' + "\x7f" +
                              "\xc3\xa9"; // DEL and UTF-8 (é) pass through
    writer.begin_array().value(nasty).value("plain").end_array();
    CHECK(writer.complete());
    CHECK(out.str() == "[\"a\\\"b\\\\c/d\\n\\r\\t\\b\\f\\u0001\\u001f\\u0000\x7f\xc3\xa9\","
                       "\"plain\"]");
    const value json = parsed(out.str());
    CHECK(json[0].as_string() == nasty);
    CHECK(json[1].as_string() == "plain");
}

TEST_CASE("json_writer separates items, nests, and writes numbers that read back exactly") {
    std::ostringstream out;
    movable::detail::json_writer writer(out);
    writer.begin_object();
    writer.field("max", std::numeric_limits<std::uint64_t>::max());
    writer.field("min", std::numeric_limits<std::int64_t>::min());
    writer.field("minus_one", -1);
    writer.field("third", 1.0 / 3.0);
    writer.field("tiny", 1e-300);
    writer.field("infinity", std::numeric_limits<double>::infinity());
    writer.field("yes", true);
    writer.field("literal", "text"); // a string, not a bool
    writer.key("empty_object").begin_object().end_object();
    writer.key("empty_array").begin_array().end_array();
    writer.key("nested")
        .begin_array()
        .begin_object()
        .field("a", 1U)
        .end_object()
        .value(2U)
        .end_array();
    writer.end_object();
    CHECK(writer.complete());
    const value json = parsed(out.str());
    CHECK(json["max"].as_unsigned() == std::numeric_limits<std::uint64_t>::max());
    CHECK(json["min"].as_signed() == std::numeric_limits<std::int64_t>::min());
    CHECK(json["minus_one"].as_signed() == -1);
    CHECK(json["third"].as_double() == 1.0 / 3.0);
    CHECK(json["tiny"].as_double() == 1e-300);
    CHECK(json["infinity"].type == value::kind::null); // JSON has no infinity
    CHECK(json["yes"].as_bool());
    CHECK(json["literal"].as_string() == "text");
    CHECK(json["empty_object"].keys.empty());
    CHECK(json["empty_array"].size() == 0);
    CHECK(json["nested"][0]["a"].as_unsigned() == 1);
    CHECK(json["nested"][1].as_unsigned() == 2);
}

TEST_CASE("json_writer misuse that would write invalid JSON is caught by contract checks") {
    if (!movable::detail::contracts_enabled) {
        return;
    }
    std::ostringstream out;
    CHECK(movable::test::dies_with("json_writer::value: a value inside an object needs a key", [&] {
        movable::detail::json_writer writer(out);
        writer.begin_object().value(1U);
    }));
    CHECK(movable::test::dies_with("json_writer::key: not inside an object", [&] {
        movable::detail::json_writer writer(out);
        writer.begin_array().key("a");
    }));
    CHECK(movable::test::dies_with("json_writer: closes what it did not open", [&] {
        movable::detail::json_writer writer(out);
        writer.begin_object().end_array();
    }));
}

TEST_CASE("the test parser rejects malformed JSON and accepts what RFC 8259 allows") {
    for (const char* bad :
         {"",          "{",        "}",       "[1,]",      "{\"a\":1,}",  "[1 2]",
          "{\"a\" 1}", "{\"a\"}",  "{a:1}",   "01",        "1.",          ".5",
          "-",         "1e",       "+1",      "nul",       "tru",         "[1]x",
          "\"open",    "\"\x01\"", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "{\"a\":1,\"a\":2}",
          "'a'",       "[1],[2]"}) {
        INFO(bad);
        CHECK_FALSE(test_json::parse(bad).has_value());
    }
    for (const char* good : {"0", "-0.5e+3", " [ ] ", "{}", "\"\\u00e9\\ud83d\\ude00\\/\"",
                             "{\"a\":[null,true,false,{\"b\":-1}]}"}) {
        INFO(good);
        CHECK(test_json::parse(good).has_value());
    }
    CHECK(test_json::parse("\"\\u00e9\\ud83d\\ude00\"")->as_string() == "\xc3\xa9\xf0\x9f\x98\x80");
}

TEST_CASE("arena JSON after fragmentation, compaction and release matches the arena's stats") {
    arena_type arena(std::size_t{4} << 20); // 1024 frames
    {
        example::page_store<arena_type> store(arena);
        std::size_t pages = 0;
        while (store.insert(pages, page_of(pages).data())) {
            ++pages;
        }
        for (std::size_t page = 0; page < pages; page += 2) {
            store.erase(page); // every other frame free: fragmented
        }
        movable::frame* unmovable = arena.try_allocate(0, movable::frame_kind::unmovable);
        REQUIRE(unmovable != nullptr);

        const value fragmented = parsed(movable::to_json(arena));
        check_arena(fragmented, arena);
        CHECK(fragmented["fragmentation"]["score"].as_unsigned() > 50);
        CHECK(fragmented["largest_free_order"].as_signed() < 4);

        movable::compactor<arena_type> compaction(arena);
        const movable::compact_stats stats = compaction.compact();
        REQUIRE(stats.migrated > 0);
        std::ostringstream out;
        movable::write_json(out, arena); // the stream form writes what to_json returns
        CHECK(out.str() == movable::to_json(arena));
        const value compacted = parsed(out.str());
        check_arena(compacted, arena);
        CHECK(compacted["largest_free_order"].as_signed() == 4);
        CHECK(compacted["fragmentation"]["score"].as_unsigned() <
              fragmented["fragmentation"]["score"].as_unsigned());

        const std::size_t released = arena.discard_free_memory(0);
        REQUIRE(released > 0);
        const value after_release = parsed(movable::to_json(arena));
        check_arena(after_release, arena);
        CHECK(after_release["discarded_bytes"].as_unsigned() >= released);
        arena.deallocate(*unmovable);
    }
}

TEST_CASE("compact_stats JSON carries every counter of a real compaction and its outcome") {
    arena_type arena(std::size_t{2} << 20);
    example::page_store<arena_type> store(arena);
    std::size_t pages = 0;
    while (store.insert(pages, page_of(pages).data())) {
        ++pages;
    }
    for (std::size_t page = 0; page < pages; page += 3) {
        store.erase(page);
    }
    movable::compactor<arena_type> compaction(arena);
    const movable::compact_stats stats = compaction.compact();
    REQUIRE(stats.migrated > 0);
    const value json = parsed(movable::to_json(stats));
    CHECK(json["schema"].as_string() == "movable.compact_stats/1");
    CHECK(json["outcome"].as_string() == std::string(movable::compact_outcome_name(stats.outcome)));
    CHECK(json["outcome"].as_string() == "planned");
    CHECK(json["migrate_scanned"].as_unsigned() == stats.migrate_scanned);
    CHECK(json["free_scanned"].as_unsigned() == stats.free_scanned);
    CHECK(json["minimum_moves"].as_unsigned() == stats.minimum_moves);
    CHECK(json["regions_given_up"].as_unsigned() == stats.regions_given_up);
    CHECK(json["isolated"].as_unsigned() == stats.isolated);
    CHECK(json["migrated"].as_unsigned() == stats.migrated);
    CHECK(json["failed"].as_unsigned() == stats.failed);
    CHECK(json["released"].as_unsigned() == stats.released);
    CHECK(json["bytes_moved"].as_unsigned() == stats.bytes_moved);
    CHECK(json["blocks_skipped"].as_unsigned() == stats.blocks_skipped);
    CHECK(json["max_order_blocks_freed"].as_unsigned() == stats.max_order_blocks_freed);
    CHECK(json["passes"].as_unsigned() == stats.passes);
    CHECK(json["passes_timed_out"].as_unsigned() == stats.passes_timed_out);
    CHECK(json["rounds"].as_unsigned() == stats.rounds);
    CHECK(json.keys.size() == 16); // a new counter needs a line here and in docs/stats.md
}

TEST_CASE("zspage_pool JSON lists every class with its counts, as zsmalloc's classes file") {
    movable::frame_arena<> arena(std::size_t{8} << 20);
    movable::zspage_pool pool(arena);
    std::vector<movable::zspage_handle> handles;
    for (std::size_t i = 0; i < 3000; ++i) {
        handles.push_back(pool.allocate(40 + i * 37 % 3000));
    }
    for (std::size_t i = 0; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
    (void)pool.compact();
    const movable::zspage_pool_stats stats = pool.stats();
    REQUIRE(stats.objects_in_use == 1500);
    const value json = parsed(movable::to_json(stats));
    CHECK(json["schema"].as_string() == "movable.zspage_pool/1");
    CHECK(json["frame_size"].as_unsigned() == stats.frame_size);
    CHECK(json["frames_in_use"].as_unsigned() == stats.frames_in_use);
    CHECK(json["zspages"].as_unsigned() == stats.zspages);
    CHECK(json["objects_in_use"].as_unsigned() == stats.objects_in_use);
    CHECK(json["bytes_stored"].as_unsigned() == stats.bytes_stored);
    CHECK(json["frames_freeable"].as_unsigned() == stats.frames_freeable);
    CHECK(json["compactions"].as_unsigned() == stats.compactions);
    CHECK(json["frames_freed_by_compaction"].as_unsigned() == stats.frames_freed_by_compaction);
    CHECK(json["objects_moved"].as_unsigned() == stats.objects_moved);
    CHECK(json["frames_migrated"].as_unsigned() == stats.frames_migrated);
    CHECK(json["frames_released_while_isolated"].as_unsigned() ==
          stats.frames_released_while_isolated);
    CHECK(json["isolated_frames"].as_unsigned() == stats.isolated_frames);
    CHECK(json["handle_slots_retired"].as_unsigned() == stats.handle_slots_retired);
    CHECK(json["migrate_pin_waits"].as_unsigned() == stats.migrate_pin_waits);
    CHECK(json["objects_reserved"].as_unsigned() == stats.objects_reserved);
    CHECK(json["reservations_stolen"].as_unsigned() == stats.reservations_stolen);
    const value& classes = json["classes"];
    REQUIRE(classes.size() == stats.classes.size());
    std::size_t objects = 0;
    for (std::size_t i = 0; i < stats.classes.size(); ++i) {
        const movable::zspage_class_stats& c = stats.classes[i];
        const value& row = classes[i];
        CHECK(row["index"].as_unsigned() == i);
        CHECK(row["object_size"].as_unsigned() == c.size_class.object_size);
        CHECK(row["max_payload"].as_unsigned() == c.size_class.max_payload);
        CHECK(row["frames_per_zspage"].as_unsigned() == c.size_class.frames_per_zspage);
        CHECK(row["objects_per_zspage"].as_unsigned() == c.size_class.objects_per_zspage);
        CHECK(row["tail_bytes"].as_unsigned() == c.size_class.tail_bytes);
        CHECK(row["huge"].as_bool() == c.size_class.huge);
        CHECK(row["zspages"].as_unsigned() == c.zspages);
        CHECK(row["frames"].as_unsigned() == c.frames);
        CHECK(row["objects_allocated"].as_unsigned() == c.objects_allocated);
        CHECK(row["objects_in_use"].as_unsigned() == c.objects_in_use);
        CHECK(row["bytes_in_use"].as_unsigned() == c.bytes_in_use);
        CHECK(row["objects_reserved"].as_unsigned() == c.objects_reserved);
        CHECK(row["frames_freeable"].as_unsigned() == c.frames_freeable);
        check_fullness(row, c.fullness);
        objects += row["objects_in_use"].as_unsigned();
    }
    CHECK(objects == 1500);
    for (std::size_t i = 1; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
}

TEST_CASE("object_pool JSON carries its counts, fullness and packing ratio") {
    struct record {
        std::uint64_t id;
        char payload[120];
    };
    movable::frame_arena<> arena(std::size_t{4} << 20);
    movable::object_pool<record> pool(arena);
    std::vector<movable::object_handle<record>> handles;
    for (std::uint64_t i = 0; i < 2000; ++i) {
        handles.push_back(pool.emplace(record{i, {}}));
    }
    for (std::size_t i = 0; i < handles.size(); i += 3) {
        pool.destroy(handles[i]);
    }
    (void)pool.compact();
    const movable::object_pool_stats stats = pool.stats();
    const value json = parsed(movable::to_json(stats));
    CHECK(json["schema"].as_string() == "movable.object_pool/1");
    CHECK(json["object_size"].as_unsigned() == sizeof(record));
    CHECK(json["object_stride"].as_unsigned() == stats.object_stride);
    CHECK(json["objects_per_frame"].as_unsigned() == stats.objects_per_frame);
    CHECK(json["frame_size"].as_unsigned() == stats.frame_size);
    CHECK(json["objects"].as_unsigned() == stats.objects);
    CHECK(json["frames"].as_unsigned() == stats.frames);
    CHECK(json["reserve_frames"].as_unsigned() == stats.reserve_frames);
    CHECK(json["min_frames"].as_unsigned() == stats.min_frames);
    CHECK(json["frames_per_min_frame"].as_double() == stats.frames_per_min_frame());
    CHECK(json["frames_freeable"].as_unsigned() == stats.frames_freeable);
    check_fullness(json, stats.fullness);
    CHECK(json["compactions"].as_unsigned() == stats.compactions);
    CHECK(json["compactions"].as_unsigned() >= 1);
    CHECK(json["objects_moved"].as_unsigned() == stats.objects_moved);
    CHECK(json["frames_freed_by_compaction"].as_unsigned() == stats.frames_freed_by_compaction);
    CHECK(json["objects_skipped_pinned"].as_unsigned() == stats.objects_skipped_pinned);
    CHECK(json["compaction_yields"].as_unsigned() == stats.compaction_yields);
    CHECK(json["frames_migrated"].as_unsigned() == stats.frames_migrated);
    CHECK(json["migrations_refused"].as_unsigned() == stats.migrations_refused);
    CHECK(json["frames_released_while_isolated"].as_unsigned() ==
          stats.frames_released_while_isolated);
    CHECK(json["isolated_frames"].as_unsigned() == stats.isolated_frames);
    CHECK(json["handle_slots_retired"].as_unsigned() == stats.handle_slots_retired);
    CHECK(json["reserved_places"].as_unsigned() == stats.reserved_places);
    CHECK(json["reservations_stolen"].as_unsigned() == stats.reservations_stolen);
    for (std::size_t i = 1; i < handles.size(); ++i) {
        if (i % 3 != 0) {
            pool.destroy(handles[i]);
        }
    }
}

TEST_CASE("zbud_pool JSON carries every counter of its stats") {
    movable::frame_arena<> arena(std::size_t{4} << 20);
    movable::zbud_pool pool(arena);
    std::vector<movable::zbud_handle> handles;
    for (std::size_t i = 0; i < 600; ++i) {
        handles.push_back(pool.allocate(100 + i * 13 % 1800));
    }
    for (std::size_t i = 0; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
    (void)pool.compact();
    const movable::zbud_pool_stats stats = pool.stats();
    const value json = parsed(movable::to_json(stats));
    CHECK(json["schema"].as_string() == "movable.zbud_pool/1");
    CHECK(json["frame_size"].as_unsigned() == stats.frame_size);
    CHECK(json["frames_in_use"].as_unsigned() == stats.frames_in_use);
    CHECK(json["objects_in_use"].as_unsigned() == 300);
    CHECK(json["bytes_stored"].as_unsigned() == stats.bytes_stored);
    CHECK(json["chunks_in_use"].as_unsigned() == stats.chunks_in_use);
    CHECK(json["unbuddied_frames"].as_unsigned() == stats.unbuddied_frames);
    CHECK(json["compactions"].as_unsigned() == stats.compactions);
    CHECK(json["frames_freed_by_compaction"].as_unsigned() == stats.frames_freed_by_compaction);
    CHECK(json["objects_moved"].as_unsigned() == stats.objects_moved);
    CHECK(json["frames_migrated"].as_unsigned() == stats.frames_migrated);
    CHECK(json["frames_released_while_isolated"].as_unsigned() ==
          stats.frames_released_while_isolated);
    CHECK(json["isolated_frames"].as_unsigned() == stats.isolated_frames);
    CHECK(json["frames_evicted"].as_unsigned() == stats.frames_evicted);
    CHECK(json["objects_evicted"].as_unsigned() == stats.objects_evicted);
    CHECK(json["handle_slots_retired"].as_unsigned() == stats.handle_slots_retired);
    for (std::size_t i = 1; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
}

TEST_CASE("z3fold_pool JSON carries every counter of its stats") {
    movable::frame_arena<> arena(std::size_t{4} << 20);
    movable::z3fold_pool pool(arena);
    std::vector<movable::z3fold_handle> handles;
    for (std::size_t i = 0; i < 900; ++i) {
        handles.push_back(pool.allocate(100 + i * 13 % 1200));
    }
    for (std::size_t i = 0; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
    (void)pool.compact();
    const movable::z3fold_pool_stats stats = pool.stats();
    const value json = parsed(movable::to_json(stats));
    CHECK(json["schema"].as_string() == "movable.z3fold_pool/1");
    CHECK(json["frame_size"].as_unsigned() == stats.frame_size);
    CHECK(json["frames_in_use"].as_unsigned() == stats.frames_in_use);
    CHECK(json["objects_in_use"].as_unsigned() == 450);
    CHECK(json["bytes_stored"].as_unsigned() == stats.bytes_stored);
    CHECK(json["chunks_in_use"].as_unsigned() == stats.chunks_in_use);
    CHECK(json["unbuddied_frames"].as_unsigned() == stats.unbuddied_frames);
    CHECK(json["compactions"].as_unsigned() == stats.compactions);
    CHECK(json["frames_freed_by_compaction"].as_unsigned() == stats.frames_freed_by_compaction);
    CHECK(json["middles_moved"].as_unsigned() == stats.middles_moved);
    CHECK(json["objects_moved"].as_unsigned() == stats.objects_moved);
    CHECK(json["frames_migrated"].as_unsigned() == stats.frames_migrated);
    CHECK(json["frames_released_while_isolated"].as_unsigned() ==
          stats.frames_released_while_isolated);
    CHECK(json["isolated_frames"].as_unsigned() == stats.isolated_frames);
    CHECK(json["handle_slots_retired"].as_unsigned() == stats.handle_slots_retired);
    for (std::size_t i = 1; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
}

TEST_CASE("background_compactor JSON carries every counter of its stats and why it last slept") {
    movable::frame_arena<> arena(std::size_t{4} << 20);
    movable::zspage_pool pool(arena);
    std::vector<movable::zspage_handle> handles;
    for (std::size_t i = 0; i < 600; ++i) {
        handles.push_back(pool.allocate(100 + i * 13 % 1200));
    }
    for (std::size_t i = 0; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
    movable::background_compactor service;
    service.add_arena(arena);
    service.add_source(pool);
    service.wake();
    (void)service.step();
    const movable::background_compactor_stats stats = service.stats();
    REQUIRE(stats.episodes >= 1);
    const value json = parsed(movable::to_json(stats));
    CHECK(json["schema"].as_string() == "movable.background_compactor/1");
    CHECK(json["steps"].as_unsigned() == stats.steps);
    CHECK(json["episodes"].as_unsigned() == stats.episodes);
    CHECK(json["episodes_by_watermark"].as_unsigned() == stats.episodes_by_watermark);
    CHECK(json["episodes_by_wake"].as_unsigned() == stats.episodes_by_wake);
    CHECK(json["episodes_by_period"].as_unsigned() == stats.episodes_by_period);
    CHECK(json["episodes_deferred"].as_unsigned() == stats.episodes_deferred);
    CHECK(json["passes"].as_unsigned() == stats.passes);
    CHECK(json["frames_moved"].as_unsigned() == stats.frames_moved);
    CHECK(json["objects_moved"].as_unsigned() == stats.objects_moved);
    CHECK(json["frames_freed"].as_unsigned() == stats.frames_freed);
    CHECK(json["bytes_released"].as_unsigned() == stats.bytes_released);
    CHECK(json["cpu_time_ns"].as_unsigned() == stats.cpu_time_ns);
    CHECK(json["longest_pass_ns"].as_unsigned() == stats.longest_pass_ns);
    CHECK(json["last_sleep_ns"].as_unsigned() == stats.last_sleep_ns);
    CHECK(json["cpu_percent"].as_unsigned() == stats.cpu_percent);
    CHECK(json["backoff_shift"].as_unsigned() == stats.backoff_shift);
    CHECK(json["last_reason"].as_string() == movable::to_string(stats.last_reason));
    for (std::size_t i = 1; i < handles.size(); i += 2) {
        pool.deallocate(handles[i]);
    }
}
