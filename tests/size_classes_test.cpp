// Size classes (pool/size_classes.hpp): the class table, its merging and huge classes, and
// the class a pool picks for each size.
#include <movable/pool/size_classes.hpp>

#include <movable/models/zspage_pool.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <stdexcept>
#include <vector>

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
using pool_type = zspage_pool<arena_type>;
constexpr std::size_t frame_size = arena_type::frame_size;

} // namespace

// ---- size classes ------------------------------------------------------------------------------

TEST_CASE("every size class takes the zspage length with the least unused tail (N = 4 and 8)") {
    for (std::size_t chain : {std::size_t{4}, std::size_t{8}}) {
        CAPTURE(chain);
        const std::vector<zspage_size_class> classes = zspage_class_table(frame_size, chain);
        REQUIRE(!classes.empty());
        for (const zspage_size_class& c : classes) {
            CAPTURE(c.object_size);
            CHECK(c.frames_per_zspage >= 1);
            CHECK(c.frames_per_zspage <= chain);
            CHECK(c.objects_per_zspage == c.frames_per_zspage * frame_size / c.object_size);
            CHECK(c.tail_bytes ==
                  c.frames_per_zspage * frame_size - c.objects_per_zspage * c.object_size);
            // No other length wastes a smaller fraction; a shorter one never wastes as little.
            for (std::size_t k = 1; k <= chain; ++k) {
                const std::size_t waste = k * frame_size % c.object_size;
                if (k < c.frames_per_zspage) {
                    CHECK(waste * c.frames_per_zspage > c.tail_bytes * k);
                } else {
                    CHECK(waste * c.frames_per_zspage >= c.tail_bytes * k);
                }
            }
        }
    }
}

TEST_CASE("power-of-two object sizes use one frame and waste nothing") {
    const pool_type::handle none{};
    CHECK_FALSE(none);
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    for (std::size_t object_size = 32; object_size <= frame_size; object_size *= 2) {
        CAPTURE(object_size);
        const std::size_t payload =
            object_size == frame_size ? frame_size : object_size - zspage_object_header_bytes;
        const zspage_size_class& c = pool.size_class_for(payload);
        CHECK(c.object_size == object_size);
        CHECK(c.frames_per_zspage == 1);
        CHECK(c.tail_bytes == 0);
    }
}

TEST_CASE("classes with the same frames and objects per zspage merge into the larger one") {
    for (std::size_t chain : {std::size_t{4}, std::size_t{8}}) {
        CAPTURE(chain);
        arena_type arena(arena_type::block_bytes);
        pool_type pool(arena, {chain});
        const auto classes = pool.size_classes();
        // 255 candidate sizes (32, 48, ... 4096) collapse into fewer distinct classes.
        CHECK(classes.size() < (frame_size - 32) / 16 + 1);
        for (std::size_t i = 1; i < classes.size(); ++i) {
            CHECK(classes[i - 1].object_size < classes[i].object_size);
            const bool same_shape =
                classes[i - 1].frames_per_zspage == classes[i].frames_per_zspage &&
                classes[i - 1].objects_per_zspage == classes[i].objects_per_zspage;
            CHECK_FALSE(same_shape);
        }
        // Every candidate size is served by a class at least as large with its own shape.
        for (std::size_t candidate = 32; candidate <= frame_size; candidate += 16) {
            CAPTURE(candidate);
            const std::size_t payload =
                candidate == frame_size ? frame_size : candidate - zspage_object_header_bytes;
            const zspage_size_class& c = pool.size_class_for(payload);
            CHECK(c.object_size >= candidate);
            std::size_t best = 1;
            for (std::size_t k = 2; k <= chain; ++k) {
                if (k * frame_size % candidate * best < best * frame_size % candidate * k) {
                    best = k;
                }
            }
            CHECK(c.frames_per_zspage == best);
            CHECK(c.objects_per_zspage == best * frame_size / candidate);
        }
    }
}

TEST_CASE("huge classes hold one object in one frame; shorter chains make more sizes huge") {
    std::size_t smallest_huge_payload[2] = {0, 0};
    std::size_t index = 0;
    for (std::size_t chain : {std::size_t{4}, std::size_t{8}}) {
        CAPTURE(chain);
        arena_type arena(arena_type::block_bytes);
        pool_type pool(arena, {chain});
        for (const zspage_size_class& c : pool.size_classes()) {
            CHECK(c.huge == (c.frames_per_zspage == 1 && c.objects_per_zspage == 1));
        }
        CHECK(pool.size_classes().back().huge);
        CHECK(pool.size_classes().back().max_payload == frame_size);
        for (std::size_t payload = 1; payload <= frame_size; ++payload) {
            if (pool.size_class_for(payload).huge) {
                smallest_huge_payload[index] = payload;
                break;
            }
        }
        ++index;
    }
    MESSAGE("smallest huge object: " << smallest_huge_payload[0] << " bytes with N = 4, "
                                     << smallest_huge_payload[1] << " with N = 8");
    CHECK(smallest_huge_payload[0] < smallest_huge_payload[1]);
}

TEST_CASE("bad chain lengths are rejected") {
    arena_type arena(arena_type::block_bytes);
    CHECK_THROWS_AS(pool_type(arena, {0}), std::invalid_argument);
    CHECK_THROWS_AS(pool_type(arena, {zspage_max_chain_frames + 1}), std::invalid_argument);
    CHECK_NOTHROW(pool_type(arena, {zspage_max_chain_frames}));
    CHECK_THROWS_AS((void)zspage_class_table(1000, 8), std::invalid_argument);
}

TEST_CASE("the class table is the same whether asked for directly or through a pool") {
    for (std::size_t chain :
         {std::size_t{1}, std::size_t{4}, std::size_t{8}, std::size_t{zspage_max_chain_frames}}) {
        CAPTURE(chain);
        arena_type arena(arena_type::block_bytes);
        pool_type pool(arena, {chain});
        const std::vector<zspage_size_class> table = zspage_class_table(frame_size, chain);
        REQUIRE(table.size() == pool.size_classes().size());
        for (std::size_t i = 0; i < table.size(); ++i) {
            CHECK(table[i].object_size == pool.size_classes()[i].object_size);
            CHECK(table[i].frames_per_zspage == pool.size_classes()[i].frames_per_zspage);
            CHECK(table[i].objects_per_zspage == pool.size_classes()[i].objects_per_zspage);
        }
    }
}

TEST_CASE("every payload gets the smallest class whose largest payload holds it") {
    std::vector<zspage_size_class> classes;
    std::vector<std::uint16_t> class_of_index;
    detail::build_class_table(frame_size, 8, classes, class_of_index);
    REQUIRE(class_of_index.size() == detail::size_class_count(frame_size));
    for (std::size_t payload = 1; payload <= frame_size; ++payload) {
        CAPTURE(payload);
        const std::size_t index =
            detail::size_class_index(payload + zspage_object_header_bytes, frame_size);
        REQUIRE(index < class_of_index.size());
        const zspage_size_class& c = classes[class_of_index[index]];
        CHECK(c.max_payload >= payload);
        if (class_of_index[index] > 0) {
            CHECK(classes[class_of_index[index] - 1].max_payload < payload);
        }
    }
}

TEST_CASE("classes are spaced by frame_size / 256 from 32 bytes, on larger frames too") {
    CHECK(detail::size_class_count(4096) == 255);
    CHECK(detail::size_class_count(8192) == (8192 - 32 + 31) / 32 + 1);
    const std::vector<zspage_size_class> classes = zspage_class_table(8192, 4);
    REQUIRE(!classes.empty());
    CHECK(classes.front().object_size == zspage_min_object_size);
    CHECK(classes.back().object_size == 8192);
    CHECK(classes.back().huge);
    for (const zspage_size_class& c : classes) {
        CHECK(c.object_size % 32 == 0);
    }
}
