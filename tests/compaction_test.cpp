#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/arena_frames.hpp"

using namespace movable;

namespace {

// Built twice: as compaction_test for the default strategy (least_moves) and as
// compaction_scanners_test with MOVABLE_TEST_STRATEGY=scanners. Every request goes through
// tested_request(); assertions about how a strategy gets there say which one they are for.
#ifndef MOVABLE_TEST_STRATEGY
#define MOVABLE_TEST_STRATEGY least_moves
#endif
constexpr compact_strategy tested_strategy = compact_strategy::MOVABLE_TEST_STRATEGY;
constexpr bool testing_scanners = tested_strategy == compact_strategy::scanners;
// What a full compaction reports when it finishes.
constexpr compact_outcome full_outcome =
    testing_scanners ? compact_outcome::scanners_met : compact_outcome::planned;

compact_request tested_request() {
    compact_request request;
    request.strategy = tested_strategy;
    return request;
}

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
constexpr std::size_t block = arena_type::block_frames;
using owner_type = test::arena_owner<arena_type>;

// An arena of `blocks` max-order blocks, filled with pages, then `freed` of them released at
// random: the fragmented state compaction starts from.
struct churned {
    churned(std::size_t blocks, std::size_t freed, unsigned seed = 42)
        : arena(blocks * arena_type::block_bytes), frames{arena}, owner(frames) {
        pages = arena.frame_count();
        for (std::size_t page = 0; page < pages; ++page) {
            REQUIRE(owner.add_page(page) != nullptr);
        }
        std::vector<std::size_t> order(pages);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), std::mt19937(seed));
        for (std::size_t i = 0; i < freed; ++i) {
            owner.release_page(order[i]);
        }
        released.insert(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(freed));
    }

    bool all_pages_intact() {
        for (std::size_t page = 0; page < pages; ++page) {
            if (released.count(page) == 0 && !owner.page_intact(page)) {
                return false;
            }
        }
        return true;
    }

    arena_type arena;
    test::arena_frames<arena_type> frames;
    owner_type owner;
    std::size_t pages = 0;
    std::set<std::size_t> released;
};

// Blocks that are neither wholly free nor wholly used.
std::size_t partly_free_blocks(arena_type& arena, const std::set<std::size_t>& excluded = {}) {
    std::size_t partial = 0;
    for (std::size_t b = 0; b < arena.block_count(); ++b) {
        if (excluded.count(b) != 0) {
            continue;
        }
        std::size_t free_in_block = 0;
        for (std::size_t i = b * block; i < (b + 1) * block; ++i) {
            free_in_block += arena.is_free(i) ? 1 : 0;
        }
        partial += (free_in_block != 0 && free_in_block != block) ? 1 : 0;
    }
    return partial;
}

// Begins an async compaction (4 frames per pass) and runs one pass while the lock of the first
// frame it isolates is held "elsewhere" (taken here, single-threaded, from the owner's isolate
// callback once the core has let go of it), so the pass can neither migrate nor put it back.
// Then lets go of the lock and returns that frame, still isolated.
frame* leave_one_frame_isolated(churned& c, compactor<arena_type>& compaction) {
    frame* held = nullptr;
    c.owner.isolate_policy = [&held](frame& f) {
        if (held == nullptr) {
            held = &f; // locked by the core right now; isolated once this returns
        } else if (!held->is_locked()) {
            held->lock();
        }
        return true;
    };
    compact_request request = tested_request();
    request.mode = migrate_mode::async;
    request.max_frames_per_pass = 4;
    compaction.begin(request);
    compaction.pass();
    REQUIRE(held != nullptr);
    REQUIRE(held->is_isolated());
    held->unlock();
    c.owner.isolate_policy = nullptr;
    return held;
}

} // namespace

TEST_CASE("full compaction keeps every page intact and leaves every free frame in a free "
          "max-order block") {
    churned c(32, 32 * block / 2); // half the frames freed at random
    REQUIRE(c.arena.stats().free_blocks_of_order(arena_type::max_order) == 0);
    compactor<arena_type> compaction(c.arena);

    const compact_stats stats = compaction.compact(tested_request());

    CHECK(stats.outcome == full_outcome);
    CHECK(stats.migrated > 0);
    CHECK(stats.bytes_moved == stats.migrated * arena_type::frame_size);
    CHECK(stats.failed == 0);
    CHECK(c.all_pages_intact()); // and the owner's table points at the new frames
    const auto arena_stats = c.arena.stats();
    CHECK(arena_stats.free_frames == 16 * block);
    CHECK(arena_stats.free_blocks_of_order(arena_type::max_order) == 16);
    CHECK(stats.max_order_blocks_freed == 16);
    CHECK(partly_free_blocks(c.arena) == 0);
    if constexpr (testing_scanners) {
        // Used frames gathered at the top.
        for (std::size_t page = 0; page < c.pages; ++page) {
            if (c.released.count(page) == 0) {
                CHECK(c.arena.index_of(*c.owner.frame_of(page)) >= 16 * block);
            }
        }
    } else {
        // The fewest moves that free those blocks: the used frames of the 16 sparsest.
        CHECK(stats.minimum_moves > 0);
        CHECK(stats.migrated == stats.minimum_moves);
    }
    MESSAGE("migrated " << stats.migrated << " in " << stats.rounds << " sweeps, scanned "
                        << stats.migrate_scanned << " + " << stats.free_scanned);
}

TEST_CASE("compaction never moves unmovable frames and frees the blocks that hold none") {
    churned c(32, 32 * block / 2, 7);
    // Unmovable allocations land in the holes of whatever blocks they claim.
    std::vector<frame*> unmovable;
    for (int i = 0; i < 20; ++i) {
        frame& f = c.arena.allocate(0, frame_kind::unmovable);
        std::memset(c.arena.address_of(f), 0x77, arena_type::frame_size);
        unmovable.push_back(&f);
    }
    std::set<std::size_t> unmovable_blocks;
    for (frame* f : unmovable) {
        unmovable_blocks.insert(c.arena.index_of(*f) / block);
    }
    const std::size_t free_blocks_before =
        c.arena.stats().free_blocks_of_order(arena_type::max_order);
    compactor<arena_type> compaction(c.arena);

    const compact_stats stats = compaction.compact(tested_request());

    CHECK(c.all_pages_intact());
    for (frame* f : unmovable) {
        CHECK_FALSE(c.arena.is_free(c.arena.index_of(*f)));
        CHECK(f->reference_count() == 1);
        const std::byte* memory = c.arena.address_of(*f);
        CHECK(std::all_of(memory, memory + arena_type::frame_size,
                          [](std::byte b) { return b == std::byte{0x77}; }));
    }
    if constexpr (testing_scanners) {
        // Every block without an unmovable frame is wholly free or wholly used, but for at most
        // the one where the scanners met.
        CHECK(partly_free_blocks(c.arena, unmovable_blocks) <= 1);
    } else {
        // Blocks without an unmovable frame emptied, with the fewest moves.
        CHECK(stats.migrated == stats.minimum_moves);
    }
    CHECK(c.arena.stats().free_blocks_of_order(arena_type::max_order) > free_blocks_before);
    MESSAGE("unmovable frames in " << unmovable_blocks.size() << " blocks; freed "
                                   << stats.max_order_blocks_freed << " max-order blocks");
    for (frame* f : unmovable) {
        c.arena.deallocate(*f);
    }
}

TEST_CASE("frames whose owner refuses isolation stay where they are") {
    churned c(8, 8 * block / 2);
    std::set<std::size_t> pinned;
    for (std::size_t page = 0; page < c.pages && pinned.size() < 10; page += 7) {
        if (c.released.count(page) == 0) {
            pinned.insert(page);
        }
    }
    std::map<std::size_t, frame*> where;
    for (std::size_t page : pinned) {
        where[page] = c.owner.frame_of(page);
    }
    c.owner.isolate_policy = [&](frame& f) { return pinned.count(f.private_word()) == 0; };
    compactor<arena_type> compaction(c.arena);
    const compact_stats stats = compaction.compact(tested_request());
    CHECK(stats.migrated > 0);
    for (std::size_t page : pinned) {
        CHECK(c.owner.frame_of(page) == where[page]);
    }
    CHECK(c.all_pages_intact());
}

TEST_CASE("busy frames are put back once and stay; retried frames move in a later pass") {
    churned c(8, 8 * block / 2);
    std::set<std::size_t> busy_pages;
    std::map<std::size_t, int> retries;
    for (std::size_t page = 1; page < c.pages; page += 9) {
        if (c.released.count(page) == 0) {
            busy_pages.insert(page);
        }
    }
    std::mutex policy_mutex;
    c.owner.migrate_policy = [&](frame& src) {
        std::lock_guard guard(policy_mutex);
        const std::size_t page = src.private_word();
        if (busy_pages.count(page) != 0) {
            return migrate_status::busy;
        }
        if (page % 5 == 0 && retries[page]++ < 2) {
            return migrate_status::retry;
        }
        return migrate_status::success;
    };
    std::map<std::size_t, frame*> busy_where;
    for (std::size_t page : busy_pages) {
        busy_where[page] = c.owner.frame_of(page);
    }
    compactor<arena_type> compaction(c.arena);
    const compact_stats stats = compaction.compact(tested_request());
    for (std::size_t page : busy_pages) {
        CHECK(c.owner.frame_of(page) == busy_where[page]);
    }
    CHECK(stats.failed >= 1);
    CHECK(c.owner.putback_calls == static_cast<int>(stats.failed));
    for (auto [page, count] : retries) {
        if constexpr (testing_scanners) {
            CHECK(count == 3); // two retries, then success
        } else {
            // Two retries, then success; least_moves may move a frame once more when a region
            // with a busy frame was given up and one that received targets stands in for it.
            CHECK(count >= 3);
            CHECK(count <= 4);
        }
    }
    CHECK(c.all_pages_intact());
}

TEST_CASE("pages released while isolated during compaction are freed, not migrated") {
    churned c(8, 8 * block / 4); // dense enough that the first batch isolates more than 5

    std::vector<std::size_t> isolated_pages;
    std::mutex isolated_mutex;
    c.owner.isolate_policy = [&](frame& f) {
        std::lock_guard guard(isolated_mutex);
        isolated_pages.push_back(f.private_word());
        return true;
    };
    std::size_t released_by_owner = 0;
    bool first = true;
    c.owner.migrate_policy = [&](frame& src) {
        if (first) {
            first = false;
            std::vector<std::size_t> victims;
            {
                std::lock_guard guard(isolated_mutex);
                for (std::size_t page : isolated_pages) {
                    if (page != src.private_word() && victims.size() < 5) {
                        victims.push_back(page);
                    }
                }
            }
            for (std::size_t page : victims) {
                released_by_owner += c.owner.release_page(page) ? 1 : 0;
                c.released.insert(page);
            }
        }
        return migrate_status::success;
    };
    const std::size_t free_before = c.arena.free_frames();
    compactor<arena_type> compaction(c.arena);
    const compact_stats stats = compaction.compact(tested_request());
    CHECK(released_by_owner == 5);
    CHECK(stats.released == 5);
    CHECK(c.owner.putback_calls == 0);
    CHECK(c.arena.free_frames() == free_before + 5);
    CHECK(c.all_pages_intact());
}

TEST_CASE("incremental passes never exceed their frame and byte budgets") {
    for (const auto& [frames, bytes] : {std::pair<std::size_t, std::size_t>{10, 0},
                                        {0, 5 * arena_type::frame_size},
                                        {7, 3 * arena_type::frame_size}}) {
        churned c(16, 16 * block / 2);
        compactor<arena_type> compaction(c.arena);
        compact_request request = tested_request();
        request.max_frames_per_pass = frames;
        request.max_bytes_per_pass = bytes;
        const std::size_t limit = std::min(frames == 0 ? SIZE_MAX : frames,
                                           bytes == 0 ? SIZE_MAX : bytes / arena_type::frame_size);
        compaction.begin(request);
        int passes = 0;
        compact_progress progress = compact_progress::incomplete;
        while (progress == compact_progress::incomplete) {
            const std::size_t free_before = c.arena.free_frames();
            progress = compaction.pass();
            ++passes;
            // Between passes the program runs: the pages are all readable.
            CHECK(c.all_pages_intact());
            CHECK(c.arena.free_frames() == free_before); // a pass holds no targets back
            REQUIRE(passes < 10000);
        }
        const compact_stats stats = compaction.end();
        CHECK(stats.passes >= stats.migrated / limit);
        CHECK(c.arena.stats().free_blocks_of_order(arena_type::max_order) == 8);
        CHECK(partly_free_blocks(c.arena) == 0);
    }
}

TEST_CASE("each incremental pass moves at most its budget") {
    churned c(16, 16 * block / 2);
    compactor<arena_type> compaction(c.arena);
    compact_request request = tested_request();
    request.max_bytes_per_pass = 4 * arena_type::frame_size;
    compaction.begin(request);
    for (;;) {
        // Each migration is one owner callback: count them per pass.
        const int isolations_before = c.owner.isolate_calls;
        const int migrations_before = c.owner.migrate_calls;
        const std::size_t scanned_before =
            compaction.stats().migrate_scanned + compaction.stats().free_scanned;
        const compact_progress progress = compaction.pass();
        CHECK(c.owner.isolate_calls - isolations_before <= 4);
        CHECK(c.owner.migrate_calls - migrations_before <= 4);
        // The scanners' work per pass is bounded too: a pause stays short on long stretches.
        const std::size_t scanned =
            compaction.stats().migrate_scanned + compaction.stats().free_scanned - scanned_before;
        CHECK(scanned <=
              std::max<std::size_t>(4 * compactor<arena_type>::scan_frames_per_budget_frame, 1024));
        if (progress == compact_progress::done) {
            break;
        }
    }
    const compact_stats stats = compaction.end();
    CHECK(stats.passes * 4 >= stats.migrated);
    CHECK(c.arena.stats().free_blocks_of_order(arena_type::max_order) == 8);
}

TEST_CASE("order-targeted compaction stops as soon as a block of that order is free") {
    churned full_run(32, 32 * block / 2, 99);
    const compact_stats full = compactor<arena_type>(full_run.arena).compact(tested_request());

    churned c(32, 32 * block / 2, 99); // the same churn
    compact_request request = tested_request();
    request.order = static_cast<int>(arena_type::max_order);
    const compact_stats stats = compactor<arena_type>(c.arena).compact(request);
    CHECK(stats.outcome == compact_outcome::order_available);
    CHECK(c.arena.has_free_block(arena_type::max_order));
    CHECK(stats.migrated < full.migrated);
    CHECK(c.all_pages_intact());
    MESSAGE("order-targeted moved " << stats.migrated << " frames, full " << full.migrated);
}

TEST_CASE("failed order-targeted compaction is deferred 1, 2, 4 ... 64 times, reset on success") {
    churned c(4, 4 * block / 2);
    bool refuse = true;
    c.owner.isolate_policy = [&](frame&) { return !refuse; };
    compactor<arena_type> compaction(c.arena);
    compact_request request = tested_request();
    request.order = static_cast<int>(arena_type::max_order);

    CHECK(compaction.compact(request).outcome == full_outcome); // fails
    CHECK(compaction.defer_shift() == 1);
    CHECK(compaction.is_deferred(request.order));
    CHECK_FALSE(compaction.is_deferred(1)); // smaller orders than the failed one are not

    std::vector<int> deferred_runs; // deferred requests between two real attempts
    int deferred = 0;
    for (int attempt = 0; attempt < 1 + 2 + 4 + 8 + 16 + 32 + 64 + 64 + 6; ++attempt) {
        const compact_stats stats = compaction.compact(request);
        if (stats.outcome == compact_outcome::deferred) {
            ++deferred;
            CHECK(stats.migrate_scanned == 0); // returned at once
        } else {
            CHECK(stats.outcome == full_outcome);
            deferred_runs.push_back(deferred);
            deferred = 0;
        }
    }
    CHECK(deferred_runs == std::vector<int>{1, 3, 7, 15, 31, 63, 63});
    CHECK(compaction.defer_shift() == compactor<arena_type>::max_defer_shift);

    // Success resets the deferral.
    refuse = false;
    compact_stats stats;
    do {
        stats = compaction.compact(request);
    } while (stats.outcome == compact_outcome::deferred);
    CHECK(stats.outcome == compact_outcome::order_available);
    CHECK(compaction.defer_shift() == 0);
    CHECK_FALSE(compaction.is_deferred(request.order));
    CHECK(c.all_pages_intact());
}

TEST_CASE("blocks where nothing could be isolated are skipped until the next full compaction") {
    if constexpr (!testing_scanners) {
        return; // skip hints are the scanners'; least_moves plans instead
    }
    churned c(8, 8 * block / 2);
    int isolations_in_first_blocks = 0;
    c.owner.isolate_policy = [&](frame& f) {
        const bool in_first_blocks = c.arena.index_of(f) < 2 * block;
        isolations_in_first_blocks += in_first_blocks ? 1 : 0;
        return !in_first_blocks; // the first two blocks refuse
    };
    compactor<arena_type> compaction(c.arena);
    compact_request request = tested_request();
    request.order = static_cast<int>(arena_type::max_order);
    CHECK(compaction.compact(request).outcome == compact_outcome::order_available);
    CHECK(compaction.skip_hint(0));
    CHECK(compaction.skip_hint(1));
    CHECK(isolations_in_first_blocks > 0);

    // Use up the free max-order blocks so the next order-targeted run has work to do.
    std::size_t next_page = c.pages;
    while (c.arena.has_free_block(arena_type::max_order)) {
        REQUIRE(c.owner.add_page(next_page++) != nullptr);
    }
    isolations_in_first_blocks = 0;
    const compact_stats targeted = compaction.compact(request);
    CHECK(targeted.blocks_skipped >= 2);
    CHECK(isolations_in_first_blocks == 0); // not even looked at

    const compact_stats full = compaction.compact(tested_request());
    CHECK(full.blocks_skipped == 0);
    CHECK(isolations_in_first_blocks > 0); // a full compaction looks at every block again
    CHECK(c.all_pages_intact());
}

TEST_CASE("proactive compaction triggers above the high watermark and stops at the low one") {
    using cc = compactor<arena_type>;
    CHECK(cc::proactive_watermarks(20).low == 80);
    CHECK(cc::proactive_watermarks(20).high == 90);
    CHECK(cc::proactive_watermarks(100).low == 5);
    CHECK(cc::proactive_watermarks(0).high == 100);
    churned c(32, 32 * block / 2);
    cc compaction(c.arena);
    REQUIRE(c.arena.fragmentation_score() > 90);
    CHECK(compaction.should_compact(20));
    CHECK_FALSE(compaction.should_compact(0)); // proactiveness 0: never
    compact_request request = cc::proactive_request(20);
    request.strategy = tested_strategy;
    const compact_stats stats = compaction.compact(request);
    CHECK(stats.outcome == compact_outcome::score_reached);
    CHECK(c.arena.fragmentation_score() <= 80);
    CHECK_FALSE(compaction.should_compact(20));
    CHECK(c.all_pages_intact());
}

TEST_CASE("proactive compaction does not report the score reached while it holds the free "
          "frames itself") {
    // One block, every frame used but the lowest: the one free frame lies outside a free
    // max-order block (score 100), and the free scanner takes it as a target. With it held, the
    // arena has no free frame and a score of 0, which must not count as reached.
    arena_type arena(arena_type::block_bytes);
    test::arena_frames<arena_type> frames{arena};
    owner_type owner(frames);
    for (std::size_t page = 0; page < block; ++page) {
        REQUIRE(owner.add_page(page) != nullptr);
    }
    owner.release_page(0);
    REQUIRE(arena.free_frames() == 1);
    REQUIRE(arena.fragmentation_score() == 100);
    compact_request request = tested_request();
    request.stop_at_score = 50;

    const compact_stats stats = compactor<arena_type>(arena).compact(request);

    CHECK(arena.fragmentation_score() == 100);
    CHECK(stats.outcome == full_outcome);
}

TEST_CASE("frames an async compaction left isolated and their owner then released are counted "
          "as released") {
    // Another user holds the lock of the first frame isolated (taken here, single-threaded, from
    // the owner's isolate callback), so an async pass can neither migrate nor put it back. Its
    // owner releases it between passes; the compactor frees it, in the next pass or in end().
    for (const bool freed_by_end : {false, true}) {
        CAPTURE(freed_by_end);
        churned c(4, 4 * block / 2);
        compactor<arena_type> compaction(c.arena);
        frame* held = leave_one_frame_isolated(c, compaction);
        const std::size_t page = held->private_word();
        CHECK(c.owner.release_page(page)); // the compaction owns it now
        c.released.insert(page);
        const std::size_t free_before = c.arena.free_frames();

        if (!freed_by_end) {
            compaction.pass();
        }
        const compact_stats stats = compaction.end();

        CHECK(stats.released == 1);
        CHECK_FALSE(held->is_isolated());
        CHECK(c.arena.free_frames() == free_before + 1);
        CHECK(c.all_pages_intact());
    }
}

TEST_CASE("destroying a compactor between begin() and end() puts back what it left isolated") {
    // As in the test above, the lock of the first isolated frame is held "elsewhere" so an async
    // pass leaves it isolated. Then the compaction is abandoned: without end() (the compactor
    // goes out of scope), or because user code throws between passes.
    for (const bool by_exception : {false, true}) {
        CAPTURE(by_exception);
        churned c(4, 4 * block / 2);
        const std::size_t free_before = c.arena.free_frames();
        frame* held = nullptr;
        const auto abandon = [&] {
            compactor<arena_type> compaction(c.arena);
            held = leave_one_frame_isolated(c, compaction);
            if (by_exception) {
                throw std::runtime_error("user code failed between passes");
            }
        };
        if (by_exception) {
            CHECK_THROWS_AS(abandon(), std::runtime_error);
        } else {
            abandon();
        }
        CHECK_FALSE(held->is_isolated());
        CHECK(c.owner.putback_calls == 1);
        // Every frame is accounted for: the pages (some moved) and the free rest, no target kept.
        CHECK(c.arena.free_frames() == free_before);
        CHECK(c.all_pages_intact());
    }
}

TEST_CASE("bad compaction requests are rejected") {
    arena_type arena(arena_type::block_bytes);
    compactor<arena_type> compaction(arena);
    compact_request request = tested_request();
    request.order = static_cast<int>(arena_type::max_order) + 1;
    CHECK_THROWS_AS(compaction.begin(request), std::invalid_argument);
    request.order = -2;
    CHECK_THROWS_AS(compaction.begin(request), std::invalid_argument);
    request = {};
    request.max_bytes_per_pass = arena_type::frame_size - 1;
    CHECK_THROWS_AS(compaction.begin(request), std::invalid_argument);
    request = {};
    request.stop_at_score = 101;
    CHECK_THROWS_AS(compaction.begin(request), std::invalid_argument);
    // After a rejected request the compactor is usable.
    CHECK(compaction.compact(tested_request()).outcome == full_outcome);
}

// ---- a differently built arena: static buffer, free bitmap, no buddy allocator ----------------

namespace {
class bitmap_arena {
public:
    static constexpr std::size_t frame_size = 4096;
    static constexpr unsigned max_order = 3;
    static constexpr std::size_t frames = 128;

    std::size_t frame_count() const { return frames; }
    frame& frame_at(std::size_t index) { return descriptors_[index]; }
    std::size_t index_of(const frame& f) const {
        return static_cast<std::size_t>(&f - descriptors_.data());
    }
    bool is_free(std::size_t index) const {
        std::lock_guard guard(mutex_);
        return !used_[index];
    }
    frame* try_take_free_frame(std::size_t index) {
        std::lock_guard guard(mutex_);
        if (used_[index]) {
            return nullptr;
        }
        used_[index] = true;
        descriptors_[index].acquire_first_reference();
        return &descriptors_[index];
    }
    void free_frame(frame& f) {
        f.release_last_reference();
        std::lock_guard guard(mutex_);
        used_[index_of(f)] = false;
    }
    // For the test owner: allocate anywhere at random, to fragment.
    frame* allocate_frame() {
        for (int attempt = 0; attempt < 1000; ++attempt) {
            if (frame* f = try_take_free_frame(random_() % frames)) {
                return f;
            }
        }
        return nullptr;
    }
    void free(frame& f) { free_frame(f); }
    std::byte* address_of(const frame& f) { return memory_ + index_of(f) * frame_size; }

private:
    alignas(4096) static inline std::byte memory_[frames * frame_size];
    std::array<frame, frames> descriptors_;
    std::array<bool, frames> used_{};
    mutable std::mutex mutex_;
    std::mt19937 random_{5};
};
static_assert(compactable_arena<bitmap_arena>);
} // namespace

TEST_CASE("any arena modelling compactable_arena can be compacted") {
    auto arena = std::make_unique<bitmap_arena>();
    test::basic_test_owner<bitmap_arena> owner(*arena);
    for (std::size_t page = 0; page < 64; ++page) {
        REQUIRE(owner.add_page(page) != nullptr); // scattered at random
    }
    compactor<bitmap_arena> compaction(*arena);
    const compact_stats stats = compaction.compact(tested_request());
    CHECK(stats.migrated > 0);
    for (std::size_t page = 0; page < 64; ++page) {
        CHECK(owner.page_intact(page));
        if constexpr (testing_scanners) {
            CHECK(arena->index_of(*owner.frame_of(page)) >= 64); // packed at the top
        }
    }
    CHECK(stats.max_order_blocks_freed == 8);
    if constexpr (!testing_scanners) {
        CHECK(stats.migrated == stats.minimum_moves);
    }
    owner.release_all();
}

TEST_CASE("async compaction never waits for a frame lock held elsewhere; end() puts it back") {
    churned c(8, 8 * block / 2);
    std::atomic<frame*> held{nullptr};
    std::atomic<bool> holding{false};
    std::atomic<bool> let_go{false};
    std::atomic<int> isolated_so_far{0};
    // The second frame isolated gets locked by another thread as soon as isolation lets go of
    // it, and stays locked until the compaction has finished its passes.
    c.owner.isolate_policy = [&](frame& f) {
        if (++isolated_so_far == 2) {
            held = &f;
        }
        return true;
    };
    std::thread holder([&] {
        while (held.load() == nullptr) {
            std::this_thread::yield();
        }
        held.load()->lock();
        holding = true;
        while (!let_go.load()) {
            std::this_thread::yield();
        }
        held.load()->unlock();
    });
    c.owner.migrate_policy = [&](frame& src) {
        while (&src != held.load() && held.load() != nullptr && !holding.load()) {
            std::this_thread::yield(); // make sure the lock is taken before we get to it
        }
        return migrate_status::success;
    };
    compactor<arena_type> compaction(c.arena);
    compact_request request = tested_request();
    request.mode = migrate_mode::async;
    request.max_frames_per_pass = 8; // several passes, each retrying the leftover
    compaction.begin(request);
    int passes = 0;
    while (compaction.pass() == compact_progress::incomplete) {
        ++passes;
    }
    CHECK(passes > 1);
    CHECK(held.load()->is_isolated()); // still isolated: nobody waited for its lock
    CHECK(c.owner.putback_calls == 0);
    let_go = true;
    holder.join();
    const compact_stats stats = compaction.end();
    CHECK_FALSE(held.load()->is_isolated());
    CHECK(c.owner.putback_calls == 1);
    CHECK(stats.failed >= 1);
    CHECK(c.all_pages_intact());
}

namespace {
// A clock the test moves: each migrated frame "takes" 10 µs.
struct test_clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<test_clock>;
    static inline duration elapsed{0};
    static time_point now() noexcept { return time_point(elapsed); }
};
} // namespace

TEST_CASE("a time-budgeted pass stops after the frame that crossed its budget") {
    churned c(8, 8 * block / 2);
    c.owner.migrate_policy = [](frame&) {
        test_clock::elapsed += std::chrono::microseconds(10);
        return migrate_status::success;
    };
    compactor<arena_type, test_clock> compaction(c.arena);
    compact_request request = tested_request();
    request.max_duration_per_pass = std::chrono::microseconds(25);
    compaction.begin(request);
    std::vector<std::size_t> per_pass;
    std::size_t before = 0;
    while (compaction.pass() == compact_progress::incomplete) {
        per_pass.push_back(compaction.stats().migrated - before);
        before = compaction.stats().migrated;
    }
    const compact_stats stats = compaction.end();
    REQUIRE(per_pass.size() >= 2);
    for (const std::size_t moved : per_pass) {
        CHECK(moved == 3); // 10, 20 µs: under 25; the third frame crosses it, and the pass stops
    }
    CHECK(stats.passes_timed_out >= per_pass.size());
    CHECK(stats.migrated > 0);
    CHECK(c.all_pages_intact());

    // Without a time budget the clock is never the reason a pass stops.
    churned d(8, 8 * block / 2);
    compactor<arena_type, test_clock> unbudgeted(d.arena);
    const compact_stats whole = unbudgeted.compact(tested_request());
    CHECK(whole.passes == 1);
    CHECK(whole.passes_timed_out == 0);
}

TEST_CASE("compact_stats says what an ideal plan moves, whichever strategy runs") {
    churned c(8, 8 * block / 2);
    compactor<arena_type> compaction(c.arena);
    const compact_stats stats = compaction.compact(tested_request());
    CHECK(stats.minimum_moves > 0);
    CHECK(stats.migrated >= stats.minimum_moves); // no strategy beats the ideal plan
    if constexpr (!testing_scanners) {
        CHECK(stats.migrated == stats.minimum_moves);
    }
}
