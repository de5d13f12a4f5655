// Runs under ThreadSanitizer (the tsan workflow): object_pool used from many threads while pool
// compaction, arena compaction and frame migration run on others, with every object's content
// checked; and the orders between pins, movers, destroyers and constructors, each forced.
#include <movable/models/object_pool.hpp>

#include <movable/compaction.hpp>
#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "support/isolate_and_migrate.hpp"
#include "support/object_pool_access.hpp"

using namespace movable;
using movable::test::isolate_and_migrate;

namespace {

using arena_type = frame_arena<4096, 4>;

// A record with a non-trivial move that fixes up a pointer into its own string, and a key
// from which its text is derived: any torn or half-moved copy fails check().
struct record {
    static inline std::atomic<long> alive{0};
    std::uint64_t key;
    std::string text;
    const char* inside = nullptr;

    static std::string text_for(std::uint64_t key) {
        return std::string(key % 3 == 0 ? 3 : 37, static_cast<char>('a' + key % 26)) +
               std::to_string(key);
    }
    explicit record(std::uint64_t k) : key(k), text(text_for(k)), inside(text.data()) { ++alive; }
    record(record&& other) noexcept
        : key(other.key), text(std::move(other.text)), inside(text.data()) {
        ++alive;
    }
    record(const record&) = delete;
    record& operator=(const record&) = delete;
    record& operator=(record&&) = delete;
    ~record() { --alive; }

    [[nodiscard]] bool check() const { return inside == text.data() && text == text_for(key); }
    void rekey(std::uint64_t k) {
        key = k;
        text = text_for(k);
        inside = text.data();
    }
};

using pool_type = object_pool<record, arena_type>;

// An object whose constructor, when asked, signals that it started and waits to be let go.
struct slow {
    static inline std::binary_semaphore entered{0};
    static inline std::binary_semaphore release{0};
    std::uint64_t value;
    explicit slow(std::uint64_t v, bool wait) : value(v) {
        if (wait) {
            entered.release();
            release.acquire();
        }
    }
};

// The same, eight to a frame.
struct alignas(512) slow_wide {
    std::uint64_t value;
    explicit slow_wide(std::uint64_t v, bool wait) : value(v) {
        if (wait) {
            slow::entered.release();
            slow::release.acquire();
        }
    }
};

} // namespace

TEST_CASE("objects stay intact while threads emplace, destroy, pin, visit and walk during pool "
          "compaction, arena compaction and frame migration") {
    record::alive = 0;
    arena_type arena(64 * arena_type::block_bytes);
    {
        pool_type pool(arena);
        constexpr int workers = 3;
        constexpr int operations = 5000;
        std::atomic<int> running{workers};
        std::atomic<std::size_t> corrupted{0};
        std::vector<std::vector<std::pair<object_handle<record>, std::uint64_t>>> owned(workers);

        auto worker = [&](int id) {
            std::mt19937 rng(static_cast<unsigned>(id) * 7919 + 1);
            auto& mine = owned[static_cast<std::size_t>(id)];
            std::uint64_t next_key = static_cast<std::uint64_t>(id) << 32;
            for (int op = 0; op < operations; ++op) {
                const unsigned choice = rng() % 100;
                if (mine.empty() || choice < 40) {
                    const std::uint64_t key = ++next_key;
                    if (const auto h = pool.try_emplace(key)) {
                        mine.emplace_back(h, key);
                    }
                } else if (choice < 70) {
                    const std::size_t i = rng() % mine.size();
                    pool.destroy(mine[i].first);
                    mine[i] = mine.back();
                    mine.pop_back();
                } else if (choice < 90) {
                    auto& [h, key] = mine[rng() % mine.size()];
                    const pinned<record> p = pool.pin(h);
                    const record* where = p.get();
                    corrupted += p->check() && p->key == key ? 0 : 1;
                    std::this_thread::yield(); // hold the pin while others move things
                    corrupted += p.get() == where && p->check() && p->key == key ? 0 : 1;
                    key = ++next_key;
                    p->rekey(key);
                } else if (choice < 98) {
                    const auto& entry = mine[rng() % mine.size()];
                    const std::uint64_t key = entry.second;
                    corrupted +=
                        pool.visit(entry.first,
                                   [key](const record& r) { return r.check() && r.key == key; })
                            ? 0
                            : 1;
                } else {
                    // Other threads' objects are theirs to read and write (a pin keeps an
                    // object in place, it does not order its users): check only mine.
                    std::unordered_map<std::uint64_t, std::uint64_t> keys;
                    for (const auto& [h, key] : mine) {
                        keys.emplace(h.value(), key);
                    }
                    std::size_t seen = 0;
                    pool.for_each([&](object_handle<record> h, const record& r) {
                        const auto found = keys.find(h.value());
                        if (found != keys.end()) {
                            corrupted += r.check() && r.key == found->second ? 0 : 1;
                            ++seen;
                        }
                    });
                    corrupted += seen == mine.size() ? 0 : 1;
                }
            }
            --running;
        };
        auto pool_compactor = [&] {
            while (running.load() > 0) {
                pool.compact();
                std::this_thread::yield();
            }
        };
        auto arena_compactor = [&] {
            compactor<arena_type> compaction(arena);
            for (int round = 0; running.load() > 0; ++round) {
                compact_request request;
                request.mode = round % 2 == 0 ? migrate_mode::sync : migrate_mode::async;
                request.max_frames_per_pass = 64;
                compaction.begin(request);
                while (running.load() > 0 && compaction.pass() == compact_progress::incomplete) {
                }
                compaction.end();
            }
        };
        auto migrator = [&] {
            std::mt19937 rng(99);
            while (running.load() > 0) {
                const std::size_t index = rng() % arena.frame_count();
                if (!arena.is_free(index)) {
                    (void)isolate_and_migrate(arena, arena.frame_at(index),
                                              rng() % 2 ? migrate_mode::sync : migrate_mode::async);
                }
            }
        };

        std::vector<std::thread> threads;
        for (int id = 0; id < workers; ++id) {
            threads.emplace_back(worker, id);
        }
        threads.emplace_back(pool_compactor);
        threads.emplace_back(arena_compactor);
        threads.emplace_back(migrator);
        for (auto& t : threads) {
            t.join();
        }

        CHECK(corrupted.load() == 0);
        std::size_t live = 0;
        for (const auto& mine : owned) {
            for (const auto& [h, key] : mine) {
                const pinned<record> p = pool.pin(h);
                CHECK(p->key == key);
                CHECK(p->check());
                ++live;
            }
        }
        const object_pool_stats stats = pool.stats();
        CHECK(stats.objects == live);
        CHECK(record::alive.load() == static_cast<long>(live));
        CHECK(stats.isolated_frames == 0);
        pool.check_invariants();
        MESSAGE("live " << live << " records; compacted " << stats.compactions << " times, moved "
                        << stats.objects_moved << " objects, freed "
                        << stats.frames_freed_by_compaction << " frames; migrated "
                        << stats.frames_migrated << " frames, refused "
                        << stats.migrations_refused);
        pool.compact();
        CHECK(pool.stats().frames_per_min_frame() <= 1.02);
    }
    CHECK(record::alive.load() == 0);
    CHECK(arena.free_frames() == arena.frame_count());
}

// Whether the reader is already inside pin() when the mover lets go is up to the scheduler (a
// waiting reader leaves no trace on the word): what holds either way is that it does not get in
// before, and sees the moved object after.
TEST_CASE("a reader does not get in while a mover holds an object's pin word, and sees the moved "
          "object") {
    std::atomic<std::uint32_t> word{0};
    REQUIRE(detail::pin_word::try_claim(word));
    std::atomic<bool> moved{false};
    std::atomic<bool> reader_started{false};
    std::atomic<bool> reader_in{false};
    std::thread reader([&] {
        reader_started = true;
        detail::pin_word::pin(word);
        reader_in = true;
        CHECK(moved.load(std::memory_order_relaxed)); // ordered by the pin word alone
        detail::pin_word::unpin(word);
    });
    while (!reader_started.load()) {
        std::this_thread::yield();
    }
    for (int i = 0; i < 50; ++i) {
        std::this_thread::yield();
        CHECK_FALSE(reader_in.load());
    }
    moved.store(true, std::memory_order_relaxed);
    detail::pin_word::end_claim(word);
    reader.join();
    CHECK(reader_in.load());
    CHECK(word.load() == 0);
    // And a mover never claims a pinned word.
    detail::pin_word::pin(word);
    CHECK_FALSE(detail::pin_word::try_claim(word));
    detail::pin_word::unpin(word);
    CHECK(detail::pin_word::try_claim(word));
}

// As above, whether the destroyer is already waiting when the pin ends is up to the scheduler;
// what holds either way is that the destructor runs after the pin ends, not before.
TEST_CASE("destroy does not run the destructor while another thread pins the object; it runs "
          "once the pin ends") {
    record::alive = 0;
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    const auto h = pool.emplace(5u);
    pinned<record> p = pool.pin(h);
    std::atomic<bool> destroyer_started{false};
    std::atomic<bool> destroyed{false};
    std::thread destroyer([&] {
        destroyer_started = true;
        pool.destroy(h);
        destroyed = true;
    });
    while (!destroyer_started.load()) {
        std::this_thread::yield();
    }
    for (int i = 0; i < 50; ++i) {
        std::this_thread::yield();
        CHECK_FALSE(destroyed.load());
    }
    CHECK(p->check()); // still alive: the destroyer waits
    CHECK(record::alive.load() == 1);
    p.reset();
    destroyer.join();
    CHECK(destroyed.load());
    CHECK(record::alive.load() == 0);
    CHECK(pool.size() == 0);
}

TEST_CASE("an object being constructed is not migrated: its frame's migration answers busy") {
    arena_type arena(2 * arena_type::block_bytes);
    object_pool<slow, arena_type> pool(arena);
    using slow_pool = object_pool<slow, arena_type>;
    // Two sparse frames: compact would merge them.
    std::vector<object_handle<slow>> handles;
    for (std::uint64_t i = 0; i < 2 * slow_pool::objects_per_frame; ++i) {
        handles.push_back(pool.emplace(i, false));
    }
    for (std::size_t i = 2; i < handles.size(); ++i) {
        pool.destroy(handles[i]);
    }
    pool.release_thread_cache(); // the destroyed objects' places go back now
    handles.resize(2);           // both in the first frame; the second frame was freed
    const slow* first = pool.pin(handles[0]).get();
    object_handle<slow> built;
    std::thread builder([&] { built = pool.emplace(99u, true); });
    slow::entered.acquire(); // the builder's object has a place in the first frame now
    migrate_stats stats;
    (void)isolate_and_migrate(arena, arena.frame_of(first), migrate_mode::sync, &stats);
    CHECK(stats.succeeded == 0);
    CHECK(stats.failed == 1);
    CHECK(pool.stats().migrations_refused == 1);
    CHECK(pool.pin(handles[0]).get() == first);
    slow::release.release();
    builder.join();
    CHECK(pool.pin(built)->value == 99);
    (void)isolate_and_migrate(arena, arena.frame_of(first), migrate_mode::sync, &stats);
    CHECK(stats.succeeded == 1);
    CHECK(pool.pin(handles[0])->value == 0);
    CHECK(pool.pin(handles[1])->value == 1);
    CHECK(pool.pin(built)->value == 99);
    pool.check_invariants();
}

TEST_CASE("async migration answers retry while the pool lock is held; sync waits for it") {
    arena_type arena(arena_type::block_bytes);
    pool_type pool(arena);
    const auto h = pool.emplace(1u);
    frame& f = arena.frame_of(pool.pin(h).get());
    std::atomic<bool> locked{false};
    std::binary_semaphore release{0};
    std::thread holder([&] {
        // The pool lock, held as a long compaction would hold it.
        std::lock_guard guard(detail::object_pool_test_access<pool_type>::lock(pool));
        locked = true;
        release.acquire();
    });
    while (!locked.load()) {
        std::this_thread::yield();
    }
    migrate_stats stats;
    REQUIRE(isolate_movable_frame(f, migrate_mode::async));
    frame_list list;
    list.push_back(f);
    arena_targets<arena_type> targets{arena};
    stats = migrate_frames(list, targets, migrate_mode::async);
    CHECK(stats.succeeded == 0);
    CHECK(stats.retried > 0);
    putback_movable_frames(list, targets); // (stats() would wait for the lock)

    // The lock still held: a sync migration waits for it. The pool lock counts its waiters, so
    // the test sees the migrator wait before it lets the holder go.
    migrate_stats waited;
    std::atomic<bool> returned{false};
    std::thread migrator([&] {
        (void)isolate_and_migrate(arena, f, migrate_mode::sync, &waited);
        returned = true;
    });
    auto& pool_lock = detail::object_pool_test_access<pool_type>::lock(pool);
    while (pool_lock.waiters() == 0 && !returned.load()) {
        std::this_thread::yield();
    }
    CHECK_FALSE(returned.load()); // it cannot finish: it waits for the lock
    CHECK(&arena.frame_of(pool.pin(h).get()) == &f);
    release.release();
    holder.join();
    migrator.join();
    CHECK(waited.succeeded == 1);
    CHECK(waited.retried == 0);
    CHECK(&arena.frame_of(pool.pin(h).get()) != &f);
    CHECK(pool.stats().isolated_frames == 0);
    CHECK(pool.pin(h)->check());
}

TEST_CASE("compact leaves an object being constructed where it is") {
    arena_type arena(2 * arena_type::block_bytes);
    object_pool<slow_wide, arena_type> pool(arena);
    using wide_pool = object_pool<slow_wide, arena_type>;
    static_assert(wide_pool::objects_per_frame == 8);
    // Slab A: 5 objects. Slab B: 7 objects, and the builder's object takes its last place.
    std::vector<object_handle<slow_wide>> a;
    std::vector<object_handle<slow_wide>> b;
    for (std::uint64_t i = 0; i < 8; ++i) {
        a.push_back(pool.emplace(i, false));
    }
    for (std::uint64_t i = 0; i < 7; ++i) {
        b.push_back(pool.emplace(100 + i, false));
    }
    for (std::size_t i = 5; i < 8; ++i) {
        pool.destroy(a[i]);
    }
    a.resize(5);
    pool.release_thread_cache(); // this thread's reserved places (in A and B) go back now
    object_handle<slow_wide> built;
    std::thread builder([&] { built = pool.emplace(99u, true); }); // into B, the fullest
    slow::entered.acquire();
    for (const auto h : b) {
        pool.destroy(h); // B keeps only the object being built: the sparsest slab
    }
    const std::size_t freed = pool.compact();
    CHECK(pool.stats().objects_skipped_pinned >= 1);
    CHECK(freed == 0);
    CHECK(pool.stats().frames == 2);
    slow::release.release();
    builder.join();
    CHECK(pool.pin(built)->value == 99);
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(pool.pin(a[i])->value == i);
    }
    CHECK(pool.compact() == 1); // now it moves
    CHECK(pool.pin(built)->value == 99);
    pool.check_invariants();
}

namespace {
// A record whose move constructor, the first time it runs in a compaction, starts a thread that
// waits for the pool lock, and returns once that thread waits: the compaction then has a waiter.
struct summons_a_waiter {
    static inline object_pool<summons_a_waiter, arena_type>* pool = nullptr;
    static inline std::thread* waiter = nullptr;
    static inline std::atomic<bool> summoned{false};
    std::uint64_t value;
    explicit summons_a_waiter(std::uint64_t v) : value(v) {}
    summons_a_waiter(summons_a_waiter&& other) noexcept : value(other.value) {
        if (!summoned.exchange(true)) {
            auto& lock =
                detail::object_pool_test_access<object_pool<summons_a_waiter, arena_type>>::lock(
                    *pool);
            *waiter = std::thread([&lock] { const std::lock_guard guard(lock); });
            while (lock.waiters() == 0) {
                std::this_thread::yield();
            }
        }
    }
    summons_a_waiter(const summons_a_waiter&) = delete;
    summons_a_waiter& operator=(const summons_a_waiter&) = delete;
    summons_a_waiter& operator=(summons_a_waiter&&) = delete;
    ~summons_a_waiter() = default;
};
} // namespace

TEST_CASE("compact steps aside when another thread waits for the pool lock, and still packs") {
    using waiter_pool = object_pool<summons_a_waiter, arena_type>;
    arena_type arena(4 * arena_type::block_bytes);
    waiter_pool pool(arena);
    std::thread waiter;
    summons_a_waiter::pool = &pool;
    summons_a_waiter::waiter = &waiter;
    std::vector<object_handle<summons_a_waiter>> handles;
    for (std::uint64_t i = 0; i < 6 * waiter_pool::objects_per_frame; ++i) {
        handles.push_back(pool.emplace(i));
    }
    for (std::size_t i = 0; i < handles.size(); ++i) {
        if (i % 3 != 0) {
            pool.destroy(handles[i]);
        }
    }
    CHECK(pool.compact() >= 3);
    waiter.join();
    CHECK(summons_a_waiter::summoned.load());
    CHECK(pool.stats().compaction_yields >= 1);
    CHECK(pool.stats().frames == pool.stats().min_frames);
    for (std::size_t i = 0; i < handles.size(); i += 3) {
        CHECK(pool.pin(handles[i])->value == i);
    }
    pool.check_invariants();
}
