// The compressed_store conformance suite (models/compressed_store.hpp), written once and run for
// every store in MOVABLE_COMPRESSED_STORES: contents survive churn, pool compaction and arena
// compaction; bad sizes, empty and stale handles and oversized spans fail as documented; every
// frame is accounted for. The threaded half is compressed_store_concurrency_test.cpp.
#include <movable/compaction.hpp>
#include <movable/models/compressed_store.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/death_test.hpp"

using namespace movable;
using movable::test::holds_pattern;
using movable::test::pattern;
using movable::test::stale_message;
using movable::test::store_arena;

static_assert(compressed_store<zspage_pool<>> && compressed_store<zbud_pool<>> &&
              compressed_store<z3fold_pool<>>);
static_assert(!compressed_store<store_arena>);

namespace {

// A store over its own arena and a shadow copy of every live object.
template <class Store>
struct shadowed {
    explicit shadowed(std::size_t blocks)
        : arena(blocks * store_arena::block_bytes), store(std::make_unique<Store>(arena)) {}

    typename Store::handle add(std::size_t size) {
        const auto h = store->allocate(size);
        const std::uint32_t seed = next_seed++;
        store->write(h, pattern(size, seed));
        objects[h.value()] = {size, seed};
        return h;
    }
    // As add, but nothing when the arena is exhausted.
    void try_add(std::size_t size) {
        if (const auto h = store->try_allocate(size)) {
            const std::uint32_t seed = next_seed++;
            store->write(h, pattern(size, seed));
            objects[h.value()] = {size, seed};
        }
    }
    void remove(typename Store::handle h) {
        store->deallocate(h);
        objects.erase(h.value());
    }
    // Every live object still has its size and its bytes.
    [[nodiscard]] bool intact() const {
        for (const auto& [value, object] : objects) {
            const auto h = Store::handle::from_value(value);
            std::vector<std::byte> got(object.first);
            if (store->size(h) != object.first) {
                return false;
            }
            store->read(h, got);
            if (!holds_pattern(got, object.second)) {
                return false;
            }
        }
        return true;
    }
    // The arena's free frames and the store's frames make up the arena.
    [[nodiscard]] bool frames_accounted() const {
        return arena.free_frames() + store->stats().frames_in_use == arena.frame_count();
    }
    [[nodiscard]] std::vector<typename Store::handle> handles() const {
        std::vector<typename Store::handle> out;
        for (const auto& entry : objects) {
            out.push_back(Store::handle::from_value(entry.first));
        }
        return out;
    }

    store_arena arena;
    std::unique_ptr<Store> store;
    std::map<std::uint64_t, std::pair<std::size_t, std::uint32_t>> objects; // size, seed
    std::uint32_t next_seed = 1;
};

// Sizes of compressed 4 KiB pages: mostly 0.8..2.2 KiB, some tiny, some barely compressed.
std::size_t compressed_page_size(std::mt19937& rng, std::size_t max) {
    const unsigned kind = rng() % 10;
    if (kind == 0) {
        return 1 + rng() % 400;
    }
    if (kind < 8) {
        return 800 + rng() % 1400;
    }
    return 2200 + rng() % (max - 2200 + 1);
}

} // namespace

TEST_CASE_TEMPLATE("objects of every size from 1 byte to the maximum keep their bytes and size",
                   Store, MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(64);
    const std::size_t max = s.store->max_object_size();
    for (std::size_t size = 1; size <= max; size += 1 + size / 32) {
        s.add(size);
    }
    s.add(max);
    CHECK(s.intact());
    const auto stats = s.store->stats();
    CHECK(stats.objects_in_use == s.objects.size());
    std::size_t bytes = 0;
    for (const auto& entry : s.objects) {
        bytes += entry.second.first;
    }
    CHECK(stats.bytes_stored == bytes);
    CHECK(s.frames_accounted());
    s.store->check_invariants();
}

TEST_CASE_TEMPLATE("bad sizes throw invalid_argument; try_allocate returns the empty handle", Store,
                   MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(1);
    const std::size_t max = s.store->max_object_size();
    CHECK_THROWS_AS((void)s.store->allocate(0), std::invalid_argument);
    CHECK_THROWS_AS((void)s.store->allocate(max + 1), std::invalid_argument);
    CHECK_FALSE(s.store->try_allocate(0));
    CHECK_FALSE(s.store->try_allocate(max + 1));
    CHECK(s.store->stats().frames_in_use == 0);
    CHECK(s.frames_accounted());
}

TEST_CASE_TEMPLATE("an exhausted arena makes allocate throw bad_alloc and try_allocate return "
                   "empty; freeing makes room again",
                   Store, MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(1);
    const std::size_t max = s.store->max_object_size();
    std::vector<typename Store::handle> added;
    for (std::size_t i = 0; i < store_arena::block_frames; ++i) {
        added.push_back(s.add(max));
    }
    CHECK_THROWS_AS((void)s.store->allocate(max), std::bad_alloc);
    CHECK_FALSE(s.store->try_allocate(max));
    CHECK(s.intact());
    s.remove(added[3]);
    CHECK(s.store->try_allocate(max));
    CHECK(s.arena.free_frames() == 0);
}

TEST_CASE_TEMPLATE("the empty handle is rejected by every call that takes a handle", Store,
                   MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(1);
    std::byte buffer[8];
    CHECK_THROWS_AS(s.store->deallocate({}), std::invalid_argument);
    CHECK_THROWS_AS(s.store->read({}, buffer), std::invalid_argument);
    CHECK_THROWS_AS(s.store->write({}, buffer), std::invalid_argument);
    CHECK_THROWS_AS((void)s.store->size({}), std::invalid_argument);
    CHECK_THROWS_AS((void)s.store->map({}, store_access::read), std::invalid_argument);
}

TEST_CASE_TEMPLATE("spans larger than the object throw out_of_range; prefixes are fine", Store,
                   MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(1);
    const auto h = s.add(100);
    std::vector<std::byte> big(101);
    CHECK_THROWS_AS(s.store->read(h, big), std::out_of_range);
    CHECK_THROWS_AS(s.store->write(h, big), std::out_of_range);
    std::vector<std::byte> prefix(40);
    s.store->read(h, prefix);
    CHECK(std::equal(prefix.begin(), prefix.end(),
                     pattern(100, s.objects[h.value()].second).begin()));
    CHECK(s.store->compact() == 0); // nothing pinned is left behind either way
    CHECK(s.intact());
}

TEST_CASE_TEMPLATE("handles are opaque integers that survive a round trip through value()", Store,
                   MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(1);
    const auto h = s.add(50);
    CHECK(h.value() != 0);
    CHECK(Store::handle::from_value(h.value()) == h);
    CHECK(s.store->size(Store::handle::from_value(h.value())) == 50);
    CHECK_FALSE(typename Store::handle{});
}

TEST_CASE_TEMPLATE("a write mapping changes the object in place; a read mapping shows it", Store,
                   MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(2);
    const auto h = s.add(300);
    {
        auto m = s.store->map(h, store_access::write);
        CHECK(m.bytes().size() == 300);
        test::fill_pattern(m.writable_bytes(), 4242);
    }
    s.objects[h.value()].second = 4242;
    auto m = s.store->map(h, store_access::read);
    CHECK(holds_pattern(m.bytes(), 4242));
    m.unmap();
    CHECK(s.intact());
}

TEST_CASE_TEMPLATE("random churn stays intact through pool compaction and arena compaction, and "
                   "every frame is accounted for",
                   Store, MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(16);
    std::mt19937 rng(2024);
    const std::size_t max = s.store->max_object_size();
    CHECK(s.frames_accounted());
    for (int round = 0; round < 6; ++round) {
        for (int i = 0; i < 400; ++i) {
            if (s.objects.empty() || rng() % 100 < 55) {
                s.try_add(compressed_page_size(rng, max));
            } else {
                auto handles = s.handles();
                s.remove(handles[rng() % handles.size()]);
            }
        }
        CHECK(s.intact());
        CHECK(s.frames_accounted());
        s.store->check_invariants();
        const std::size_t before = s.store->stats().frames_in_use;
        const std::size_t freed = s.store->compact();
        CHECK(s.store->stats().frames_in_use == before - freed);
        CHECK(s.intact());
        CHECK(s.frames_accounted());
        s.store->check_invariants();
        compactor<store_arena>(s.arena).compact();
        CHECK(s.intact());
        CHECK(s.frames_accounted());
        s.store->check_invariants();
        s.arena.check_invariants();
    }
    for (const auto h : s.handles()) {
        s.remove(h);
    }
    test::release_thread_cache(*s.store);
    CHECK(s.store->stats().frames_in_use == 0);
    CHECK(s.arena.free_frames() == s.arena.frame_count());
}

TEST_CASE_TEMPLATE("a mapped object stays in place and intact through pool and arena compaction",
                   Store, MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(4);
    std::vector<typename Store::handle> added;
    for (int i = 0; i < 40; ++i) {
        added.push_back(s.add(700));
    }
    for (std::size_t i = 0; i < added.size(); i += 2) {
        s.remove(added[i]);
    }
    const auto pinned = added[1];
    auto m = s.store->map(pinned, store_access::read);
    const std::byte* where = m.bytes().data();
    s.store->compact();
    compactor<store_arena>(s.arena).compact();
    CHECK(m.bytes().data() == where);
    CHECK(holds_pattern(m.bytes(), s.objects[pinned.value()].second));
    m.unmap();
    CHECK(s.intact());
    CHECK(s.frames_accounted());
}

TEST_CASE_TEMPLATE("destroying a store frees every object and frame", Store,
                   MOVABLE_COMPRESSED_STORES) {
    shadowed<Store> s(16);
    for (int i = 0; i < 30; ++i) {
        s.add(100 + static_cast<std::size_t>(i) * 90);
    }
    CHECK(s.arena.free_frames() < s.arena.frame_count());
    s.store.reset();
    CHECK(s.arena.free_frames() == s.arena.frame_count());
}

TEST_CASE_TEMPLATE("double free and stale handles are caught by the contract checks, naming the "
                   "call",
                   Store, MOVABLE_COMPRESSED_STORES) {
    if (!detail::contracts_enabled) {
        return;
    }
    shadowed<Store> s(1);
    const auto h = s.add(64);
    s.remove(h);
    std::byte buffer[8];
    CHECK(test::dies_with(stale_message<Store>("deallocate").c_str(),
                          [&] { s.store->deallocate(h); }));
    CHECK(test::dies_with(stale_message<Store>("read").c_str(), [&] { s.store->read(h, buffer); }));
    CHECK(
        test::dies_with(stale_message<Store>("write").c_str(), [&] { s.store->write(h, buffer); }));
    CHECK(test::dies_with(stale_message<Store>("size").c_str(), [&] { (void)s.store->size(h); }));
    CHECK(test::dies_with(stale_message<Store>("map").c_str(),
                          [&] { (void)s.store->map(h, store_access::read); }));
    // The slot reused by a new object: the old handle is still stale (its generation).
    const auto reused = s.add(64);
    CHECK(reused != h);
    CHECK(test::dies_with(stale_message<Store>("read").c_str(), [&] { s.store->read(h, buffer); }));
    // A handle the store never gave out.
    const auto never = Store::handle::from_value(h.value() + 12345);
    CHECK(test::dies_with(stale_message<Store>("read").c_str(),
                          [&] { s.store->read(never, buffer); }));
}
