#include <movable/models/zspage_pool.hpp>

#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/death_test.hpp"
#include "support/isolate_and_migrate.hpp"
#include "support/zspage_pool_access.hpp"

using namespace movable;
using movable::test::isolate_and_migrate;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
using pool_type = zspage_pool<arena_type>;
using access = detail::zspage_pool_test_access<pool_type>;
constexpr std::size_t frame_size = arena_type::frame_size;

std::vector<std::byte> pattern(std::size_t size, std::uint32_t seed) {
    std::vector<std::byte> bytes(size);
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& b : bytes) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<std::byte>(x);
    }
    return bytes;
}

// A pool and a shadow copy of every live object, for checking every byte after each phase.
struct shadowed {
    explicit shadowed(std::size_t blocks, zspage_pool_options options = {})
        : arena(blocks * arena_type::block_bytes),
          pool(std::make_unique<pool_type>(arena, options)) {}

    zspage_handle add(std::size_t size) {
        const zspage_handle h = pool->allocate(size);
        std::vector<std::byte> bytes = pattern(size, next_seed++);
        pool->write(h, bytes);
        objects[h.value()] = std::move(bytes);
        return h;
    }
    zspage_handle try_add(std::size_t size) {
        const zspage_handle h = pool->try_allocate(size);
        if (h) {
            std::vector<std::byte> bytes = pattern(size, next_seed++);
            pool->write(h, bytes);
            objects[h.value()] = std::move(bytes);
        }
        return h;
    }
    void remove(zspage_handle h) {
        pool->deallocate(h);
        objects.erase(h.value());
    }
    // Every live object still has its size and its bytes.
    bool intact() const {
        for (const auto& [value, bytes] : objects) {
            const zspage_handle h = zspage_handle::from_value(value);
            if (pool->size(h) != bytes.size()) {
                return false;
            }
            std::vector<std::byte> got(bytes.size());
            pool->read(h, got);
            if (got != bytes) {
                return false;
            }
        }
        return true;
    }
    std::vector<zspage_handle> handles() const {
        std::vector<zspage_handle> result;
        for (const auto& entry : objects) {
            result.push_back(zspage_handle::from_value(entry.first));
        }
        return result;
    }

    arena_type arena;
    std::unique_ptr<pool_type> pool;
    std::map<std::uint64_t, std::vector<std::byte>> objects;
    std::uint32_t next_seed = 1;
};

// Fills `count` objects of `size`, then frees a random `freed_fraction` of them.
void fill_and_thin(shadowed& s, std::size_t size, std::size_t count, double freed_fraction,
                   unsigned seed) {
    std::vector<zspage_handle> added;
    for (std::size_t i = 0; i < count; ++i) {
        added.push_back(s.add(size));
    }
    std::shuffle(added.begin(), added.end(), std::mt19937(seed));
    const auto freed = static_cast<std::size_t>(static_cast<double>(count) * freed_fraction);
    for (std::size_t i = 0; i < freed; ++i) {
        s.remove(added[i]);
    }
}

} // namespace

// ---- objects and handles
// -------------------------------------------------------------------------

TEST_CASE("objects of every size from 1 byte to a frame keep their bytes and size") {
    shadowed s(64); // a zspage for each of the ~120 classes
    for (std::size_t size = 1; size <= frame_size; size += 1 + size / 64) {
        s.add(size);
    }
    s.add(frame_size);
    CHECK(s.intact());
    const zspage_pool_stats stats = s.pool->stats();
    CHECK(stats.objects_in_use == s.objects.size());
    std::size_t bytes = 0;
    for (const auto& entry : s.objects) {
        bytes += entry.second.size();
    }
    CHECK(stats.bytes_stored == bytes);
}

TEST_CASE("bad sizes throw invalid_argument; try_allocate returns the empty handle") {
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    CHECK_THROWS_AS((void)pool.allocate(0), std::invalid_argument);
    CHECK_THROWS_AS((void)pool.allocate(frame_size + 1), std::invalid_argument);
    CHECK_FALSE(pool.try_allocate(0));
    CHECK_FALSE(pool.try_allocate(frame_size + 1));
    CHECK_THROWS_AS((void)pool.size_class_for(0), std::invalid_argument);
    CHECK(pool.stats().frames_in_use == 0);
}

TEST_CASE("an exhausted arena makes allocate throw bad_alloc and try_allocate return empty; "
          "freeing makes room again") {
    shadowed s(1); // 16 frames
    std::vector<zspage_handle> huge;
    for (std::size_t i = 0; i < arena_type::block_frames; ++i) {
        huge.push_back(s.add(frame_size));
    }
    CHECK_THROWS_AS((void)s.pool->allocate(frame_size), std::bad_alloc);
    CHECK_FALSE(s.pool->try_allocate(frame_size));
    CHECK_FALSE(s.pool->try_allocate(100)); // a new zspage of another class needs frames too
    CHECK(s.intact());
    s.remove(huge[3]);
    CHECK(s.try_add(24)); // a single-frame class
    CHECK(s.intact());
    CHECK(s.arena.free_frames() == 0);
}

TEST_CASE("the empty handle is rejected by every call that takes a handle") {
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    std::byte buffer[8];
    CHECK_THROWS_AS(pool.deallocate({}), std::invalid_argument);
    CHECK_THROWS_AS(pool.read({}, buffer), std::invalid_argument);
    CHECK_THROWS_AS(pool.write({}, buffer), std::invalid_argument);
    CHECK_THROWS_AS((void)pool.size({}), std::invalid_argument);
    CHECK_THROWS_AS((void)pool.map({}, zspage_access::read), std::invalid_argument);
}

TEST_CASE("spans larger than the object throw out_of_range and leave the zspage unpinned") {
    shadowed s(2);
    const zspage_handle h = s.add(100);
    std::vector<std::byte> big(101);
    CHECK_THROWS_AS(s.pool->read(h, big), std::out_of_range);
    CHECK_THROWS_AS(s.pool->write(h, big), std::out_of_range);
    std::vector<std::byte> prefix(40);
    s.pool->read(h, prefix);
    CHECK(std::equal(prefix.begin(), prefix.end(), s.objects[h.value()].begin()));
    // Not left pinned: its frame can still be isolated and migrated.
    frame& f = access::start_frame(*s.pool, h);
    CHECK(isolate_and_migrate(s.arena, f, migrate_mode::sync) == 1);
    CHECK(s.intact());
}

TEST_CASE("handles are opaque integers that survive a round trip through value()") {
    shadowed s(2);
    const zspage_handle h = s.add(50);
    const std::uint64_t stored = h.value();
    CHECK(stored != 0);
    CHECK(zspage_handle::from_value(stored) == h);
    CHECK(s.pool->size(zspage_handle::from_value(stored)) == 50);
}

TEST_CASE("allocation takes the fullest zspage that is not full") {
    shadowed s(2);
    // Payload 24 -> 32-byte objects, 128 per single-frame zspage.
    std::vector<zspage_handle> first;
    std::vector<zspage_handle> second;
    for (int i = 0; i < 128; ++i) {
        first.push_back(s.add(24));
    }
    for (int i = 0; i < 128; ++i) {
        second.push_back(s.add(24));
    }
    frame& sparse = access::start_frame(*s.pool, first[0]);
    frame& dense = access::start_frame(*s.pool, second[0]);
    REQUIRE(&sparse != &dense);
    for (int i = 0; i < 100; ++i) { // first: 28 of 128 in use
        s.remove(first[static_cast<std::size_t>(i)]);
    }
    for (int i = 0; i < 10; ++i) { // second: 118 of 128 in use
        s.remove(second[static_cast<std::size_t>(i)]);
    }
    for (int i = 0; i < 10; ++i) {
        CHECK(&access::start_frame(*s.pool, s.add(24)) == &dense);
    }
    CHECK(&access::start_frame(*s.pool, s.add(24)) == &sparse); // dense is full now
    CHECK(s.intact());
}

TEST_CASE("without a thread cache, freeing the last object of a zspage gives its frames back to "
          "the arena") {
    shadowed s(2, {.thread_cache = false});
    const std::size_t free_before = s.arena.free_frames();
    const std::size_t frames = s.pool->size_class_for(1100).frames_per_zspage;
    const zspage_handle h = s.add(1100);
    CHECK(s.arena.free_frames() == free_before - frames);
    CHECK(s.pool->stats().frames_in_use == frames);
    s.remove(h);
    CHECK(s.arena.free_frames() == free_before);
    CHECK(s.pool->stats().frames_in_use == 0);
    CHECK(s.pool->stats().zspages == 0);
}

TEST_CASE("freed slots are reused; a reused slot gets a new generation") {
    shadowed s(2);
    const zspage_handle a = s.add(64);
    s.remove(a);
    const zspage_handle b = s.add(64);
    CHECK((a.value() & 0xffffffff) == (b.value() & 0xffffffff)); // same slot
    CHECK(a != b);
    CHECK(s.intact());
}

// ---- access
// --------------------------------------------------------------------------------------

TEST_CASE("objects that span two frames are mapped through a copy and written back") {
    shadowed s(4);
    // 1100-byte payloads: a multi-frame class whose objects straddle frame boundaries.
    const zspage_size_class& c = s.pool->size_class_for(1100);
    REQUIRE(c.frames_per_zspage > 1);
    std::vector<zspage_handle> handles;
    for (std::size_t i = 0; i < c.objects_per_zspage; ++i) {
        handles.push_back(s.add(1100));
    }
    std::size_t copied = 0;
    std::size_t direct = 0;
    for (const zspage_handle h : handles) {
        std::vector<std::byte> replacement =
            pattern(1100, 0x9000 + static_cast<std::uint32_t>(copied + direct));
        {
            pool_type::mapping m = s.pool->map(h, zspage_access::write);
            REQUIRE(m.bytes().size() == 1100);
            CHECK(std::equal(m.bytes().begin(), m.bytes().end(), s.objects[h.value()].begin()));
            const bool inside_arena = s.arena.try_frame_of(m.bytes().data()) != nullptr;
            CHECK(inside_arena == !m.copied());
            (m.copied() ? copied : direct) += 1;
            std::memcpy(m.writable_bytes().data(), replacement.data(), replacement.size());
        }
        s.objects[h.value()] = replacement;
    }
    CHECK(copied > 0);
    CHECK(direct > 0);
    CHECK(s.intact());
    // A read mapping of a spanning object is a copy too; nothing is written back.
    for (const zspage_handle h : handles) {
        pool_type::mapping m = s.pool->map(h, zspage_access::read);
        CHECK(std::equal(m.bytes().begin(), m.bytes().end(), s.objects[h.value()].begin()));
    }
}

TEST_CASE("huge objects fill a frame without a header and keep their handle across moves") {
    shadowed s(4);
    const zspage_size_class& c = s.pool->size_class_for(frame_size);
    CHECK(c.huge);
    std::vector<zspage_handle> handles;
    for (int i = 0; i < 6; ++i) {
        handles.push_back(s.add(frame_size - static_cast<std::size_t>(i)));
    }
    pool_type::mapping m = s.pool->map(handles[0], zspage_access::read);
    CHECK_FALSE(m.copied());
    CHECK(m.bytes().data() == s.arena.address_of(access::start_frame(*s.pool, handles[0])));
    m.unmap();
    for (const zspage_handle h : handles) {
        CHECK(isolate_and_migrate(s.arena, access::start_frame(*s.pool, h), migrate_mode::sync) ==
              1);
    }
    CHECK(s.intact());
}

TEST_CASE("a mapping moved from one guard to another unpins once") {
    shadowed s(2);
    const zspage_handle h = s.add(200);
    pool_type::mapping outer;
    {
        pool_type::mapping inner = s.pool->map(h, zspage_access::read);
        outer = std::move(inner);
        CHECK_FALSE(inner);
    }
    CHECK(outer);
    frame& f = access::start_frame(*s.pool, h);
    CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync)); // still pinned
    outer.unmap();
    outer.unmap(); // idempotent
    CHECK(isolate_and_migrate(s.arena, f, migrate_mode::sync) == 1);
}

// ---- compaction
// ----------------------------------------------------------------------------------

TEST_CASE("compact moves objects from sparse zspages into dense ones and frees the emptied") {
    shadowed s(32);
    fill_and_thin(s, 700, 600, 0.6, 1);
    fill_and_thin(s, 90, 2000, 0.7, 2);
    fill_and_thin(s, 2500, 200, 0.5, 3);
    const std::size_t estimate = s.pool->compactable_frames();
    const std::size_t frames_before = s.pool->stats().frames_in_use;
    const std::size_t arena_free_before = s.arena.free_frames();
    REQUIRE(estimate > 0);

    const std::size_t freed = s.pool->compact();

    CHECK(freed == estimate); // with nothing pinned, exactly the estimate
    CHECK(s.pool->compactable_frames() == 0);
    const zspage_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_in_use == frames_before - freed);
    CHECK(s.arena.free_frames() == arena_free_before + freed);
    CHECK(stats.frames_freed_by_compaction == freed);
    CHECK(stats.objects_moved > 0);
    CHECK(stats.compactions == 1);
    CHECK(s.intact());
    // Each class is left with less than one zspage of free slots.
    for (const zspage_class_stats& c : stats.classes) {
        CHECK(c.objects_allocated - c.objects_in_use < c.size_class.objects_per_zspage);
    }
    MESSAGE("compaction freed " << freed << " of " << frames_before << " frames, moved "
                                << stats.objects_moved << " objects");
}

TEST_CASE("compaction skips zspages with a mapped object; mapped objects never move") {
    shadowed s(16);
    fill_and_thin(s, 300, 800, 0.8, 4);
    // Map a few objects in different zspages.
    std::vector<pool_type::mapping> mappings;
    std::vector<const std::byte*> addresses;
    std::vector<zspage_handle> pinned;
    std::vector<frame*> pinned_frames;
    for (const zspage_handle h : s.handles()) {
        frame* f = &access::start_frame(*s.pool, h);
        if (std::find(pinned_frames.begin(), pinned_frames.end(), f) == pinned_frames.end()) {
            mappings.push_back(s.pool->map(h, zspage_access::read));
            addresses.push_back(mappings.back().bytes().data());
            pinned.push_back(h);
            pinned_frames.push_back(f);
        }
        if (mappings.size() == 4) {
            break;
        }
    }
    REQUIRE(mappings.size() == 4);
    const std::size_t freed = s.pool->compact();
    CHECK(freed > 0);
    compactor<arena_type>(s.arena).compact();
    for (std::size_t i = 0; i < mappings.size(); ++i) {
        CHECK(mappings[i].bytes().data() == addresses[i]);
        CHECK(&access::start_frame(*s.pool, pinned[i]) == pinned_frames[i]);
        CHECK(std::equal(mappings[i].bytes().begin(), mappings[i].bytes().end(),
                         s.objects[pinned[i].value()].begin()));
    }
    // Pinned zspages kept their objects, so some compaction is left for later.
    const std::size_t left = s.pool->compactable_frames();
    mappings.clear();
    CHECK(s.pool->compact() == left);
    CHECK(s.intact());
}

TEST_CASE("compact returns 0 at once while another compaction of the pool runs") {
    shadowed s(8);
    fill_and_thin(s, 500, 300, 0.7, 5);
    REQUIRE(s.pool->compactable_frames() > 0);
    {
        std::lock_guard running(access::compaction_lock(*s.pool));
        CHECK(s.pool->compact() == 0);
    }
    CHECK(s.pool->compact() > 0);
    CHECK(s.intact());
}

TEST_CASE("after pool compaction, arena compaction gathers the pool's frames and frees "
          "max-order blocks") {
    shadowed s(64);
    fill_and_thin(s, 1200, 1400, 0.65, 6);
    fill_and_thin(s, 200, 3000, 0.65, 7);
    const std::size_t free_blocks_before =
        s.arena.stats().free_blocks_of_order(arena_type::max_order);
    s.pool->compact();
    const compact_stats stats = compactor<arena_type>(s.arena).compact();
    CHECK(stats.migrated > 0);
    CHECK(stats.failed == 0);
    CHECK(s.intact());
    const auto arena_stats = s.arena.stats();
    CHECK(arena_stats.free_blocks_of_order(arena_type::max_order) > free_blocks_before);
    // Every free frame but those of one block (where the scanners met) is in a free
    // max-order block.
    CHECK(arena_stats.free_frames -
              arena_stats.free_blocks_of_order(arena_type::max_order) * arena_type::block_frames <
          arena_type::block_frames);
    CHECK(s.pool->stats().frames_migrated == stats.migrated);
    MESSAGE("free max-order blocks " << free_blocks_before << " -> "
                                     << arena_stats.free_blocks_of_order(arena_type::max_order));
}

// ---- frame migration
// -----------------------------------------------------------------------------

TEST_CASE("migrating a frame rewrites the location of every object that starts in it") {
    shadowed s(4);
    const zspage_size_class& c = s.pool->size_class_for(1100);
    REQUIRE(c.frames_per_zspage >= 3);
    std::vector<zspage_handle> handles;
    for (std::size_t i = 0; i < c.objects_per_zspage; ++i) {
        handles.push_back(s.add(1100));
    }
    const std::vector<frame*> chain = access::zspage_frames(*s.pool, handles[0]);
    frame* middle = chain[1];
    std::vector<zspage_handle> starting_there;
    for (const zspage_handle h : handles) {
        if (&access::start_frame(*s.pool, h) == middle) {
            starting_there.push_back(h);
        }
    }
    REQUIRE(!starting_there.empty());

    migrate_stats stats;
    CHECK(isolate_and_migrate(s.arena, *middle, migrate_mode::sync, &stats) == 1);

    const std::vector<frame*> after = access::zspage_frames(*s.pool, handles[0]);
    CHECK(after[0] == chain[0]);
    CHECK(after[1] != middle);
    CHECK(after[2] == chain[2]);
    for (const zspage_handle h : starting_there) {
        CHECK(&access::start_frame(*s.pool, h) == after[1]);
    }
    CHECK(s.arena.is_free(s.arena.index_of(*middle)));
    CHECK(s.intact());
    CHECK(s.pool->stats().frames_migrated == 1);
    CHECK(s.pool->stats().isolated_frames == 0);
}

TEST_CASE("a mapped zspage refuses isolation") {
    shadowed s(2);
    const zspage_handle h = s.add(300);
    frame& f = access::start_frame(*s.pool, h);
    {
        pool_type::mapping m = s.pool->map(h, zspage_access::read);
        CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync));
    }
    CHECK(isolate_and_migrate(s.arena, f, migrate_mode::sync) == 1);
    CHECK(s.intact());
}

TEST_CASE("a zspage mapped after isolation makes migration answer busy; the frame is put back") {
    shadowed s(2);
    const zspage_handle h = s.add(300);
    frame& f = access::start_frame(*s.pool, h);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK(s.pool->stats().isolated_frames == 1);
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    {
        pool_type::mapping m = s.pool->map(h, zspage_access::write);
        const std::byte* before = m.bytes().data();
        const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
        CHECK(stats.succeeded == 0);
        CHECK(stats.failed == 1);
        CHECK(stats.put_back == 1);
        CHECK(m.bytes().data() == before);
        CHECK(&access::start_frame(*s.pool, h) == &f);
    }
    CHECK(list.empty());
    CHECK_FALSE(f.is_isolated());
    CHECK(s.pool->stats().isolated_frames == 0);
    CHECK(s.intact());
    CHECK(isolate_and_migrate(s.arena, f, migrate_mode::sync) == 1);
    CHECK(s.intact());
}

TEST_CASE("sync_light migration answers busy for a zspage pinned after isolation, without "
          "waiting for the pin") {
    shadowed s(2);
    const zspage_handle h = s.add(300);
    frame& f = access::start_frame(*s.pool, h);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync_light));
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    {
        pool_type::mapping m = s.pool->map(h, zspage_access::read);
        const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync_light);
        CHECK(stats.succeeded == 0);
        CHECK(stats.failed == 1);
        CHECK(stats.put_back == 1);
        CHECK(s.pool->stats().migrate_pin_waits == 0);
        CHECK(&access::start_frame(*s.pool, h) == &f);
    }
    CHECK(s.intact());
}

TEST_CASE("sync migration waits a bounded number of looks for a pin, then answers busy") {
    for (const std::size_t looks : {std::size_t{0}, std::size_t{5}}) {
        CAPTURE(looks);
        zspage_pool_options options;
        options.sync_pin_wait_attempts = looks;
        shadowed s(2, options);
        const zspage_handle h = s.add(300);
        frame& f = access::start_frame(*s.pool, h);
        REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
        frame_list list;
        list.push_back(f);
        arena_targets<arena_type> targets{s.arena};
        {
            // This thread keeps the pin across the migration: no wait can see it drop.
            pool_type::mapping m = s.pool->map(h, zspage_access::read);
            const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
            CHECK(stats.succeeded == 0);
            CHECK(stats.failed == 1);
            CHECK(stats.put_back == 1);
            CHECK(s.pool->stats().migrate_pin_waits == (looks == 0 ? 0u : 1u));
            CHECK(&access::start_frame(*s.pool, h) == &f);
        }
        CHECK(s.pool->stats().isolated_frames == 0);
        CHECK(s.intact());
    }
}

TEST_CASE("when the arena has no target frame, migration stops and the frame is put back") {
    shadowed s(1); // 16 frames
    std::vector<zspage_handle> handles;
    while (s.try_add(frame_size)) {
    }
    REQUIRE(s.arena.free_frames() == 0);
    const zspage_handle h = s.handles().front();
    frame& f = access::start_frame(*s.pool, h);
    migrate_stats stats;
    CHECK(isolate_and_migrate(s.arena, f, migrate_mode::sync, &stats) == 0);
    CHECK(stats.target_exhausted);
    CHECK(stats.put_back == 1);
    CHECK_FALSE(f.is_isolated());
    CHECK(&access::start_frame(*s.pool, h) == &f);
    CHECK(s.pool->stats().isolated_frames == 0);
    CHECK(s.intact());
}

TEST_CASE("a zspage freed while one of its frames is isolated leaves that frame to the core") {
    shadowed s(2, {.thread_cache = false}); // the free empties the zspage at once
    const std::size_t free_before = s.arena.free_frames();
    std::vector<zspage_handle> handles;
    for (int i = 0; i < 5; ++i) {
        handles.push_back(s.add(1100)); // one multi-frame zspage
    }
    const std::vector<frame*> chain = access::zspage_frames(*s.pool, handles[0]);
    frame& isolated = *chain[1];
    REQUIRE(isolate_movable_frame(isolated, migrate_mode::sync));
    for (const zspage_handle h : handles) {
        s.remove(h);
    }
    // Every frame but the isolated one went back; the pool forgot that one.
    CHECK(s.arena.free_frames() == free_before - 1);
    const zspage_pool_stats stats = s.pool->stats();
    CHECK(stats.frames_released_while_isolated == 1);
    CHECK(stats.isolated_frames == 0);
    CHECK(stats.frames_in_use == 0);
    CHECK_FALSE(movable_ops(isolated) != nullptr);

    frame_list list;
    list.push_back(isolated);
    arena_targets<arena_type> targets{s.arena};
    const migrate_stats migrated = migrate_frames(list, targets, migrate_mode::sync);
    CHECK(migrated.released == 1);
    CHECK(migrated.succeeded == 0);
    CHECK(s.arena.free_frames() == free_before);
}

TEST_CASE("destroying a pool while one of its frames is isolated hands the frame to the core") {
    shadowed s(2);
    const std::size_t free_before = s.arena.free_frames();
    const zspage_handle h = s.add(3000);
    frame& f = access::start_frame(*s.pool, h);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    s.pool.reset();
    s.objects.clear();
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{s.arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
    CHECK(stats.released == 1);
    CHECK(s.arena.free_frames() == free_before);
}

TEST_CASE("destroying a pool frees every object and frame") {
    shadowed s(8);
    const std::size_t free_before = s.arena.free_frames();
    fill_and_thin(s, 333, 900, 0.3, 8);
    CHECK(s.arena.free_frames() < free_before);
    s.pool.reset();
    CHECK(s.arena.free_frames() == free_before);
}

// ---- data integrity ----------------------------------------------------------------------------

TEST_CASE("random churn stays intact through compaction, arena compaction and frame migration, "
          "with and without thread caches") {
    for (const bool cached : {false, true}) {
        CAPTURE(cached);
        shadowed s(64, {.thread_cache = cached});
        std::mt19937 rng(2024);
        // Sizes shaped like compressed pages: mostly 1-2 KiB, some small, some nearly a frame.
        auto random_size = [&] {
            const unsigned kind = rng() % 10;
            if (kind == 0) {
                return std::size_t{1} + rng() % 512;
            }
            if (kind < 8) {
                return std::size_t{700} + rng() % 1800;
            }
            return std::size_t{2500} + rng() % (frame_size - 2500 + 1);
        };
        std::vector<zspage_handle> live;
        for (int round = 0; round < 4; ++round) {
            CAPTURE(round);
            for (int op = 0; op < 2500; ++op) {
                if (live.empty() || rng() % 100 < 55) {
                    if (const zspage_handle h = s.try_add(random_size())) {
                        live.push_back(h);
                    }
                } else {
                    const std::size_t i = rng() % live.size();
                    if (rng() % 4 == 0) { // rewrite in place
                        const zspage_handle h = live[i];
                        std::vector<std::byte> bytes =
                            pattern(s.objects[h.value()].size(), s.next_seed++);
                        s.pool->write(h, bytes);
                        s.objects[h.value()] = bytes;
                    } else {
                        s.remove(live[i]);
                        live[i] = live.back();
                        live.pop_back();
                    }
                }
            }
            REQUIRE(s.intact());
            s.pool->compact();
            CHECK(s.pool->compactable_frames() == 0); // idle reservations taken back too
            REQUIRE(s.intact());
            compactor<arena_type>(s.arena).compact();
            REQUIRE(s.intact());
            // Migrate a random sample of the arena's frames one by one.
            std::size_t migrated = 0;
            for (std::size_t i = 0; i < s.arena.frame_count(); i += 1 + rng() % 7) {
                if (!s.arena.is_free(i)) {
                    migrated +=
                        isolate_and_migrate(s.arena, s.arena.frame_at(i),
                                            rng() % 2 ? migrate_mode::sync : migrate_mode::async);
                }
            }
            CHECK(migrated > 0);
            REQUIRE(s.intact());
            CHECK(s.pool->stats().objects_in_use == live.size());
        }
        // Free everything: the arena gets every frame back (this thread's reserved places once it
        // gives them back).
        for (const zspage_handle h : live) {
            s.remove(h);
        }
        s.pool->release_thread_cache();
        CHECK(s.pool->stats().frames_in_use == 0);
        CHECK(s.arena.free_frames() == s.arena.frame_count());
    }
}

// ---- invariants --------------------------------------------------------------------------------

TEST_CASE("the pool's invariants hold after every allocate, free, write, compaction and "
          "migration") {
    shadowed s(8);
    std::mt19937 rng(77);
    std::vector<zspage_handle> live;
    const auto check = [&] {
        s.pool->check_invariants();
        s.arena.check_invariants();
    };
    for (int step = 0; step < 3000; ++step) {
        CAPTURE(step);
        const unsigned choice = rng() % 100;
        if (live.empty() || choice < 45) {
            const std::size_t size = rng() % 8 == 0 ? 1 + rng() % frame_size : 1 + rng() % 1500;
            if (const zspage_handle h = s.try_add(size)) {
                live.push_back(h);
            }
        } else if (choice < 85) {
            const std::size_t i = rng() % live.size();
            s.remove(live[i]);
            live[i] = live.back();
            live.pop_back();
        } else if (choice < 93) {
            const zspage_handle h = live[rng() % live.size()];
            std::vector<std::byte> bytes = pattern(s.objects[h.value()].size(), s.next_seed++);
            s.pool->write(h, bytes);
            s.objects[h.value()] = std::move(bytes);
        } else if (choice < 96) {
            s.pool->compact();
        } else if (choice < 98) {
            const std::size_t index = rng() % s.arena.frame_count();
            if (!s.arena.is_free(index)) {
                isolate_and_migrate(s.arena, s.arena.frame_at(index),
                                    rng() % 2 ? migrate_mode::sync : migrate_mode::async);
            }
        } else {
            compactor<arena_type>(s.arena).compact();
        }
        check();
    }
    REQUIRE(s.intact());
}

TEST_CASE("check_invariants names a zspage whose in-use count disagrees with its free list") {
    shadowed s(2);
    const zspage_handle h = s.add(100);
    (void)s.add(100);
    CHECK(test::dies_with("zspage_pool::check_invariants: a zspage's free list is longer than "
                          "its free count",
                          [&] {
                              ++access::zspage_of(*s.pool, h).in_use;
                              s.pool->check_invariants();
                          }));
}

TEST_CASE("check_invariants names a handle slot whose location names another object") {
    shadowed s(2);
    const zspage_handle a = s.add(100);
    const zspage_handle b = s.add(100);
    CHECK(test::dies_with("zspage_pool::check_invariants: an allocated handle slot's object "
                          "header does not name that slot",
                          [&] {
                              std::atomic<std::uint64_t>& word_a = access::slot_word(*s.pool, a);
                              std::atomic<std::uint64_t>& word_b = access::slot_word(*s.pool, b);
                              const std::uint64_t w = word_a.load();
                              word_a.store(word_b.load());
                              word_b.store(w);
                              s.pool->check_invariants();
                          }));
}

// ---- statistics ------------------------------------------------------------------------------

TEST_CASE("stats count objects, bytes, zspages, frames and fullness per class") {
    shadowed s(4, {.thread_cache = false}); // fullness counts taken places: no reservations here
    const zspage_size_class& c = s.pool->size_class_for(24); // 32-byte objects, 128 per frame
    for (int i = 0; i < 130; ++i) {
        s.add(24);
    }
    const zspage_pool_stats stats = s.pool->stats();
    const auto it =
        std::find_if(stats.classes.begin(), stats.classes.end(), [&](const zspage_class_stats& x) {
            return x.size_class.object_size == c.object_size;
        });
    REQUIRE(it != stats.classes.end());
    CHECK(it->zspages == 2);
    CHECK(it->frames == 2);
    CHECK(it->objects_allocated == 256);
    CHECK(it->objects_in_use == 130);
    CHECK(it->bytes_in_use == 130 * 24);
    CHECK(it->fullness[zspage_fullness_groups - 1] == 1); // one full
    CHECK(it->fullness[0] == 1);                          // one under 10%
    CHECK(it->frames_freeable == 0);
    CHECK(stats.frames_in_use == 2);
    CHECK(stats.bytes_stored == 130 * 24);
    const std::string table = stats.table();
    CHECK(table.find("class  size") != std::string::npos);
    CHECK(table.find("obj_allocated") != std::string::npos);
    CHECK(table.find("Total") != std::string::npos);
    CHECK(table.find("   32 ") != std::string::npos);
    MESSAGE(table);
}

// ---- contract checks ----------------------------------------------------------------------------

TEST_CASE("double free is caught by the contract check") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    const zspage_handle h = s.add(64);
    s.add(64); // keep the zspage alive
    s.pool->deallocate(h);
    CHECK(test::dies_with("zspage_pool::deallocate: handle is stale",
                          [&] { s.pool->deallocate(h); }));
}

TEST_CASE("a stale handle is caught by read, write, size and map") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    const zspage_handle h = s.add(64);
    s.add(64);
    s.pool->deallocate(h);
    std::byte buffer[8];
    CHECK(test::dies_with("zspage_pool::read: handle is stale", [&] { s.pool->read(h, buffer); }));
    CHECK(
        test::dies_with("zspage_pool::write: handle is stale", [&] { s.pool->write(h, buffer); }));
    CHECK(test::dies_with("zspage_pool::size: handle is stale", [&] { (void)s.pool->size(h); }));
    CHECK(test::dies_with("zspage_pool::map: handle is stale",
                          [&] { (void)s.pool->map(h, zspage_access::read); }));
}

TEST_CASE("a stale handle whose slot was reused is caught by its generation") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    const zspage_handle old = s.add(64);
    s.remove(old);
    const zspage_handle reused = s.add(64);
    REQUIRE((old.value() & 0xffffffff) == (reused.value() & 0xffffffff));
    std::byte buffer[8];
    CHECK(
        test::dies_with("zspage_pool::read: handle is stale", [&] { s.pool->read(old, buffer); }));
    CHECK(test::dies_with("zspage_pool::deallocate: handle is stale",
                          [&] { s.pool->deallocate(old); }));
    CHECK(s.intact());
}

TEST_CASE("a stale handle is caught after its slot was reused 65,536 times") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    s.add(64); // keeps the zspage, so each round only takes and frees a slot
    const zspage_handle first = s.pool->allocate(64);
    const auto slot_of = [](zspage_handle h) { return h.value() & 0xffffffff; };
    s.pool->deallocate(first);
    // 65,535 more allocate/free pairs on the same slot: a 16-bit generation has now cycled.
    for (std::uint32_t round = 1; round < 65536; ++round) {
        const zspage_handle h = s.pool->allocate(64);
        REQUIRE(slot_of(h) == slot_of(first));
        s.pool->deallocate(h);
    }
    const zspage_handle live = s.add(64);
    REQUIRE(slot_of(live) == slot_of(first));
    CHECK(live != first);
    CHECK(test::dies_with("zspage_pool::deallocate: handle is stale",
                          [&] { s.pool->deallocate(first); }));
    std::byte buffer[8];
    CHECK(test::dies_with("zspage_pool::read: handle is stale",
                          [&] { s.pool->read(first, buffer); }));
    CHECK(s.intact()); // the live object survived
}

TEST_CASE("a slot whose generation would wrap is retired, not reused") {
    shadowed s(2);
    s.add(64); // keeps the zspage
    const zspage_handle first = s.pool->allocate(64);
    const std::uint32_t slot = access::slot(first);
    s.pool->deallocate(first);
    constexpr std::uint32_t last = detail::handle_value::last_generation;
    access::set_generation(*s.pool, slot, last - 1); // as after 4,294,967,294 reuses
    const zspage_handle before_last = s.add(64);
    REQUIRE(access::slot(before_last) == slot);
    s.remove(before_last);
    const zspage_handle at_last = s.add(64);
    REQUIRE(access::slot(at_last) == slot);
    CHECK(detail::handle_value::generation(at_last.value()) == last);
    s.remove(at_last); // a next generation would wrap to the first handle's
    CHECK(s.pool->stats().handle_slots_retired == 1);
    const zspage_handle next = s.add(64);
    CHECK(access::slot(next) != slot);
    CHECK(s.intact());
    if (detail::contracts_enabled) {
        std::byte buffer[8];
        for (const zspage_handle stale : {first, before_last, at_last}) {
            CHECK(test::dies_with("zspage_pool::read: handle is stale",
                                  [&] { s.pool->read(stale, buffer); }));
            CHECK(test::dies_with("zspage_pool::deallocate: handle is stale",
                                  [&] { s.pool->deallocate(stale); }));
        }
    }
}

TEST_CASE("a handle the pool never gave out is caught") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    s.add(64);
    std::byte buffer[8];
    CHECK(test::dies_with("zspage_pool::read: handle is stale",
                          [&] { s.pool->read(zspage_handle::from_value(12345), buffer); }));
}

TEST_CASE("writing through a read mapping is caught") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    const zspage_handle h = s.add(64);
    CHECK(test::dies_with("zspage_pool::mapping::writable_bytes: mapped for reading only", [&] {
        pool_type::mapping m = s.pool->map(h, zspage_access::read);
        (void)m.writable_bytes();
    }));
}

TEST_CASE("freeing a mapped object that empties its zspage is caught") {
    MOVABLE_REQUIRE_CONTRACTS();
    // Without a thread cache: with one, the free leaves the zspage its reserved places, so it
    // does not empty (a free of a mapped object is caught only when it empties its zspage).
    shadowed s(2, {.thread_cache = false});
    const zspage_handle h = s.add(64);
    CHECK(test::dies_with("zspage_pool::deallocate: freed an object that is still mapped", [&] {
        pool_type::mapping m = s.pool->map(h, zspage_access::read);
        s.pool->deallocate(h);
    }));
}

TEST_CASE("destroying a pool with a mapped object is caught") {
    MOVABLE_REQUIRE_CONTRACTS();
    shadowed s(2);
    const zspage_handle h = s.add(64);
    CHECK(test::dies_with("zspage_pool::~zspage_pool: an object is still mapped", [&] {
        pool_type::mapping m = s.pool->map(h, zspage_access::read);
        s.pool.reset();
    }));
}
