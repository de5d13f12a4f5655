// Runs under ThreadSanitizer (the tsan workflow): balloons inflate and deflate on some threads
// while compactions move their frames on others. Every frame must be accounted for, the host
// must never be called from two threads at once, and nothing may wait forever.
#include <movable/models/balloon.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <random>
#include <thread>
#include <vector>

#include <movable/compaction.hpp>
#include <movable/migrate.hpp>

#include "support/balloon_hosts.hpp"

using namespace movable;
using movable::test::recording_host;
using movable::test::replacing_host;

namespace {

using arena_type = frame_arena<4096, 4>; // 16 frames per max-order block

// Waits until `flag` holds `value`.
void wait_for(const std::atomic<int>& flag, int value) {
    for (int seen = flag.load(); seen != value; seen = flag.load()) {
        flag.wait(seen);
    }
}
void announce(std::atomic<int>& flag, int value) {
    flag.store(value);
    flag.notify_all();
}

// The host's books and the balloon's agree, and every lent frame names the balloon as owner.
template <class Balloon, class Host>
void check_books(const Balloon& b, const Host& host) {
    CHECK(host.overlapping_calls == 0);
    CHECK(host.double_lends == 0);
    CHECK(host.unknown_returns == 0);
    CHECK(b.isolated_count() == 0);
    CHECK(host.held.size() == b.size());
    for (frame* f : host.held) {
        CHECK(f->owner() == static_cast<const void*>(&b));
    }
    const balloon_stats stats = b.stats();
    CHECK(stats.inflated - stats.deflated - stats.shrunk_on_replace == b.size());
}

// Compacts `arena` in every mode until `stop`; counts its compactions in `rounds` (and notifies).
void compact_until(const std::atomic<bool>& stop, arena_type& arena,
                   std::atomic<std::size_t>& migrated, std::atomic<std::size_t>& rounds) {
    compactor<arena_type> compaction(arena);
    for (unsigned round = 0; !stop.load(); ++round) {
        compact_request request;
        request.mode = round % 3 == 0   ? migrate_mode::async
                       : round % 3 == 1 ? migrate_mode::sync_light
                                        : migrate_mode::sync;
        if (round % 4 == 3) {
            request.order = static_cast<int>(arena_type::max_order);
        }
        migrated += compaction.compact(request).migrated;
        rounds.fetch_add(1);
        rounds.notify_all();
    }
}

// Returns once a compaction that began after this call has ended.
void wait_for_fresh_compaction(const std::atomic<std::size_t>& rounds) {
    const std::size_t target = rounds.load() + 2;
    for (std::size_t seen = rounds.load(); seen < target; seen = rounds.load()) {
        rounds.wait(seen);
    }
}

} // namespace

TEST_CASE("inflate, deflate and compaction on different threads lose no frame and count none "
          "twice") {
    arena_type arena(16 * arena_type::block_bytes);
    recording_host host_a;
    replacing_host host_b;
    std::size_t replaces = 0; // under b's host lock
    host_b.policy = [&](frame&, frame&) {
        const std::size_t n = replaces++;
        return n % 5 == 0   ? balloon_replace_result::old_returned_new_refused
               : n % 7 == 0 ? balloon_replace_result::refused
                            : balloon_replace_result::replaced;
    };
    balloon a(arena, host_a);
    balloon b(arena, host_b);

    std::atomic<bool> stop{false};
    std::atomic<std::size_t> migrated{0};
    std::atomic<std::size_t> compactions{0};
    std::thread compactor_thread([&] { compact_until(stop, arena, migrated, compactions); });
    auto churn = [&arena](auto& target, unsigned seed) {
        std::mt19937 random(seed);
        std::vector<frame*> program; // frames the program holds, making holes as they go
        for (int round = 0; round < 300; ++round) {
            (void)target.inflate(random() % 24);
            if (frame* f = arena.try_allocate(0, frame_kind::movable)) {
                program.push_back(f);
            }
            (void)target.deflate(random() % 20);
            if (!program.empty() && random() % 2 == 0) {
                arena.deallocate(*program.back(), 0);
                program.pop_back();
            }
        }
        for (frame* f : program) {
            arena.deallocate(*f, 0);
        }
    };
    std::thread thread_a([&] { churn(a, 1); });
    std::thread thread_b([&] { churn(b, 2); });
    thread_a.join();
    thread_b.join();
    stop = true;
    compactor_thread.join();

    MESSAGE("migrated " << migrated.load() << "; balloon b shrank " << b.stats().shrunk_on_replace
                        << " times, refused " << b.stats().replace_refused);
    check_books(a, host_a);
    check_books(b, host_b);
    const std::size_t used = arena.frame_count() - arena.free_frames();
    const std::size_t lent = a.size() + b.size();
    CHECK(used == lent);
    CHECK(a.deflate(a.size()) + b.deflate(b.size()) == lent);
    CHECK(arena.free_frames() == arena.frame_count());
}

TEST_CASE("migration on another thread answers retry while inflate holds the host lock") {
    arena_type arena(2 * arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    REQUIRE(b.inflate(1).inflated == 1);
    frame& victim = **host.held.begin();

    std::atomic<int> phase{0}; // 1: the inflater is inside lend; 2: it may leave
    host.on_lend = [&](frame&) {
        announce(phase, 1);
        wait_for(phase, 2);
    };
    std::thread inflater([&] { (void)b.inflate(1); });
    wait_for(phase, 1);

    REQUIRE(isolate_movable_frame(victim, migrate_mode::async));
    frame_list list;
    list.push_back(victim);
    arena_targets<arena_type> targets{arena};
    const migrate_stats stats = migrate_frames(list, targets, migrate_mode::async);
    announce(phase, 2);
    inflater.join();

    CHECK(stats.retried == static_cast<std::size_t>(migrate_max_passes));
    CHECK(stats.put_back == 1);
    CHECK(stats.succeeded == 0);
    CHECK(list.empty());
    CHECK(b.stats().migrate_contended == static_cast<std::size_t>(migrate_max_passes));
    CHECK(b.size() == 2);
    check_books(b, host);
}

TEST_CASE("deflate during a compaction returns without waiting for the isolated frames") {
    arena_type arena(4 * arena_type::block_bytes);
    recording_host host;
    balloon b(arena, host);
    REQUIRE(b.inflate(40).inflated == 40);
    std::vector<frame*> lent(host.held.begin(), host.held.end());

    std::atomic<int> phase{0}; // 1: frames isolated; 2: deflate returned
    migrate_stats stats;
    std::thread compaction([&] {
        frame_list isolated;
        for (std::size_t i = 0; i < 10; ++i) {
            if (isolate_movable_frame(*lent[i], migrate_mode::sync)) {
                isolated.push_back(*lent[i]);
            }
        }
        announce(phase, 1);
        wait_for(phase, 2);
        arena_targets<arena_type> targets{arena};
        stats = migrate_frames(isolated, targets, migrate_mode::sync);
    });
    wait_for(phase, 1);
    const std::size_t deflated = b.deflate(40);
    const std::size_t isolated_while_deflating = b.isolated_count();
    announce(phase, 2);
    compaction.join();

    CHECK(deflated == 30);
    CHECK(isolated_while_deflating == 10);
    CHECK(stats.succeeded == 10);
    CHECK(b.size() == 10);
    check_books(b, host);
    CHECK(b.deflate(40) == 10);
    CHECK(arena.free_frames() == arena.frame_count());
}

// Forced: every balloon lives through a whole compaction on the other thread before it is
// destroyed. Whether a migration of its frames is in flight when its destructor runs is up to
// the scheduler; balloon_test forces it ("destroying a balloon while a compaction holds its
// frame isolated ...").
TEST_CASE("balloons destroyed while another thread keeps compacting their arena give every frame "
          "back") {
    arena_type arena(8 * arena_type::block_bytes);
    replacing_host host;
    std::size_t replaces = 0;
    host.policy = [&](frame&, frame&) {
        return replaces++ % 4 == 0 ? balloon_replace_result::old_returned_new_refused
                                   : balloon_replace_result::replaced;
    };
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> migrated{0};
    std::atomic<std::size_t> compactions{0};
    std::thread compactor_thread([&] { compact_until(stop, arena, migrated, compactions); });

    for (int round = 0; round < 40; ++round) {
        balloon b(arena, host);
        std::vector<frame*> program;
        for (int i = 0; i < 48; ++i) {
            (void)b.inflate(1);
            if (frame* f = arena.try_allocate(0, frame_kind::movable)) {
                program.push_back(f);
            }
        }
        for (frame* f : program) {
            arena.deallocate(*f, 0);
        }
        wait_for_fresh_compaction(compactions); // one saw this balloon's frames
    }                                           // ~balloon, racing the next compaction
    stop = true;
    compactor_thread.join();

    MESSAGE("migrated " << migrated.load() << " balloon frames across 40 balloons");
    CHECK(host.held.empty());
    CHECK(host.overlapping_calls == 0);
    CHECK(host.double_lends == 0);
    CHECK(host.unknown_returns == 0);
    CHECK(arena.free_frames() == arena.frame_count());
}
