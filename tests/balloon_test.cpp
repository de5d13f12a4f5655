#include <movable/models/balloon.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <movable/compaction.hpp>
#include <movable/migrate.hpp>

#include "support/balloon_hosts.hpp"
#include "support/death_test.hpp"

using namespace movable;
using movable::test::host_event_kind;
using movable::test::recording_host;
using movable::test::replacing_host;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
constexpr std::size_t block = arena_type::block_frames;

template <class Host>
using balloon_type = balloon<arena_type, Host>;

// An arena of `blocks` max-order blocks in which every other frame is lent to the balloon and
// the rest are free: no free max-order block, and only balloon frames in the way.
template <class Host>
struct half_ballooned {
    explicit half_ballooned(std::size_t blocks)
        : arena(blocks * arena_type::block_bytes), b(arena, host) {
        std::vector<frame*> program;
        while (b.inflate(1).inflated == 1) {
            frame* f = arena.try_allocate(0, frame_kind::movable);
            if (f == nullptr) {
                break;
            }
            program.push_back(f);
        }
        for (frame* f : program) {
            arena.deallocate(*f, 0);
        }
    }

    // The frames the balloon holds are exactly the ones the host holds, and each one names
    // the balloon itself as its owner.
    bool host_and_balloon_agree() const {
        std::size_t owned = 0;
        for (std::size_t i = 0; i < arena.frame_count(); ++i) {
            frame& f = arena.frame_at(i);
            if (f.owner() == static_cast<const void*>(&b)) {
                ++owned;
                if (host.held.count(&f) == 0 ||
                    movable_ops(f) != &operations_for<balloon_type<Host>>) {
                    return false;
                }
            }
        }
        return owned == host.held.size() && owned == b.size() && host.double_lends == 0 &&
               host.unknown_returns == 0;
    }

    // Isolates one lent frame, as a compaction would.
    frame& isolate_one() {
        frame* isolated = nullptr;
        for (frame* f : host.held) {
            if (isolate_movable_frame(*f, migrate_mode::sync)) {
                isolated = f;
                break;
            }
        }
        REQUIRE(isolated != nullptr);
        return *isolated;
    }

    mutable arena_type arena;
    Host host;
    balloon_type<Host> b;
};

// Migrates one isolated frame to a fresh arena frame through the engine.
migrate_stats migrate_one(arena_type& arena, frame& isolated,
                          migrate_mode mode = migrate_mode::sync) {
    frame_list list;
    list.push_back(isolated);
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, mode);
    putback_movable_frames(list, targets); // async leftovers, if any
    return stats;
}

} // namespace

TEST_CASE("inflate lends frames to the host and deflate gives them back to the arena") {
    arena_type arena(4 * arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    const std::size_t total = arena.free_frames();

    const balloon_inflate_result inflated = b.inflate(10);
    CHECK(inflated.inflated == 10);
    CHECK(inflated.stopped_by == balloon_inflate_stop::requested_count);
    CHECK(b.size() == 10);
    CHECK(b.isolated_count() == 0);
    CHECK(host.held.size() == 10);
    CHECK(arena.free_frames() == total - 10);
    for (frame* f : host.held) {
        CHECK(is_movable(*f));
        CHECK(f->owner() == static_cast<void*>(&b));
        CHECK(f->reference_count() == 1);
        CHECK_FALSE(f->is_locked());
    }

    CHECK(b.deflate(4) == 4);
    CHECK(b.size() == 6);
    CHECK(host.held.size() == 6);
    CHECK(arena.free_frames() == total - 6);
    CHECK(b.deflate(100) == 6); // more than it holds: gives back what it has
    CHECK(b.size() == 0);
    CHECK(host.held.empty());
    CHECK(arena.free_frames() == total);
    CHECK(host.double_lends == 0);
    CHECK(host.unknown_returns == 0);
    const balloon_stats stats = b.stats();
    CHECK(stats.inflated == 10);
    CHECK(stats.deflated == 10);
}

TEST_CASE("inflating or deflating zero frames does nothing") {
    arena_type arena(arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    const balloon_inflate_result none = b.inflate(0);
    CHECK(none.inflated == 0);
    CHECK(none.stopped_by == balloon_inflate_stop::requested_count);
    CHECK(b.deflate(0) == 0);
    CHECK(host.events.empty());
}

TEST_CASE("inflate past the arena's size takes every free frame and says how many") {
    arena_type arena(2 * arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);

    const balloon_inflate_result inflated = b.inflate(1000);
    CHECK(inflated.inflated == 2 * block);
    CHECK(inflated.stopped_by == balloon_inflate_stop::arena_exhausted);
    CHECK(b.size() == 2 * block);
    CHECK(host.held.size() == 2 * block);
    CHECK(arena.free_frames() == 0);

    const balloon_inflate_result more = b.inflate(1);
    CHECK(more.inflated == 0);
    CHECK(more.stopped_by == balloon_inflate_stop::arena_exhausted);
    CHECK(b.deflate(1000) == 2 * block);
    CHECK(arena.free_frames() == 2 * block);
}

TEST_CASE("a host that refuses a frame stops inflation and the frame goes back to the arena") {
    arena_type arena(arena_type::block_bytes);
    recording_host host;
    host.lend_limit = 5;
    balloon b(arena, host);

    const balloon_inflate_result inflated = b.inflate(10);
    CHECK(inflated.inflated == 5);
    CHECK(inflated.stopped_by == balloon_inflate_stop::host_refused);
    CHECK(b.size() == 5);
    CHECK(arena.free_frames() == block - 5); // the refused frame is free again
    CHECK(b.stats().lend_refused == 1);
}

TEST_CASE("migration lends the new frame to the host before returning the old one") {
    half_ballooned<recording_host> h(8);
    const std::size_t lent = h.b.size();
    REQUIRE(lent == 8 * block / 2);
    REQUIRE_FALSE(h.arena.has_free_block(arena_type::max_order));
    const std::size_t events_before = h.host.events.size();

    compactor<arena_type> compaction(h.arena);
    const compact_stats stats = compaction.compact();

    REQUIRE(stats.migrated > 0);
    CHECK(stats.failed == 0);
    // Each migration is one lend of the new frame followed by one return of the old one.
    REQUIRE(h.host.events.size() == events_before + 2 * stats.migrated);
    for (std::size_t i = events_before; i < h.host.events.size(); i += 2) {
        CHECK(h.host.events[i].kind == host_event_kind::lent);
        CHECK(h.host.events[i + 1].kind == host_event_kind::returned);
        CHECK(h.host.events[i].f != h.host.events[i + 1].f);
    }
    CHECK(h.b.size() == lent);
    CHECK(h.b.stats().migrated == stats.migrated);
    CHECK(h.host_and_balloon_agree());
}

TEST_CASE("compaction across balloon frames frees a max-order block") {
    half_ballooned<recording_host> h(8);
    REQUIRE_FALSE(h.arena.has_free_block(arena_type::max_order));
    compactor<arena_type> compaction(h.arena);

    SUBCASE("order-targeted") {
        compact_request request;
        request.order = static_cast<int>(arena_type::max_order);
        const compact_stats stats = compaction.compact(request);
        CHECK(stats.outcome == compact_outcome::order_available);
        CHECK(h.arena.has_free_block(arena_type::max_order));
    }
    SUBCASE("full") {
        const compact_stats stats = compaction.compact();
        CHECK(stats.outcome == compact_outcome::planned);
        CHECK(stats.migrated == stats.minimum_moves);
        CHECK(h.arena.stats().free_blocks_of_order(arena_type::max_order) == 4);
    }
    SUBCASE("full, scanners") {
        compact_request request;
        request.strategy = compact_strategy::scanners;
        const compact_stats stats = compaction.compact(request);
        CHECK(stats.outcome == compact_outcome::scanners_met);
        CHECK(h.arena.stats().free_blocks_of_order(arena_type::max_order) == 4);
    }
    CHECK(h.b.size() == 8 * block / 2);
    CHECK(h.b.isolated_count() == 0);
    CHECK(h.host_and_balloon_agree());
}

TEST_CASE("a host that cannot lend the new frame shrinks the balloon by one") {
    half_ballooned<replacing_host> h(2);
    const std::size_t lent = h.b.size();
    const std::size_t free_before = h.arena.free_frames();
    h.host.policy = [](frame&, frame&) { return balloon_replace_result::old_returned_new_refused; };
    frame& victim = h.isolate_one();
    CHECK(h.b.isolated_count() == 1);

    const migrate_stats stats = migrate_one(h.arena, victim);

    CHECK(stats.succeeded == 0);
    CHECK(stats.released == 1); // the core freed the old frame, without a putback
    CHECK(stats.put_back == 0);
    CHECK(stats.failed == 0);
    CHECK(h.host.replace_calls == 1);
    CHECK(h.b.size() == lent - 1);
    CHECK(h.host.held.size() == lent - 1);
    CHECK(h.host.held.count(&victim) == 0);
    CHECK(h.b.isolated_count() == 0);
    CHECK(h.arena.free_frames() == free_before + 1); // old frame freed, new one unused
    CHECK(h.arena.is_free(h.arena.index_of(victim)));
    CHECK(h.b.stats().shrunk_on_replace == 1);
    CHECK(h.b.stats().migrated == 0);
    CHECK(h.host_and_balloon_agree());
    CHECK(h.b.deflate(lent) == lent - 1);
}

TEST_CASE("a balloon that shrinks during a compaction loses no frame and counts none twice") {
    half_ballooned<replacing_host> h(8);
    const std::size_t lent = h.b.size();
    std::size_t replaces = 0;
    h.host.policy = [&](frame&, frame&) {
        return replaces++ % 3 == 0 ? balloon_replace_result::old_returned_new_refused
                                   : balloon_replace_result::replaced;
    };
    compactor<arena_type> compaction(h.arena);
    const compact_stats stats = compaction.compact();

    const std::size_t shrunk = h.b.stats().shrunk_on_replace;
    CHECK(shrunk > 0);
    CHECK(stats.released == shrunk);
    CHECK(h.b.size() == lent - shrunk);
    CHECK(h.arena.free_frames() == h.arena.frame_count() - h.b.size());
    CHECK(h.host_and_balloon_agree());
}

TEST_CASE("a host that refuses a replacement keeps the old frame lent and the frame is put back") {
    half_ballooned<replacing_host> h(2);
    const std::size_t lent = h.b.size();
    const std::size_t free_before = h.arena.free_frames();
    h.host.policy = [](frame&, frame&) { return balloon_replace_result::refused; };
    frame& victim = h.isolate_one();

    const migrate_stats stats = migrate_one(h.arena, victim);

    CHECK(stats.succeeded == 0);
    CHECK(stats.failed == 1);
    CHECK(stats.put_back == 1);
    CHECK(h.b.stats().replace_refused == 1);
    CHECK(h.b.size() == lent);
    CHECK(h.b.isolated_count() == 0);
    CHECK(h.host.held.count(&victim) == 1);
    CHECK_FALSE(victim.is_isolated());
    CHECK(h.arena.free_frames() == free_before);
    CHECK(h.host_and_balloon_agree());
    CHECK(h.b.deflate(lent) == lent); // the put-back frame is on the list again
}

TEST_CASE("a host without replace that refuses the new frame keeps the old one") {
    half_ballooned<recording_host> h(2);
    const std::size_t lent = h.b.size();
    h.host.lend_limit = h.host.held.size(); // no more frames
    frame& victim = h.isolate_one();

    const migrate_stats stats = migrate_one(h.arena, victim);

    CHECK(stats.failed == 1);
    CHECK(stats.put_back == 1);
    CHECK(h.b.stats().replace_refused == 1);
    CHECK(h.b.size() == lent);
    CHECK(h.host.held.count(&victim) == 1);
    CHECK(h.host_and_balloon_agree());
}

TEST_CASE("migration answers retry while the balloon's host lock is held, and the frame is put "
          "back") {
    arena_type arena(2 * arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    REQUIRE(b.inflate(1).inflated == 1);
    frame& victim = **host.held.begin();

    // Inside lend the inflating thread holds the host lock; migrating from there is the
    // recursion the kernel's try-lock avoids.
    std::optional<migrate_stats> nested;
    bool isolated = false;
    bool armed = true;
    host.on_lend = [&](frame&) {
        if (!std::exchange(armed, false)) {
            return;
        }
        isolated = isolate_movable_frame(victim, migrate_mode::sync);
        if (isolated) {
            nested = migrate_one(arena, victim, migrate_mode::sync);
        }
    };
    CHECK(b.inflate(1).inflated == 1);

    REQUIRE(isolated);
    REQUIRE(nested.has_value());
    CHECK(nested->retried == static_cast<std::size_t>(migrate_max_passes));
    CHECK(nested->succeeded == 0);
    CHECK(nested->failed == 1);
    CHECK(nested->put_back == 1);
    CHECK(b.stats().migrate_contended == static_cast<std::size_t>(migrate_max_passes));
    CHECK(victim.owner() == static_cast<void*>(&b));
    CHECK_FALSE(victim.is_isolated());
    CHECK(b.isolated_count() == 0);
    CHECK(b.size() == 2);
    CHECK(host.held.size() == 2);
    // Once the lock is free the same frame migrates.
    REQUIRE(isolate_movable_frame(victim, migrate_mode::sync));
    CHECK(migrate_one(arena, victim).succeeded == 1);
    CHECK(host.held.count(&victim) == 0);
    CHECK(b.size() == 2);
}

namespace {
// An arena that compacts itself before each allocation, as an allocator with direct compaction
// would: inflating a balloon over it migrates balloon frames from inside inflate.
struct compacting_arena : arena_type {
    using arena_type::arena_type;
    frame* try_allocate(unsigned order, frame_kind kind) noexcept {
        if (compact_before_allocating) {
            compactor<arena_type> compaction(*this);
            last = compaction.compact();
        }
        return arena_type::try_allocate(order, kind);
    }
    bool compact_before_allocating = false;
    compact_stats last;
};
} // namespace

TEST_CASE("an inflate whose arena compacts on allocation does not deadlock on the balloon's lock") {
    compacting_arena arena(4 * arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    // Balloon frames interleaved with free frames.
    std::vector<frame*> program;
    for (int i = 0; i < 20; ++i) {
        REQUIRE(b.inflate(1).inflated == 1);
        program.push_back(arena.try_allocate(0, frame_kind::movable));
    }
    for (frame* f : program) {
        arena.deallocate(*f, 0);
    }

    arena.compact_before_allocating = true;
    CHECK(b.inflate(1).inflated == 1);
    arena.compact_before_allocating = false;

    CHECK(arena.last.isolated > 0);
    CHECK(arena.last.migrated == 0); // every balloon migration answered retry, then put back
    CHECK(arena.last.failed == arena.last.isolated);
    CHECK(b.stats().migrate_contended > 0);
    CHECK(b.size() == 21);
    CHECK(b.isolated_count() == 0);
    CHECK(host.held.size() == 21);
    // Outside inflate the same compaction moves them.
    compactor<arena_type> compaction(arena);
    CHECK(compaction.compact().migrated > 0);
    CHECK(b.size() == 21);
}

TEST_CASE("deflate skips frames isolated by a compaction in progress and takes them once put "
          "back") {
    half_ballooned<recording_host> h(2);
    const std::size_t lent = h.b.size();
    frame& first = h.isolate_one();
    frame& second = h.isolate_one();
    CHECK(h.b.isolated_count() == 2);

    CHECK(h.b.deflate(lent) == lent - 2); // returns at once; the isolated two are skipped
    CHECK(h.b.size() == 2);
    CHECK(h.b.isolated_count() == 2);
    CHECK(h.host.held == std::set<frame*>{&first, &second});
    CHECK(h.b.deflate(1) == 0);

    CHECK(putback_movable_frame(first) == putback_result::returned_to_owner);
    CHECK(h.b.isolated_count() == 1);
    CHECK(h.b.deflate(lent) == 1);
    // The other one migrates instead, and the balloon keeps the new frame.
    CHECK(migrate_one(h.arena, second).succeeded == 1);
    CHECK(h.b.size() == 1);
    CHECK(h.b.isolated_count() == 0);
    CHECK(h.b.deflate(lent) == 1);
    CHECK(h.host.held.empty());
    CHECK(h.arena.free_frames() == h.arena.frame_count());
}

TEST_CASE("isolate refuses a frame that is being inflated or deflated") {
    arena_type arena(arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    std::vector<bool> answers;
    // The callbacks run with the frame locked by the balloon, as the core's isolate would.
    host.on_lend = [&](frame& f) { answers.push_back(b.isolate(f, migrate_mode::sync)); };
    host.on_reclaim = [&](frame& f) { answers.push_back(b.isolate(f, migrate_mode::sync)); };

    REQUIRE(b.inflate(3).inflated == 3);
    REQUIRE(b.deflate(3) == 3);

    CHECK(answers == std::vector<bool>(6, false));
    CHECK(b.isolated_count() == 0);
    CHECK(arena.free_frames() == block);
}

TEST_CASE("two balloons on one arena keep their own frames and hosts") {
    arena_type arena(8 * arena_type::block_bytes);
    recording_host host_a;
    replacing_host host_b;
    balloon a(arena, host_a);
    balloon b(arena, host_b);
    std::vector<frame*> program;
    for (;;) {
        if (a.inflate(1).inflated == 0 || b.inflate(1).inflated == 0) {
            break;
        }
        frame* f = arena.try_allocate(0, frame_kind::movable);
        if (f == nullptr) {
            break;
        }
        program.push_back(f);
    }
    for (frame* f : program) {
        arena.deallocate(*f, 0);
    }
    const std::size_t size_a = a.size();
    const std::size_t size_b = b.size();
    REQUIRE(size_a > 0);
    REQUIRE(size_b > 0);

    compactor<arena_type> compaction(arena);
    const compact_stats stats = compaction.compact();
    CHECK(stats.migrated > 0);
    CHECK(arena.has_free_block(arena_type::max_order));
    CHECK(a.size() == size_a);
    CHECK(b.size() == size_b);
    CHECK(host_a.held.size() == size_a);
    CHECK(host_b.held.size() == size_b);
    CHECK(a.stats().migrated + b.stats().migrated == stats.migrated);
    for (frame* f : host_a.held) {
        CHECK(f->owner() == static_cast<void*>(&a));
    }
    for (frame* f : host_b.held) {
        CHECK(f->owner() == static_cast<void*>(&b));
    }

    CHECK(a.deflate(size_a) == size_a);
    CHECK(b.size() == size_b);
    CHECK(host_b.held.size() == size_b);
    CHECK(host_a.unknown_returns + host_b.unknown_returns == 0);
    CHECK(host_a.double_lends + host_b.double_lends == 0);
}

TEST_CASE("destroying a balloon gives every lent frame back to the host and the arena") {
    arena_type arena(2 * arena_type::block_bytes);
    recording_host host;
    {
        balloon b(arena, host);
        REQUIRE(b.inflate(20).inflated == 20);
    }
    CHECK(host.held.empty());
    CHECK(host.unknown_returns == 0);
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("destroying a balloon while a compaction holds its frame isolated releases the frame "
          "to the compaction") {
    arena_type arena(2 * arena_type::block_bytes);
    recording_host host;
    frame* isolated = nullptr;
    {
        balloon b(arena, host);
        REQUIRE(b.inflate(5).inflated == 5);
        isolated = *host.held.begin();
        REQUIRE(isolate_movable_frame(*isolated, migrate_mode::sync));
        REQUIRE(b.isolated_count() == 1);
    }
    CHECK(host.held.empty()); // the host got the isolated frame back too
    CHECK(isolated->is_isolated());
    CHECK(movable_ops(*isolated) == nullptr); // released: nobody will call the dead balloon
    // The compaction finds it released and frees it.
    CHECK(putback_movable_frame(*isolated) == putback_result::released);
    arena.free_frame(*isolated);
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("a frame released by a destroyed balloon while isolated is freed by the migration "
          "that held it") {
    arena_type arena(2 * arena_type::block_bytes);
    recording_host host;
    frame_list held_by_compaction;
    {
        balloon b(arena, host);
        REQUIRE(b.inflate(5).inflated == 5);
        for (frame* f : host.held) {
            REQUIRE(isolate_movable_frame(*f, migrate_mode::sync));
            held_by_compaction.push_back(*f);
        }
    }
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(held_by_compaction, targets, migrate_mode::sync);
    CHECK(stats.released == 5);
    CHECK(stats.succeeded == 0);
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("misusing a balloon's owner callbacks is caught by the contract checks") {
    MOVABLE_REQUIRE_CONTRACTS();
    CHECK(test::dies_with("balloon::putback: frame was not isolated from this balloon", [] {
        arena_type arena(arena_type::block_bytes);
        recording_host host;
        balloon b(arena, host);
        (void)b.inflate(1);
        frame& f = **host.held.begin();
        f.lock();
        b.putback(f); // never isolated
    }));
    CHECK(test::dies_with("balloon::migrate: host answered an unknown balloon_replace_result", [] {
        arena_type arena(arena_type::block_bytes);
        replacing_host host;
        host.policy = [](frame&, frame&) { return static_cast<balloon_replace_result>(42); };
        balloon b(arena, host);
        (void)b.inflate(1);
        frame& f = **host.held.begin();
        (void)isolate_movable_frame(f, migrate_mode::sync);
        (void)migrate_one(arena, f);
    }));
}

TEST_CASE("balloon_host and balloon_arena accept what the protocol needs and nothing less") {
    struct minimal_host {
        bool lend(frame&) noexcept { return true; }
        void reclaim(frame&) noexcept {}
    };
    struct throwing_lend {
        bool lend(frame&) { return true; }
        void reclaim(frame&) noexcept {}
    };
    struct wrong_replace {
        bool lend(frame&) noexcept { return true; }
        void reclaim(frame&) noexcept {}
        bool replace(frame&, frame&) noexcept { return true; }
    };
    CHECK(balloon_host<minimal_host>);
    CHECK(balloon_host<replacing_host>);
    CHECK_FALSE(balloon_host<throwing_lend>);
    CHECK_FALSE(balloon_host<wrong_replace>);
    CHECK(balloon_arena<arena_type>);
    CHECK(balloon_arena<compacting_arena>);
    CHECK_FALSE(balloon_arena<int>);
}
