// zspage_pool's per-thread caches (magazines of reserved places per size class): what a thread
// keeps, when it goes back (overflow, release_thread_cache, thread exit, compact(), an exhausted
// arena), that migration moves reservations with their frame and compaction takes them back, and
// that a pool destroyed before its threads exit is never touched again. Runs under
// ThreadSanitizer with the other concurrency tests.
#include <movable/models/zspage_pool.hpp>

#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <semaphore>
#include <span>
#include <thread>
#include <vector>

#include "support/isolate_and_migrate.hpp"
#include "support/zspage_pool_access.hpp"

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
using pool_type = zspage_pool<arena_type>;
using access = detail::zspage_pool_test_access<pool_type>;

std::vector<std::byte> bytes_of(std::size_t size, std::uint8_t seed) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<std::byte>(seed + i * 7);
    }
    return bytes;
}

bool holds(const pool_type& pool, zspage_handle h, const std::vector<std::byte>& expected) {
    std::vector<std::byte> got(expected.size());
    pool.read(h, got);
    return got == expected;
}

std::uint32_t capacity_for(const pool_type& pool, std::size_t size) {
    return detail::zspage_magazine::capacity_for(pool.size_class_for(size).object_size);
}

} // namespace

TEST_CASE("a freed object's place stays reserved for the thread's next allocation of its class") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const zspage_handle first = pool.allocate(300);
    const frame& home = access::start_frame(pool, first);
    const std::size_t reserved = pool.stats().objects_reserved;
    CHECK(reserved + 1 == capacity_for(pool, 300) / 2); // the refill reserved the rest
    pool.deallocate(first);
    CHECK(pool.stats().objects_reserved == reserved + 1);
    CHECK(pool.stats().objects_in_use == 0);
    const zspage_handle again = pool.allocate(300); // same class
    CHECK(again != first);                          // a new generation: the old handle is stale
    CHECK(&access::start_frame(pool, again) == &home);
    CHECK(pool.stats().objects_reserved == reserved);
    pool.check_invariants();
}

TEST_CASE("release_thread_cache gives the reserved places back, and an emptied zspage's frames") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    std::vector<zspage_handle> handles;
    for (int i = 0; i < 3; ++i) {
        handles.push_back(pool.allocate(1100));
    }
    for (const zspage_handle h : handles) {
        pool.deallocate(h);
    }
    CHECK(pool.stats().objects_in_use == 0);
    CHECK(pool.stats().objects_reserved > 0);
    CHECK(pool.stats().frames_in_use > 0);
    pool.check_invariants();
    pool.release_thread_cache();
    CHECK(pool.stats().objects_reserved == 0);
    CHECK(pool.stats().frames_in_use == 0);
    CHECK(arena.free_frames() == arena.frame_count());
    pool.check_invariants();
}

TEST_CASE("a class's cache keeps at most its capacity: the older half goes back when it is full") {
    arena_type arena(8 * arena_type::block_bytes);
    pool_type pool(arena);
    const std::uint32_t capacity = capacity_for(pool, 100);
    std::vector<zspage_handle> handles;
    for (std::uint32_t i = 0; i < 4 * capacity; ++i) {
        handles.push_back(pool.allocate(100));
    }
    for (const zspage_handle h : handles) {
        pool.deallocate(h);
        CHECK(pool.stats().objects_reserved <= capacity);
    }
    CHECK(pool.stats().objects_reserved >= capacity / 2);
    pool.check_invariants();
}

TEST_CASE("compact takes back idle reservations; the thread then finds them taken and allocates "
          "elsewhere") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const zspage_handle kept = pool.allocate(700);
    const auto kept_bytes = bytes_of(700, 3);
    pool.write(kept, kept_bytes);
    std::vector<zspage_handle> handles;
    for (int i = 0; i < 20; ++i) {
        handles.push_back(pool.allocate(700));
    }
    for (const zspage_handle h : handles) {
        pool.deallocate(h);
    }
    const std::size_t reserved = pool.stats().objects_reserved;
    REQUIRE(reserved > 0);
    CHECK(pool.compactable_frames() > 0); // reserved places count as free
    CHECK(pool.compact() > 0);
    CHECK(pool.stats().reservations_stolen == reserved);
    CHECK(pool.stats().objects_reserved == 0);
    CHECK(pool.stats().objects_in_use == 1);
    pool.check_invariants();
    // The cache still lists the taken-back slots: the next allocations skip them.
    std::vector<zspage_handle> fresh;
    for (std::size_t i = 0; i < reserved + 2; ++i) {
        fresh.push_back(pool.allocate(700));
        pool.write(fresh.back(), bytes_of(700, static_cast<std::uint8_t>(i)));
    }
    for (std::size_t i = 0; i < fresh.size(); ++i) {
        CHECK(holds(pool, fresh[i], bytes_of(700, static_cast<std::uint8_t>(i))));
    }
    CHECK(holds(pool, kept, kept_bytes));
    pool.check_invariants();
}

TEST_CASE("migration moves a frame's reservations with it; they still become objects there") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    const zspage_handle h = pool.allocate(200); // the refill reserves more places beside it
    REQUIRE(pool.stats().objects_reserved > 0);
    frame& before = access::start_frame(pool, h);
    CHECK(test::isolate_and_migrate(arena, before, migrate_mode::sync) == 1);
    const frame& after = access::start_frame(pool, h);
    CHECK(&after != &before);
    pool.check_invariants(); // the reservations' words name the new frame
    const zspage_handle next = pool.allocate(200);
    CHECK(&access::start_frame(pool, next) == &after);
    pool.write(next, bytes_of(200, 9));
    CHECK(holds(pool, next, bytes_of(200, 9)));
    pool.check_invariants();
}

TEST_CASE("an exhausted arena takes back the caches' places before allocation fails") {
    arena_type arena(1 * arena_type::block_bytes);
    pool_type pool(arena);
    // Fill the arena with one class, free it all: every place is this thread's reservation or
    // went back; then a different class still finds room.
    std::vector<zspage_handle> handles;
    while (const zspage_handle h = pool.try_allocate(3000)) {
        handles.push_back(h);
    }
    for (const zspage_handle h : handles) {
        pool.deallocate(h);
    }
    CHECK(pool.stats().objects_reserved > 0);
    std::vector<zspage_handle> others;
    for (std::size_t i = 0; i < handles.size(); ++i) {
        const zspage_handle h = pool.try_allocate(2000);
        REQUIRE(h);
        others.push_back(h);
    }
    pool.check_invariants();
}

TEST_CASE("a thread that exits gives its cache back") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena);
    std::thread([&] {
        std::vector<zspage_handle> handles;
        for (int i = 0; i < 10; ++i) {
            handles.push_back(pool.allocate(500));
        }
        for (const zspage_handle h : handles) {
            pool.deallocate(h);
        }
        CHECK(pool.stats().objects_reserved > 0);
    }).join();
    CHECK(pool.stats().objects_reserved == 0);
    CHECK(pool.stats().frames_in_use == 0);
    CHECK(arena.free_frames() == arena.frame_count());
    pool.check_invariants();
}

TEST_CASE("a pool destroyed while a thread still caches its places is never touched when the "
          "thread exits") {
    arena_type arena(4 * arena_type::block_bytes);
    auto pool = std::make_unique<pool_type>(arena);
    std::binary_semaphore cached(0);
    std::binary_semaphore destroyed(0);
    std::thread user([&] {
        pool->deallocate(pool->allocate(500)); // a reservation in this thread's cache
        cached.release();
        destroyed.acquire();
        // Another pool at the same address, used by this thread: its cache is a new one.
        pool_type again(arena);
        again.deallocate(again.allocate(500));
        CHECK(again.stats().objects_reserved > 0);
    });
    cached.acquire();
    pool.reset();
    CHECK(arena.free_frames() == arena.frame_count());
    destroyed.release();
    user.join();
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("with thread_cache off, nothing is reserved") {
    arena_type arena(4 * arena_type::block_bytes);
    pool_type pool(arena, {.thread_cache = false});
    const zspage_handle h = pool.allocate(300);
    CHECK(pool.stats().objects_reserved == 0);
    pool.deallocate(h);
    CHECK(pool.stats().objects_reserved == 0);
    CHECK(pool.stats().frames_in_use == 0);
}
