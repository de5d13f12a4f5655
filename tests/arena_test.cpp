#include <movable/frame_arena.hpp>
#include <movable/migrate.hpp>

#include <doctest/doctest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "examples/support/resident.hpp"
#include "support/death_test.hpp"
#include "support/inert_owner.hpp"

using namespace movable;

namespace {
// 16 frames per max-order block keeps layouts small enough to reason about.
using small_arena = frame_arena<4096, 4>;
constexpr std::size_t block = small_arena::block_frames;

std::vector<frame*> allocate_all(small_arena& arena, frame_kind kind = frame_kind::movable) {
    std::vector<frame*> frames;
    while (frame* f = arena.try_allocate(0, kind)) {
        frames.push_back(f);
    }
    return frames;
}
} // namespace

static_assert(compactable_arena<frame_arena<>>);
static_assert(compactable_arena<small_arena>);
// Every optional member the compactor looks for is found (a misspelt one would fall back to an
// O(n) scan silently).
static_assert(compactable_arena_optional_members<small_arena>::all);
static_assert(migration_targets<arena_targets<small_arena>>);

TEST_CASE("a new arena is one free max-order block per block, frame-aligned") {
    small_arena arena(8 * small_arena::block_bytes + 12345); // rounded down to whole blocks
    CHECK(arena.frame_count() == 8 * block);
    CHECK(arena.size_bytes() == 8 * small_arena::block_bytes);
    CHECK(reinterpret_cast<std::uintptr_t>(arena.data()) % small_arena::frame_size == 0);
    const auto stats = arena.stats();
    CHECK(stats.free_frames == 8 * block);
    CHECK(stats.free_blocks_of_order(small_arena::max_order) == 8);
    CHECK(stats.largest_free_order == static_cast<int>(small_arena::max_order));
    CHECK(stats.max_order_blocks_by_kind[0] == 8);
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        CHECK(arena.is_free(i));
    }
}

TEST_CASE("bad sizes and orders are rejected with clear errors") {
    CHECK_THROWS_AS(small_arena(0), std::invalid_argument);
    CHECK_THROWS_AS(small_arena(small_arena::block_bytes - 1), std::invalid_argument);
    small_arena arena(small_arena::block_bytes);
    CHECK_THROWS_AS((void)arena.allocate(small_arena::max_order + 1), std::invalid_argument);
    CHECK(arena.try_allocate(small_arena::max_order + 1) == nullptr);
    CHECK_THROWS_AS((void)arena.fragmentation_index(small_arena::max_order + 1),
                    std::invalid_argument);
    CHECK_THROWS_AS((void)arena.discard_free_memory(small_arena::max_order + 1),
                    std::invalid_argument);
    int outside = 0;
    CHECK_THROWS_AS((void)arena.frame_of(&outside), std::out_of_range);
    CHECK(arena.try_frame_of(&outside) == nullptr);
    CHECK(arena.try_frame_of(arena.data() + arena.size_bytes()) == nullptr);
}

TEST_CASE("exhaustion: try_allocate returns null, allocate throws bad_alloc") {
    small_arena arena(small_arena::block_bytes);
    auto frames = allocate_all(arena);
    CHECK(frames.size() == block);
    CHECK(arena.try_allocate() == nullptr);
    CHECK_THROWS_AS((void)arena.allocate(), std::bad_alloc);
    for (frame* f : frames) {
        arena.deallocate(*f);
    }
    CHECK(arena.free_frames() == block);
}

TEST_CASE("addresses and frames map to each other") {
    small_arena arena(2 * small_arena::block_bytes);
    frame& f = arena.allocate(0);
    std::byte* address = arena.address_of(f);
    CHECK(&arena.frame_of(address) == &f);
    CHECK(&arena.frame_of(address + small_arena::frame_size - 1) == &f);
    CHECK(&arena.frame_at(arena.index_of(f)) == &f);
    CHECK(address == arena.data() + arena.index_of(f) * small_arena::frame_size);
    std::memset(address, 0xab, small_arena::frame_size); // the memory is usable
    arena.deallocate(f);
}

TEST_CASE("splitting a max-order block leaves one free buddy of every smaller order") {
    small_arena arena(small_arena::block_bytes);
    frame& f = arena.allocate(0);
    CHECK(f.reference_count() == 1);
    const auto stats = arena.stats();
    for (unsigned order = 0; order < small_arena::max_order; ++order) {
        CHECK(stats.free_blocks_of_order(order) == 1);
    }
    CHECK(stats.free_blocks_of_order(small_arena::max_order) == 0);
    CHECK(stats.largest_free_order == static_cast<int>(small_arena::max_order) - 1);
    arena.deallocate(f);
    CHECK(arena.stats().free_blocks_of_order(small_arena::max_order) == 1);
}

TEST_CASE("freeing coalesces buddies back into max-order blocks in any order") {
    small_arena arena(4 * small_arena::block_bytes);
    std::vector<frame*> frames;
    for (int i = 0; i < 10; ++i) {
        frames.push_back(&arena.allocate(2)); // blocks of 4 frames
    }
    for (int i = 0; i < 8; ++i) {
        frames.push_back(&arena.allocate(0));
    }
    std::shuffle(frames.begin(), frames.end(), std::mt19937(7));
    for (frame* f : frames) {
        const std::size_t index = arena.index_of(*f);
        // A block of order 2 starts on a 4-frame boundary; we freed by the order we took.
        const unsigned order = (f->allocator_word() >> 2) & 0x1f;
        CHECK(index % (std::size_t{1} << order) == 0);
        arena.deallocate(*f, order);
    }
    const auto stats = arena.stats();
    CHECK(stats.free_frames == arena.frame_count());
    CHECK(stats.free_blocks_of_order(small_arena::max_order) == 4);
}

TEST_CASE("is_free agrees with a shadow model after random allocation and freeing") {
    small_arena arena(8 * small_arena::block_bytes);
    std::mt19937 random(1234);
    struct live {
        frame* first;
        unsigned order;
    };
    std::vector<live> blocks;
    for (int step = 0; step < 2000; ++step) {
        if (blocks.empty() || random() % 3 != 0) {
            const unsigned order = random() % 3;
            if (frame* f = arena.try_allocate(order)) {
                blocks.push_back({f, order});
            }
        } else {
            const std::size_t victim = random() % blocks.size();
            arena.deallocate(*blocks[victim].first, blocks[victim].order);
            blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(victim));
        }
    }
    std::vector<bool> used(arena.frame_count(), false);
    for (const live& b : blocks) {
        const std::size_t first = arena.index_of(*b.first);
        for (std::size_t i = first; i < first + (std::size_t{1} << b.order); ++i) {
            CHECK_FALSE(used[i]); // no two live blocks overlap
            used[i] = true;
        }
    }
    std::size_t free_count = 0;
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        CHECK(arena.is_free(i) == !used[i]);
        free_count += used[i] ? 0 : 1;
    }
    CHECK(arena.free_frames() == free_count);
    for (const live& b : blocks) {
        arena.deallocate(*b.first, b.order);
    }
    CHECK(arena.stats().free_blocks_of_order(small_arena::max_order) == 8);
}

TEST_CASE("taking a free frame by index returns exactly that frame and splits around it") {
    small_arena arena(small_arena::block_bytes);
    frame* f = arena.try_take_free_frame(11);
    REQUIRE(f != nullptr);
    CHECK(arena.index_of(*f) == 11);
    CHECK(f->reference_count() == 1);
    CHECK_FALSE(arena.is_free(11));
    CHECK(arena.free_frames() == block - 1);
    CHECK(arena.try_take_free_frame(11) == nullptr); // allocated now
    CHECK(arena.try_take_free_frame(arena.frame_count()) == nullptr);
    for (std::size_t i = 0; i < block; ++i) {
        CHECK(arena.is_free(i) == (i != 11));
    }
    arena.free_frame(*f);
    CHECK(arena.largest_free_order() == static_cast<int>(small_arena::max_order));
}

TEST_CASE("taking free frames in a range takes the lowest free ones, at most max, none in "
          "unmovable blocks") {
    small_arena arena(3 * small_arena::block_bytes);
    // Block 0: frames 0..7 used, so 8..15 free. Block 1: one unmovable frame claims it.
    std::vector<frame*> used;
    for (int i = 0; i < 8; ++i) {
        used.push_back(&arena.allocate(0, frame_kind::movable));
    }
    frame& unmovable = arena.allocate(0, frame_kind::unmovable);
    const std::size_t unmovable_block = arena.index_of(unmovable) / block;
    REQUIRE(unmovable_block != 0);
    REQUIRE(arena.block_kind(unmovable_block) == frame_kind::unmovable);
    const std::size_t free_before = arena.free_frames();

    frame_list taken;
    CHECK(arena.take_free_frames(4, 12, 3, taken) == 3); // 4..7 are used: 8, 9, 10
    std::vector<std::size_t> indexes;
    for (frame& f : taken) {
        indexes.push_back(arena.index_of(f));
        CHECK(f.reference_count() == 1);
    }
    CHECK(indexes == std::vector<std::size_t>{8, 9, 10});
    // The range runs out before max: 11 only; the unmovable block gives nothing.
    CHECK(arena.take_free_frames(11, 12, 5, taken) == 1);
    CHECK(arena.take_free_frames(unmovable_block * block, (unmovable_block + 1) * block, 4,
                                 taken) == 0);
    CHECK(arena.take_free_frames(0, 0, 4, taken) == 0);
    CHECK(taken.size() == 4);
    CHECK(arena.free_frames() == free_before - 4);
    for (std::size_t i = 8; i < 12; ++i) {
        CHECK_FALSE(arena.is_free(i));
    }

    // Freeing them as one batch merges them back with their buddies.
    arena.free_frame_batch(taken);
    CHECK(taken.empty());
    CHECK(arena.free_frames() == free_before);
    for (std::size_t i = 8; i < block; ++i) {
        CHECK(arena.is_free(i));
    }
    arena.check_invariants();
    arena.deallocate(unmovable);
    for (frame* f : used) {
        arena.deallocate(*f);
    }
    CHECK(arena.free_block_count(small_arena::max_order) == 3);
}

TEST_CASE("freeing a batch of frames of both kinds keeps each block's unmovable count") {
    small_arena arena(2 * small_arena::block_bytes);
    frame_list batch;
    for (int i = 0; i < 4; ++i) {
        batch.push_back(arena.allocate(0, frame_kind::movable));
        batch.push_back(arena.allocate(0, frame_kind::unmovable));
    }
    arena.free_frame_batch(batch);
    CHECK(arena.free_frames() == arena.frame_count());
    arena.check_invariants(); // checks each block's unmovable count against its frames
    // The unmovable block is empty again: it can be claimed back by movable allocations whole.
    const std::vector<frame*> all = allocate_all(arena);
    CHECK(all.size() == arena.frame_count());
    for (frame* f : all) {
        arena.deallocate(*f);
    }
}

TEST_CASE("unmovable allocations gather in few max-order blocks") {
    small_arena arena(8 * small_arena::block_bytes);
    std::vector<frame*> unmovable;
    std::vector<frame*> movable_frames;
    // Interleave: 3 movable per unmovable, 24 unmovable in all (1.5 blocks' worth).
    for (int i = 0; i < 96; ++i) {
        const bool is_unmovable = i % 4 == 0;
        frame& f = arena.allocate(0, is_unmovable ? frame_kind::unmovable : frame_kind::movable);
        (is_unmovable ? unmovable : movable_frames).push_back(&f);
    }
    std::set<std::size_t> blocks_with_unmovable;
    for (frame* f : unmovable) {
        const std::size_t b = arena.index_of(*f) / block;
        blocks_with_unmovable.insert(b);
        CHECK(arena.block_kind(b) == frame_kind::unmovable);
        CHECK(arena.allocation_kind(arena.index_of(*f)) == frame_kind::unmovable);
    }
    CHECK(blocks_with_unmovable.size() == 2); // ceil(24 / 16): they did not scatter
    for (frame* f : movable_frames) {
        CHECK(blocks_with_unmovable.count(arena.index_of(*f) / block) == 0);
    }
    const auto stats = arena.stats();
    CHECK(stats.max_order_blocks_by_kind[1] == 2);
    CHECK(stats.blocks_claimed == 2);
    for (frame* f : unmovable) {
        arena.deallocate(*f);
    }
    for (frame* f : movable_frames) {
        arena.deallocate(*f);
    }
}

TEST_CASE("an allocation claims a block of the other kind only when its own kind is exhausted") {
    small_arena arena(2 * small_arena::block_bytes);
    frame& first_unmovable = arena.allocate(0, frame_kind::unmovable); // must claim a block
    CHECK(arena.stats().blocks_claimed == 1);
    std::vector<frame*> movable_frames;
    for (std::size_t i = 0; i < block; ++i) { // the other block, all movable
        movable_frames.push_back(&arena.allocate(0, frame_kind::movable));
    }
    CHECK(arena.stats().blocks_claimed == 1); // the movable block sufficed
    // Movable is exhausted; the next movable allocation claims the unmovable block.
    frame& spill = arena.allocate(0, frame_kind::movable);
    CHECK(arena.stats().blocks_claimed == 2);
    CHECK(arena.index_of(spill) / block == arena.index_of(first_unmovable) / block);
    arena.deallocate(spill);
    arena.deallocate(first_unmovable);
    for (frame* f : movable_frames) {
        arena.deallocate(*f);
    }
}

TEST_CASE("a fallback into a block mostly used by the other kind takes the frame without "
          "re-tagging the block") {
    small_arena arena(small_arena::block_bytes); // one block: every fallback lands in it
    std::vector<frame*> movable_frames;
    for (std::size_t i = 0; i < block * 3 / 4; ++i) {
        movable_frames.push_back(&arena.allocate(0, frame_kind::movable));
    }
    // 12 of 16 frames are movable: the kernel's rule (free + own kind >= half) says no claim.
    frame& unmovable = arena.allocate(0, frame_kind::unmovable);
    CHECK(arena.block_kind(0) == frame_kind::movable);
    CHECK(arena.allocation_kind(arena.index_of(unmovable)) == frame_kind::unmovable);
    CHECK(arena.stats().blocks_claimed == 0);
    CHECK(arena.stats().frames_stolen == 1);
    // A movable allocation finds the rest of the block where it was: on the movable lists.
    frame& more = arena.allocate(0, frame_kind::movable);
    CHECK(arena.stats().frames_stolen == 1);
    arena.deallocate(more);
    arena.deallocate(unmovable);
    for (frame* f : movable_frames) {
        arena.deallocate(*f);
    }
    CHECK(arena.free_frames() == block);
}

TEST_CASE("a fallback into a block at least half free claims it, and the free blocks follow") {
    small_arena arena(small_arena::block_bytes);
    std::vector<frame*> movable_frames;
    for (std::size_t i = 0; i < block / 4; ++i) {
        movable_frames.push_back(&arena.allocate(0, frame_kind::movable));
    }
    frame& first = arena.allocate(0, frame_kind::unmovable); // 11 free + 0 own >= 8: claim
    CHECK(arena.block_kind(0) == frame_kind::unmovable);
    CHECK(arena.stats().blocks_claimed == 1);
    // The free blocks count as unmovable now.
    const auto stats = arena.stats();
    std::size_t unmovable_free = 0;
    for (unsigned order = 0; order <= small_arena::max_order; ++order) {
        CHECK(stats.free_blocks[0][order] == 0);
        unmovable_free += stats.free_blocks[1][order] << order;
    }
    CHECK(unmovable_free == arena.free_frames());
    // Unmovable allocations keep coming from this block without another claim.
    frame& second = arena.allocate(0, frame_kind::unmovable);
    CHECK(arena.stats().blocks_claimed == 1);
    arena.deallocate(second);
    arena.deallocate(first);
    for (frame* f : movable_frames) {
        arena.deallocate(*f);
    }
    CHECK(arena.free_frames() == block);
    CHECK(arena.largest_free_order() == static_cast<int>(small_arena::max_order));
}

TEST_CASE("allocations alternating kinds fill one large block frame by frame and free it whole") {
    using large_block_arena = frame_arena<4096, 12>; // 4096 frames per block
    large_block_arena arena(large_block_arena::block_bytes);
    std::vector<frame*> frames;
    for (std::size_t i = 0; i < large_block_arena::block_frames; ++i) {
        const frame_kind kind = i % 2 == 0 ? frame_kind::unmovable : frame_kind::movable;
        frame* f = arena.try_allocate(0, kind);
        REQUIRE(f != nullptr);
        CHECK(arena.allocation_kind(arena.index_of(*f)) == kind);
        frames.push_back(f);
    }
    CHECK(arena.free_frames() == 0);
    CHECK(arena.try_allocate(0, frame_kind::movable) == nullptr);
    CHECK(arena.try_allocate(0, frame_kind::unmovable) == nullptr);
    for (frame* f : frames) {
        arena.deallocate(*f);
    }
    CHECK(arena.free_frames() == large_block_arena::block_frames);
    CHECK(arena.largest_free_order() == static_cast<int>(large_block_arena::max_order));
}

TEST_CASE("destroying the arena while frames are still allocated names the arena and them") {
    MOVABLE_REQUIRE_CONTRACTS();
    CHECK(test::dies_with("frame_arena::~frame_arena: the arena at", [] {
        small_arena arena(2 * small_arena::block_bytes);
        (void)arena.allocate(0);
        (void)arena.allocate(2, frame_kind::unmovable);
    }));
    const test::death_result result = test::run_expecting_death([] {
        small_arena arena(2 * small_arena::block_bytes);
        (void)arena.allocate(0);
        (void)arena.allocate(2, frame_kind::unmovable);
    });
    CHECK(result.stderr_text.find("(32 frames of 4096 bytes) is destroyed while 5 of its frames "
                                  "are still allocated (0 movable, 0 isolated)") !=
          std::string::npos);
    // Freed in time: no complaint.
    const test::death_result clean = test::run_expecting_death([] {
        small_arena arena(small_arena::block_bytes);
        arena.deallocate(arena.allocate(0));
    });
    CHECK_FALSE(clean.aborted);
}

TEST_CASE("frames of a multi-frame allocation cannot be made movable, in every build") {
    for (const std::size_t which : {std::size_t{0}, std::size_t{3}}) { // the first and a tail
        CAPTURE(which);
        CHECK(test::dies_with("set_movable: frame belongs to a multi-frame allocation", [which] {
            test::inert_owner o;
            small_arena arena(small_arena::block_bytes);
            frame& first = arena.allocate(2);
            frame& f = arena.frame_at(arena.index_of(first) + which);
            f.lock();
            set_movable(f, o);
        }));
    }
    // Once the block is freed its frames are single frames again.
    small_arena arena(small_arena::block_bytes);
    frame& first = arena.allocate(2);
    CHECK(first.is_multi_frame());
    CHECK(arena.frame_at(arena.index_of(first) + 3).is_multi_frame());
    arena.deallocate(first, 2);
    frame& single = arena.allocate(0);
    CHECK_FALSE(single.is_multi_frame());
    test::inert_owner o;
    single.lock();
    set_movable(single, o);
    CHECK(is_movable(single));
    CHECK(clear_movable(single) == false);
    single.unlock();
    arena.deallocate(single);
}

TEST_CASE("fragmentation index is -1 or within [0, 1], never between") {
    using tiny = frame_arena<4096, 2>; // 4 frames per block
    tiny arena(tiny::block_bytes);
    std::vector<frame*> frames;
    for (int i = 0; i < 4; ++i) {
        frames.push_back(&arena.allocate(0));
    }
    arena.deallocate(*frames[0]);
    // One free frame asked at order 1: the kernel's formula gives 1 - (1 + 1/2) / 1 = -0.5; the
    // failure is for lack of memory, so 0.
    CHECK(arena.fragmentation_index(1) == 0.0);
    CHECK(arena.fragmentation_index(2) == 0.0);
    CHECK(arena.fragmentation_index(0) == -1.0);
    for (std::size_t i = 1; i < frames.size(); ++i) {
        arena.deallocate(*frames[i]);
    }

    // Random states of a larger arena.
    using mid = frame_arena<4096, 4>;
    mid random_arena(4 * mid::block_bytes);
    std::mt19937 random(7);
    std::vector<std::pair<frame*, unsigned>> held;
    for (int step = 0; step < 2000; ++step) {
        if (held.empty() || random() % 3 != 0) {
            const unsigned order = random() % 3;
            if (frame* f = random_arena.try_allocate(order)) {
                held.emplace_back(f, order);
            }
        } else {
            const std::size_t victim = random() % held.size();
            random_arena.deallocate(*held[victim].first, held[victim].second);
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(victim));
        }
        for (unsigned order = 0; order <= mid::max_order; ++order) {
            const double index = random_arena.fragmentation_index(order);
            CHECK((index == -1.0 || (index >= 0.0 && index <= 1.0)));
        }
    }
    for (auto [f, order] : held) {
        random_arena.deallocate(*f, order);
    }
}

TEST_CASE("the fragmentation score rounds to the nearest percent, one formula for every arena") {
    CHECK(fragmentation_score(0, 0) == 0);
    CHECK(fragmentation_score(3, 1) == 67); // 66.7: the compactor's generic path truncated to 66
    CHECK(fragmentation_score(3, 2) == 33);
    CHECK(fragmentation_score(200, 1) == 100); // 99.5 rounds up
    CHECK(fragmentation_score(16, 16) == 0);
    free_space one_frame_at_order_one;
    one_frame_at_order_one.blocks = 1;
    one_frame_at_order_one.frames = 1;
    CHECK(fragmentation_index(one_frame_at_order_one, 1) == 0.0);
}

TEST_CASE("fragmentation index, unusable free index and score follow the kernel's formulas") {
    using tiny = frame_arena<4096, 2>;           // 4 frames per block
    tiny arena(4 * tiny::block_bytes);           // 16 frames
    CHECK(arena.fragmentation_index(2) == -1.0); // a free order-2 block exists
    CHECK(arena.unusable_free_index(2) == 0.0);
    CHECK(arena.fragmentation_score() == 0);

    std::vector<frame*> frames;
    for (int i = 0; i < 16; ++i) {
        frames.push_back(&arena.allocate(0));
    }
    CHECK(arena.fragmentation_index(0) == 0.0); // nothing free: failure is lack of memory
    CHECK(arena.unusable_free_index(0) == 0.0);
    for (std::size_t i = 0; i < frames.size(); i += 2) {
        arena.deallocate(*frames[i]); // every other frame: 8 free order-0 blocks
    }
    // 1 - (1 + free_pages / requested) / free_blocks = 1 - (1 + 8/4) / 8
    CHECK(arena.fragmentation_index(2) == doctest::Approx(0.625));
    CHECK(arena.fragmentation_index(0) == -1.0);
    CHECK(arena.unusable_free_index(2) == 1.0);
    CHECK(arena.unusable_free_index(1) == 1.0);
    CHECK(arena.unusable_free_index(0) == 0.0);
    CHECK(arena.fragmentation_score() == 100);
    for (std::size_t i = 1; i < frames.size(); i += 2) {
        arena.deallocate(*frames[i]);
    }
    CHECK(arena.fragmentation_score() == 0);
}

TEST_CASE("released free memory leaves the resident set and reads as zero when reused") {
    using big_arena = frame_arena<4096, 10>;
    constexpr std::size_t bytes = 64u << 20;
    big_arena arena(bytes);
    std::vector<frame*> blocks;
    while (frame* f = arena.try_allocate(big_arena::max_order)) {
        blocks.push_back(f);
        std::memset(arena.address_of(*f), 0x5a, big_arena::block_bytes); // commit the memory
    }
    REQUIRE(blocks.size() == bytes / big_arena::block_bytes);
    for (frame* f : blocks) {
        arena.deallocate(*f, big_arena::max_order);
    }
    const std::size_t before = support::resident_bytes();
    const std::size_t released = arena.discard_free_memory(0);
    const std::size_t after = support::resident_bytes();
    CHECK(released == bytes);
    MESSAGE("resident before " << before << " after " << after << " released " << released);
    CHECK(before - after >= released * 9 / 10); // the OS took (nearly) all of it back
    CHECK(arena.stats().discarded_frames == arena.frame_count());
    CHECK(arena.discard_free_memory(0) == 0); // nothing left to release

    frame& reused = arena.allocate(0);
    const std::byte* memory = arena.address_of(reused);
    CHECK(std::all_of(memory, memory + big_arena::frame_size,
                      [](std::byte b) { return b == std::byte{0}; }));
    std::memset(arena.address_of(reused), 1, big_arena::frame_size); // and it works
    CHECK(arena.stats().discarded_frames == arena.frame_count() - 1);
    arena.deallocate(reused);
    // Only the frame that was used needs releasing again.
    CHECK(arena.discard_free_memory(0) == big_arena::frame_size);
}

namespace {
// Resident system pages among those holding `frames` descriptors from `first` (mincore: a page
// counts once it is mapped; only reads of a never-written page could map it without memory, and
// these tests never read a descriptor they did not use).
template <class Arena>
std::size_t resident_descriptor_pages(Arena& arena, std::size_t first, std::size_t frames) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const auto start = reinterpret_cast<std::uintptr_t>(&arena.frame_at(first)) / page * page;
    const auto stop = reinterpret_cast<std::uintptr_t>(&arena.frame_at(first + frames - 1) + 1);
    std::vector<unsigned char> pages((stop - start + page - 1) / page);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the descriptors' own addresses, page-aligned
    REQUIRE(::mincore(reinterpret_cast<void*>(start), stop - start, pages.data()) == 0);
    return static_cast<std::size_t>(
        std::count_if(pages.begin(), pages.end(), [](unsigned char p) { return (p & 1) != 0; }));
}
template <class Arena>
std::size_t resident_descriptor_pages(Arena& arena) {
    return resident_descriptor_pages(arena, 0, arena.frame_count());
}
using big_arena = frame_arena<4096, 10>; // a block's 64 KiB of descriptors fill whole pages
constexpr std::size_t two_gib = std::size_t{2} << 30;
} // namespace

TEST_CASE("a new arena touches none of its frame descriptors, whatever its size") {
    big_arena arena(two_gib);
    CHECK(resident_descriptor_pages(arena) == 0);
    const auto stats = arena.stats();
    CHECK(stats.discarded_blocks == arena.block_count());
    CHECK(stats.discarded_frames == arena.frame_count());
    CHECK(resident_descriptor_pages(arena) == 0); // nor does asking for statistics
}

TEST_CASE("descriptors are resident only in blocks in use and leave with a discarded block") {
    big_arena arena(two_gib);
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t block_pages = big_arena::block_frames * sizeof(frame) / page;
    std::vector<frame*> frames;
    for (std::size_t i = 0; i < 3 * big_arena::block_frames / 2; ++i) { // a block and a half
        frames.push_back(&arena.allocate(0));
    }
    CHECK(arena.index_of(*frames.back()) < 2 * big_arena::block_frames); // low blocks first
    CHECK(resident_descriptor_pages(arena) <= 2 * block_pages);
    CHECK(resident_descriptor_pages(arena, 2 * big_arena::block_frames,
                                    arena.frame_count() - 2 * big_arena::block_frames) == 0);
    CHECK(arena.stats().discarded_blocks == arena.block_count() - 2);
    for (frame* f : frames) {
        arena.deallocate(*f);
    }
    arena.check_invariants();
    CHECK(arena.discard_free_memory() == frames.size() * big_arena::frame_size);
    if (sizeof(frame) == 64) { // 64 KiB of descriptors per block: whole pages
        CHECK(resident_descriptor_pages(arena) == 0);
    }
    CHECK(arena.stats().discarded_blocks == arena.block_count());
    arena.check_invariants();
    // The blocks work as before: taken again, from the low end, their frames reading as zero.
    frame& again = arena.allocate(0);
    CHECK(arena.index_of(again) < 2 * big_arena::block_frames); // the last block freed first
    CHECK(std::all_of(arena.address_of(again), arena.address_of(again) + big_arena::frame_size,
                      [](std::byte b) { return b == std::byte{0}; }));
    arena.check_invariants();
    arena.deallocate(again);
}

TEST_CASE("a 2 GiB and a 256 MiB arena holding the same frames have the same resident "
          "descriptors") {
    big_arena large(two_gib);
    big_arena small(std::size_t{256} << 20);
    // The same allocations and frees in both: a fill, then every third frame freed.
    const auto fill = [](big_arena& arena) {
        std::vector<frame*> frames;
        for (std::size_t i = 0; i < 20000; ++i) {
            frames.push_back(&arena.allocate(0));
        }
        for (std::size_t i = 0; i < frames.size(); i += 3) {
            arena.deallocate(*frames[i]);
            frames[i] = nullptr;
        }
        arena.discard_free_memory(0);
        return frames;
    };
    std::vector<frame*> in_large = fill(large);
    std::vector<frame*> in_small = fill(small);
    CHECK(resident_descriptor_pages(large) > 0);
    CHECK(resident_descriptor_pages(large) == resident_descriptor_pages(small));
    for (std::size_t i = 0; i < in_large.size(); ++i) {
        if (in_large[i] != nullptr) {
            CHECK(large.index_of(*in_large[i]) == small.index_of(*in_small[i]));
            large.deallocate(*in_large[i]);
            small.deallocate(*in_small[i]);
        }
    }
}

TEST_CASE("discarding a new arena releases nothing: its frames were never touched") {
    big_arena arena(std::size_t{64} << 20);
    CHECK(arena.discard_free_memory(0) == 0); // was 64 MiB, while the resident set did not move
    CHECK(arena.stats().discarded_frames == arena.frame_count());
    CHECK(arena.stats().discarded_blocks == arena.block_count());
}

TEST_CASE("discard reports the frames used since the last discard, not the blocks it advised") {
    big_arena arena(std::size_t{64} << 20);
    std::vector<frame*> frames;
    for (std::size_t i = 0; i < 10; ++i) {
        frames.push_back(&arena.allocate(0));
        std::memset(arena.address_of(*frames.back()), 0x5a, big_arena::frame_size);
    }
    frame& pair = arena.allocate(1); // a block of two frames: both touched
    CHECK(arena.stats().discarded_frames == arena.frame_count() - 12);
    for (frame* f : frames) {
        arena.deallocate(*f);
    }
    arena.deallocate(pair, 1);
    CHECK(arena.discard_free_memory(0) == 12 * big_arena::frame_size);
    CHECK(arena.discard_free_memory(0) == 0);
    CHECK(arena.stats().discarded_frames == arena.frame_count());
    // Used again, a frame counts again; the frames beside it, never used since, do not.
    frame& again = arena.allocate(0);
    arena.deallocate(again);
    CHECK(arena.discard_free_memory(0) == big_arena::frame_size);
}

TEST_CASE("a discarded block is one free max-order block to lockless queries and to takers") {
    small_arena arena(3 * small_arena::block_bytes);
    REQUIRE(arena.stats().discarded_blocks == 3);
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        CHECK(arena.is_free(i));
        CHECK(arena.free_block_end(i) == (i / block + 1) * block);
    }
    // Taking one frame in the middle of a discarded block splits the block around it.
    frame* middle = arena.try_take_free_frame(block + 5);
    REQUIRE(middle != nullptr);
    CHECK(arena.index_of(*middle) == block + 5);
    CHECK(arena.stats().discarded_blocks == 2);
    CHECK(arena.free_frames() == arena.frame_count() - 1);
    arena.check_invariants();
    // An unmovable allocation claims a discarded block of the movable kind.
    frame& pinned = arena.allocate(0, frame_kind::unmovable);
    CHECK(arena.block_kind(arena.index_of(pinned) / block) == frame_kind::unmovable);
    arena.check_invariants();
    arena.deallocate(pinned);
    arena.deallocate(*middle);
    CHECK(arena.discard_free_memory() == 2 * small_arena::frame_size);
    CHECK(arena.stats().discarded_blocks == 3);
    arena.check_invariants();
}

TEST_CASE("discard_free_memory leaves blocks below min_order alone") {
    small_arena arena(2 * small_arena::block_bytes);
    for (frame* used : allocate_all(arena)) { // every frame touched: all of it counts
        arena.deallocate(*used);
    }
    frame& f = arena.allocate(0); // splits block 0 into orders 0..3
    const std::size_t released = arena.discard_free_memory(small_arena::max_order);
    CHECK(released == small_arena::block_bytes); // only the whole free block 1
    CHECK(arena.discard_free_memory(3) == 8 * small_arena::frame_size); // the order-3 buddy
    arena.deallocate(f);
}

namespace movable::detail {
struct frame_arena_test_access {
    template <class Arena>
    static void set_discard(Arena& arena, int (*discard)(void*, std::size_t) noexcept) {
        arena.discard_ = discard;
    }
    template <class Arena>
    static void set_page_size(Arena& arena, std::size_t page_size) {
        arena.page_size_ = page_size;
    }
};
} // namespace movable::detail

namespace {
struct discard_call {
    std::uintptr_t start;
    std::size_t bytes;
};
std::vector<discard_call> discard_calls;
int discard_fails(void* start, std::size_t bytes) noexcept {
    discard_calls.push_back({reinterpret_cast<std::uintptr_t>(start), bytes});
    errno = EAGAIN;
    return -1;
}
int discard_succeeds(void* start, std::size_t bytes) noexcept {
    discard_calls.push_back({reinterpret_cast<std::uintptr_t>(start), bytes});
    return 0;
}
} // namespace

TEST_CASE("memory whose madvise fails is neither reported nor marked released") {
    small_arena arena(2 * small_arena::block_bytes);
    for (frame* used : allocate_all(arena)) { // every frame touched, so every frame is resident
        arena.deallocate(*used);
    }
    discard_calls.clear();
    detail::frame_arena_test_access::set_discard(arena, &discard_fails);
    CHECK(arena.discard_free_memory(0) == 0);
    CHECK(discard_calls.size() == 2); // one range per free block, both refused
    CHECK(arena.stats().discarded_frames == 0);
    CHECK(arena.stats().discard_failures == 2);
    // Once madvise works again, the same memory is released (it was not marked).
    detail::frame_arena_test_access::set_discard(arena, &discard_succeeds);
    CHECK(arena.discard_free_memory(0) == 2 * small_arena::block_bytes);
    CHECK(arena.stats().discarded_frames == arena.frame_count());
}

TEST_CASE("with system pages larger than a frame only whole free pages are released") {
    small_arena arena(4 * small_arena::block_bytes);
    constexpr std::size_t page = 4 * small_arena::frame_size; // 16 KiB pages
    detail::frame_arena_test_access::set_page_size(arena, page);
    discard_calls.clear();
    detail::frame_arena_test_access::set_discard(arena, &discard_succeeds);
    // Allocate every other frame of the first block: no 16 KiB page there is wholly free.
    std::vector<frame*> frames = allocate_all(arena);
    for (std::size_t i = 0; i < frames.size(); ++i) {
        if (i >= block || i % 2 == 1) {
            arena.deallocate(*frames[i]);
        }
    }
    const std::size_t released = arena.discard_free_memory(0);
    std::size_t discarded = 0;
    const auto first_block_end =
        reinterpret_cast<std::uintptr_t>(arena.data()) + small_arena::block_bytes;
    for (const discard_call& call : discard_calls) {
        CHECK(call.start % page == 0);
        CHECK(call.bytes % page == 0);
        CHECK(call.start >= first_block_end - page); // nothing in the first block's used pages
        discarded += call.bytes;
    }
    CHECK(released == discarded);
    CHECK(arena.stats().discarded_frames * small_arena::frame_size == released);
    // Each free 64 KiB block holds at least 3 whole 16 KiB pages, wherever the arena starts.
    CHECK(released >= 9 * page);
    CHECK(released <= 3 * small_arena::block_bytes);
    for (std::size_t i = 0; i < block; i += 2) {
        arena.deallocate(*frames[i]);
    }
}

TEST_CASE("the arena's invariants hold through random allocation, claims and freeing") {
    small_arena arena(8 * small_arena::block_bytes);
    std::mt19937 random(11);
    std::vector<std::pair<frame*, unsigned>> held;
    arena.check_invariants();
    for (int step = 0; step < 3000; ++step) {
        if (held.empty() || random() % 5 < 3) {
            const unsigned order = random() % 3;
            const frame_kind kind = random() % 2 == 0 ? frame_kind::movable : frame_kind::unmovable;
            if (frame* f = arena.try_allocate(order, kind)) {
                held.emplace_back(f, order);
            }
        } else {
            const std::size_t victim = random() % held.size();
            arena.deallocate(*held[victim].first, held[victim].second);
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(victim));
        }
        arena.check_invariants();
    }
    CHECK(arena.stats().blocks_claimed > 0);
    CHECK(arena.stats().frames_stolen > 0);
    for (auto [f, order] : held) {
        arena.deallocate(*f, order);
    }
    arena.check_invariants();
}

TEST_CASE("a broken arena invariant aborts naming it, in every build") {
    CHECK(test::dies_with("frame_arena::check_invariants: a frame inside a block is marked as a "
                          "head",
                          [] {
                              small_arena arena(small_arena::block_bytes);
                              frame& f = arena.allocate(2);
                              // Corrupt a tail frame's allocator word as a stray write would.
                              arena.frame_at(arena.index_of(f) + 1).set_allocator_word(0x2);
                              arena.check_invariants();
                          }));
    CHECK(test::dies_with("frame_arena::check_invariants: a free frame is referenced", [] {
        small_arena arena(small_arena::block_bytes);
        frame& f = arena.frame_at(5); // free
        f.acquire_first_reference();  // as a caller that took a frame behind the arena's back
        arena.check_invariants();
    }));
}

TEST_CASE("freeing a frame that is not allocated is a contract violation") {
    MOVABLE_REQUIRE_CONTRACTS();
    CHECK(test::dies_with("frame_arena::deallocate: frame is not an allocated block", [] {
        small_arena arena(small_arena::block_bytes);
        frame& f = arena.allocate(0);
        arena.deallocate(f);
        arena.deallocate(f);
    }));
    CHECK(test::dies_with("frame_arena::deallocate: order differs", [] {
        small_arena arena(small_arena::block_bytes);
        frame& f = arena.allocate(1);
        arena.deallocate(f, 0);
    }));
    CHECK(test::dies_with("frame_arena::deallocate: frame is not in this arena", [] {
        small_arena first(small_arena::block_bytes);
        small_arena second(small_arena::block_bytes);
        frame& f = first.allocate(0);
        second.deallocate(f);
    }));
    CHECK(test::dies_with("frame_arena::deallocate: frame is still owned", [] {
        test::inert_owner o;
        small_arena arena(small_arena::block_bytes);
        frame& f = arena.allocate(0);
        f.lock();
        set_movable(f, o);
        f.unlock();
        arena.deallocate(f);
    }));
}

TEST_CASE("threads allocating and freeing at once leave the arena whole") {
    small_arena arena(16 * small_arena::block_bytes);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&arena, t] {
            std::mt19937 random(static_cast<unsigned>(t));
            std::vector<std::pair<frame*, unsigned>> mine;
            for (int step = 0; step < 5000; ++step) {
                if (mine.empty() || random() % 2 == 0) {
                    const unsigned order = random() % 3;
                    const frame_kind kind =
                        random() % 5 == 0 ? frame_kind::unmovable : frame_kind::movable;
                    if (frame* f = arena.try_allocate(order, kind)) {
                        mine.emplace_back(f, order);
                    }
                } else {
                    auto [f, order] = mine.back();
                    mine.pop_back();
                    arena.deallocate(*f, order);
                }
            }
            for (auto [f, order] : mine) {
                arena.deallocate(*f, order);
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    const auto stats = arena.stats();
    CHECK(stats.free_frames == arena.frame_count());
    CHECK(stats.free_blocks_of_order(small_arena::max_order) == 16);
}
