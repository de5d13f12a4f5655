// The arenas compaction_bench compacts (issue 12's scenarios), the owner of their pages, and
// what the best compaction of an arena achieves (the reference the benchmark's ratios use).
//   page_owner   numbered 4 KiB pages, movable; logs every move (source, target) so that the
//                benchmark can replay exactly those copies as its baseline
//   layout       an arena laid out as a scenario says, the same every time
//   reference    the most max-order blocks a compaction can free and the fewest moves for it
//   churn        a thread freeing and allocating pages while a compaction runs (hot_cold)
#pragma once

#include <movable/frame_arena.hpp>
#include <movable/operations.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <vector>

namespace movable::bench::compaction {

using arena_type = frame_arena<>; // 4 KiB frames, max order 10: 4 MiB blocks
using clock_type = std::chrono::steady_clock;
inline constexpr std::size_t frame_size = arena_type::frame_size;
inline constexpr std::size_t block_frames = arena_type::block_frames;

inline double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

// ---- the owner ---------------------------------------------------------------------------------

// One migration: arena frame indices.
struct frame_move {
    std::uint32_t from;
    std::uint32_t to;
};

// Every migration the owners performed, in order; written only by the thread that compacts
// (owners' migrate runs there). Fixed capacity, so recording never allocates.
class move_log {
public:
    explicit move_log(std::size_t capacity) : moves_(capacity) {}
    void record(std::size_t from, std::size_t to) noexcept {
        if (size_ < moves_.size()) {
            moves_[size_] = {static_cast<std::uint32_t>(from), static_cast<std::uint32_t>(to)};
        }
        ++size_;
    }
    void clear() noexcept { size_ = 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool overflowed() const noexcept { return size_ > moves_.size(); }
    [[nodiscard]] std::span<const frame_move> moves(std::size_t first, std::size_t end) const {
        return {moves_.data() + first, std::min(end, moves_.size()) - first};
    }

private:
    std::vector<frame_move> moves_;
    std::size_t size_ = 0;
};

// Numbered 4 KiB pages in frames of the arena, movable. Leaner than examples/page_store (no owner
// lock: a page's table entry is atomic and changes only under its frame's lock), so that what is
// measured beyond the copy is the engine's protocol; and it logs every move for the replay.
class page_owner {
public:
    page_owner(arena_type& arena, std::size_t pages, move_log* log)
        : arena_(arena), table_(pages), log_(log) {}
    page_owner(const page_owner&) = delete;
    page_owner& operator=(const page_owner&) = delete;
    ~page_owner() {
        for (std::size_t page = 0; page < table_.size(); ++page) {
            erase(page);
        }
    }

    // Stores page `page` (its slot must be empty): its number in the first word, its low byte
    // everywhere else. False when the arena is full.
    bool insert(std::size_t page) {
        movable::frame* f = arena_.try_allocate(0, movable::frame_kind::movable);
        if (f == nullptr) {
            return false;
        }
        std::byte* bytes = arena_.address_of(*f);
        std::memset(bytes, static_cast<int>(page & 0xff), frame_size);
        std::memcpy(bytes, &page, sizeof page);
        f->set_private_word(page);
        const std::lock_guard guard(*f);
        table_[page].store(f, std::memory_order_release);
        movable::set_movable(*f, *this);
        return true;
    }

    // Frees page `page`, if stored. A frame the compactor holds isolated is left to it.
    void erase(std::size_t page) {
        for (;;) {
            movable::frame* f = table_[page].load(std::memory_order_acquire);
            if (f == nullptr) {
                return;
            }
            std::unique_lock guard(*f);
            if (table_[page].load(std::memory_order_relaxed) != f) {
                continue; // it moved while we were locking it
            }
            table_[page].store(nullptr, std::memory_order_relaxed);
            const bool compactor_owns_it = movable::clear_movable(*f);
            guard.unlock();
            if (!compactor_owns_it) {
                arena_.deallocate(*f);
            }
            return;
        }
    }

    // Pages stored, and whether each holds what insert wrote (no compaction running).
    [[nodiscard]] std::size_t stored() const {
        return static_cast<std::size_t>(std::count_if(table_.begin(), table_.end(), [](auto& e) {
            return e.load(std::memory_order_relaxed) != nullptr;
        }));
    }
    [[nodiscard]] bool all_intact() const {
        for (std::size_t page = 0; page < table_.size(); ++page) {
            const movable::frame* f = table_[page].load(std::memory_order_acquire);
            if (f == nullptr) {
                continue;
            }
            const std::byte* bytes = arena_.address_of(*f);
            std::size_t number = 0;
            std::memcpy(&number, bytes, sizeof number);
            if (number != page || bytes[frame_size - 1] != static_cast<std::byte>(page & 0xff)) {
                return false;
            }
        }
        return true;
    }
    [[nodiscard]] movable::frame* frame_of(std::size_t page) const {
        return table_[page].load(std::memory_order_acquire);
    }

    // ---- the owner protocol (called by the core with the frames locked) ----
    bool isolate(movable::frame& /*f*/, movable::migrate_mode /*mode*/) noexcept { return true; }
    movable::migrate_status migrate(movable::frame& dst, movable::frame& src,
                                    movable::migrate_mode /*mode*/) noexcept {
        std::memcpy(arena_.address_of(dst), arena_.address_of(src), frame_size);
        const std::uintptr_t page = src.private_word();
        dst.set_private_word(page);
        table_[page].store(&dst, std::memory_order_release);
        if (log_ != nullptr) {
            log_->record(arena_.index_of(src), arena_.index_of(dst));
        }
        movable::set_movable(dst, *this);
        return movable::migrate_status::success;
    }
    void putback(movable::frame& /*f*/) noexcept {}

private:
    arena_type& arena_;
    std::vector<std::atomic<movable::frame*>> table_;
    move_log* log_;
};

// ---- the scenarios -----------------------------------------------------------------------------

enum class scenario {
    packed_25,
    packed_50,
    packed_90,
    random_50,
    random_90,
    unmovable_1,
    hot_cold
};
inline constexpr scenario all_scenarios[] = {
    scenario::packed_25, scenario::packed_50,   scenario::packed_90, scenario::random_50,
    scenario::random_90, scenario::unmovable_1, scenario::hot_cold};

inline const char* scenario_name(scenario s) {
    switch (s) {
    case scenario::packed_25:
        return "packed_25";
    case scenario::packed_50:
        return "packed_50";
    case scenario::packed_90:
        return "packed_90";
    case scenario::random_50:
        return "random_50";
    case scenario::random_90:
        return "random_90";
    case scenario::unmovable_1:
        return "unmovable_1";
    case scenario::hot_cold:
        return "hot_cold";
    }
    return "?";
}

// An arena laid out as a scenario says, the same every time for the same arguments (the hot
// owner's thread is started by the benchmark, not here).
struct layout {
    layout(scenario s, std::size_t bytes, move_log* log)
        : arena(bytes), cold(arena, arena.frame_count(), log),
          hot(arena, s == scenario::hot_cold ? 2 * hot_pages_of(arena.frame_count()) : 0, log) {
        const std::size_t frames = arena.frame_count();
        std::mt19937 random(static_cast<unsigned>(s) + 1);
        auto free_at_random = [&](std::size_t percent) {
            std::vector<std::size_t> pages;
            for (std::size_t page = 0; page < frames; ++page) {
                if (cold.frame_of(page) != nullptr) {
                    pages.push_back(page);
                }
            }
            std::shuffle(pages.begin(), pages.end(), random);
            for (std::size_t i = 0; i < pages.size() * percent / 100; ++i) {
                cold.erase(pages[i]);
            }
        };
        switch (s) {
        case scenario::packed_25:
        case scenario::packed_50:
        case scenario::packed_90: {
            const std::size_t percent = s == scenario::packed_25   ? 25
                                        : s == scenario::packed_50 ? 50
                                                                   : 90;
            for (std::size_t page = 0; page < frames * percent / 100; ++page) {
                (void)cold.insert(page);
            }
            break;
        }
        case scenario::random_50:
        case scenario::random_90:
        case scenario::hot_cold:
            for (std::size_t page = 0; page < frames; ++page) {
                (void)cold.insert(page);
            }
            free_at_random(s == scenario::random_90 ? 10 : 50);
            break;
        case scenario::unmovable_1:
            for (std::size_t page = 0; page < frames; ++page) {
                if (page % 100 == 99) {
                    movable::frame* f = arena.try_allocate(0, movable::frame_kind::unmovable);
                    if (f != nullptr) {
                        std::memset(arena.address_of(*f), 0x55, frame_size);
                        unmovable.push_back(f);
                    }
                } else {
                    (void)cold.insert(page);
                }
            }
            free_at_random(50);
            break;
        }
        if (s == scenario::hot_cold) {
            hot_live = hot_pages_of(frames);
            for (std::size_t page = 0; page < hot_live; ++page) {
                (void)hot.insert(page);
            }
        }
        cold_stored = cold.stored();
    }
    ~layout() {
        for (movable::frame* f : unmovable) {
            arena.deallocate(*f);
        }
    }
    layout(const layout&) = delete;
    layout& operator=(const layout&) = delete;

    static std::size_t hot_pages_of(std::size_t frames) { return frames / 32; }

    arena_type arena;
    page_owner cold;
    page_owner hot; // hot_cold only: pages another thread keeps freeing and allocating
    std::vector<movable::frame*> unmovable;
    std::size_t cold_stored = 0;
    std::size_t hot_live = 0;
};

// What the best compaction of an arena achieves, computed from the arena before compacting.
// Moved frames can only go to free frames of movable blocks (frame_arena hands the compactor no
// other), so: a block holding a frame that cannot move stays; emptying a partly used movable
// block uses up all of the free room outside it that its frames take plus its own holes, i.e.
// one block's worth of the holes of the partly used movable blocks; emptying a block of the
// unmovable kind holding only movable frames costs just its used frames; and sacrificing a free
// movable block as room gains one block's worth of holes. The most blocks freed is the best of
// those choices, and the fewest moves are those of the cheapest blocks that achieve it.
struct reference_plan {
    std::size_t free_blocks = 0;   // free max-order blocks before compaction
    std::size_t blocks_gain = 0;   // the most free max-order blocks a compaction can add
    std::size_t moves = 0;         // the fewest frames moved to add that many
    std::size_t pinned_blocks = 0; // blocks holding a used frame that cannot move
    std::size_t used_frames = 0;   // used frames before compaction
};

inline reference_plan reference(arena_type& arena) {
    struct candidate {
        std::size_t room; // holes it takes to empty it
        std::size_t used; // frames it moves
    };
    reference_plan plan;
    std::vector<candidate> candidates;
    std::size_t holes = 0; // free frames of partly used movable blocks
    std::size_t free_movable_blocks = 0;
    for (std::size_t block = 0; block < arena.block_count(); ++block) {
        std::size_t used = 0;
        bool pinned = false;
        for (std::size_t i = block * block_frames; i < (block + 1) * block_frames; ++i) {
            if (!arena.is_free(i)) {
                ++used;
                pinned = pinned || !movable::is_movable(arena.frame_at(i));
            }
        }
        plan.used_frames += used;
        const bool movable_block = arena.block_kind(block) == movable::frame_kind::movable;
        if (used == 0) {
            ++plan.free_blocks;
            free_movable_blocks += movable_block ? 1 : 0;
            continue;
        }
        holes += movable_block ? block_frames - used : 0;
        if (pinned) {
            ++plan.pinned_blocks;
            continue;
        }
        candidates.push_back({movable_block ? block_frames : used, used});
    }
    std::sort(candidates.begin(), candidates.end(), [](const candidate& a, const candidate& b) {
        return a.room != b.room ? a.room < b.room : a.used < b.used;
    });
    for (std::size_t sacrificed = 0; sacrificed <= free_movable_blocks; ++sacrificed) {
        const std::size_t room = holes + sacrificed * block_frames;
        std::size_t taken = 0;
        std::size_t emptied = 0;
        std::size_t moves = 0;
        while (emptied < candidates.size() && taken + candidates[emptied].room <= room) {
            taken += candidates[emptied].room;
            moves += candidates[emptied].used;
            ++emptied;
        }
        if (emptied >= sacrificed &&
            (emptied - sacrificed > plan.blocks_gain ||
             (emptied - sacrificed == plan.blocks_gain && moves < plan.moves))) {
            plan.blocks_gain = emptied - sacrificed;
            plan.moves = moves;
        }
        if (emptied == candidates.size()) {
            break;
        }
    }
    if (plan.blocks_gain == 0) {
        plan.moves = 0;
    }
    return plan;
}

// Another thread freeing and allocating the hot owner's pages (oldest first) without pause.
class churn {
public:
    churn(page_owner& owner, std::size_t live) : owner_(owner), live_(live) {
        thread_ = std::thread([this] { run(); });
        while (!running_.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
    }
    churn(const churn&) = delete;
    churn& operator=(const churn&) = delete;
    ~churn() { (void)stop(); }
    // Stops the thread; the pairs of operations (free one page, allocate one) it did.
    std::size_t stop() {
        stop_.store(true, std::memory_order_release);
        if (thread_.joinable()) {
            thread_.join();
        }
        return operations_;
    }

private:
    void run() {
        std::size_t step = 0;
        while (!stop_.load(std::memory_order_acquire)) {
            owner_.erase(step % (2 * live_));
            (void)owner_.insert((step + live_) % (2 * live_));
            ++step;
            running_.store(true, std::memory_order_release);
        }
        operations_ = step;
    }
    page_owner& owner_;
    std::size_t live_;
    std::atomic<bool> running_{false};
    std::atomic<bool> stop_{false};
    std::size_t operations_ = 0;
    std::thread thread_;
};

// memcpy of every logged move, in order, in the arena's memory.
inline double replay_seconds(std::byte* base, std::span<const frame_move> moves) {
    const auto start = clock_type::now();
    for (const frame_move& move : moves) {
        std::memcpy(base + std::size_t{move.to} * frame_size,
                    base + std::size_t{move.from} * frame_size, frame_size);
    }
    benchmark::DoNotOptimize(base);
    benchmark::ClobberMemory();
    return seconds_since(start);
}

} // namespace movable::bench::compaction
