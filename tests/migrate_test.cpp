#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "support/death_test.hpp"
#include "support/test_owner.hpp"

using namespace movable;
using movable::test::test_owner;
using movable::test::test_pool;

namespace {

// Isolates pages [0, count) of `owner` onto a list.
frame_list isolate_pages(test_owner& owner, std::size_t count,
                         migrate_mode mode = migrate_mode::sync) {
    frame_list list;
    for (std::size_t page = 0; page < count; ++page) {
        frame* f = owner.frame_of(page);
        REQUIRE(f != nullptr);
        REQUIRE(isolate_movable_frame(*f, mode));
        list.push_back(*f);
    }
    return list;
}

struct fixture {
    explicit fixture(std::size_t pages, std::size_t frames = 64) : pool(frames), owner(pool) {
        for (std::size_t page = 0; page < pages; ++page) {
            owner.add_page(page);
        }
    }
    test_pool pool;
    test_owner owner;
};

} // namespace

TEST_CASE("isolation takes a reference, sets ISOLATED and takes the frame off the owner's list") {
    fixture fx(1);
    frame& f = *fx.owner.frame_of(0);
    CHECK(f.reference_count() == 1);
    REQUIRE(isolate_movable_frame(f, migrate_mode::async));
    CHECK(f.is_isolated());
    CHECK(f.reference_count() == 2);
    CHECK_FALSE(f.is_locked());
    CHECK(fx.owner.resident_count() == 0);
    CHECK(putback_movable_frame(f) == putback_result::returned_to_owner);
    CHECK_FALSE(f.is_isolated());
    CHECK(f.reference_count() == 1);
    CHECK(fx.owner.resident_count() == 1);
}

TEST_CASE("successful migration moves the contents and the owner sees the new frame") {
    fixture fx(3);
    frame* before[3] = {fx.owner.frame_of(0), fx.owner.frame_of(1), fx.owner.frame_of(2)};
    frame_list list = isolate_pages(fx.owner, 3);
    const std::size_t free_before = fx.pool.free_count();

    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);

    CHECK(stats.succeeded == 3);
    CHECK(stats.failed == 0);
    CHECK(stats.put_back == 0);
    CHECK(list.empty());
    CHECK(fx.pool.free_count() == free_before); // three targets taken, three sources freed
    for (std::size_t page = 0; page < 3; ++page) {
        frame* now = fx.owner.frame_of(page);
        CHECK(now != before[page]);
        CHECK(fx.owner.page_intact(page));
        CHECK(movable_ops(*now) == &operations_for<test_owner>);
        CHECK(now->reference_count() == 1);
        // The source went back to the allocator: free, not movable, not isolated.
        CHECK(before[page]->reference_count() == 0);
        CHECK_FALSE(is_movable(*before[page]));
        CHECK_FALSE(before[page]->is_isolated());
    }
    CHECK(fx.owner.putback_calls == 0);
}

TEST_CASE("retry answers are tried again in later passes and then succeed") {
    fixture fx(2);
    std::atomic<int> retries_left{4};
    fx.owner.migrate_policy = [&](frame&) {
        return retries_left-- > 0 ? migrate_status::retry : migrate_status::success;
    };
    frame_list list = isolate_pages(fx.owner, 2);
    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);
    CHECK(stats.succeeded == 2);
    CHECK(stats.retried == 4);
    CHECK(stats.failed == 0);
    CHECK(stats.passes == 3); // pass 1: retry, retry; pass 2: retry, retry; pass 3: both succeed
    CHECK(fx.owner.putback_calls == 0);
    CHECK(fx.owner.page_intact(0));
    CHECK(fx.owner.page_intact(1));
}

TEST_CASE("a frame that answers retry forever fails after the bounded passes, put back once") {
    fixture fx(1);
    frame* original = fx.owner.frame_of(0);
    fx.owner.migrate_policy = [](frame&) { return migrate_status::retry; };
    frame_list list = isolate_pages(fx.owner, 1);
    const std::size_t free_before = fx.pool.free_count();

    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);

    CHECK(stats.passes == migrate_max_passes);
    CHECK(fx.owner.migrate_calls == migrate_max_passes);
    CHECK(stats.retried == static_cast<std::size_t>(migrate_max_passes));
    CHECK(stats.failed == 1);
    CHECK(stats.put_back == 1);
    CHECK(fx.owner.putback_calls == 1);
    CHECK(list.empty());
    CHECK(fx.owner.frame_of(0) == original);
    CHECK_FALSE(original->is_isolated());
    CHECK(original->reference_count() == 1);
    CHECK(fx.pool.free_count() == free_before); // every unused target went back
    CHECK(fx.owner.page_intact(0));
}

TEST_CASE("a frame released after its last retry counts as released, not also as failed") {
    fixture fx(2);
    frame* first = fx.owner.frame_of(0);
    int calls = 0;
    fx.owner.migrate_policy = [&](frame& src) {
        // The last pass: page 0 has had its last attempt; release it while it is isolated.
        if (++calls == 2 * migrate_max_passes && &src != first) {
            CHECK(fx.owner.release_page(0));
        }
        return migrate_status::retry;
    };
    frame_list list = isolate_pages(fx.owner, 2);
    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);
    CHECK(stats.failed == 1); // page 1 only
    CHECK(stats.released == 1);
    CHECK(stats.put_back == 1);
    CHECK(fx.owner.putback_calls == 1);
    CHECK(first->reference_count() == 0); // freed
}

TEST_CASE("busy is permanent for the call: one migrate attempt, one putback") {
    fixture fx(2);
    frame* busy_frame = fx.owner.frame_of(1);
    fx.owner.migrate_policy = [&](frame& src) {
        return &src == busy_frame ? migrate_status::busy : migrate_status::success;
    };
    frame_list list = isolate_pages(fx.owner, 2);
    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);
    CHECK(stats.succeeded == 1);
    CHECK(stats.failed == 1);
    CHECK(stats.retried == 0);
    CHECK(stats.put_back == 1);
    CHECK(fx.owner.migrate_calls == 2);
    CHECK(fx.owner.putback_calls == 1);
    CHECK(fx.owner.frame_of(1) == busy_frame);
    CHECK_FALSE(busy_frame->is_isolated());
    CHECK(fx.owner.page_intact(0));
    CHECK(fx.owner.page_intact(1));
}

TEST_CASE("the owner gets the caller's mode in every pass, the non-blocking ones included") {
    for (const migrate_mode mode :
         {migrate_mode::async, migrate_mode::sync_light, migrate_mode::sync}) {
        fixture fx(1);
        int calls = 0;
        int other_modes = 0;
        fx.owner.migrate_policy = [&](frame&) {
            ++calls;
            other_modes += fx.owner.last_mode.load() == mode ? 0 : 1;
            return migrate_status::retry;
        };
        frame_list list = isolate_pages(fx.owner, 1, mode);
        const migrate_stats stats = migrate_frames(list, fx.pool, mode);
        CHECK(calls == migrate_max_passes);
        CHECK(other_modes == 0);
        CHECK(stats.failed == 1);
    }
}

TEST_CASE("failed is permanent for the call like busy") {
    fixture fx(1);
    fx.owner.migrate_policy = [](frame&) { return migrate_status::failed; };
    frame_list list = isolate_pages(fx.owner, 1);
    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync_light);
    CHECK(stats.failed == 1);
    CHECK(fx.owner.migrate_calls == 1);
    CHECK(fx.owner.putback_calls == 1);
    CHECK(fx.owner.last_mode == migrate_mode::sync_light);
}

TEST_CASE("an owner that refuses isolation keeps its frame and the reference count is unchanged") {
    fixture fx(1);
    fx.owner.isolate_policy = [](frame&) { return false; };
    frame& f = *fx.owner.frame_of(0);
    CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK_FALSE(f.is_isolated());
    CHECK_FALSE(f.is_locked());
    CHECK(f.reference_count() == 1);
    CHECK(fx.owner.isolate_calls == 1);
    CHECK(fx.owner.resident_count() == 1);
}

TEST_CASE("isolating an isolated frame fails without asking the owner again") {
    fixture fx(1);
    frame& f = *fx.owner.frame_of(0);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK(fx.owner.isolate_calls == 1);
    CHECK(f.reference_count() == 2);
    CHECK(putback_movable_frame(f) == putback_result::returned_to_owner);
}

TEST_CASE("a frame whose reference count is zero is never isolated") {
    test_pool pool(2);
    frame& free_frame = pool.at(0);
    REQUIRE(free_frame.reference_count() == 0);
    CHECK_FALSE(isolate_movable_frame(free_frame, migrate_mode::sync));
    CHECK(free_frame.reference_count() == 0);
}

TEST_CASE("a frame that only looks movable (tag without owner) is not isolated") {
    fixture fx(1);
    frame& f = *fx.owner.frame_of(0);
    f.lock();
    // What an owner that is releasing the frame leaves for a moment: MOVABLE bit, no pointer.
    REQUIRE_FALSE(clear_movable(f));
    f.unlock();
    CHECK(is_movable(f));
    CHECK_FALSE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK(f.reference_count() == 1);
    CHECK(fx.owner.isolate_calls == 0);
    // Make it the owner's again so the fixture tears down clean.
    std::unique_lock<frame> guard(f);
    set_movable(f, fx.owner);
}

TEST_CASE("a frame that is not movable is not isolated") {
    test_pool pool(2);
    frame* f = pool.allocate_frame();
    CHECK_FALSE(isolate_movable_frame(*f, migrate_mode::sync));
    CHECK(f->reference_count() == 1);
    pool.free(*f);
}

TEST_CASE("target allocation failure stops the call and puts every unmigrated frame back") {
    fixture fx(4);
    frame* before[4];
    for (std::size_t page = 0; page < 4; ++page) {
        before[page] = fx.owner.frame_of(page);
    }
    frame_list list = isolate_pages(fx.owner, 4);
    fx.pool.fail_target_allocation_at(3); // pages 0 and 1 migrate, page 2 finds no target

    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);

    CHECK(stats.target_exhausted);
    CHECK(stats.succeeded == 2);
    CHECK(stats.failed == 0);
    CHECK(stats.put_back == 2);
    CHECK(stats.passes == 1);
    CHECK(list.empty());
    CHECK(fx.owner.migrate_calls == 2);
    CHECK(fx.owner.putback_calls == 2);
    CHECK(fx.owner.frame_of(0) != before[0]);
    CHECK(fx.owner.frame_of(1) != before[1]);
    CHECK(fx.owner.frame_of(2) == before[2]);
    CHECK(fx.owner.frame_of(3) == before[3]);
    for (std::size_t page = 0; page < 4; ++page) {
        CHECK(fx.owner.page_intact(page));
        CHECK_FALSE(fx.owner.frame_of(page)->is_isolated());
        CHECK(fx.owner.frame_of(page)->reference_count() == 1);
    }
    CHECK(fx.owner.resident_count() == 4);
    fx.pool.fail_target_allocation_at(0);
}

TEST_CASE("target allocation failure during a retry pass still puts back exactly once") {
    fixture fx(2);
    fx.owner.migrate_policy = [](frame&) { return migrate_status::retry; };
    frame_list list = isolate_pages(fx.owner, 2);
    fx.pool.fail_target_allocation_at(3); // pass 1 takes two targets, pass 2 fails at once

    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);

    CHECK(stats.target_exhausted);
    CHECK(stats.retried == 2);
    CHECK(stats.passes == 2);
    CHECK(stats.put_back == 2);
    CHECK(fx.owner.putback_calls == 2);
    fx.pool.fail_target_allocation_at(0);
}

TEST_CASE("a frame released while isolated is freed without migrate or putback") {
    fixture fx(2);
    frame* released_frame = fx.owner.frame_of(0);
    frame_list list = isolate_pages(fx.owner, 2);
    const std::size_t pool_releases_before = fx.pool.released_count();

    CHECK(fx.owner.release_page(0)); // the core had it isolated: it will free it

    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::sync);
    CHECK(stats.released == 1);
    CHECK(stats.succeeded == 1);
    CHECK(fx.owner.migrate_calls == 1); // only page 1
    CHECK(fx.owner.putback_calls == 0);
    CHECK(released_frame->reference_count() == 0);
    CHECK_FALSE(is_movable(*released_frame));
    CHECK_FALSE(released_frame->is_isolated());
    // page 1's old frame and page 0's frame went back to the pool
    CHECK(fx.pool.released_count() - pool_releases_before == 2);
}

TEST_CASE("putting back a frame its owner released hands it to the caller to free") {
    fixture fx(1);
    frame& f = *fx.owner.frame_of(0);
    REQUIRE(isolate_movable_frame(f, migrate_mode::sync));
    CHECK(fx.owner.release_page(0));
    CHECK(putback_movable_frame(f) == putback_result::released);
    CHECK(fx.owner.putback_calls == 0);
    CHECK(f.reference_count() == 1);
    CHECK_FALSE(f.is_isolated());
    CHECK_FALSE(is_movable(f));
    fx.pool.free(f);
    CHECK(f.reference_count() == 0);
}

TEST_CASE("putback_movable_frames returns owned frames and frees released ones") {
    fixture fx(3);
    frame_list list = isolate_pages(fx.owner, 3);
    CHECK(fx.owner.release_page(1));
    const std::size_t free_before = fx.pool.free_count();
    CHECK(putback_movable_frames(list, fx.pool) == 2);
    CHECK(list.empty());
    CHECK(fx.pool.free_count() == free_before + 1);
    CHECK(fx.owner.putback_calls == 2);
}

TEST_CASE("async migration skips a frame whose lock is held elsewhere, at once and isolated") {
    fixture fx(2);
    frame* held = fx.owner.frame_of(0);
    frame_list list = isolate_pages(fx.owner, 2, migrate_mode::async);
    std::unique_lock<frame> elsewhere(*held); // e.g. the owner working on that frame

    const migrate_stats stats = migrate_frames(list, fx.pool, migrate_mode::async);

    // Returned without waiting (we still hold the lock, on this very thread).
    CHECK(stats.succeeded == 1);
    CHECK(stats.retried == static_cast<std::size_t>(migrate_max_passes));
    CHECK(stats.failed == 1);
    CHECK(stats.left_isolated == 1);
    CHECK(stats.put_back == 0);
    CHECK(list.size() == 1);
    CHECK(list.front() == held);
    CHECK(held->is_isolated());
    CHECK(fx.owner.putback_calls == 0);
    elsewhere.unlock();
    CHECK(putback_movable_frames(list, fx.pool) == 1);
    CHECK_FALSE(held->is_isolated());
    CHECK(fx.owner.page_intact(0));
}

TEST_CASE("sync migration waits for a frame lock held elsewhere after its non-blocking passes") {
    fixture fx(1);
    frame* held = fx.owner.frame_of(0);
    frame_list list = isolate_pages(fx.owner, 1);
    held->lock();
    std::atomic<bool> done{false};
    migrate_stats stats;
    std::thread migrator([&] {
        stats = migrate_frames(list, fx.pool, migrate_mode::sync);
        done = true;
    });
    // Only a pass that may wait calls lock(); the non-blocking passes before it only try-lock.
    // So once the migrator sleeps on our lock, all of them have found it busy.
    while (!held->has_lock_waiters() && !done.load()) {
        std::this_thread::yield();
    }
    CHECK_FALSE(done.load()); // it cannot finish: it must wait for our lock
    held->unlock();
    migrator.join();
    CHECK(stats.succeeded == 1);
    CHECK(stats.retried == static_cast<std::size_t>(migrate_nonblocking_passes));
    CHECK(fx.owner.frame_of(0) != held);
    CHECK(fx.owner.page_intact(0));
}

TEST_CASE("protocol violations by an owner or a caller are contract violations") {
    MOVABLE_REQUIRE_CONTRACTS();
    CHECK(test::dies_with("migrate_frames: owner answered success without set_movable(dst)", [] {
        fixture fx(1);
        struct lazy_owner {
            bool isolate(frame&, migrate_mode) noexcept { return true; }
            migrate_status migrate(frame&, frame&, migrate_mode) noexcept {
                return migrate_status::success;
            }
            void putback(frame&) noexcept {}
        } lazy;
        frame* f = fx.pool.allocate_frame();
        f->lock();
        set_movable(*f, lazy);
        f->unlock();
        frame_list list;
        REQUIRE(isolate_movable_frame(*f, migrate_mode::sync));
        list.push_back(*f);
        (void)migrate_frames(list, fx.pool, migrate_mode::sync);
    }));
    CHECK(test::dies_with("putback_movable_frame: frame is not isolated", [] {
        fixture fx(0);
        frame* f = fx.pool.allocate_frame(); // movable, on no list, never isolated
        f->lock();
        set_movable(*f, fx.owner);
        f->unlock();
        (void)putback_movable_frame(*f);
    }));
    CHECK(test::dies_with("putback_movable_frame: frame is still on a list", [] {
        fixture fx(1);
        frame_list list = isolate_pages(fx.owner, 1);
        (void)putback_movable_frame(*list.front());
    }));
}

TEST_CASE("putback_or_free_movable_frame: async leaves a busy frame isolated; a released frame "
          "is freed") {
    fixture fx(2);
    frame* held = fx.owner.frame_of(0);
    frame* released = fx.owner.frame_of(1);
    frame_list list = isolate_pages(fx.owner, 2, migrate_mode::async);
    list.remove(*held);
    list.remove(*released);
    {
        std::unique_lock<frame> elsewhere(*held);
        CHECK_FALSE(putback_or_free_movable_frame(*held, fx.pool, migrate_mode::async));
        CHECK(held->is_isolated());
    }
    CHECK(putback_or_free_movable_frame(*held, fx.pool, migrate_mode::async) ==
          putback_result::returned_to_owner);
    CHECK_FALSE(held->is_isolated());
    CHECK(fx.owner.putback_calls == 1);

    CHECK(fx.owner.release_page(1));
    const std::size_t free_before = fx.pool.free_count();
    CHECK(putback_or_free_movable_frame(*released, fx.pool, migrate_mode::sync) ==
          putback_result::released);
    CHECK(fx.pool.free_count() == free_before + 1);
    CHECK(fx.owner.putback_calls == 1);
    CHECK(fx.owner.page_intact(0));
}
