// Heap exhaustion at every allocation: each scenario runs once without failing, counting the
// allocations its operation makes (N), then again failing at the k-th for every k = 1..N+1, once
// failing only that allocation and once that one and every later one. After each run: the
// operation succeeded or threw std::bad_alloc (or answered "no"), every object stored before and
// during it holds its contents, check_invariants() holds, the pool still allocates and frees, and
// the books of operator new and delete balance once everything is destroyed.
//
// Scenarios: pool construction and growth (class state, handle-table chunks, frame state) for
// every pool; compactor
// begin and its passes, both strategies; object_pool emplace of a type whose constructor
// allocates; the background service's registration and start.
//
// Replaces the global operator new (support/failing_operator_new.hpp), so it is built without
// sanitizers, as allocation_failure_test.
#include <movable/compaction.hpp>
#include <movable/frame_arena.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/service/background_compactor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/failing_operator_new.hpp"

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 6>;                          // 64 frames per max-order block
constexpr std::size_t arena_bytes = 40 * arena_type::block_bytes; // 10 MiB

// Runs `scenario(point)` for every failure point: once counting (k = 0), then k = 1..N+1, with
// the failure once and sticky. The scenario arms `point` around its operation and checks what
// it promises itself; here the books must balance after each run. Returns N.
template <class Scenario>
long for_every_failure_point(Scenario&& scenario) {
    {
        failure_point warm_up(0, false); // first-use allocations of thread-local registries
        scenario(warm_up);
    }
    const long live_before = live_blocks.load();
    failure_point counting(0, false);
    scenario(counting);
    const long n = counting.seen();
    CHECK(live_blocks.load() == live_before);
    for (long k = 1; k <= n + 1; ++k) {
        for (const bool sticky : {false, true}) {
            CAPTURE(k);
            CAPTURE(sticky);
            const long live_at_start = live_blocks.load(); // CAPTURE's first use allocates
            failure_point point(k, sticky);
            scenario(point);
            CHECK(point.failed() == (k <= n));
            CHECK(live_blocks.load() == live_at_start);
        }
    }
    return n;
}

// A byte store's objects and their patterns.
template <class Store>
struct stored_bytes {
    struct object {
        typename Store::handle h;
        std::uint32_t seed;
        std::size_t size;
    };
    std::vector<object> objects;

    // Stores an object of `size` bytes; `point`, armed, sees the store's allocations only.
    bool add(Store& store, std::size_t size, std::uint32_t seed, failure_point* point = nullptr) {
        const typename Store::handle h = store.allocate(size); // throws std::bad_alloc
        if (point != nullptr) {
            point->disarm();
        }
        store.write(h, test::pattern(size, seed));
        objects.push_back({h, seed, size});
        if (point != nullptr) {
            point->arm();
        }
        return true;
    }
    void check_all(const Store& store) const {
        std::size_t damaged = 0;
        for (const object& o : objects) {
            std::vector<std::byte> out(o.size);
            store.read(o.h, out);
            damaged += test::holds_pattern(out, o.seed) ? 0 : 1;
        }
        CHECK(damaged == 0);
    }
    void free_all(Store& store) {
        for (const object& o : objects) {
            store.deallocate(o.h);
        }
        objects.clear();
    }
};

std::size_t isolated_frames(arena_type& arena) {
    std::size_t isolated = 0;
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        isolated += arena.frame_at(i).is_isolated() ? 1 : 0;
    }
    return isolated;
}

std::size_t size_for(std::size_t i) {
    return 24 + (i * 37) % 400;
}

// Pool growth: the pool's construction (class state, handle table, cache registration) and its
// first objects; then, holding 1,000 objects, 100 more: the handle table's second chunk (1,024
// slots each) and new frames with their state.
constexpr std::uint32_t first_objects = 20;
constexpr std::uint32_t held_objects = 1000;
constexpr std::uint32_t growth_objects = 100;

template <class Store>
long store_growth_failure_points() {
    return for_every_failure_point([](failure_point& point) {
        arena_type arena(arena_bytes);
        {
            std::optional<Store> store;
            stored_bytes<Store> stored;
            const auto add_armed = [&](std::uint32_t from, std::uint32_t to) {
                point.run_armed([&] {
                    if (!store) {
                        store.emplace(arena);
                    }
                    for (std::uint32_t i = from; i < to; ++i) {
                        stored.add(*store, size_for(i), i, &point);
                    }
                });
            };
            add_armed(0, first_objects);
            if (!store) {
                return; // its construction failed: nothing was made
            }
            for (auto i = static_cast<std::uint32_t>(stored.objects.size()); i < held_objects;
                 ++i) {
                stored.add(*store, size_for(i), i);
            }
            add_armed(held_objects, held_objects + growth_objects);
            stored.check_all(*store);
            store->check_invariants();
            CHECK(stored.add(*store, 100, 7777)); // still usable
            stored.check_all(*store);
            stored.free_all(*store);
            test::release_thread_cache(*store);
            store->check_invariants();
        }
        arena.check_invariants();
        CHECK(arena.free_frames() == arena.frame_count());
    });
}

// A fragmented store (two thirds of its objects freed at random) that a compactor compacts.
template <class Store>
long compactor_failure_points(compact_strategy strategy) {
    return for_every_failure_point([strategy](failure_point& point) {
        arena_type arena(arena_bytes);
        {
            Store store(arena);
            stored_bytes<Store> stored;
            for (std::uint32_t i = 0; i < 1500; ++i) {
                stored.add(store, size_for(i), i);
            }
            std::mt19937 rng(42);
            std::shuffle(stored.objects.begin(), stored.objects.end(), rng);
            const std::size_t keep = stored.objects.size() / 3;
            for (std::size_t i = keep; i < stored.objects.size(); ++i) {
                store.deallocate(stored.objects[i].h);
            }
            stored.objects.resize(keep);
            test::release_thread_cache(store);
            compact_request request;
            request.strategy = strategy;
            point.run_armed([&] {
                compactor<arena_type> c(arena);
                (void)c.compact(request);
            });
            stored.check_all(store);
            store.check_invariants();
            arena.check_invariants();
            CHECK(isolated_frames(arena) == 0);
            compactor<arena_type> again(arena); // and compaction still works
            (void)again.compact(request);
            stored.check_all(store);
            store.check_invariants();
            stored.free_all(store);
            test::release_thread_cache(store);
        }
        arena.check_invariants();
        CHECK(arena.free_frames() == arena.frame_count());
    });
}

// A type whose constructor allocates (two heap blocks), so emplace can fail inside T too.
struct named_record {
    std::string name;
    std::vector<std::uint32_t> values;
    explicit named_record(std::uint32_t key)
        : name("record number " + std::to_string(key) + " with a name past the small buffer"),
          values(8, key) {}
    [[nodiscard]] bool holds(std::uint32_t key) const {
        return name ==
                   "record number " + std::to_string(key) + " with a name past the small buffer" &&
               values == std::vector<std::uint32_t>(8, key);
    }
};
using record_pool = object_pool<named_record, arena_type>;

long object_pool_emplace_failure_points() {
    return for_every_failure_point([](failure_point& point) {
        arena_type arena(arena_bytes);
        {
            std::optional<record_pool> pool;
            std::vector<std::pair<record_pool::handle, std::uint32_t>> stored;
            stored.reserve(held_objects + growth_objects + 1);
            const auto emplace_armed = [&](std::uint32_t from, std::uint32_t to) {
                point.run_armed([&] {
                    if (!pool) {
                        pool.emplace(arena);
                    }
                    for (std::uint32_t i = from; i < to; ++i) {
                        stored.emplace_back(pool->emplace(i), i);
                    }
                });
            };
            emplace_armed(0, first_objects);
            if (!pool) {
                return; // its construction failed: nothing was made
            }
            for (auto i = static_cast<std::uint32_t>(stored.size()); i < held_objects; ++i) {
                stored.emplace_back(pool->emplace(i), i);
            }
            emplace_armed(held_objects, held_objects + growth_objects);
            std::size_t damaged = 0;
            for (const auto& s : stored) {
                damaged += pool->pin(s.first)->holds(s.second) ? 0 : 1;
            }
            CHECK(damaged == 0);
            CHECK(pool->size() == stored.size());
            pool->check_invariants();
            const record_pool::handle later = pool->emplace(99999); // still usable
            CHECK(pool->pin(later)->holds(99999));
            pool->destroy(later);
            for (const auto& s : stored) {
                pool->destroy(s.first);
            }
            pool->release_thread_cache();
            pool->check_invariants();
        }
        arena.check_invariants();
        CHECK(arena.free_frames() == arena.frame_count());
    });
}

long service_start_failure_points() {
    return for_every_failure_point([](failure_point& point) {
        arena_type arena(arena_bytes);
        {
            zspage_pool<arena_type> store(arena);
            stored_bytes<zspage_pool<arena_type>> stored;
            for (std::uint32_t i = 0; i < 600; ++i) {
                stored.add(store, size_for(i), i);
            }
            background_compactor_options options;
            options.check_interval = std::chrono::hours(1); // the thread only starts and stops
            bool started = false;
            {
                point.arm();
                try {
                    background_compactor service(options);
                    service.add_arena(arena);
                    service.add_source(store);
                    service.start();
                    point.disarm();
                    started = service.running();
                    service.stop();
                } catch (const std::bad_alloc&) {
                }
                point.disarm();
            }
            CHECK((started || point.failed()));
            stored.check_all(store);
            store.check_invariants();
            arena.check_invariants();
            background_compactor service(options); // registration and start still work
            service.add_arena(arena);
            service.add_source(store);
            service.start();
            CHECK(service.running());
            service.stop();
            stored.check_all(store);
            stored.free_all(store);
            store.release_thread_cache();
        }
        arena.check_invariants();
        CHECK(arena.free_frames() == arena.frame_count());
    });
}

} // namespace

TEST_CASE_TEMPLATE("a store growing past its handle table's chunks survives a failed allocation "
                   "at every point",
                   Store, MOVABLE_COMPRESSED_STORES_OVER(arena_type)) {
    const long n = store_growth_failure_points<Store>();
    MESSAGE(std::string(test::store_name<Store>) << " growth: N = " << n);
    CHECK(n >= 3); // the class state, the handle table's first and second chunks at least
}

TEST_CASE("an object_pool growing past its handle table's chunks survives a failed allocation at "
          "every point, in T's constructor too") {
    const long n = object_pool_emplace_failure_points();
    MESSAGE("object_pool emplace: N = " << n);
    CHECK(n >= 2 * (first_objects + growth_objects)); // T's two blocks per object at least
}

TEST_CASE_TEMPLATE("a compaction whose begin or pass fails to allocate loses no object and no "
                   "frame",
                   Store, MOVABLE_COMPRESSED_STORES_OVER(arena_type)) {
    for (const compact_strategy strategy :
         {compact_strategy::least_moves, compact_strategy::scanners}) {
        CAPTURE(static_cast<int>(strategy));
        const long n = compactor_failure_points<Store>(strategy);
        MESSAGE(std::string(test::store_name<Store>)
                << " compaction (strategy " << static_cast<int>(strategy) << "): N = " << n);
        CHECK(n >= 1);
    }
}

TEST_CASE("the background service's registration and start fail cleanly at every allocation") {
    const long n = service_start_failure_points();
    MESSAGE("background_compactor register + start: N = " << n);
    CHECK(n >= 3); // two entries and the thread
}
