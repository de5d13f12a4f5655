// Runs under ThreadSanitizer (the tsan workflow): migrators isolate and migrate frames while
// another thread releases them with clear_movable. Every frame must be accounted for. One
// release of a frame a migrator holds isolated is forced (the first migrator to isolate a batch
// waits before migrating it until that release is done); how the other releases fall between
// isolations and migrations is left to the scheduler.
#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "support/test_owner.hpp"

using namespace movable;
using movable::test::test_owner;
using movable::test::test_pool;

namespace {

struct tally {
    std::atomic<std::size_t> succeeded{0};
    std::atomic<std::size_t> released{0};
    std::atomic<std::size_t> put_back{0};
    std::atomic<std::size_t> failed{0};
    std::atomic<std::size_t> rounds{0};
};

// The forced release: the first migrator with an isolated batch names one of its frames' pages
// and waits, its batch still isolated, until the releasing thread has released that page.
struct release_while_isolated {
    static constexpr std::uintptr_t none = ~std::uintptr_t{0};
    std::atomic<bool> claimed{false};
    std::atomic<std::uintptr_t> page{none}; // set by the migrator
    std::atomic<bool> released{false};      // set by the releasing thread

    // Migrator side: called with a batch isolated, before migrating it.
    void offer(const frame_list& isolated) {
        if (isolated.empty() || claimed.exchange(true)) {
            return;
        }
        page.store(isolated.back()->private_word());
        page.notify_all();
        released.wait(false);
    }
    // Releasing side: waits for the page, releases it, lets the migrator go. True when the
    // release found the frame isolated (the core then frees it).
    bool take(test_owner& owner) {
        page.wait(none);
        const bool was_isolated = owner.release_page(page.load());
        released.store(true);
        released.notify_all();
        return was_isolated;
    }
};

void migrate_until(std::atomic<bool>& stop, test_owner& owner, test_pool& pool, std::size_t pages,
                   migrate_mode mode, tally& counts, release_while_isolated& forced) {
    while (!stop.load()) {
        frame_list isolated;
        for (std::size_t page = 0; page < pages; ++page) {
            frame* f = owner.frame_of(page);
            // f may be freed (and even reused) between frame_of and isolation: isolation
            // re-checks everything under its reference and the frame lock.
            if (f != nullptr && isolate_movable_frame(*f, mode)) {
                isolated.push_back(*f);
            }
        }
        forced.offer(isolated);
        const migrate_stats stats = migrate_frames(isolated, pool, mode);
        counts.succeeded += stats.succeeded;
        counts.released += stats.released;
        counts.put_back += stats.put_back;
        counts.failed += stats.failed;
        // async may leave frames whose lock was busy; give them back, waiting if need be.
        putback_movable_frames(isolated, pool);
        ++counts.rounds;
    }
}

void run_scenario(migrate_mode mode) {
    constexpr std::size_t pages = 192;
    test_pool pool(pages * 3);
    test_owner owner(pool);
    for (std::size_t page = 0; page < pages; ++page) {
        owner.add_page(page);
    }
    // Every third migration answers retry, every seventh busy, to exercise putback too.
    std::atomic<unsigned> decisions{0};
    owner.migrate_policy = [&](frame&) {
        const unsigned n = decisions++;
        return n % 7 == 0   ? migrate_status::busy
               : n % 3 == 0 ? migrate_status::retry
                            : migrate_status::success;
    };

    std::atomic<bool> stop{false};
    tally counts;
    release_while_isolated forced;
    std::vector<std::thread> migrators;
    for (int i = 0; i < 2; ++i) {
        migrators.emplace_back(
            [&] { migrate_until(stop, owner, pool, pages, mode, counts, forced); });
    }
    // The forced case: a page released while a migrator holds its frame isolated.
    CHECK(forced.take(owner));

    // Let the migrators get going, so releases race with migrations in flight, and let one
    // migration succeed first: once releases start, a slow migrator might find nothing left.
    while (counts.rounds.load() < 2 || counts.succeeded.load() == 0) {
        std::this_thread::yield();
    }
    std::vector<std::size_t> order(pages);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(42));
    std::size_t released_while_isolated = 1; // the forced one
    std::size_t corrupted = 0;
    for (std::size_t page : order) {
        if (page == forced.page.load()) {
            continue;
        }
        bool intact = false;
        if (owner.release_page(page, &intact)) {
            ++released_while_isolated;
        }
        corrupted += intact ? 0 : 1;
        std::this_thread::yield();
    }
    stop = true;
    for (auto& thread : migrators) {
        thread.join();
    }

    CHECK(corrupted == 0);
    CHECK(owner.pages_released == static_cast<int>(pages));
    CHECK(owner.resident_count() == 0);
    // Every frame is back in the pool: nothing leaked, nothing freed twice.
    CHECK(pool.free_count() == pool.frame_count());
    for (std::size_t i = 0; i < pool.frame_count(); ++i) {
        CHECK(pool.at(i).reference_count() == 0);
        CHECK_FALSE(pool.at(i).is_isolated());
        CHECK_FALSE(is_movable(pool.at(i)));
    }
    CHECK(counts.succeeded.load() > 0);
    CHECK(counts.released.load() >= 1); // the forced one, freed by the core
    MESSAGE("migrated " << counts.succeeded.load() << ", put back " << counts.put_back.load()
                        << ", released while isolated " << released_while_isolated);
}

} // namespace

TEST_CASE("concurrent migration and release with clear_movable account for every frame (sync)") {
    for (int repeat = 0; repeat < 3; ++repeat) {
        run_scenario(migrate_mode::sync);
    }
}

TEST_CASE("concurrent migration and release with clear_movable account for every frame (async)") {
    for (int repeat = 0; repeat < 3; ++repeat) {
        run_scenario(migrate_mode::async);
    }
}
