// Heap exhaustion: this program replaces the global operator new with one that can be told to
// fail, and checks that the library's constructors release everything when an allocation inside
// them fails, and that its `noexcept` allocation paths never allocate (so they cannot throw
// std::bad_alloc into a noexcept function, which terminates the process).
//
// Sanitizers replace operator new too, so this program is built without them (see
// tests/CMakeLists.txt); it checks its own books: every operator new matched by a delete.
#include <movable/frame_arena.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/models/zspage_pool.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "support/failing_operator_new.hpp"

namespace {

// The process's virtual size (mapped address space), from /proc/self/status.
std::size_t virtual_bytes() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmSize:", 0) == 0) {
            return std::stoul(line.substr(7)) * 1024;
        }
    }
    return 0;
}

} // namespace

using namespace movable;

TEST_CASE("an arena whose construction fails at any allocation leaves nothing mapped or "
          "allocated") {
    using arena_type = frame_arena<4096, 10>;
    constexpr std::size_t bytes = std::size_t{1} << 30; // a leak would show as 1 GiB mapped
    const std::size_t mapped_before = virtual_bytes();
    long failure_points = 0;
    for (long k = 1;; ++k) {
        CAPTURE(k);
        const long live_before = live_blocks.load(); // the test framework keeps some
        bool failed = false;
        fail_allocations_from(k);
        try {
            arena_type arena(bytes);
            stop_failing();
        } catch (const std::bad_alloc&) {
            stop_failing();
            failed = true;
        }
        if (!failed) {
            break; // the k-th allocation was never reached: every failure point was tried
        }
        ++failure_points;
        CHECK(live_blocks.load() == live_before);
        CHECK(virtual_bytes() < mapped_before + bytes / 4);
    }
    CHECK(failure_points >= 1); // the block table (the frame descriptors are mapped)
    CHECK(virtual_bytes() < mapped_before + bytes / 4);
}

TEST_CASE("allocations that fall back to the other kind never allocate heap memory") {
    using arena_type = frame_arena<4096, 6>; // 64 frames per block
    arena_type arena(2 * arena_type::block_bytes);
    std::vector<frame*> frames;
    frames.reserve(arena.frame_count() + 1);
    for (std::size_t i = 0; i < arena_type::block_frames * 3 / 4; ++i) {
        frames.push_back(&arena.allocate(0, frame_kind::movable)); // block 0, 3/4 movable
    }
    const long before = allocations.load();
    fail_allocations_from(1); // any heap allocation now throws, and inside noexcept terminates
    // Alternate kinds until the arena is full: claims and steals both happen.
    for (std::size_t i = 0;; ++i) {
        frame* f = arena.try_allocate(i % 3 == 0 ? 1 : 0,
                                      i % 2 == 0 ? frame_kind::unmovable : frame_kind::movable);
        if (f == nullptr) {
            f = arena.try_allocate(0, i % 2 == 0 ? frame_kind::movable : frame_kind::unmovable);
        }
        if (f == nullptr) {
            break;
        }
        frames.push_back(f);
    }
    stop_failing();
    CHECK(allocations.load() == before);
    const auto stats = arena.stats();
    CHECK(stats.free_frames == 0);
    CHECK(stats.blocks_claimed > 0);
    CHECK(stats.frames_stolen > 0);
    for (frame* f : frames) {
        arena.deallocate(*f, detail::buddy_word::order(f->allocator_word()));
    }
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("pool and balloon try-paths answer 'no' when the heap is exhausted, never terminate") {
    using arena_type = frame_arena<4096, 6>;
    arena_type arena(4 * arena_type::block_bytes);
    {
        zspage_pool<arena_type> pool(arena);
        fail_allocations_from(1);
        // Every object needs a handle-table chunk or a zspage descriptor first: refused.
        const zspage_handle refused = pool.try_allocate(100);
        stop_failing();
        CHECK_FALSE(refused);
        const zspage_handle later = pool.try_allocate(100); // and the pool still works
        CHECK(later);
        fail_allocations_from(1);
        // Fill the arena with unmovable-kind pressure while the heap is out: no terminate.
        std::vector<zspage_handle> handles;
        while (zspage_handle h = pool.try_allocate(3000)) {
            handles.push_back(h);
        }
        stop_failing();
        for (zspage_handle h : handles) {
            pool.deallocate(h);
        }
        pool.deallocate(later);
    }
    {
        struct counting_host {
            std::size_t held = 0;
            bool lend(frame&) noexcept {
                ++held;
                return true;
            }
            void reclaim(frame&) noexcept { --held; }
        } host;
        balloon<arena_type, counting_host> b(arena, host);
        frame& unmovable = arena.allocate(0, frame_kind::unmovable);
        fail_allocations_from(1);
        const balloon_inflate_result result = b.inflate(arena.frame_count());
        stop_failing();
        CHECK(result.stopped_by == balloon_inflate_stop::arena_exhausted);
        CHECK(result.inflated == arena.frame_count() - 1);
        CHECK(host.held == result.inflated);
        arena.deallocate(unmovable);
        b.deflate(result.inflated);
        CHECK(host.held == 0);
    }
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("an object_pool thread whose cache cannot be made goes the uncached way") {
    using arena_type = frame_arena<4096, 6>;
    arena_type arena(4 * arena_type::block_bytes);
    struct item {
        std::uint64_t a;
    };
    object_pool<item, arena_type> pool(arena);
    const auto first = pool.emplace(item{1}); // the handle table's first chunk, a slab
    const std::size_t reserved_by_main = pool.stats().reserved_places;
    std::size_t reserved_after = 0;
    std::thread worker([&] {
        fail_allocations_from(1); // this thread's cache (and its entry) cannot be allocated
        const auto h = pool.try_emplace(item{2});
        const bool made = static_cast<bool>(h);
        const std::size_t size_after = pool.size();
        if (made) {
            pool.destroy(h); // no cache: the place goes back at once
        }
        reserved_after = pool.stats().reserved_places;
        stop_failing();
        CHECK(made);
        CHECK(size_after == 2);
    });
    worker.join();
    CHECK(reserved_after == reserved_by_main); // the worker reserved nothing
    CHECK(pool.size() == 1);
    CHECK(pool.pin(first)->a == 1);
    pool.check_invariants(); // the worker holds no reservation
    pool.destroy(first);
}
