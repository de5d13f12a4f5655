// Regression tests for bugs the kernel had in this area, each named for the bug. They run under
// ThreadSanitizer too (label concurrency).
#include <movable/compaction.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/zspage_pool.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "support/arena_frames.hpp"
#include "support/balloon_hosts.hpp"

using namespace movable;

namespace {
using arena_type = frame_arena<4096, 4>;

struct counting_owner {
    std::atomic<int> isolations{0};
    bool isolate(frame&, migrate_mode) noexcept {
        ++isolations;
        return true;
    }
    migrate_status migrate(frame&, frame&, migrate_mode) noexcept { return migrate_status::busy; }
    void putback(frame&) noexcept {}
};
} // namespace

// The kernel once trusted a lockless "movable" test on words that only looked like a movable
// mapping (other users of the low mapping bits, pages being freed): a page in the middle of
// being released was isolated and its driver called after it let go.
TEST_CASE("regression: a frame whose mapping word only looks movable is never isolated") {
    arena_type arena(2 * arena_type::block_bytes);
    counting_owner owner;

    // 1. Released by its owner: MOVABLE bit kept, operations pointer gone.
    frame& released = arena.allocate(0);
    {
        std::unique_lock<frame> guard(released);
        set_movable(released, owner);
        REQUIRE_FALSE(clear_movable(released));
    }
    CHECK(is_movable(released)); // the lockless test says yes...
    CHECK_FALSE(isolate_movable_frame(released, migrate_mode::sync)); // ...the locked one no
    CHECK(released.reference_count() == 1);

    // 2. Freed: the allocator clears the word, and a free frame cannot be referenced at all.
    arena.deallocate(released);
    CHECK_FALSE(is_movable(released));
    CHECK_FALSE(isolate_movable_frame(released, migrate_mode::sync));

    // 3. The tail frames of a multi-frame allocation hold no reference of their own.
    frame& head = arena.allocate(2);
    frame& tail = arena.frame_at(arena.index_of(head) + 1);
    CHECK(tail.reference_count() == 0);
    CHECK_FALSE(isolate_movable_frame(tail, migrate_mode::sync));
    arena.deallocate(head, 2);

    // 4. A compaction over all of these isolates none of them.
    compactor<arena_type> compaction(arena);
    const compact_stats stats = compaction.compact();
    CHECK(stats.isolated == 0);
    CHECK(owner.isolations == 0);
}

// The kernel's balloon migration reached the balloon (and its lock) through page->mapping,
// which the balloon could change or free under it. Here the owner pointer lives in the frame,
// is written only under the frame lock, and set_movable(dst, *this) makes it follow the frame.
TEST_CASE("regression: a balloon reached through a migrated frame is the balloon that lent it") {
    arena_type arena(8 * arena_type::block_bytes);
    test::recording_host host_a;
    test::recording_host host_b;
    balloon<arena_type, test::recording_host> first(arena, host_a);
    balloon<arena_type, test::recording_host> second(arena, host_b);
    std::vector<frame*> filler;
    // Interleave the balloons' frames with frames we free, so compaction moves both.
    for (int i = 0; i < 40; ++i) {
        REQUIRE(first.inflate(1).inflated == 1);
        REQUIRE(second.inflate(1).inflated == 1);
        filler.push_back(&arena.allocate(0));
    }
    for (frame* f : filler) {
        arena.deallocate(*f);
    }
    std::atomic<bool> stop{false};
    std::thread deflater([&] {
        // Deflate and re-inflate the second balloon while the first one's frames migrate.
        while (!stop.load()) {
            second.deflate(3);
            second.inflate(3);
        }
    });
    compactor<arena_type> compaction(arena);
    std::size_t migrated = 0;
    for (int round = 0; round < 20; ++round) {
        migrated += compaction.compact().migrated;
        filler.clear();
        for (int i = 0; i < 10; ++i) { // fragment again
            if (frame* f = arena.try_allocate(0)) {
                filler.push_back(f);
            }
        }
        for (std::size_t i = 0; i < filler.size(); i += 2) {
            arena.deallocate(*filler[i]);
        }
        for (std::size_t i = 1; i < filler.size(); i += 2) {
            arena.deallocate(*filler[i]);
        }
    }
    stop = true;
    deflater.join();
    CHECK(migrated > 0);
    // Every lent frame's owner pointer names the balloon whose host holds it.
    for (frame* f : host_a.held) {
        CHECK(f->owner() == static_cast<void*>(&first));
    }
    for (frame* f : host_b.held) {
        CHECK(f->owner() == static_cast<void*>(&second));
    }
    CHECK(host_a.held.size() == first.size());
    CHECK(host_b.held.size() == second.size());
    CHECK(host_a.double_lends + host_a.unknown_returns + host_b.double_lends +
              host_b.unknown_returns ==
          0);
}

// zsmalloc once kept bits changed under different locks (an "isolated" count and the fullness
// group) in one bit-field word: two read-modify-writes under different locks lost each other's
// updates. A frame keeps each such field in a word of its own, or changes its shared flags word
// only with atomic read-modify-writes: the lock bit (frame lock) and ISOLATED (core) and the
// allocator word (arena lock) never lose an update.
TEST_CASE("regression: fields changed under different locks never lose each other's updates") {
    arena_type arena(2 * arena_type::block_bytes);
    counting_owner owner;
    frame& f = arena.allocate(0);
    {
        std::unique_lock<frame> guard(f);
        set_movable(f, owner);
    }
    std::atomic<bool> stop{false};
    std::atomic<int> isolated_rounds{0};
    // The three start together; how their read-modify-writes interleave after that is up to the
    // scheduler (and ThreadSanitizer): what must hold is that none is lost, whatever the order.
    std::latch started(3);
    // Thread 1: isolate and put back (ISOLATED bit, reference count, under the frame lock).
    std::thread isolator([&] {
        started.arrive_and_wait();
        for (int i = 0; i < 2000; ++i) {
            if (isolate_movable_frame(f, migrate_mode::async)) {
                CHECK(f.is_isolated());
                CHECK(putback_movable_frame(f) == putback_result::returned_to_owner);
                ++isolated_rounds;
            }
        }
        stop = true;
    });
    // Thread 2: the owner's private word, no lock of the core's.
    std::thread owner_writer([&] {
        started.arrive_and_wait();
        std::uintptr_t value = 0;
        while (!stop.load()) {
            f.set_private_word(++value);
        }
    });
    // Thread 3 (this one): the arena changes neighbours' allocator words under its lock.
    std::size_t churn = 0;
    started.arrive_and_wait();
    while (!stop.load()) {
        frame& neighbour = arena.allocate(0);
        arena.deallocate(neighbour);
        ++churn;
    }
    isolator.join();
    owner_writer.join();
    CHECK(isolated_rounds > 0);
    CHECK_FALSE(f.is_isolated());
    CHECK_FALSE(f.is_locked());
    CHECK(f.reference_count() == 1);
    CHECK(movable_ops(f) == &operations_for<counting_owner>);
    // The allocator's view of the frame survived all of it.
    CHECK_FALSE(arena.is_free(arena.index_of(f)));
    {
        std::unique_lock<frame> guard(f);
        REQUIRE_FALSE(clear_movable(f));
    }
    arena.deallocate(f);
    CHECK(arena.free_frames() == arena.frame_count());
    MESSAGE(isolated_rounds.load() << " isolations raced " << churn << " arena operations");
}

// zsmalloc once freed a zspage while page migration held one of its pages isolated; the
// migration then used the freed zspage. Here freeing the zspage hands the isolated frame to the
// core (clear_movable answers "isolated"), which frees it without calling the pool.
TEST_CASE(
    "regression: freeing a zspage while one of its frames is isolated leaves it to the core") {
    arena_type arena(4 * arena_type::block_bytes);
    std::size_t free_before = 0;
    {
        zspage_pool<arena_type> pool(arena, {.thread_cache = false}); // frees empty at once
        free_before = arena.free_frames();
        std::vector<zspage_pool<arena_type>::handle> handles;
        for (int i = 0; i < 3; ++i) {
            handles.push_back(pool.allocate(1000)); // one zspage of this class
        }
        // Find a frame of that zspage and isolate it, as a compactor would.
        frame* isolated = nullptr;
        for (std::size_t i = 0; i < arena.frame_count() && isolated == nullptr; ++i) {
            if (!arena.is_free(i) && isolate_movable_frame(arena.frame_at(i), migrate_mode::sync)) {
                isolated = &arena.frame_at(i);
            }
        }
        REQUIRE(isolated != nullptr);
        CHECK(pool.stats().isolated_frames == 1);
        for (auto h : handles) {
            pool.deallocate(h); // the zspage empties and is freed
        }
        CHECK(pool.stats().isolated_frames == 0);
        CHECK(pool.stats().frames_released_while_isolated == 1);
        CHECK(movable_ops(*isolated) == nullptr); // movable type, no owner
        // The compactor's next step: migrate (or put back) finds it released and frees it.
        frame_list list;
        list.push_back(*isolated);
        arena_targets<arena_type> targets{arena};
        const migrate_stats stats = migrate_frames(list, targets, migrate_mode::sync);
        CHECK(stats.released == 1);
        CHECK(stats.succeeded == 0);
        CHECK(arena.free_frames() == free_before);
    }
    CHECK(arena.free_frames() == arena.frame_count());
}

// The kernel had to make zsmalloc's pool destruction wait for migrations in flight. The
// destructor waits for a frame a migration holds and hands isolated frames to the core; both
// orders of a migration in flight and the destructor are forced in zspage_pool_concurrency_test
// ("destroying a pool while one of its frames is being migrated ..."). Here pools come and go
// while a compactor keeps migrating on another thread: whichever migrations happen to be in
// flight when a destructor runs (the scheduler decides; the counts below say what happened),
// every frame comes back.
TEST_CASE("regression: pools destroyed while another thread keeps compacting their arena give "
          "every frame back") {
    arena_type arena(64 * arena_type::block_bytes);
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> migrated{0};
    std::atomic<std::size_t> released{0};
    std::thread compaction_thread([&] {
        compactor<arena_type> compaction(arena);
        while (!stop.load()) {
            const compact_stats stats = compaction.compact();
            migrated += stats.migrated;
            released += stats.released;
        }
    });
    std::mt19937 random(3);
    for (int round = 0; round < 30; ++round) {
        auto pool = std::make_unique<zspage_pool<arena_type>>(arena);
        std::vector<zspage_pool<arena_type>::handle> handles;
        for (int i = 0; i < 200; ++i) {
            if (auto h = pool->try_allocate(100 + random() % 2000)) {
                handles.push_back(h);
            }
        }
        for (std::size_t i = 0; i < handles.size(); i += 2) {
            pool->deallocate(handles[i]); // holes, so the compactor has work
        }
        pool.reset(); // objects still allocated, migrations possibly in flight
    }
    stop = true;
    compaction_thread.join();
    CHECK(arena.free_frames() == arena.frame_count()); // every frame came back
    MESSAGE(migrated.load() << " frames migrated, " << released.load()
                            << " freed by the compactor after their pool let go of them");
}
