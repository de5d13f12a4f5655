// Shake mode (shake.hpp): under shake every compaction moves every movable frame, every unpin
// moves the object, every N-th allocation shakes the pool, and contents stay intact through all
// of it (checked against a shadow copy) for the four pools and the arena with a user owner; an
// owner that keeps a raw pointer into a frame across a compaction is caught (AddressSanitizer's
// report, or the poison pattern in builds without it) while the same owner without shake is
// not; shake is off by default.
#include <movable/compaction.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/shake.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "support/arena_frames.hpp"
#include "support/compressed_stores.hpp"
#include "support/death_test.hpp"

using namespace movable;
using movable::test::holds_pattern;
using movable::test::pattern;
using movable::test::store_arena;

namespace {

constexpr shake_options shake_on{.enabled = true};

// Frames of `arena` whose owner is `owner`.
template <class Arena>
std::size_t frames_owned_by(Arena& arena, const void* owner) {
    std::size_t frames = 0;
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        if (!arena.is_free(i) && is_movable(arena.frame_at(i)) &&
            arena.frame_at(i).owner() == owner) {
            ++frames;
        }
    }
    return frames;
}

// A store over its own arena, both shaken, and a shadow copy of every live object.
template <class Store>
struct shaken_store {
    store_arena arena{16 * store_arena::block_bytes};
    std::unique_ptr<Store> store = std::make_unique<Store>(arena);
    std::map<std::uint64_t, std::pair<std::size_t, std::uint32_t>> objects; // size, seed
    std::uint32_t next_seed = 1;

    shaken_store() {
        arena.shake().set(shake_on);
        store->shake().set(shake_on);
    }
    typename Store::handle add(std::size_t size) {
        const auto h = store->allocate(size);
        store->write(h, pattern(size, next_seed));
        objects[h.value()] = {size, next_seed++};
        return h;
    }
    [[nodiscard]] bool intact() const {
        for (const auto& [value, object] : objects) {
            std::vector<std::byte> got(object.first);
            store->read(Store::handle::from_value(value), got);
            if (!holds_pattern(got, object.second)) {
                return false;
            }
        }
        return true;
    }
};

} // namespace

TEST_CASE("shake is off by default") {
    CHECK_FALSE(shake_by_default);
    store_arena arena(store_arena::block_bytes);
    CHECK_FALSE(arena.shake().enabled());
    zspage_pool<store_arena> pool(arena);
    CHECK_FALSE(pool.shake().enabled());
    const auto h = pool.allocate(100);
    const void* before = nullptr;
    {
        const auto m = pool.map(h, store_access::read);
        before = m.bytes().data();
    }
    CHECK(pool.map(h, store_access::read).bytes().data() == before); // the unpin moved nothing
    pool.compact();
    CHECK(pool.shake().frames_moved() == 0);
    CHECK(pool.shake().shakes() == 0);
    pool.deallocate(h);
}

TEST_CASE("the README's run-time switch turns shake on for an arena and a pool") {
    store_arena arena(4 * store_arena::block_bytes);
    zbud_pool<store_arena> pool(arena);
    arena.shake().set({.enabled = true});
    pool.shake().set({.enabled = true, .every_nth_allocation = 16});
    std::vector<zbud_pool<store_arena>::handle> handles;
    for (int i = 0; i < 32; ++i) {
        handles.push_back(pool.allocate(100));
    }
    CHECK(pool.shake().shakes() == 2);
    CHECK(pool.shake().frames_moved() > 0);
    for (const auto h : handles) {
        pool.deallocate(h);
    }
}

TEST_CASE("shake_switch keeps its options and counts every N-th allocation") {
    shake_switch s;
    CHECK_FALSE(s.allocation_due()); // off
    s.set({.enabled = true, .every_nth_allocation = 3});
    CHECK(s.options().enabled);
    CHECK(s.options().every_nth_allocation == 3);
    std::vector<bool> due;
    for (int i = 0; i < 6; ++i) {
        due.push_back(s.allocation_due());
    }
    CHECK(due == std::vector<bool>{false, false, true, false, false, true});
    s.set({.enabled = true, .every_nth_allocation = 0});
    CHECK_FALSE(s.allocation_due());
}

TEST_CASE_TEMPLATE("under shake a store's unpins, compactions and N-th allocations move its "
                   "objects and keep them intact",
                   Store, MOVABLE_COMPRESSED_STORES) {
    shaken_store<Store> s;
    std::vector<typename Store::handle> handles;
    for (std::size_t i = 0; i < 60; ++i) {
        handles.push_back(s.add(40 + (i % 5) * 130)); // a few size classes, well filled
    }
    REQUIRE(s.intact());

    SUBCASE("every unpin moves the object") {
        for (std::size_t i = 0; i < handles.size(); i += 7) {
            const void* before = nullptr;
            std::size_t size = 0;
            {
                const auto m = s.store->map(handles[i], store_access::read);
                size = m.bytes().size();
                REQUIRE(holds_pattern(m.bytes(), s.objects[handles[i].value()].second));
                before = m.copied() ? nullptr : m.bytes().data();
            }
            const auto m = s.store->map(handles[i], store_access::read);
            CHECK(m.bytes().size() == size);
            if (before != nullptr && !m.copied()) {
                CHECK(m.bytes().data() != before);
            }
        }
        CHECK(s.store->shake().frames_moved() > 0);
        CHECK(s.intact());
    }

    SUBCASE("every compaction moves every frame of the pool") {
        for (std::size_t i = 0; i < handles.size(); i += 2) {
            s.store->deallocate(handles[i]);
            s.objects.erase(handles[i].value());
        }
        for (int round = 0; round < 2; ++round) { // the second one on a compact pool
            const std::size_t moved_before = s.store->shake().frames_moved();
            s.store->compact();
            const std::size_t frames = frames_owned_by(s.arena, s.store.get());
            CHECK(frames > 0);
            CHECK(s.store->shake().frames_moved() - moved_before == frames);
            CHECK(s.intact());
        }
    }

    SUBCASE("every N-th allocation shakes the pool") {
        s.store->shake().set({.enabled = true, .every_nth_allocation = 4});
        const std::size_t shakes_before = s.store->shake().shakes();
        const std::size_t moved_before = s.store->shake().frames_moved();
        for (int i = 0; i < 12; ++i) {
            s.add(64);
        }
        CHECK(s.store->shake().shakes() - shakes_before == 3);
        CHECK(s.store->shake().frames_moved() - moved_before >= 3);
        CHECK(s.intact());
    }

    SUBCASE("arena compaction moves every frame of the store") {
        compactor<store_arena> c(s.arena);
        const std::size_t frames = frames_owned_by(s.arena, s.store.get());
        const compact_stats stats = c.compact();
        CHECK(stats.shaken == frames);
        CHECK(s.intact());
    }

    for (const auto& [value, object] : s.objects) {
        s.store->deallocate(Store::handle::from_value(value));
    }
}

namespace {
struct record {
    std::uint64_t key = 0;
    std::array<std::uint64_t, 7> payload{};
};
using object_arena = frame_arena<4096, 4>;
} // namespace

TEST_CASE("under shake object_pool's unpins, compactions and N-th emplaces move its objects and "
          "keep them intact") {
    object_arena arena(8 * object_arena::block_bytes);
    arena.shake().set(shake_on);
    object_pool<record, object_arena> pool(arena, {.thread_cache = false});
    pool.shake().set(shake_on);
    std::map<std::uint64_t, std::uint64_t> shadow; // handle value -> key
    std::vector<object_pool<record, object_arena>::handle> handles;
    for (std::uint64_t key = 1; key <= 300; ++key) {
        record r;
        r.key = key;
        r.payload.fill(key * 3);
        handles.push_back(pool.emplace(r));
        shadow[handles.back().value()] = key;
    }
    const auto intact = [&] {
        bool ok = true;
        for (const auto& entry : shadow) {
            const std::uint64_t key = entry.second;
            pool.visit(
                object_pool<record, object_arena>::handle::from_value(entry.first),
                [&](const record& r) { ok = ok && r.key == key && r.payload[6] == key * 3; });
        }
        return ok;
    };

    SUBCASE("every unpin moves the object") {
        for (std::size_t i = 0; i < handles.size(); i += 13) {
            const record* before = pool.pin(handles[i]).get();
            const auto p = pool.pin(handles[i]);
            CHECK(p.get() != before);
            CHECK(p->key == shadow[handles[i].value()]);
        }
        CHECK(intact());
    }

    SUBCASE("every compaction moves every frame of the pool") {
        for (std::size_t i = 0; i < handles.size(); i += 3) {
            pool.destroy(handles[i]);
            shadow.erase(handles[i].value());
        }
        for (int round = 0; round < 2; ++round) {
            const std::size_t moved_before = pool.shake().frames_moved();
            pool.compact();
            const std::size_t frames = frames_owned_by(arena, &pool);
            CHECK(frames == pool.stats().frames);
            CHECK(pool.shake().frames_moved() - moved_before == frames);
            CHECK(intact());
        }
    }

    SUBCASE("every N-th emplace shakes the pool") {
        pool.shake().set({.enabled = true, .every_nth_allocation = 5});
        const std::size_t shakes_before = pool.shake().shakes();
        for (std::uint64_t key = 1000; key < 1010; ++key) {
            record r;
            r.key = key;
            r.payload.fill(key * 3);
            shadow[pool.emplace(r).value()] = key;
        }
        CHECK(pool.shake().shakes() - shakes_before == 2);
        CHECK(intact());
    }
    pool.check_invariants();
}

namespace {
using owner_arena = frame_arena<4096, 4>;
using owner_type = test::arena_owner<owner_arena>;
} // namespace

TEST_CASE("under shake every arena compaction moves every movable frame, compact or not") {
    owner_arena arena(4 * owner_arena::block_bytes);
    test::arena_frames<owner_arena> frames{arena};
    owner_type owner(frames);
    for (std::size_t page = 0; page < 20; ++page) {
        REQUIRE(owner.add_page(page) != nullptr);
    }
    frame& unmovable = arena.allocate(0, frame_kind::unmovable);
    arena.shake().set(shake_on);
    for (const compact_strategy strategy :
         {compact_strategy::least_moves, compact_strategy::scanners,
          compact_strategy::least_moves}) {
        compactor<owner_arena> c(arena);
        compact_request request;
        request.strategy = strategy;
        const compact_stats stats = c.compact(request);
        CHECK(stats.shaken == 20); // the unmovable frame stays
        for (std::size_t page = 0; page < 20; ++page) {
            CHECK(owner.page_intact(page));
        }
    }
    CHECK(arena.shake().frames_moved() == 60);
    CHECK(arena.shake().shakes() == 3);
    arena.deallocate(unmovable);
    arena.check_invariants();
}

TEST_CASE("without shake a compaction of a compact arena moves nothing") {
    owner_arena arena(4 * owner_arena::block_bytes);
    test::arena_frames<owner_arena> frames{arena};
    owner_type owner(frames);
    for (std::size_t page = 0; page < 16; ++page) {
        REQUIRE(owner.add_page(page) != nullptr);
    }
    compactor<owner_arena> c(arena);
    const compact_stats stats = c.compact();
    CHECK(stats.shaken == 0);
    CHECK(stats.migrated == 0);
}

namespace {

// A buggy owner's use: it keeps a raw pointer into its page's frame across a compaction, then
// reads through it. Returns the byte it read.
unsigned char read_through_stale_pointer(bool shake) {
    owner_arena arena(2 * owner_arena::block_bytes);
    test::arena_frames<owner_arena> frames{arena};
    owner_type owner(frames);
    arena.shake().set({.enabled = shake});
    frame* f = owner.add_page(0);
    const auto* raw = reinterpret_cast<const volatile unsigned char*>(arena.address_of(*f));
    compactor<owner_arena> c(arena);
    (void)c.compact();
    return raw[0]; // the bug: the page may have moved
}

} // namespace

TEST_CASE("an owner that keeps a raw pointer across a compaction is caught under shake") {
    // Without shake, the arena is compact and nothing moves: the bug hides.
    const test::death_result hidden = test::run_expecting_death([] {
        owner_arena arena(2 * owner_arena::block_bytes);
        test::arena_frames<owner_arena> frames{arena};
        owner_type owner(frames);
        frame* f = owner.add_page(0);
        const auto* raw = reinterpret_cast<const volatile unsigned char*>(arena.address_of(*f));
        const unsigned char before = raw[0];
        compactor<owner_arena> c(arena);
        (void)c.compact();
        ::_exit(raw[0] == before ? 0 : 3);
    });
    CHECK_FALSE(hidden.aborted);
    CHECK(hidden.stderr_text.find("AddressSanitizer") == std::string::npos);
    CHECK(read_through_stale_pointer(false) != shake_poison_byte);

    if constexpr (shake_poisons_for_asan) {
        // The stale read is reported as a use of poisoned memory.
        const test::death_result caught =
            test::run_expecting_death([] { (void)read_through_stale_pointer(true); });
        CHECK(caught.stderr_text.find("AddressSanitizer: use-after-poison") != std::string::npos);
    } else {
        // Without AddressSanitizer the old place reads as the poison pattern.
        CHECK(read_through_stale_pointer(true) == shake_poison_byte);
    }
}

TEST_CASE("a frame freed under shake is poisoned and comes back clean") {
    owner_arena arena(owner_arena::block_bytes);
    arena.shake().set(shake_on);
    frame& f = arena.allocate();
    std::byte* memory = arena.address_of(f);
    std::memset(memory, 0x11, owner_arena::frame_size);
    arena.deallocate(f);
    frame& again = arena.allocate(); // the same frame: the lowest free one
    REQUIRE(&again == &f);
    // Readable again (AddressSanitizer would report otherwise), still holding the pattern.
    CHECK(static_cast<unsigned char>(memory[0]) == shake_poison_byte);
    CHECK(static_cast<unsigned char>(memory[owner_arena::frame_size - 1]) == shake_poison_byte);
    std::memset(memory, 0, owner_arena::frame_size);
    arena.deallocate(again);
}
