// Fault injection: every fault point of a compaction fails in turn, as SQLite fails each
// allocation point in turn. A scenario (pages of a test owner and frames of a balloon, in a
// fragmented arena) is compacted once per fault point k = 1, 2, ... until a run no longer
// reaches the k-th call, for every fault kind and every migrate_mode. After each run: no page
// lost or changed, every frame accounted for (allocated + free = total), nothing left isolated,
// and the balloon's host agrees with the balloon.
#include <movable/compaction.hpp>
#include <movable/models/balloon.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "support/arena_frames.hpp"
#include "support/balloon_hosts.hpp"

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
using owner_type = test::arena_owner<arena_type>;
using balloon_type = balloon<arena_type, test::replacing_host>;

enum class fault_kind {
    isolate_refuses,       // the owner's isolate answers false
    migrate_retry,         // the owner's migrate answers retry
    migrate_busy,          // the owner's migrate answers busy
    host_refuses,          // the balloon's host refuses a replacement
    host_shrinks,          // the host takes the old frame back but refuses the new one
    scanner_target_fails,  // the arena refuses one free frame to the free scanner
    engine_target_fails,   // Targets::allocate fails at the k-th request and after
    release_mid_migration, // the owner releases another isolated page during a migrate
};

constexpr fault_kind all_faults[] = {
    fault_kind::isolate_refuses,     fault_kind::migrate_retry,
    fault_kind::migrate_busy,        fault_kind::host_refuses,
    fault_kind::host_shrinks,        fault_kind::scanner_target_fails,
    fault_kind::engine_target_fails, fault_kind::release_mid_migration};

const char* name_of(fault_kind kind) {
    switch (kind) {
    case fault_kind::isolate_refuses:
        return "isolate refuses";
    case fault_kind::migrate_retry:
        return "migrate answers retry";
    case fault_kind::migrate_busy:
        return "migrate answers busy";
    case fault_kind::host_refuses:
        return "host refuses the replacement";
    case fault_kind::host_shrinks:
        return "host returns old, refuses new";
    case fault_kind::scanner_target_fails:
        return "free scanner's target refused";
    case fault_kind::engine_target_fails:
        return "target allocation fails from the k-th on";
    case fault_kind::release_mid_migration:
        return "page released mid-migration";
    }
    return "?";
}

// The k-th call at a fault point fails (from the k-th on, when persistent).
struct fault_plan {
    fault_kind kind;
    std::size_t k;
    bool persistent = false;
    std::atomic<std::size_t> calls{0};
    std::atomic<std::size_t> fired{0};

    bool hit(fault_kind at) {
        if (at != kind) {
            return false;
        }
        const std::size_t n = ++calls;
        if (n == k || (persistent && n > k)) {
            ++fired;
            return true;
        }
        return false;
    }
};

// A compactable_arena that forwards to a frame_arena but refuses a free frame to the free
// scanner when the plan says so.
struct faulty_arena {
    static constexpr std::size_t frame_size = arena_type::frame_size;
    static constexpr unsigned max_order = arena_type::max_order;
    arena_type& inner;
    fault_plan& plan;

    std::size_t frame_count() const { return inner.frame_count(); }
    frame& frame_at(std::size_t i) { return inner.frame_at(i); }
    std::size_t index_of(const frame& f) const { return inner.index_of(f); }
    bool is_free(std::size_t i) const { return inner.is_free(i); }
    std::size_t free_block_end(std::size_t i) const { return inner.free_block_end(i); }
    int largest_free_order() const { return inner.largest_free_order(); }
    unsigned fragmentation_score() const { return inner.fragmentation_score(); }
    frame* try_take_free_frame(std::size_t i) {
        return plan.hit(fault_kind::scanner_target_fails) ? nullptr : inner.try_take_free_frame(i);
    }
    void free_frame(frame& f) { inner.free_frame(f); }
};
static_assert(compactable_arena<faulty_arena>);

// migrate_frames' Targets with a failing allocate.
struct faulty_targets {
    arena_targets<arena_type> inner;
    fault_plan& plan;
    frame* allocate(const frame& source) {
        return plan.hit(fault_kind::engine_target_fails) ? nullptr : inner.allocate(source);
    }
    void free(frame& f) { inner.free(f); }
};

// Pages of a test owner and frames of a balloon in a fragmented arena, and what they must hold.
struct world {
    explicit world(fault_plan& plan, unsigned seed)
        : arena(8 * arena_type::block_bytes), frames{arena}, owner(frames), balloon(arena, host),
          plan_(plan) {
        std::mt19937 random(seed);
        // The balloon first, so its frames sit low, where the migration scanner moves them.
        REQUIRE(balloon.inflate(arena.frame_count() / 8).inflated == arena.frame_count() / 8);
        for (std::size_t page = 0; page < arena.frame_count() * 6 / 10; ++page) {
            REQUIRE(owner.add_page(page) != nullptr);
            live.insert(page);
        }
        std::vector<std::size_t> pages(live.begin(), live.end());
        std::shuffle(pages.begin(), pages.end(), random);
        for (std::size_t i = 0; i < pages.size() * 4 / 10; ++i) {
            owner.release_page(pages[i]);
            live.erase(pages[i]);
        }
        install_faults();
    }

    void install_faults() {
        owner.isolate_policy = [this](frame& f) {
            if (plan_.hit(fault_kind::isolate_refuses)) {
                return false;
            }
            std::lock_guard guard(mutex_);
            isolated_pages.insert(f.private_word());
            return true;
        };
        owner.migrate_policy = [this](frame& src) {
            if (plan_.hit(fault_kind::migrate_retry)) {
                return migrate_status::retry;
            }
            if (plan_.hit(fault_kind::migrate_busy)) {
                return migrate_status::busy;
            }
            if (plan_.hit(fault_kind::release_mid_migration)) {
                release_another_isolated_page(src.private_word());
            }
            return migrate_status::success;
        };
        host.policy = [this](frame&, frame&) {
            if (plan_.hit(fault_kind::host_refuses)) {
                return balloon_replace_result::refused;
            }
            if (plan_.hit(fault_kind::host_shrinks)) {
                return balloon_replace_result::old_returned_new_refused;
            }
            return balloon_replace_result::replaced;
        };
    }

    // Never the page being migrated: the core holds its frame lock.
    void release_another_isolated_page(std::size_t migrating) {
        std::vector<std::size_t> candidates;
        {
            std::lock_guard guard(mutex_);
            candidates.assign(isolated_pages.begin(), isolated_pages.end());
        }
        for (std::size_t page : candidates) {
            frame* f = owner.frame_of(page);
            if (page != migrating && f != nullptr && f->is_isolated()) {
                CHECK(owner.release_page(page)); // the core owns it: it will free it
                live.erase(page);
                ++released_mid_migration;
                return;
            }
        }
    }

    // The invariants every fault must leave intact.
    void check(const char* what) {
        INFO(what);
        for (std::size_t page : live) {
            CHECK(owner.page_intact(page));
        }
        CHECK(owner.resident_count() == live.size());
        CHECK(balloon.isolated_count() == 0);
        CHECK(host.held.size() == balloon.size());
        CHECK(host.double_lends == 0);
        CHECK(host.unknown_returns == 0);
        std::size_t isolated = 0;
        for (std::size_t i = 0; i < arena.frame_count(); ++i) {
            isolated += arena.frame_at(i).is_isolated() ? 1 : 0;
        }
        CHECK(isolated == 0);
        CHECK(arena.free_frames() + live.size() + balloon.size() == arena.frame_count());
    }

    arena_type arena;
    test::arena_frames<arena_type> frames;
    owner_type owner;
    test::replacing_host host;
    balloon_type balloon;
    std::set<std::size_t> live;
    std::set<std::size_t> isolated_pages;
    std::size_t released_mid_migration = 0;

private:
    fault_plan& plan_;
    std::mutex mutex_;
};

struct run_result {
    std::size_t fired = 0; // faults injected
    std::size_t calls = 0; // calls that reached the fault point (fewer than k: k is past the end)
};

// One run with the fault at point k.
enum class request_kind { full, incremental, order_targeted };

run_result run_compaction(fault_kind kind, migrate_mode mode, request_kind how,
                          compact_strategy strategy, std::size_t k) {
    fault_plan plan{kind, k};
    world w(plan, static_cast<unsigned>(k));
    faulty_arena arena{w.arena, plan};
    compactor<faulty_arena> compaction(arena);
    compact_request request;
    request.mode = mode;
    request.strategy = strategy;
    switch (how) {
    case request_kind::full:
        break;
    case request_kind::incremental:
        request.max_frames_per_pass = 5;
        break;
    case request_kind::order_targeted:
        request.order = static_cast<int>(arena_type::max_order);
        break;
    }
    compaction.compact(request);
    w.check(name_of(kind));
    return {plan.fired.load(), plan.calls.load()};
}

// The engine directly: every movable frame (pages and balloon frames) isolated at once, then
// migrate_frames with Targets that fail from the k-th request on.
run_result run_migrate_frames(migrate_mode mode, std::size_t k) {
    fault_plan plan{fault_kind::engine_target_fails, k, true};
    world w(plan, static_cast<unsigned>(k));
    frame_list isolated;
    for (std::size_t i = 0; i < w.arena.frame_count(); ++i) {
        frame& f = w.arena.frame_at(i);
        if (isolate_movable_frame(f, mode)) {
            isolated.push_back(f);
        }
    }
    faulty_targets targets{{w.arena}, plan};
    const migrate_stats stats = migrate_frames(isolated, targets, mode);
    CHECK(stats.target_exhausted == (plan.fired.load() > 0));
    putback_movable_frames(isolated, targets); // async may leave some; none here
    w.check("target allocation fails from the k-th request on");
    return {plan.fired.load(), plan.calls.load()};
}

// Every migrate mode, request kind and strategy.
std::vector<std::tuple<migrate_mode, request_kind, compact_strategy>> scenarios() {
    std::vector<std::tuple<migrate_mode, request_kind, compact_strategy>> out;
    for (const compact_strategy strategy :
         {compact_strategy::least_moves, compact_strategy::scanners}) {
        for (const migrate_mode mode :
             {migrate_mode::async, migrate_mode::sync_light, migrate_mode::sync}) {
            for (const request_kind how :
                 {request_kind::full, request_kind::incremental, request_kind::order_targeted}) {
                out.emplace_back(mode, how, strategy);
            }
        }
    }
    return out;
}

} // namespace

TEST_CASE("every fault point of a compaction, in every migrate mode and strategy, loses "
          "nothing") {
    std::size_t faults_injected = 0;
    std::size_t runs = 0;
    for (fault_kind kind : all_faults) {
        std::size_t fired_in_kind = 0;
        for (const auto& scenario : scenarios()) {
            {
                // (Named copies, not structured bindings: doctest's INFO captures them.)
                const migrate_mode mode = std::get<0>(scenario);
                const request_kind how = std::get<1>(scenario);
                const compact_strategy strategy = std::get<2>(scenario);
                if (kind == fault_kind::engine_target_fails &&
                    (how != request_kind::full || strategy != compact_strategy::least_moves)) {
                    continue; // runs migrate_frames directly: no request
                }
                INFO(std::string(name_of(kind))
                     << ", mode " << static_cast<int>(mode) << ", request " << static_cast<int>(how)
                     << ", strategy " << static_cast<int>(strategy));
                std::size_t fired_here = 0;
                for (std::size_t k = 1;; ++k) {
                    CAPTURE(k);
                    const run_result result = kind == fault_kind::engine_target_fails
                                                  ? run_migrate_frames(mode, k)
                                                  : run_compaction(kind, mode, how, strategy, k);
                    ++runs;
                    fired_here += result.fired;
                    if (result.calls < k) {
                        break; // no k-th call: every point of this scenario failed once
                    }
                }
                // The scanners' full compaction reaches every fault point (order-targeted may
                // stop first; least_moves moves only what frees a block, which in this world
                // may leave the balloon's frames where they are).
                if (how == request_kind::full && strategy == compact_strategy::scanners) {
                    CHECK(fired_here > 0);
                }
                fired_in_kind += fired_here;
            }
        }
        MESSAGE(std::string(name_of(kind)) << ": " << fired_in_kind << " faults injected");
        faults_injected += fired_in_kind;
    }
    MESSAGE(runs << " runs, " << faults_injected << " faults injected");
}
