// The least_moves strategy: what it moves against what an ideal plan moves, on arenas with
// nothing to gain, random occupancy, unmovable frames, owners that refuse, and a plan that goes
// stale while it runs. (compaction_test runs the shared behaviour for both strategies.)
#include <movable/compaction.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "support/arena_frames.hpp"

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
constexpr std::size_t block = arena_type::block_frames;
using owner_type = test::arena_owner<arena_type>;

struct populated {
    explicit populated(std::size_t blocks)
        : arena(blocks * arena_type::block_bytes), frames{arena}, owner(frames) {}

    // Pages on the first `count` frames, in order (a packed arena).
    void pack(std::size_t count) {
        for (std::size_t page = 0; page < count; ++page) {
            REQUIRE(owner.add_page(page) != nullptr);
            pages.insert(page);
        }
    }
    // Fills the arena, then releases `freed` pages at random.
    void churn(std::size_t freed, unsigned seed) {
        pack(arena.frame_count());
        std::vector<std::size_t> order(pages.begin(), pages.end());
        std::shuffle(order.begin(), order.end(), std::mt19937(seed));
        for (std::size_t i = 0; i < freed; ++i) {
            release(order[i]);
        }
    }
    void release(std::size_t page) {
        owner.release_page(page);
        pages.erase(page);
    }
    // A packed arena reshaped block by block: block 0 holds one frame allocated as `kind`
    // (owned by no owner: not movable) and nothing else; block b >= 1 keeps its first
    // keep(b) pages. Returns block 0's frame, for the caller to deallocate.
    template <class Keep>
    frame* shape(frame_kind kind, Keep&& keep) {
        pack(arena.frame_count());
        for (std::size_t page = 0; page < block; ++page) {
            release(page);
        }
        frame* f = arena.try_allocate(0, kind);
        REQUIRE(f != nullptr);
        REQUIRE(arena.index_of(*f) / block == 0);
        for (std::size_t b = 1; b < arena.block_count(); ++b) {
            for (std::size_t page = b * block + keep(b); page < (b + 1) * block; ++page) {
                release(page);
            }
        }
        return f;
    }
    bool all_intact() {
        return std::all_of(pages.begin(), pages.end(),
                           [&](std::size_t page) { return owner.page_intact(page); });
    }
    // The most max-order blocks the free frames could form, and the fewest moves that form them
    // (the used frames of that many sparsest blocks), computed by brute force.
    std::pair<std::size_t, std::size_t> ideal() {
        std::vector<std::size_t> used_of_block;
        std::size_t free_frames = 0;
        std::size_t free_blocks = 0;
        for (std::size_t b = 0; b < arena.block_count(); ++b) {
            std::size_t used = 0;
            for (std::size_t i = b * block; i < (b + 1) * block; ++i) {
                used += arena.is_free(i) ? 0 : 1;
            }
            free_frames += block - used;
            if (used == 0) {
                ++free_blocks;
            } else {
                used_of_block.push_back(used);
            }
        }
        std::sort(used_of_block.begin(), used_of_block.end());
        const std::size_t blocks =
            std::min(free_frames / block - free_blocks, used_of_block.size());
        return {blocks, std::accumulate(used_of_block.begin(),
                                        used_of_block.begin() + static_cast<std::ptrdiff_t>(blocks),
                                        std::size_t{0})};
    }

    arena_type arena;
    test::arena_frames<arena_type> frames;
    owner_type owner;
    std::set<std::size_t> pages;
};

} // namespace

TEST_CASE("an already compact arena moves nothing: full, order-targeted and proactive") {
    for (const std::size_t percent : {25u, 50u, 90u}) {
        CAPTURE(percent);
        populated p(32);
        p.pack(p.arena.frame_count() * percent / 100);
        compactor<arena_type> compaction(p.arena);
        const compact_stats full = compaction.compact();
        CHECK(full.minimum_moves == 0);
        CHECK(full.migrated == 0);
        CHECK(full.isolated == 0);
        CHECK(full.outcome == compact_outcome::planned);
        compact_request order;
        order.order = 3;
        const compact_stats targeted = compaction.compact(order);
        CHECK(targeted.migrated == 0);
        CHECK(targeted.outcome == compact_outcome::order_available);
        const compact_stats proactive =
            compaction.compact(compactor<arena_type>::proactive_request(90));
        CHECK(proactive.migrated == 0);
        CHECK(p.all_intact());
        // The scanners, for comparison, move every frame below their meeting point.
        compact_request scanners;
        scanners.strategy = compact_strategy::scanners;
        MESSAGE(percent << "% packed: least_moves moved " << full.migrated << ", scanners moved "
                        << compaction.compact(scanners).migrated);
    }
}

TEST_CASE("random occupancy: every possible max-order block is freed with the plan's moves") {
    for (const unsigned seed : {1u, 2u, 3u}) {
        for (const std::size_t freed_per_16 : {4u, 8u, 13u}) {
            CAPTURE(seed);
            CAPTURE(freed_per_16);
            populated p(32);
            p.churn(p.arena.frame_count() * freed_per_16 / 16, seed);
            const auto [blocks, moves] = p.ideal();
            const std::size_t free_before =
                p.arena.stats().free_blocks_of_order(arena_type::max_order);
            const compact_stats stats = compactor<arena_type>(p.arena).compact();
            CHECK(stats.minimum_moves == moves);
            CHECK(stats.migrated == moves);
            CHECK(stats.max_order_blocks_freed == blocks);
            CHECK(p.arena.stats().free_blocks_of_order(arena_type::max_order) ==
                  free_before + blocks);
            CHECK(stats.failed == 0);
            CHECK(p.all_intact());
        }
    }
}

TEST_CASE("order-targeted least_moves empties the cheapest aligned region of that order") {
    populated p(8);
    p.churn(p.arena.frame_count() / 3, 9);
    // The cheapest aligned region of 4 frames, by brute force.
    std::size_t cheapest = block;
    for (std::size_t first = 0; first < p.arena.frame_count(); first += 4) {
        std::size_t used = 0;
        for (std::size_t i = first; i < first + 4; ++i) {
            used += p.arena.is_free(i) ? 0 : 1;
        }
        cheapest = std::min(cheapest, used);
    }
    REQUIRE(cheapest > 0); // no free region of order 2 yet
    compact_request request;
    request.order = 2;
    const compact_stats stats = compactor<arena_type>(p.arena).compact(request);
    CHECK(stats.outcome == compact_outcome::order_available);
    CHECK(stats.minimum_moves == cheapest);
    CHECK(stats.migrated == cheapest);
    CHECK(p.arena.largest_free_order() >= 2);
    CHECK(p.all_intact());
}

TEST_CASE("a region holding a frame its owner refuses to isolate is given up for the next "
          "cheapest") {
    populated p(16);
    p.churn(p.arena.frame_count() / 2, 4);
    const auto [blocks, moves] = p.ideal();
    // The sparsest block refuses.
    std::size_t sparsest = 0;
    std::size_t fewest = block + 1;
    for (std::size_t b = 0; b < p.arena.block_count(); ++b) {
        std::size_t used = 0;
        for (std::size_t i = b * block; i < (b + 1) * block; ++i) {
            used += p.arena.is_free(i) ? 0 : 1;
        }
        if (used != 0 && used < fewest) {
            fewest = used;
            sparsest = b;
        }
    }
    p.owner.isolate_policy = [&](frame& f) { return p.arena.index_of(f) / block != sparsest; };
    const compact_stats stats = compactor<arena_type>(p.arena).compact();
    CHECK(stats.regions_given_up == 1);
    CHECK(stats.minimum_moves == moves);
    // The others, and the next cheapest block in its place: as many blocks freed.
    CHECK(stats.migrated > moves - fewest);
    CHECK(stats.max_order_blocks_freed == blocks);
    CHECK(p.owner.putback_calls == 0); // given up at the first refusal: nothing isolated to undo
    CHECK(p.all_intact());
}

TEST_CASE("a plan that goes stale while it runs loses nothing and moves no frame twice") {
    populated p(16);
    p.churn(p.arena.frame_count() / 2, 6);
    std::size_t next_page = p.arena.frame_count();
    std::mt19937 random(3);
    std::map<std::size_t, int> moves_of_page;
    p.owner.migrate_policy = [&](frame& src) {
        ++moves_of_page[src.private_word()];
        // Owners keep working: free a page, add a page, each time a frame moves.
        if (!p.pages.empty() && random() % 2 == 0) {
            auto it = p.pages.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(random() % p.pages.size()));
            if (*it != src.private_word()) {
                p.owner.release_page(*it);
                p.pages.erase(it);
            }
        }
        if (random() % 3 == 0 && p.owner.add_page(next_page) != nullptr) {
            p.pages.insert(next_page++);
        }
        return migrate_status::success;
    };
    const compact_stats stats = compactor<arena_type>(p.arena).compact();
    CHECK(stats.migrated > 0);
    CHECK(p.all_intact());
    for (const auto& [page, moves] : moves_of_page) {
        CHECK(moves == 1);
    }
    // Every frame is free or holds a live page.
    CHECK(p.arena.free_frames() + p.pages.size() == p.arena.frame_count());
}

TEST_CASE("the plan counts only holes that can take a frame, and reserves the blocks it empties") {
    // Block 0: one unmovable frame (its holes take no movable frame). Blocks 1 and 2: 4 pages
    // each (the cheapest). Blocks 3..7: 12 pages each.
    populated p(8);
    frame* unmovable = p.shape(frame_kind::unmovable,
                               [](std::size_t b) -> std::size_t { return b <= 2 ? 4 : 12; });
    // 12 + 12 + 5 * 4 = 44 usable holes: two blocks can be emptied, the two cheapest (8 moves),
    // into the holes of blocks 3..7 (not block 0's, which are unmovable, nor each other's).
    const compact_stats stats = compactor<arena_type>(p.arena).compact();
    CHECK(stats.minimum_moves == 8);
    CHECK(stats.migrated == 8);
    CHECK(stats.max_order_blocks_freed == 2);
    CHECK(stats.regions_given_up == 0);
    CHECK(p.all_intact());
    p.arena.deallocate(*unmovable);
}

TEST_CASE("no target lands in a planned block before its turn, even when sparser holes exist") {
    // Block 0: one frame nobody made movable (not evacuable; its holes take frames). Blocks 1
    // and 2: 6 pages each (planned). Block 3: 14 pages; blocks 4..7 full. The destinations run
    // densest first, so after block 3's 2 holes come blocks 1 and 2, then block 0: block 2 must
    // be passed over while block 1 empties.
    populated p(8);
    frame* pinned_frame = p.shape(frame_kind::movable, [](std::size_t b) -> std::size_t {
        return b <= 2 ? 6 : (b == 3 ? 14 : block);
    });
    const compact_stats stats = compactor<arena_type>(p.arena).compact();
    CHECK(stats.minimum_moves == 12);
    CHECK(stats.migrated == 12);
    CHECK(stats.max_order_blocks_freed == 2);
    CHECK(stats.regions_given_up == 0);
    CHECK(p.all_intact());
    p.arena.deallocate(*pinned_frame);
}

TEST_CASE("an order-targeted region may send its frames to holes in its own block") {
    // One block: pages everywhere but frames 1, 2, 3 and 7. Frames 0..3 hold one page: moving
    // it to frame 7 frees an order-2 block; the only holes are in the same max-order block.
    populated p(1);
    p.pack(p.arena.frame_count());
    for (const std::size_t page : {1u, 2u, 3u, 7u}) {
        p.release(page);
    }
    compact_request request;
    request.order = 2;
    const compact_stats stats = compactor<arena_type>(p.arena).compact(request);
    CHECK(stats.outcome == compact_outcome::order_available);
    CHECK(stats.minimum_moves == 1);
    CHECK(stats.migrated == 1);
    CHECK(p.arena.largest_free_order() >= 2);
    CHECK(p.all_intact());
}
