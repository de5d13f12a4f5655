#include <movable/frame.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "support/death_test.hpp"

using movable::frame;
using movable::frame_list;

static_assert(sizeof(frame) <= 64);

TEST_CASE("try_lock fails while another thread holds the lock and succeeds after it unlocks") {
    frame f;
    std::atomic<bool> locked_elsewhere{false};
    std::atomic<bool> release{false};
    std::thread holder([&] {
        f.lock();
        locked_elsewhere = true;
        while (!release) {
            std::this_thread::yield();
        }
        f.unlock();
    });
    while (!locked_elsewhere) {
        std::this_thread::yield();
    }
    CHECK(f.is_locked());
    CHECK_FALSE(f.try_lock());
    release = true;
    holder.join();
    CHECK(f.try_lock());
    f.unlock();
    CHECK_FALSE(f.is_locked());
}

TEST_CASE("lock blocks until the holder unlocks, then the waiter owns the frame") {
    frame f;
    f.lock();
    std::atomic<int> stage{0};
    std::thread waiter([&] {
        stage = 1;
        f.lock(); // must sleep here: the main thread holds the lock
        stage = 2;
        f.unlock();
    });
    // The waiter announces itself on the lock word before it sleeps: once it has, it is inside
    // lock(), whatever the scheduling.
    while (!f.has_lock_waiters()) {
        std::this_thread::yield();
    }
    // It cannot get past lock() while we hold it.
    for (int i = 0; i < 1000; ++i) {
        CHECK(stage.load() == 1);
        std::this_thread::yield();
    }
    f.unlock();
    waiter.join();
    CHECK(stage.load() == 2);
    CHECK_FALSE(f.is_locked());
    CHECK_FALSE(f.has_lock_waiters());
}

TEST_CASE("the frame lock gives mutual exclusion and works with std::unique_lock") {
    frame f;
    long counter = 0; // not atomic: the lock protects it
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                std::unique_lock<frame> guard(f);
                ++counter;
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    CHECK(counter == 80000);
}

// frame_arena maps its descriptors and never constructs them: zero bytes must be a default frame.
TEST_CASE("a default frame is all zero bytes, so zero-filled memory holds free frames") {
    // Construct over two different fillings: a byte the constructor writes reads the same in
    // both and must be zero; a byte it leaves alone (padding) keeps its filling.
    alignas(frame) std::byte first[sizeof(frame)];
    alignas(frame) std::byte second[sizeof(frame)];
    std::memset(first, 0xff, sizeof first);
    std::memset(second, 0xa5, sizeof second);
    const frame* a = ::new (static_cast<void*>(first)) frame;
    ::new (static_cast<void*>(second)) frame;
    std::size_t written = 0;
    for (std::size_t i = 0; i < sizeof(frame); ++i) {
        if (first[i] == second[i]) {
            CHECK(first[i] == std::byte{0});
            ++written;
        }
    }
    CHECK(written + 8 >= sizeof(frame)); // at most a word of padding
    CHECK(a->reference_count() == 0);
    CHECK_FALSE(a->is_locked());
    CHECK_FALSE(a->is_isolated());
    CHECK_FALSE(a->is_multi_frame());
    CHECK(a->mapping_word(std::memory_order_relaxed) == 0);
    CHECK(a->owner() == nullptr);
    CHECK(a->private_word() == 0);
    CHECK(a->allocator_word() == 0);
    CHECK(a->hook.list == nullptr);
}

TEST_CASE("try_get fails on a free frame and counts references on an allocated one") {
    frame f;
    CHECK(f.reference_count() == 0);
    CHECK_FALSE(f.try_get());
    CHECK(f.reference_count() == 0);
    f.acquire_first_reference();
    CHECK(f.reference_count() == 1);
    CHECK(f.try_get());
    CHECK(f.reference_count() == 2);
    f.put();
    CHECK(f.reference_count() == 1);
    f.release_last_reference();
    CHECK(f.reference_count() == 0);
    CHECK_FALSE(f.try_get());
}

// Whether the releaser is already spinning when the reference is dropped is up to the scheduler
// (a failed compare-exchange leaves no trace): what holds either way is that it does not free the
// frame before, and does after.
TEST_CASE("release_last_reference does not free a frame while a transient reference is held, "
          "and frees it once it is dropped") {
    frame f;
    f.acquire_first_reference();
    REQUIRE(f.try_get()); // a transient reference, as an isolator takes
    std::atomic<bool> releaser_started{false};
    std::atomic<bool> released{false};
    std::thread releaser([&] {
        releaser_started = true;
        f.release_last_reference();
        released = true;
    });
    while (!releaser_started.load()) {
        std::this_thread::yield();
    }
    for (int i = 0; i < 1000; ++i) {
        CHECK_FALSE(released.load());
        CHECK(f.reference_count() == 2);
        std::this_thread::yield();
    }
    f.put();
    releaser.join();
    CHECK(released.load());
    CHECK(f.reference_count() == 0);
}

TEST_CASE("owner-private and allocator words are kept") {
    frame f;
    f.set_private_word(0xdead'beef);
    f.set_allocator_word(17);
    CHECK(f.private_word() == 0xdead'beef);
    CHECK(f.allocator_word() == 17);
    CHECK(f.owner() == nullptr);
    CHECK(f.mapping_word(std::memory_order_relaxed) == 0);
}

TEST_CASE("frame_list keeps order and removes from the middle in constant time") {
    frame a;
    frame b;
    frame c;
    frame_list list;
    list.push_back(b);
    list.push_back(c);
    list.push_front(a);
    CHECK(list.size() == 3);
    CHECK(list.contains(b));
    std::vector<frame*> order;
    for (frame& f : list) {
        order.push_back(&f);
    }
    CHECK(order == std::vector<frame*>{&a, &b, &c});
    list.remove(b);
    CHECK_FALSE(list.contains(b));
    CHECK(list.front() == &a);
    CHECK(list.back() == &c);
    CHECK(a.hook.next == &c);
    CHECK(c.hook.prev == &a);
    frame_list other;
    other.push_back(b);
    list.splice_back(other);
    CHECK(other.empty());
    CHECK(list.back() == &b);
    CHECK(list.pop_front() == &a);
    CHECK(list.pop_front() == &c);
    CHECK(list.pop_front() == &b);
    CHECK(list.pop_front() == nullptr);
    CHECK(list.empty());
}

TEST_CASE("misusing a frame is caught by the contract checks") {
    MOVABLE_REQUIRE_CONTRACTS();
    using movable::test::dies_with;
    CHECK(dies_with("frame::unlock: frame is not locked", [] {
        frame f;
        f.unlock();
    }));
    CHECK(dies_with("frame::release_last_reference: frame is already free (double free)", [] {
        frame f;
        f.acquire_first_reference();
        f.release_last_reference();
        f.release_last_reference();
    }));
    CHECK(dies_with("frame::acquire_first_reference: frame is already allocated", [] {
        frame f;
        f.acquire_first_reference();
        f.acquire_first_reference();
    }));
    CHECK(dies_with("frame::put: dropped the last reference", [] {
        frame f;
        f.acquire_first_reference();
        f.put();
    }));
    CHECK(dies_with("frame_list: frame is already on a list", [] {
        frame f;
        frame_list first;
        frame_list second;
        first.push_back(f);
        second.push_back(f);
    }));
    CHECK(dies_with("frame_list::remove: frame is not on this list", [] {
        frame f;
        frame_list first;
        frame_list second;
        first.push_back(f);
        second.remove(f);
    }));
}
