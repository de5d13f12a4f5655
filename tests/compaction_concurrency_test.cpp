// Runs under ThreadSanitizer (the tsan workflow): compaction runs in a loop on one thread while
// others add, read and release pages, and allocate unmovable frames. At the end every page
// holds its bytes and every frame of the arena is accounted for.
#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "support/arena_frames.hpp"

using namespace movable;

namespace {
using arena_type = frame_arena<4096, 4>;
using owner_type = test::arena_owner<arena_type>;
} // namespace

TEST_CASE("compaction running against page churn on other threads loses nothing") {
    arena_type arena(32 * arena_type::block_bytes);
    test::arena_frames<arena_type> frames{arena};
    owner_type owner(frames);
    constexpr std::size_t pages_per_thread = 96;
    constexpr int workers = 2;
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> corrupted{0};
    std::atomic<std::size_t> compactions{0};
    std::atomic<std::size_t> migrated{0};

    std::thread compaction_thread([&] {
        compactor<arena_type> compaction(arena);
        const migrate_mode modes[] = {migrate_mode::async, migrate_mode::sync_light,
                                      migrate_mode::sync};
        for (std::size_t round = 0; !stop.load(); ++round) {
            compact_request request;
            request.mode = modes[round % 3];
            request.max_frames_per_pass = round % 2 == 0 ? 0 : 8;
            request.order = round % 4 == 3 ? static_cast<int>(arena_type::max_order) : -1;
            // Both strategies, and the plans least_moves makes go stale as the workers churn.
            request.strategy =
                (round / 4) % 2 == 0 ? compact_strategy::least_moves : compact_strategy::scanners;
            migrated += compaction.compact(request).migrated;
            ++compactions;
        }
    });

    std::vector<std::thread> threads;
    for (int t = 0; t < workers; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 random(static_cast<unsigned>(t) + 1);
            const std::size_t first = static_cast<std::size_t>(t) * pages_per_thread;
            std::vector<bool> present(pages_per_thread, false);
            std::vector<frame*> unmovable;
            for (int step = 0; step < 3000; ++step) {
                const std::size_t slot = random() % pages_per_thread;
                const std::size_t page = first + slot;
                if (!present[slot]) {
                    present[slot] = owner.add_page(page) != nullptr;
                } else if (random() % 2 == 0) {
                    bool intact = false;
                    owner.release_page(page, &intact);
                    corrupted += intact ? 0 : 1;
                    present[slot] = false;
                }
                if (random() % 50 == 0) {
                    if (frame* f = arena.try_allocate(0, frame_kind::unmovable)) {
                        unmovable.push_back(f);
                    }
                }
                if (unmovable.size() > 8) {
                    arena.deallocate(*unmovable.front());
                    unmovable.erase(unmovable.begin());
                }
            }
            for (frame* f : unmovable) {
                arena.deallocate(*f);
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    // Let compaction see the final state at least once, then stop it.
    const std::size_t seen = compactions.load();
    while (compactions.load() < seen + 2) {
        std::this_thread::yield();
    }
    stop = true;
    compaction_thread.join();

    CHECK(corrupted.load() == 0);
    std::size_t live = 0;
    for (std::size_t page = 0; page < workers * pages_per_thread; ++page) {
        if (owner.frame_of(page) != nullptr) {
            CHECK(owner.page_intact(page));
            ++live;
        }
    }
    CHECK(arena.free_frames() + live == arena.frame_count());
    CHECK(owner.resident_count() == live);
    MESSAGE(compactions.load() << " compactions migrated " << migrated.load() << " frames");
    owner.release_all();
    CHECK(arena.stats().free_blocks_of_order(arena_type::max_order) == 32);
}
