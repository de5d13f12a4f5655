#include <movable/models/object_pool.hpp>

#include <movable/compaction.hpp>
#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstdint>
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
#include "support/object_pool_access.hpp"

using namespace movable;
using movable::test::isolate_and_migrate;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block

// A record that points into its own string: a move that did not fix the pointer up (a raw
// byte copy) would leave `tail` pointing into the old object.
struct self_ref {
    std::string text;
    const char* tail = nullptr; // text.data() + 1 (inside text's buffer, maybe its SSO buffer)
    std::uint64_t key = 0;

    self_ref(std::string t, std::uint64_t k) : text(std::move(t)), tail(text.data() + 1), key(k) {}
    self_ref(self_ref&& other) noexcept
        : text(std::move(other.text)), tail(text.data() + 1), key(other.key) {
        other.tail = nullptr;
    }
    self_ref(const self_ref&) = delete;
    self_ref& operator=(const self_ref&) = delete;
    self_ref& operator=(self_ref&&) = delete;
    ~self_ref() = default;

    [[nodiscard]] bool intact() const { return tail == text.data() + 1; }
};
static_assert(!relocation_traits<self_ref>::by_memcpy);

// Counts constructions, moves and destructions of every object of the type.
struct counted {
    static inline long constructed = 0;
    static inline long moves = 0;
    static inline long destroyed = 0;
    static void reset() { constructed = moves = destroyed = 0; }
    static long alive() { return constructed + moves - destroyed; }

    std::uint64_t value;
    std::array<std::byte, 40> padding{};

    explicit counted(std::uint64_t v) : value(v) { ++constructed; }
    counted(counted&& other) noexcept : value(other.value) { ++moves; }
    counted(const counted&) = delete;
    counted& operator=(const counted&) = delete;
    counted& operator=(counted&&) = delete;
    ~counted() { ++destroyed; }
};

// A type with a move constructor that the pool must not call: declared trivially relocatable.
struct declared_relocatable {
    static inline long moves = 0;
    std::unique_ptr<std::uint64_t> value;
    explicit declared_relocatable(std::uint64_t v) : value(std::make_unique<std::uint64_t>(v)) {}
    declared_relocatable(declared_relocatable&& other) noexcept : value(std::move(other.value)) {
        ++moves;
    }
    declared_relocatable(const declared_relocatable&) = delete;
    declared_relocatable& operator=(const declared_relocatable&) = delete;
    declared_relocatable& operator=(declared_relocatable&&) = delete;
    ~declared_relocatable() = default;
};

} // namespace

template <>
struct movable::trivially_relocatable<declared_relocatable> : std::true_type {};

namespace {

struct plain {
    std::uint64_t a;
    std::uint64_t b;
};

template <class T, class Pool>
const T* address_of(Pool& pool, object_handle<T> h) {
    return pool.pin(h).get();
}

} // namespace

TEST_CASE("emplace constructs an object that pin and visit reach through its handle") {
    arena_type arena(4 * arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    const object_handle<plain> h = pool.emplace(plain{1, 2});
    REQUIRE(h);
    CHECK(pool.size() == 1);
    {
        pinned<plain> p = pool.pin(h);
        CHECK(p->a == 1);
        CHECK((*p).b == 2);
        p->b = 7;
    }
    CHECK(pool.visit(h, [](const plain& v) { return v.b; }) == 7);
    const auto& const_pool = pool;
    const pinned<const plain> c = const_pool.pin(h);
    CHECK(c.get()->a == 1);
    pool.check_invariants();
}

TEST_CASE("an object_handle is one integer, empty by default, and round-trips through value") {
    static_assert(sizeof(object_handle<plain>) == sizeof(std::uint64_t));
    const object_handle<plain> empty;
    CHECK_FALSE(empty);
    CHECK(empty.value() == 0);
    arena_type arena(4 * arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    const auto a = pool.emplace(plain{1, 1});
    const auto b = pool.emplace(plain{2, 2});
    CHECK(a != b);
    const auto copy = object_handle<plain>::from_value(a.value());
    CHECK(copy == a);
    CHECK(pool.pin(copy)->a == 1);
}

TEST_CASE("objects never straddle a frame and honour alignof(T)") {
    struct alignas(256) wide {
        std::array<std::byte, 300> bytes;
    };
    using pool_type = object_pool<wide, arena_type>;
    static_assert(pool_type::object_stride == 512);
    static_assert(pool_type::objects_per_frame == 8);
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    std::vector<object_handle<wide>> handles;
    for (int i = 0; i < 40; ++i) {
        handles.push_back(pool.emplace());
    }
    for (const auto h : handles) {
        const pinned<wide> p = pool.pin(h);
        const auto address = reinterpret_cast<std::uintptr_t>(p.get());
        CHECK(address % alignof(wide) == 0);
        CHECK(address % arena_type::frame_size + sizeof(wide) <= arena_type::frame_size);
    }
    CHECK(pool.stats().frames == 5);
}

TEST_CASE("destroy runs the destructor and frees the place; one emptied frame is kept in "
          "reserve, the next goes back, and compact frees the reserve") {
    counted::reset();
    using pool_type = object_pool<counted, arena_type>;
    arena_type arena(4 * arena_type::block_bytes);
    {
        pool_type pool(arena);
        const std::size_t frames_before = arena.free_frames();
        const auto h = pool.emplace(7u);
        CHECK(arena.free_frames() == frames_before - 1);
        pool.destroy(h);
        CHECK(counted::destroyed == 1);
        CHECK(pool.size() == 0);
        CHECK(pool.stats().frames == 1); // the reserve
        CHECK(arena.free_frames() == frames_before - 1);
        pool.check_invariants();
        // The next emplace takes the reserve instead of a new frame.
        const auto again = pool.emplace(8u);
        CHECK(arena.free_frames() == frames_before - 1);
        CHECK(pool.stats().frames == 1);
        // Two emptied frames: one stays in reserve, the other goes back at once.
        std::vector<object_handle<counted>> second;
        for (std::size_t i = 0; i < pool_type::objects_per_frame; ++i) {
            second.push_back(pool.emplace(i));
        }
        CHECK(pool.stats().frames == 2);
        pool.destroy(again);
        for (const auto h2 : second) {
            pool.destroy(h2);
        }
        // Destroyed objects' places stay reserved for this thread's next emplace until it gives
        // them back (or exits, or compact() takes them).
        CHECK(pool.stats().reserved_places > 0);
        CHECK(pool.stats().reserved_places <= pool_type::magazine_capacity);
        pool.release_thread_cache();
        CHECK(pool.stats().reserved_places == 0);
        CHECK(pool.stats().frames == 1);
        CHECK(arena.free_frames() == frames_before - 1);
        pool.check_invariants();
        CHECK(pool.compact() == 1);
        CHECK(pool.stats().frames == 0);
        CHECK(arena.free_frames() == frames_before);
        pool.check_invariants();
    }
    CHECK(counted::alive() == 0);
}

TEST_CASE("a constructor that throws leaves nothing allocated and passes its exception") {
    struct throws_on_zero {
        int v;
        explicit throws_on_zero(int x) : v(x) {
            if (x == 0) {
                throw std::runtime_error("zero");
            }
        }
    };
    arena_type arena(4 * arena_type::block_bytes);
    object_pool<throws_on_zero, arena_type> pool(arena);
    const std::size_t frames_before = arena.free_frames();
    CHECK_THROWS_AS((void)pool.emplace(0), std::runtime_error);
    CHECK(pool.size() == 0);
    // Its place went back to this thread's reservations; given back, nothing is left.
    CHECK(pool.stats().reserved_places > 0);
    pool.check_invariants();
    pool.release_thread_cache(); // the emptied frame is kept in reserve, as destroy keeps one
    CHECK(pool.stats().reserved_places == 0);
    CHECK(pool.stats().frames == 1);
    CHECK(pool.stats().reserve_frames == 1);
    CHECK(pool.compact() == 1);
    CHECK(arena.free_frames() == frames_before);
    CHECK(pool.stats().frames == 0);
    const auto kept = pool.emplace(1);
    CHECK_THROWS_AS((void)pool.try_emplace(0), std::runtime_error);
    CHECK(pool.size() == 1);
    CHECK(pool.stats().frames == 1);
    CHECK(pool.pin(kept)->v == 1);
    pool.check_invariants();
}

TEST_CASE("emplace throws bad_alloc and try_emplace answers empty when the arena is full") {
    arena_type arena(arena_type::block_bytes); // 16 frames
    object_pool<plain, arena_type> pool(arena);
    std::vector<object_handle<plain>> handles;
    for (;;) {
        const auto h = pool.try_emplace(plain{1, 2});
        if (!h) {
            break;
        }
        handles.push_back(h);
    }
    CHECK(handles.size() == 16 * object_pool<plain, arena_type>::objects_per_frame);
    CHECK_THROWS_AS((void)pool.emplace(plain{3, 4}), std::bad_alloc);
    pool.destroy(handles.back());
    CHECK(pool.try_emplace(plain{5, 6}));
    pool.check_invariants();
}

TEST_CASE("the empty handle is refused with invalid_argument") {
    arena_type arena(arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    CHECK_THROWS_AS(pool.destroy({}), std::invalid_argument);
    CHECK_THROWS_AS((void)pool.pin({}), std::invalid_argument);
    CHECK_THROWS_AS((void)pool.visit({}, [](plain&) {}), std::invalid_argument);
}

TEST_CASE("compact repacks a sparse pool into the fewest frames and keeps every object") {
    counted::reset();
    arena_type arena(16 * arena_type::block_bytes);
    {
        object_pool<counted, arena_type> pool(arena);
        std::vector<std::pair<object_handle<counted>, std::uint64_t>> live;
        for (std::uint64_t i = 0; i < 3000; ++i) {
            live.emplace_back(pool.emplace(i * 3 + 1), i * 3 + 1);
        }
        std::shuffle(live.begin(), live.end(), std::mt19937(7));
        for (std::size_t i = 1200; i < live.size(); ++i) { // destroy 60% at random
            pool.destroy(live[i].first);
        }
        live.resize(1200);
        const object_pool_stats before = pool.stats();
        CHECK(before.frames > before.min_frames * 2);
        const long moves_before = counted::moves;
        const std::size_t freed = pool.compact();
        const object_pool_stats after = pool.stats();
        CHECK(freed == before.frames - after.frames);
        CHECK(after.frames_per_min_frame() <= 1.02);
        CHECK(after.objects_moved == static_cast<std::size_t>(counted::moves - moves_before));
        CHECK(after.frames_freed_by_compaction == freed);
        CHECK(pool.compactable_frames() == 0);
        for (const auto& [h, value] : live) {
            CHECK(pool.pin(h)->value == value);
        }
        CHECK(counted::alive() == 1200);
        pool.check_invariants();
        CHECK(pool.compact() == 0); // already compact: nothing moves
        CHECK(pool.stats().objects_moved == after.objects_moved);
    }
    CHECK(counted::alive() == 0);
}

TEST_CASE("compact relocates a type with a non-trivial move by move-construct and destroy") {
    arena_type arena(8 * arena_type::block_bytes);
    object_pool<self_ref, arena_type> pool(arena);
    std::vector<std::pair<object_handle<self_ref>, std::string>> live;
    for (std::uint64_t i = 0; i < 800; ++i) {
        // Short strings live in the SSO buffer (inside the object), long ones on the heap.
        std::string text = (i % 2 == 0 ? "k" : std::string(40, 'x')) + std::to_string(i);
        live.emplace_back(pool.emplace(text, i), std::move(text));
    }
    std::erase_if(live, [&](const auto& entry) {
        const bool doomed = pool.pin(entry.first)->key % 5 != 0;
        if (doomed) {
            pool.destroy(entry.first);
        }
        return doomed;
    });
    CHECK(pool.compact() > 0);
    CHECK(pool.stats().frames_per_min_frame() <= 1.02);
    for (const auto& [h, text] : live) {
        const pinned<self_ref> p = pool.pin(h);
        CHECK(p->text == text);
        CHECK(p->intact());
    }
    pool.check_invariants();
}

TEST_CASE("a trivially relocatable type is moved by memcpy, never by its move constructor") {
    static_assert(relocation_traits<plain>::by_memcpy);
    static_assert(!relocation_traits<counted>::by_memcpy);
    arena_type arena(8 * arena_type::block_bytes);
    object_pool<declared_relocatable, arena_type> pool(arena);
    static_assert(object_pool<declared_relocatable, arena_type>::moves_by_memcpy);
    std::vector<std::pair<object_handle<declared_relocatable>, std::uint64_t>> live;
    for (std::uint64_t i = 0; i < 1000; ++i) {
        live.emplace_back(pool.emplace(i), i);
    }
    std::erase_if(live, [&](const auto& entry) {
        if (entry.second % 4 != 0) {
            pool.destroy(entry.first);
            return true;
        }
        return false;
    });
    declared_relocatable::moves = 0;
    CHECK(pool.compact() > 0);
    CHECK(pool.stats().objects_moved > 0);
    frame& f = arena.frame_of(address_of(pool, live.front().first));
    CHECK(isolate_and_migrate(arena, f, migrate_mode::sync) == 1);
    CHECK(declared_relocatable::moves == 0);
    for (const auto& [h, value] : live) {
        CHECK(*pool.pin(h)->value == value);
    }
    pool.check_invariants();
}

TEST_CASE("frame migration relocates each object of a non-trivial type and rewrites handles") {
    counted::reset();
    arena_type arena(4 * arena_type::block_bytes);
    {
        object_pool<self_ref, arena_type> pool(arena);
        std::vector<object_handle<self_ref>> handles;
        for (std::uint64_t i = 0; i < 20; ++i) {
            handles.push_back(pool.emplace(std::string(i % 3 == 0 ? 2 : 30, 'a') + "!", i));
        }
        const self_ref* before = address_of(pool, handles[0]);
        frame& f = arena.frame_of(before);
        migrate_stats stats;
        CHECK(isolate_and_migrate(arena, f, migrate_mode::async, &stats) == 1);
        const self_ref* after = address_of(pool, handles[0]);
        CHECK(after != before);
        CHECK(&arena.frame_of(after) != &f);
        for (std::uint64_t i = 0; i < handles.size(); ++i) {
            const pinned<self_ref> p = pool.pin(handles[i]);
            CHECK(p->key == i);
            CHECK(p->intact());
        }
        CHECK(pool.stats().frames_migrated >= 1);
        pool.check_invariants();
    }
}

TEST_CASE("arena compaction moves the pool's frames and every object survives") {
    counted::reset();
    arena_type arena(8 * arena_type::block_bytes);
    {
        object_pool<counted, arena_type> pool(arena);
        using pool_type = object_pool<counted, arena_type>;
        // Frames of the pool interleaved with frames freed afterwards: a fragmented arena.
        std::vector<frame*> fillers;
        std::vector<std::pair<object_handle<counted>, std::uint64_t>> live;
        for (std::uint64_t i = 0; i < 60 * pool_type::objects_per_frame; ++i) {
            if (i % pool_type::objects_per_frame == 0) {
                fillers.push_back(arena.try_allocate(0, frame_kind::movable));
            }
            live.emplace_back(pool.emplace(i), i);
        }
        for (frame* f : fillers) {
            arena.deallocate(*f, 0);
        }
        const long alive = counted::alive();
        const compact_stats stats = compactor<arena_type>(arena).compact();
        CHECK(stats.migrated > 0);
        CHECK(pool.stats().frames_migrated == stats.migrated);
        CHECK(counted::alive() == alive);
        for (const auto& [h, value] : live) {
            CHECK(pool.pin(h)->value == value);
        }
        pool.check_invariants();
    }
    CHECK(counted::alive() == 0);
}

TEST_CASE("a pinned object never moves: compact skips it and migration of its frame is busy") {
    arena_type arena(8 * arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    using pool_type = object_pool<plain, arena_type>;
    std::vector<object_handle<plain>> handles;
    for (std::uint64_t i = 0; i < 4 * pool_type::objects_per_frame; ++i) {
        handles.push_back(pool.emplace(plain{i, i}));
    }
    // Empty the first frame but for one object, and pin that one.
    for (std::size_t i = 1; i < pool_type::objects_per_frame; ++i) {
        pool.destroy(handles[i]);
    }
    for (std::size_t i = pool_type::objects_per_frame + 1; i < 2 * pool_type::objects_per_frame;
         ++i) {
        pool.destroy(handles[i]);
    }
    pinned<plain> held = pool.pin(handles[0]);
    const plain* where = held.get();
    frame& f = arena.frame_of(where);
    migrate_stats stats;
    CHECK(isolate_and_migrate(arena, f, migrate_mode::sync, &stats) == 0);
    CHECK(stats.failed == 1);
    CHECK(pool.stats().migrations_refused == 1);
    pool.compact();
    CHECK(pool.stats().objects_skipped_pinned >= 1);
    CHECK(held.get() == where);
    CHECK(address_of(pool, handles[0]) == where);
    held.reset();
    pool.compact();
    CHECK(pool.stats().frames_per_min_frame() <= 1.02);
    CHECK(pool.pin(handles[0])->a == 0);
    CHECK(isolate_and_migrate(arena, arena.frame_of(address_of(pool, handles[0])),
                              migrate_mode::sync) == 1);
    pool.check_invariants();
}

TEST_CASE("destroying the pool destroys every object exactly once") {
    counted::reset();
    arena_type arena(8 * arena_type::block_bytes);
    const std::size_t free_before = arena.free_frames();
    {
        object_pool<counted, arena_type> pool(arena);
        std::vector<object_handle<counted>> handles;
        std::mt19937 rng(3);
        for (int round = 0; round < 20; ++round) {
            for (int i = 0; i < 200; ++i) {
                handles.push_back(pool.emplace(static_cast<std::uint64_t>(i)));
            }
            std::shuffle(handles.begin(), handles.end(), rng);
            for (int i = 0; i < 150; ++i) {
                pool.destroy(handles.back());
                handles.pop_back();
            }
            if (round % 5 == 4) {
                pool.compact();
                compactor<arena_type>(arena).compact();
            }
        }
        CHECK(counted::alive() == static_cast<long>(handles.size()));
        pool.check_invariants();
    }
    CHECK(counted::alive() == 0);
    CHECK(counted::constructed == 4000);
    CHECK(arena.free_frames() == free_before);
}

TEST_CASE("for_each visits every live object once, with its handle") {
    arena_type arena(4 * arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    std::map<std::uint64_t, std::uint64_t> expected;
    for (std::uint64_t i = 0; i < 500; ++i) {
        const auto h = pool.emplace(plain{i, i * i});
        if (i % 3 == 0) {
            pool.destroy(h);
        } else {
            expected[h.value()] = i;
        }
    }
    std::map<std::uint64_t, std::uint64_t> seen;
    pool.for_each([&](object_handle<plain> h, plain& v) { seen[h.value()] = v.a; });
    CHECK(seen == expected);
    std::size_t count = 0;
    std::as_const(pool).for_each([&](const plain&) { ++count; });
    CHECK(count == expected.size());
}

TEST_CASE("a stale handle is caught even after its slot is reused") {
    arena_type arena(arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    const auto old = pool.emplace(plain{1, 1});
    pool.destroy(old);
    const auto reused = pool.emplace(plain{2, 2});
    CHECK(detail::handle_value::slot(reused.value()) == detail::handle_value::slot(old.value()));
    CHECK(reused != old);
    if constexpr (detail::contracts_enabled) {
        const auto pinned_stale = test::run_expecting_death([&] { (void)pool.pin(old); });
        CHECK(pinned_stale.aborted);
        CHECK(pinned_stale.stderr_text.find("object_pool::pin") != std::string::npos);
        CHECK(pinned_stale.stderr_text.find("stale") != std::string::npos);
        const auto destroyed_twice = test::run_expecting_death([&] { pool.destroy(old); });
        CHECK(destroyed_twice.aborted);
        CHECK(destroyed_twice.stderr_text.find("object_pool::destroy") != std::string::npos);
        CHECK(destroyed_twice.stderr_text.find("double destroy") != std::string::npos);
        const auto foreign = test::run_expecting_death([&] {
            (void)pool.pin(object_handle<plain>::from_value(detail::handle_value::make(999, 0)));
        });
        CHECK(foreign.aborted);
        CHECK(foreign.stderr_text.find("not made by this pool") != std::string::npos);
    }
    CHECK(pool.pin(reused)->a == 2);
}

namespace {
// A type whose move constructor calls the pool it lives in: forbidden.
struct calls_pool_on_move {
    static inline object_pool<calls_pool_on_move, arena_type>* pool = nullptr;
    std::uint64_t value;
    explicit calls_pool_on_move(std::uint64_t v) : value(v) {}
    calls_pool_on_move(calls_pool_on_move&& other) noexcept : value(other.value) {
        (void)pool->size(); // allowed: reads a counter
        pool->for_each([](calls_pool_on_move&) {});
    }
    calls_pool_on_move(const calls_pool_on_move&) = delete;
    calls_pool_on_move& operator=(const calls_pool_on_move&) = delete;
    calls_pool_on_move& operator=(calls_pool_on_move&&) = delete;
    ~calls_pool_on_move() = default;
};
} // namespace

TEST_CASE("calling the pool from T's move constructor during relocation is caught") {
    if constexpr (detail::contracts_enabled) {
        arena_type arena(arena_type::block_bytes);
        object_pool<calls_pool_on_move, arena_type> pool(arena);
        calls_pool_on_move::pool = &pool;
        const auto h = pool.emplace(1u);
        frame& f = arena.frame_of(address_of(pool, h));
        const auto died = test::run_expecting_death(
            [&] { (void)isolate_and_migrate(arena, f, migrate_mode::sync); });
        CHECK(died.aborted);
        CHECK(died.stderr_text.find("object_pool::for_each") != std::string::npos);
        CHECK(died.stderr_text.find("move constructor") != std::string::npos);
    }
}

TEST_CASE("a slot whose generation runs out is retired, never reused") {
    using pool_type = object_pool<plain, arena_type>;
    using access = detail::object_pool_test_access<pool_type>;
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    const auto first = pool.emplace(plain{1, 1});
    const std::uint32_t slot = detail::handle_value::slot(first.value());
    pool.destroy(first);
    access::set_generation(pool, slot, detail::handle_value::last_generation);
    const auto last = pool.emplace(plain{2, 2});
    REQUIRE(detail::handle_value::slot(last.value()) == slot);
    CHECK(detail::handle_value::generation(last.value()) == detail::handle_value::last_generation);
    pool.destroy(last);
    CHECK(pool.stats().handle_slots_retired == 1);
    const auto next = pool.emplace(plain{3, 3});
    CHECK(detail::handle_value::slot(next.value()) != slot);
    pool.check_invariants();
}

TEST_CASE("a compaction started while another runs returns 0 at once") {
    using pool_type = object_pool<plain, arena_type>;
    arena_type arena(2 * arena_type::block_bytes);
    pool_type pool(arena, {.thread_cache = false}); // destroy gives each place back at once
    std::vector<object_handle<plain>> handles;
    for (std::uint64_t i = 0; i < 4 * pool_type::objects_per_frame; ++i) {
        handles.push_back(pool.emplace(plain{i, i}));
    }
    for (std::size_t i = 0; i < handles.size(); i += 2) {
        pool.destroy(handles[i]);
    }
    REQUIRE(pool.compactable_frames() == 2);
    {
        const std::lock_guard running(
            detail::object_pool_test_access<pool_type>::compaction_lock(pool));
        CHECK(pool.compact() == 0);
        CHECK(pool.stats().compactions == 0);
    }
    CHECK(pool.compact() == 2);
    CHECK(pool.compactable_frames() == 0);
}

TEST_CASE("check_invariants names a handle slot whose location is wrong") {
    using pool_type = object_pool<plain, arena_type>;
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    const auto a = pool.emplace(plain{1, 1});
    (void)pool.emplace(plain{2, 2});
    pool.check_invariants();
    const auto died = test::run_expecting_death([&] {
        auto& word = detail::object_pool_test_access<pool_type>::slot_word(
            pool, detail::handle_value::slot(a.value()));
        // Point the slot at the next place of the same frame.
        word.store(word.load() + (std::uint64_t{1} << detail::slot_word::location_shift));
        pool.check_invariants();
    });
    CHECK(died.aborted);
    CHECK(died.stderr_text.find("object_pool::check_invariants") != std::string::npos);
    CHECK(died.stderr_text.find("location") != std::string::npos);
}

TEST_CASE("stats count frames, the minimum they need and the fullness of each slab") {
    using pool_type = object_pool<plain, arena_type>;
    arena_type arena(2 * arena_type::block_bytes);
    pool_type pool(arena);
    std::vector<object_handle<plain>> handles;
    for (std::uint64_t i = 0; i < 2 * pool_type::objects_per_frame + 1; ++i) {
        handles.push_back(pool.emplace(plain{i, i}));
    }
    const object_pool_stats s = pool.stats();
    CHECK(s.object_size == sizeof(plain));
    CHECK(s.object_stride == 16);
    CHECK(s.objects_per_frame == 256);
    CHECK(s.objects == 513);
    CHECK(s.frames == 3);
    CHECK(s.min_frames == 3);
    CHECK(s.fullness[fullness_group_count - 1] == 2); // two full slabs
    CHECK(s.fullness[0] == 1);                        // one under 10%
    CHECK(s.frames_freeable == 0);
}

TEST_CASE("a frame whose slab empties while it is isolated is freed by the core, not migrated") {
    using pool_type = object_pool<plain, arena_type>;
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena, {.thread_cache = false}); // destroy gives each place back at once
    const std::size_t free_before = arena.free_frames();
    // Fill the pool's reserve first: an emptied slab then goes back at once.
    const auto reserve = pool.emplace(plain{0, 0});
    pool.destroy(reserve);
    REQUIRE(pool.stats().frames == 1);
    const auto h = pool.emplace(plain{1, 1});
    REQUIRE(pool.stats().frames == 1); // the reserve, taken back
    std::vector<object_handle<plain>> second;
    for (std::size_t i = 0; i < pool_type::objects_per_frame; ++i) {
        second.push_back(pool.emplace(plain{2, 2}));
    }
    for (const auto h2 : second) {
        pool.destroy(h2); // the second frame empties: kept as the reserve
    }
    REQUIRE(pool.stats().frames == 2);
    frame& f = arena.frame_of(address_of(pool, h));
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK(pool.stats().isolated_frames == 1);
    pool.destroy(h); // empties the slab: its frame is handed to the core
    CHECK(pool.stats().frames_released_while_isolated == 1);
    CHECK(pool.stats().isolated_frames == 0);
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
    putback_movable_frames(list, targets);
    CHECK(stats.released == 1);
    CHECK(stats.succeeded == 0);
    CHECK(pool.stats().frames_migrated == 0);
    CHECK(pool.stats().frames == 1);
    CHECK(arena.free_frames() == free_before - 1);
    pool.check_invariants();
}

TEST_CASE("isolating a frame whose slab is being freed is refused, and migrating it is busy") {
    using pool_type = object_pool<plain, arena_type>;
    using access = detail::object_pool_test_access<pool_type>;
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    const auto h = pool.emplace(plain{1, 1});
    frame& f = arena.frame_of(address_of(pool, h));
    access::set_freeing(f, true);
    CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync));
    access::set_freeing(f, false);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    access::set_freeing(f, true); // freed after isolation, before migration
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
    putback_movable_frames(list, targets);
    access::set_freeing(f, false);
    CHECK(stats.succeeded == 0);
    CHECK(stats.failed == 1);
    CHECK(pool.stats().migrations_refused == 1);
    CHECK(pool.stats().isolated_frames == 0);
    CHECK(pool.pin(h)->a == 1);
    pool.check_invariants();
}

TEST_CASE("a moved-from pinned is empty and the pin moves with the guard") {
    arena_type arena(arena_type::block_bytes);
    object_pool<plain, arena_type> pool(arena);
    const auto h = pool.emplace(plain{4, 5});
    pinned<plain> a = pool.pin(h);
    const plain* where = a.get();
    pinned<plain> b = std::move(a);
    CHECK_FALSE(a); // NOLINT(bugprone-use-after-move): what a moved-from guard says is the test
    CHECK(a.get() == nullptr);
    CHECK(b.get() == where);
    pinned<plain> c;
    c = std::move(b);
    CHECK_FALSE(b); // NOLINT(bugprone-use-after-move)
    CHECK(c->b == 5);
    // The one pin left keeps the object from migrating; without it, it moves.
    frame& f = arena.frame_of(where);
    CHECK(isolate_and_migrate(arena, f, migrate_mode::sync) == 0);
    c.reset();
    CHECK(isolate_and_migrate(arena, f, migrate_mode::sync) == 1);
}

namespace {
struct no_moves_at_all {
    int v;
    explicit no_moves_at_all(int x) : v(x) {}
    no_moves_at_all(const no_moves_at_all&) = delete;
    no_moves_at_all(no_moves_at_all&&) = delete;
    no_moves_at_all& operator=(const no_moves_at_all&) = delete;
    no_moves_at_all& operator=(no_moves_at_all&&) = delete;
    ~no_moves_at_all() = default;
};
struct opted_in_without_moves {
    int v;
    opted_in_without_moves(const opted_in_without_moves&) = delete;
    opted_in_without_moves(opted_in_without_moves&&) = delete;
    opted_in_without_moves& operator=(const opted_in_without_moves&) = delete;
    opted_in_without_moves& operator=(opted_in_without_moves&&) = delete;
    ~opted_in_without_moves() = default;
};
} // namespace

template <>
struct movable::trivially_relocatable<opted_in_without_moves> : std::true_type {};

TEST_CASE("a type that deleted its moves is not relocatable unless the user opts it in") {
    static_assert(std::is_trivially_copyable_v<no_moves_at_all>); // so says the language
    static_assert(!relocation_traits<no_moves_at_all>::by_memcpy);
    static_assert(!relocation_traits<no_moves_at_all>::relocatable);
    static_assert(relocation_traits<opted_in_without_moves>::by_memcpy);
    static_assert(!relocation_traits<std::atomic<int>>::relocatable);
    static_assert(relocation_traits<std::unique_ptr<int>>::relocatable);
    static_assert(!relocation_traits<std::string>::by_memcpy ||
                  detail::compiler_says_trivially_relocatable<std::string>);
}
