// movable_stress: every model at once on shared arenas, under ASan+UBSan and TSan, for as long as
// asked. Worker threads each own objects in a zspage_pool, a zbud_pool, a z3fold_pool, an
// object_pool of tracked_record (not trivially relocatable: moved by its move constructor, which
// fixes a pointer into itself, and counted), pages of a user owner (test::arena_owner), and frames
// lent by two balloons (one host answers replace(), the other lend/reclaim), all on one arena; and
// in a zspage_pool and an object_pool without per-thread caches on a second arena with smaller
// blocks. Objects run from 1 byte to a whole frame. The workers allocate, free, read, write, map
// and pin, keep pins across hundreds of their operations (and so across compactions: a pinned
// object must be where it was and hold what it held), now and then compact a pool or run a small
// arena compaction of their own while holding them, and check every read against a shadow copy.
// Meanwhile a compacting thread runs, in turn, every pool's compact(), arena compactions in every
// strategy (least_moves, scanners), every mode (async, sync_light, sync) and every kind (full,
// order-targeted, proactive, incremental with a frame, byte or time budget per pass), and gives
// free memory back to the OS (discard_free_memory); and a background_compactor runs its own
// thread over both arenas and the six pools, releasing free frames after each episode.
//
// The run is cut into rounds: each builds the world, runs its share of the operations, stops the
// threads and checks everything: every object against its shadow, every pool's and arena's
// check_invariants(), no frame left isolated, the balloons' hosts holding exactly the balloons'
// frames, frames accounted for in each arena (free + every owner's frames == total); then tears the
// world down (even rounds free every object first, odd rounds leave them to the destructors) and
// checks that every frame is free and that tracked_record's constructions and moves equal its
// destructions. Only deterministic checks: no timing enters a verdict.
//
// Usage: movable_stress [--ops N] [--seconds S] [--seed X] [--threads T] [--round-ops R]
//                       [--shake] [--progress]
//   --ops N        stop after N operations in all (default 40000; 0: no limit, with --seconds)
//   --seconds S    stop after S seconds (default: no limit)
//   --round-ops R  operations per round (default 1000000)
//   --shake        shake mode (shake.hpp) on both arenas and every pool: every compaction moves
//                  every movable frame, every unpin and every 64th allocation moves the pool's
//                  frames, freed frames are poisoned (for ASan)
//   --progress     a line on stderr after each round
// Prints one line of totals; exits 1 on any mismatch or accounting failure.
#include <movable/compaction.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/models/z3fold_pool.hpp>
#include <movable/models/zbud_pool.hpp>
#include <movable/models/zspage_pool.hpp>
#include <movable/service/background_compactor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stress/stress_parts.hpp"
#include "support/arena_frames.hpp"

namespace movable::stress {
namespace {

using arena_type = frame_arena<4096, 6>; // 64 frames per max-order block
using zspage_type = zspage_pool<arena_type>;
using zbud_type = zbud_pool<arena_type>;
using z3fold_type = z3fold_pool<arena_type>;
using record_pool = object_pool<tracked_record, arena_type>;
using owner_type = test::arena_owner<arena_type>;
using plain_balloon = balloon<arena_type, counting_host>;
using replacing_balloon = balloon<arena_type, replacing_host>;
// The second arena: smaller blocks, and pools without per-thread caches (every call takes the
// pool's lock: the other path through each pool).
using small_arena_type = frame_arena<4096, 4>; // 16 frames per max-order block
using small_zspage_type = zspage_pool<small_arena_type>;
using small_record_pool = object_pool<tracked_record, small_arena_type>;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t blocks_per_worker = 5;       // 320 frames (1.25 MiB) of arena per worker
constexpr std::size_t small_blocks_per_worker = 3; // 48 frames of the second arena per worker
// Live objects a worker keeps at most, per model (together about 3/4 of its share of the arena).
constexpr std::size_t zspage_cap = 160;
constexpr std::size_t zbud_cap = 110;
constexpr std::size_t z3fold_cap = 140;
constexpr std::size_t record_cap = 1500;
constexpr std::size_t owner_pages_cap = 50;
constexpr std::size_t balloon_frames_per_worker = 24;
constexpr std::size_t small_zspage_cap = 40;
constexpr std::size_t small_record_cap = 500;

struct run_options {
    std::uint64_t ops = 40000;
    double seconds = 0;
    std::uint32_t seed = 1;
    unsigned threads = 4;
    std::uint64_t round_ops = 1000000;
    bool progress = false; // a line on stderr after each round
    bool shake = false;    // shake mode on both arenas and every pool (shake.hpp)
};

// Everything counted over the run.
struct tallies {
    std::atomic<std::uint64_t> ops{0};
    std::atomic<std::uint64_t> mismatches{0};
    std::atomic<std::uint64_t> allocation_failures{0}; // arena full for now: skipped
    std::atomic<std::uint64_t> pool_compactions{0};
    std::atomic<std::uint64_t> arena_compactions{0};
    std::atomic<std::uint64_t> discards{0};
    std::atomic<std::uint64_t> frames_migrated{0};
    std::atomic<std::uint64_t> pins_held{0};
    std::atomic<std::uint64_t> pins_across_compactions{0}; // a compaction ended while held
    std::uint64_t objects_moved = 0;                       // by the pools, summed per round
    std::uint64_t background_steps = 0;
    std::uint64_t background_episodes = 0;
    std::uint64_t background_frames = 0;
    std::uint64_t rounds = 0;
};

void mismatch(tallies& counts, const char* what, unsigned worker) {
    if (counts.mismatches.fetch_add(1) < 20) {
        std::fprintf(stderr, "movable_stress: mismatch: %s (worker %u)\n", what, worker);
    }
}

// The models of one round over the two shared arenas. Declaration order is destruction order
// reversed: the hosts outlive their balloons.
struct world {
    world(arena_type& shared, small_arena_type& second, unsigned threads)
        : arena(shared), small_arena(second), frames{shared}, zspage(shared), zbud(shared),
          z3fold(shared), records(shared), plain(shared, plain_host),
          replacing(shared, replace_host), small_zspage(second, uncached_zspage()),
          small_records(second, object_pool_options{false}) {
        for (unsigned t = 0; t < threads; ++t) {
            owners.push_back(std::make_unique<owner_type>(frames));
        }
    }
    static zspage_pool_options uncached_zspage() {
        zspage_pool_options options;
        options.thread_cache = false;
        options.max_frames_per_zspage = 4;
        return options;
    }
    arena_type& arena;
    small_arena_type& small_arena;
    test::arena_frames<arena_type> frames;
    std::atomic<std::uint64_t> compactions_done{0}; // by the compacting thread
    zspage_type zspage;
    zbud_type zbud;
    z3fold_type z3fold;
    record_pool records;
    counting_host plain_host;
    replacing_host replace_host;
    plain_balloon plain;
    replacing_balloon replacing;
    small_zspage_type small_zspage;
    small_record_pool small_records;
    std::vector<std::unique_ptr<owner_type>> owners; // one per worker

    // Pool i's compact(), for i < pool_count: zspage, zbud, z3fold, records, then the second
    // arena's zspage and records.
    static constexpr std::size_t pool_count = 6;
    void compact_pool(std::size_t i) {
        switch (i) {
        case 0:
            (void)zspage.compact();
            break;
        case 1:
            (void)zbud.compact();
            break;
        case 2:
            (void)z3fold.compact();
            break;
        case 3:
            (void)records.compact();
            break;
        case 4:
            (void)small_zspage.compact();
            break;
        default:
            (void)small_records.compact();
            break;
        }
    }
};

// A byte pool's objects as one worker sees them, and the pin it holds (at most one).
template <class Store>
struct byte_shadow {
    struct entry {
        typename Store::handle handle;
        std::uint32_t seed = 0;
        std::uint32_t size = 0;
        bool pinned = false;
    };
    struct held_pin {
        typename Store::mapping mapping;
        typename Store::handle handle;
        const std::byte* data = nullptr; // where the mapping showed the object
        bool copied = false;             // served through a copy (zspage: spans two frames)
        bool write = false;
        std::uint64_t release_at = 0;
        std::uint64_t compactions_at_take = 0;
    };
    byte_shadow(Store& s, std::size_t most) : store(s), cap(most) {}
    Store& store;
    std::size_t cap;
    std::vector<entry> entries;
    std::optional<held_pin> held;

    entry* find(typename Store::handle h) {
        for (entry& e : entries) {
            if (e.handle == h) {
                return &e;
            }
        }
        return nullptr;
    }
};

// An object_pool's records as one worker sees them, and the pin it holds (at most one).
template <class Pool>
struct record_shadow {
    struct entry {
        object_handle<tracked_record> handle;
        std::uint64_t key = 0;
        std::uint32_t version = 0;
        bool pinned = false;
    };
    struct held_pin {
        pinned<tracked_record> pin;
        object_handle<tracked_record> handle;
        const tracked_record* address = nullptr;
        std::uint64_t release_at = 0;
        std::uint64_t compactions_at_take = 0;
    };
    record_shadow(Pool& p, std::size_t most) : pool(p), cap(most) {}
    Pool& pool;
    std::size_t cap;
    std::vector<entry> entries;
    std::optional<held_pin> held;

    entry* find(object_handle<tracked_record> h) {
        for (entry& e : entries) {
            if (e.handle == h) {
                return &e;
            }
        }
        return nullptr;
    }
    bool intact(const entry& e) {
        return pool.visit(e.handle,
                          [&](const tracked_record& r) { return r.intact(e.key, e.version); });
    }
};

// Sizes shaped like compressed 4 KiB pages: mostly 0.7-2.2 KiB, a few tiny and a few large, and
// the extremes: 1 byte and a whole frame (zspage_pool's huge class, a buddy pool's full frame).
std::uint32_t object_size(std::mt19937& random) {
    const unsigned pick = random() % 100;
    if (pick < 2) {
        return 1 + random() % 8;
    }
    if (pick < 10) {
        return 16 + random() % 200;
    }
    if (pick < 85) {
        return 700 + random() % 1500;
    }
    if (pick < 98) {
        return 2200 + random() % 1800;
    }
    return arena_type::frame_size;
}

// True when owner page `page` holds its pattern. The frame is locked and the page found there
// again under the lock (lock order frame -> owner), so the frame neither migrates nor is freed
// while it is read.
bool owner_page_intact(owner_type& owner, arena_type& arena, std::size_t page) {
    for (;;) {
        frame* f = owner.frame_of(page);
        if (f == nullptr) {
            return false;
        }
        f->lock();
        if (owner.frame_of(page) != f) {
            f->unlock();
            continue;
        }
        const bool intact = owner_type::holds_pattern(arena.address_of(*f), page);
        f->unlock();
        return intact;
    }
}

class worker {
public:
    worker(world& w, tallies& counts, unsigned index, std::uint32_t seed)
        : world_(w), counts_(counts), index_(index), random_(seed), owner_(*w.owners[index]),
          next_key_(std::uint64_t{index} << 40), zspage_(w.zspage, zspage_cap),
          zbud_(w.zbud, zbud_cap), z3fold_(w.z3fold, z3fold_cap),
          small_zspage_(w.small_zspage, small_zspage_cap), records_(w.records, record_cap),
          small_records_(w.small_records, small_record_cap) {}

    void run(std::uint64_t ops, clock_type::time_point deadline) {
        for (op_ = 0; op_ < ops; ++op_) {
            if ((op_ & 1023) == 0 && clock_type::now() >= deadline) {
                break;
            }
            one_op();
            counts_.ops.fetch_add(1, std::memory_order_relaxed);
        }
        for_each_shadow([&](auto& shadow) { release_pin(shadow); });
    }

    // After the threads stopped: every object against its shadow.
    void check_all() {
        for_each_shadow([&](auto& shadow) { check_all_of(shadow); });
        for (const std::size_t page : pages_) {
            if (!owner_page_intact(owner_, world_.arena, page)) {
                mismatch(counts_, "owner page at the end", index_);
            }
        }
    }
    // Frees every object (even rounds; odd rounds leave them to the destructors).
    void free_all() {
        for_each_shadow([&](auto& shadow) { free_all_of(shadow); });
        for (const std::size_t page : pages_) {
            bool intact = false;
            owner_.release_page(page, &intact);
            if (!intact) {
                mismatch(counts_, "owner page released at the end", index_);
            }
        }
        pages_.clear();
    }

    // Objects this worker holds in `pool`.
    template <class Pool>
    [[nodiscard]] std::size_t objects_in(const Pool& pool) {
        std::size_t count = 0;
        for_each_shadow([&](auto& shadow) {
            if constexpr (requires { shadow.store; }) {
                count +=
                    static_cast<const void*>(&shadow.store) == &pool ? shadow.entries.size() : 0;
            } else {
                count +=
                    static_cast<const void*>(&shadow.pool) == &pool ? shadow.entries.size() : 0;
            }
        });
        return count;
    }
    [[nodiscard]] std::size_t pages() const { return pages_.size(); }

private:
    template <class Fn>
    void for_each_shadow(Fn&& fn) {
        fn(zspage_);
        fn(zbud_);
        fn(z3fold_);
        fn(small_zspage_);
        fn(records_);
        fn(small_records_);
    }

    void one_op() {
        const unsigned pick = random_() % 100;
        if (pick < 17) {
            byte_op(zspage_);
        } else if (pick < 29) {
            byte_op(zbud_);
        } else if (pick < 41) {
            byte_op(z3fold_);
        } else if (pick < 46) {
            byte_op(small_zspage_);
        } else if (pick < 66) {
            record_op(records_);
        } else if (pick < 72) {
            record_op(small_records_);
        } else if (pick < 82) {
            owner_op();
        } else if (pick < 88) {
            balloon_op();
        } else if (pick < 98) {
            pin_op();
        } else {
            compact_op();
        }
    }

    template <class Store>
    void byte_op(byte_shadow<Store>& shadow) {
        using entry = typename byte_shadow<Store>::entry;
        Store& store = shadow.store;
        unsigned pick = random_() % 100;
        if (shadow.entries.empty()) {
            pick = 0;
        } else if (pick < 35 && shadow.entries.size() >= shadow.cap) {
            pick = 35;
        }
        if (pick < 35) { // allocate and write
            entry e;
            e.size = object_size(random_);
            e.seed = static_cast<std::uint32_t>(random_());
            e.handle = store.try_allocate(e.size);
            if (!e.handle) {
                counts_.allocation_failures.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            std::vector<std::byte>& bytes = scratch(e.size);
            fill_pattern(bytes, e.seed);
            store.write(e.handle, bytes);
            shadow.entries.push_back(e);
            return;
        }
        entry& e = shadow.entries[random_() % shadow.entries.size()];
        if (pick < 60) { // free (not one this thread holds pinned: that would deadlock)
            if (e.pinned) {
                return;
            }
            store.deallocate(e.handle);
            e = shadow.entries.back();
            shadow.entries.pop_back();
        } else if (pick < 75) { // read and check
            std::vector<std::byte>& bytes = scratch(e.size);
            store.read(e.handle, bytes);
            if (!holds_pattern(bytes, e.seed)) {
                mismatch(counts_, "byte pool read", index_);
            }
        } else if (pick < 85) { // rewrite
            if (e.pinned) {
                return; // a held write mapping would write it back over this
            }
            e.seed = static_cast<std::uint32_t>(random_());
            std::vector<std::byte>& bytes = scratch(e.size);
            fill_pattern(bytes, e.seed);
            store.write(e.handle, bytes);
        } else if (pick < 93) { // mapped read
            auto mapping = store.map(e.handle, store_access::read);
            if (mapping.bytes().size() != e.size || !holds_pattern(mapping.bytes(), e.seed)) {
                mismatch(counts_, "byte pool mapped read", index_);
            }
        } else { // mapped write
            if (e.pinned) {
                return;
            }
            auto mapping = store.map(e.handle, store_access::write);
            e.seed = static_cast<std::uint32_t>(random_());
            fill_pattern(mapping.writable_bytes(), e.seed);
        }
    }

    template <class Pool>
    void record_op(record_shadow<Pool>& shadow) {
        using entry = typename record_shadow<Pool>::entry;
        auto& entries = shadow.entries;
        unsigned pick = random_() % 100;
        if (entries.empty()) {
            pick = 0;
        } else if (pick < 35 && entries.size() >= shadow.cap) {
            pick = 35;
        }
        if (pick < 35) {
            entry e;
            e.key = next_key_++;
            e.version = static_cast<std::uint32_t>(random_());
            e.handle = shadow.pool.try_emplace(e.key, e.version);
            if (!e.handle) {
                counts_.allocation_failures.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            entries.push_back(e);
            return;
        }
        entry& e = entries[random_() % entries.size()];
        if (pick < 60) {
            if (e.pinned) {
                return; // destroying what this thread pins would deadlock
            }
            if (!shadow.intact(e)) {
                mismatch(counts_, "object_pool record before destroy", index_);
            }
            shadow.pool.destroy(e.handle);
            e = entries.back();
            entries.pop_back();
        } else if (pick < 85) {
            if (!shadow.intact(e)) {
                mismatch(counts_, "object_pool record", index_);
            }
        } else {
            const auto version = static_cast<std::uint32_t>(random_());
            shadow.pool.visit(e.handle, [&](tracked_record& r) { r.set_version(version); });
            e.version = version;
        }
    }

    void owner_op() {
        unsigned pick = random_() % 100;
        if (pages_.empty()) {
            pick = 0;
        } else if (pick < 45 && pages_.size() >= owner_pages_cap) {
            pick = 45;
        }
        if (pick < 45) {
            std::size_t page = pages_.size() + free_pages_.size();
            if (!free_pages_.empty()) {
                page = free_pages_.back();
                free_pages_.pop_back();
            }
            if (owner_.add_page(page) == nullptr) {
                counts_.allocation_failures.fetch_add(1, std::memory_order_relaxed);
                free_pages_.push_back(page);
                return;
            }
            pages_.push_back(page);
            return;
        }
        const std::size_t at = random_() % pages_.size();
        if (pick < 80) {
            bool intact = false;
            owner_.release_page(pages_[at], &intact);
            if (!intact) {
                mismatch(counts_, "owner page released", index_);
            }
            free_pages_.push_back(pages_[at]);
            pages_[at] = pages_.back();
            pages_.pop_back();
        } else if (!owner_page_intact(owner_, world_.arena, pages_[at])) {
            mismatch(counts_, "owner page", index_);
        }
    }

    void balloon_op() {
        const std::size_t cap = balloon_frames_per_worker * world_.owners.size() / 2; // each
        const auto inflate_or_deflate = [&](auto& b) {
            const std::size_t count = 1 + random_() % 4;
            if (random_() % 2 == 0 && b.size() < cap) {
                if (b.inflate(count).stopped_by == balloon_inflate_stop::arena_exhausted) {
                    counts_.allocation_failures.fetch_add(1, std::memory_order_relaxed);
                }
            } else {
                (void)b.deflate(count);
            }
        };
        if (random_() % 2 == 0) {
            inflate_or_deflate(world_.plain);
        } else {
            inflate_or_deflate(world_.replacing);
        }
    }

    // Takes a pin to hold for a while, or checks and releases one whose time is up.
    void pin_op() {
        switch (random_() % 6) {
        case 0:
            pin_or_release(zspage_);
            break;
        case 1:
            pin_or_release(zbud_);
            break;
        case 2:
            pin_or_release(z3fold_);
            break;
        case 3:
            pin_or_release(small_zspage_);
            break;
        case 4:
            pin_or_release(small_records_);
            break;
        default:
            pin_or_release(records_);
            break;
        }
    }

    template <class Shadow>
    void pin_or_release(Shadow& shadow) {
        if (shadow.held) {
            if (op_ >= shadow.held->release_at) {
                release_pin(shadow);
            }
            return;
        }
        if (!shadow.entries.empty()) {
            take_pin(shadow, shadow.entries[random_() % shadow.entries.size()]);
            shadow.held->release_at = op_ + 20 + random_() % 400;
            shadow.held->compactions_at_take = world_.compactions_done.load();
            counts_.pins_held.fetch_add(1, std::memory_order_relaxed);
        }
    }

    template <class Store>
    void take_pin(byte_shadow<Store>& shadow, typename byte_shadow<Store>::entry& e) {
        typename byte_shadow<Store>::held_pin held;
        held.write = random_() % 2 == 0;
        held.mapping =
            shadow.store.map(e.handle, held.write ? store_access::write : store_access::read);
        held.handle = e.handle;
        held.data = held.mapping.bytes().data();
        held.copied = served_through_copy(held.mapping);
        if (!holds_pattern(held.mapping.bytes(), e.seed)) {
            mismatch(counts_, "byte pool pinned mapping", index_);
        }
        e.pinned = true;
        shadow.held.emplace(std::move(held));
    }
    template <class Pool>
    void take_pin(record_shadow<Pool>& shadow, typename record_shadow<Pool>::entry& e) {
        typename record_shadow<Pool>::held_pin held;
        held.pin = shadow.pool.pin(e.handle);
        held.handle = e.handle;
        held.address = held.pin.get();
        if (!held.pin->intact(e.key, e.version)) {
            mismatch(counts_, "object_pool pinned record", index_);
        }
        e.pinned = true;
        shadow.held.emplace(std::move(held));
    }

    // Checks that the held object neither moved nor changed, writes it (write mappings and
    // records), unpins.
    template <class Store>
    void release_pin(byte_shadow<Store>& shadow) {
        if (!shadow.held) {
            return;
        }
        auto& held = *shadow.held;
        auto* e = shadow.find(held.handle);
        if (held.mapping.bytes().data() != held.data ||
            !holds_pattern(held.mapping.bytes(), e->seed)) {
            mismatch(counts_, "byte pool object changed while pinned", index_);
        }
        {
            auto again = shadow.store.map(held.handle, store_access::read);
            if (!held.copied && !served_through_copy(again) && again.bytes().data() != held.data) {
                mismatch(counts_, "byte pool object moved while pinned", index_);
            }
        }
        if (held.write) {
            e->seed = static_cast<std::uint32_t>(random_());
            fill_pattern(held.mapping.writable_bytes(), e->seed);
        }
        held.mapping.unmap();
        ended_pin(held.compactions_at_take);
        e->pinned = false;
        shadow.held.reset();
    }
    template <class Pool>
    void release_pin(record_shadow<Pool>& shadow) {
        if (!shadow.held) {
            return;
        }
        auto& held = *shadow.held;
        auto* e = shadow.find(held.handle);
        if (held.pin.get() != held.address || !held.pin->intact(e->key, e->version)) {
            mismatch(counts_, "object_pool record changed while pinned", index_);
        }
        {
            const pinned<tracked_record> again = shadow.pool.pin(held.handle);
            if (again.get() != held.address) {
                mismatch(counts_, "object_pool record moved while pinned", index_);
            }
        }
        e->version = static_cast<std::uint32_t>(random_());
        held.pin->set_version(e->version);
        held.pin.reset();
        ended_pin(held.compactions_at_take);
        e->pinned = false;
        shadow.held.reset();
    }
    void ended_pin(std::uint64_t compactions_at_take) {
        if (world_.compactions_done.load() != compactions_at_take) {
            counts_.pins_across_compactions.fetch_add(1, std::memory_order_relaxed);
        }
    }
    template <class Mapping>
    static bool served_through_copy(const Mapping& m) {
        if constexpr (requires { m.copied(); }) {
            return m.copied();
        } else {
            return false;
        }
    }

    // A worker compacts a pool or the arena now and then too, holding whatever pins it holds
    // (a pinned object is skipped, its frame not migrated: never waited for past a bound).
    void compact_op() {
        const std::size_t choice = random_() % (world::pool_count + 2);
        if (choice < world::pool_count) {
            world_.compact_pool(choice);
            return;
        }
        switch (choice - world::pool_count) {
        case 0:
            world_.zspage.release_thread_cache();
            world_.records.release_thread_cache();
            break;
        default: { // a small arena compaction of its own, beside the compacting thread's
            compact_request request;
            request.strategy =
                random_() % 2 == 0 ? compact_strategy::least_moves : compact_strategy::scanners;
            constexpr migrate_mode modes[] = {migrate_mode::async, migrate_mode::sync_light,
                                              migrate_mode::sync};
            request.mode = modes[random_() % 3];
            request.order = static_cast<int>(random_() % 3);
            request.max_frames_per_pass = 8;
            const compact_stats stats = compaction_.compact(request);
            counts_.frames_migrated.fetch_add(stats.migrated, std::memory_order_relaxed);
            counts_.arena_compactions.fetch_add(1, std::memory_order_relaxed);
            break;
        }
        }
    }

    template <class Store>
    void check_all_of(byte_shadow<Store>& shadow) {
        for (const auto& e : shadow.entries) {
            std::vector<std::byte>& bytes = scratch(e.size);
            shadow.store.read(e.handle, bytes);
            if (!holds_pattern(bytes, e.seed)) {
                mismatch(counts_, "byte pool object at the end", index_);
            }
        }
    }
    template <class Pool>
    void check_all_of(record_shadow<Pool>& shadow) {
        for (const auto& e : shadow.entries) {
            if (!shadow.intact(e)) {
                mismatch(counts_, "object_pool record at the end", index_);
            }
        }
    }
    template <class Store>
    static void free_all_of(byte_shadow<Store>& shadow) {
        for (const auto& e : shadow.entries) {
            shadow.store.deallocate(e.handle);
        }
        shadow.entries.clear();
    }
    template <class Pool>
    static void free_all_of(record_shadow<Pool>& shadow) {
        for (const auto& e : shadow.entries) {
            shadow.pool.destroy(e.handle);
        }
        shadow.entries.clear();
    }

    std::vector<std::byte>& scratch(std::size_t size) {
        scratch_.resize(size);
        return scratch_;
    }

    world& world_;
    tallies& counts_;
    unsigned index_;
    std::mt19937 random_;
    owner_type& owner_;
    std::uint64_t next_key_;
    std::uint64_t op_ = 0;
    byte_shadow<zspage_type> zspage_;
    byte_shadow<zbud_type> zbud_;
    byte_shadow<z3fold_type> z3fold_;
    byte_shadow<small_zspage_type> small_zspage_;
    record_shadow<record_pool> records_;
    record_shadow<small_record_pool> small_records_;
    std::vector<std::size_t> pages_;
    std::vector<std::size_t> free_pages_;
    std::vector<std::byte> scratch_;
    compactor<arena_type> compaction_{world_.arena}; // used by this worker only
};

// One arena compaction; `round` picks the strategy, the mode and the kind, so that 24 rounds go
// through every combination of 2 strategies x 3 modes x 4 kinds (full, order-targeted,
// proactive, incremental with a frame, byte or time budget per pass).
template <class Arena>
void compact_arena(compactor<Arena>& compaction, std::uint64_t round, std::mt19937& random,
                   tallies& counts) {
    constexpr migrate_mode modes[] = {migrate_mode::async, migrate_mode::sync_light,
                                      migrate_mode::sync};
    compact_request request;
    request.strategy = round % 2 == 0 ? compact_strategy::least_moves : compact_strategy::scanners;
    request.mode = modes[(round / 2) % 3];
    const unsigned kind = (round / 6) % 4;
    if (kind == 1) { // order-targeted
        request.order = static_cast<int>(random() % (Arena::max_order + 1));
    } else if (kind == 2) { // proactive
        request.stop_at_score = static_cast<int>(random() % 40);
    } else if (kind == 3) { // incremental
        switch (random() % 3) {
        case 0:
            request.max_frames_per_pass = 1 + random() % 16;
            break;
        case 1:
            request.max_bytes_per_pass = Arena::frame_size * (1 + random() % 8);
            break;
        default:
            request.max_duration_per_pass = std::chrono::microseconds(20);
            break;
        }
    }
    compaction.begin(request);
    while (compaction.pass() == compact_progress::incomplete) {
        if (kind == 3) {
            std::this_thread::yield(); // let the owners run between passes
        }
    }
    const compact_stats stats = compaction.end();
    counts.frames_migrated.fetch_add(stats.migrated, std::memory_order_relaxed);
    counts.arena_compactions.fetch_add(1, std::memory_order_relaxed);
}

// The compacting thread: in turn, one pool's compact(), an arena compaction (of the second arena
// every third round), and now and then a discard of free memory.
void compact_loop(world& w, tallies& counts, const std::atomic<bool>& stop, std::uint32_t seed) {
    compactor<arena_type> compaction(w.arena);
    compactor<small_arena_type> small_compaction(w.small_arena);
    std::mt19937 random(seed);
    for (std::uint64_t round = 0; !stop.load(); ++round) {
        w.compact_pool(round % world::pool_count);
        counts.pool_compactions.fetch_add(1, std::memory_order_relaxed);
        w.compactions_done.fetch_add(1);

        compact_arena(compaction, round, random, counts);
        if (round % 3 == 0) {
            compact_arena(small_compaction, round / 3, random, counts);
        }
        w.compactions_done.fetch_add(1);

        if (round % 8 == 7) {
            (void)w.arena.discard_free_memory(random() % (arena_type::max_order + 1));
            (void)w.small_arena.discard_free_memory(random() % (small_arena_type::max_order + 1));
            counts.discards.fetch_add(1, std::memory_order_relaxed);
        }
    }
}

background_compactor_options service_options() {
    background_compactor_options options;
    options.high_watermark = 20;
    options.low_watermark = 5;
    options.source_high_frames = 8;
    options.check_interval = std::chrono::milliseconds(1);
    options.forced_interval = std::chrono::milliseconds(5);
    options.cpu_percent_min = 10;
    options.cpu_percent_max = 50;
    options.cycle = std::chrono::milliseconds(10);
    options.pass_duration = std::chrono::microseconds(200);
    options.pass_frames = 32;
    options.max_backoff_shift = 3;
    options.release_min_order = 0;
    return options;
}

// A failed check of the world's state (not of an object's contents).
void accounting_failure(tallies& counts, const std::string& what) {
    if (counts.mismatches.fetch_add(1) < 20) {
        std::fprintf(stderr, "movable_stress: accounting: %s\n", what.c_str());
    }
}
void expect_equal(tallies& counts, const char* what, std::size_t got, std::size_t expected) {
    if (got != expected) {
        accounting_failure(counts, std::string(what) + ": " + std::to_string(got) + ", expected " +
                                       std::to_string(expected));
    }
}

// The world after its threads stopped: objects, invariants, isolation, frames.
void check_world(world& w, std::vector<std::unique_ptr<worker>>& workers, tallies& counts) {
    const auto held_by_workers = [&](const auto& pool) {
        std::size_t objects = 0;
        for (auto& wk : workers) {
            objects += wk->objects_in(pool);
        }
        return objects;
    };
    std::size_t pages = 0;
    for (auto& wk : workers) {
        wk->check_all();
        pages += wk->pages();
    }
    w.zspage.check_invariants();
    w.zbud.check_invariants();
    w.z3fold.check_invariants();
    w.records.check_invariants();
    w.small_zspage.check_invariants();
    w.small_records.check_invariants();
    w.arena.check_invariants();
    w.small_arena.check_invariants();

    const auto zspage = w.zspage.stats();
    const auto zbud = w.zbud.stats();
    const auto z3fold = w.z3fold.stats();
    const auto records = w.records.stats();
    const auto small_zspage = w.small_zspage.stats();
    const auto small_records = w.small_records.stats();
    expect_equal(counts, "zspage_pool objects", zspage.objects_in_use, held_by_workers(w.zspage));
    expect_equal(counts, "zbud_pool objects", zbud.objects_in_use, held_by_workers(w.zbud));
    expect_equal(counts, "z3fold_pool objects", z3fold.objects_in_use, held_by_workers(w.z3fold));
    expect_equal(counts, "object_pool objects", w.records.size(), held_by_workers(w.records));
    expect_equal(counts, "second zspage_pool objects", small_zspage.objects_in_use,
                 held_by_workers(w.small_zspage));
    expect_equal(counts, "second object_pool objects", w.small_records.size(),
                 held_by_workers(w.small_records));
    expect_equal(counts, "tracked_record alive", static_cast<std::size_t>(lives().alive()),
                 w.records.size() + w.small_records.size());
    std::size_t owner_frames = 0;
    for (auto& owner : w.owners) {
        owner_frames += owner->resident_count();
    }
    expect_equal(counts, "owner pages", owner_frames, pages);

    // Nothing left isolated.
    std::size_t isolated = 0;
    for (std::size_t i = 0; i < w.arena.frame_count(); ++i) {
        isolated += w.arena.frame_at(i).is_isolated() ? 1 : 0;
    }
    for (std::size_t i = 0; i < w.small_arena.frame_count(); ++i) {
        isolated += w.small_arena.frame_at(i).is_isolated() ? 1 : 0;
    }
    expect_equal(counts, "isolated frames", isolated, 0);
    expect_equal(counts, "pools' isolated frames",
                 zspage.isolated_frames + zbud.isolated_frames + z3fold.isolated_frames +
                     records.isolated_frames + small_zspage.isolated_frames +
                     small_records.isolated_frames,
                 0);
    expect_equal(counts, "balloons' isolated frames",
                 w.plain.isolated_count() + w.replacing.isolated_count(), 0);
    expect_equal(counts, "plain host's frames", w.plain_host.held.size(), w.plain.size());
    expect_equal(counts, "replacing host's frames", w.replace_host.held.size(), w.replacing.size());
    expect_equal(counts, "host faults", w.plain_host.faults() + w.replace_host.faults(), 0);

    // Allocated + free = total, in each arena.
    expect_equal(counts, "frames: free + every owner's",
                 w.arena.free_frames() + zspage.frames_in_use + zbud.frames_in_use +
                     z3fold.frames_in_use + records.frames + w.plain.size() + w.replacing.size() +
                     owner_frames,
                 w.arena.frame_count());
    expect_equal(counts, "second arena's frames: free + every owner's",
                 w.small_arena.free_frames() + small_zspage.frames_in_use + small_records.frames,
                 w.small_arena.frame_count());
    counts.objects_moved += zspage.objects_moved + zbud.objects_moved + z3fold.objects_moved +
                            records.objects_moved + small_zspage.objects_moved +
                            small_records.objects_moved;
}

// One round: build the world, run `ops` operations over the threads, stop, check, tear down.
void run_round(const run_options& options, std::uint64_t ops, clock_type::time_point deadline,
               tallies& counts) {
    const auto round_seed = options.seed + static_cast<std::uint32_t>(counts.rounds) * 7919u;
    arena_type arena(options.threads * blocks_per_worker * arena_type::block_bytes);
    small_arena_type small_arena(options.threads * small_blocks_per_worker *
                                 small_arena_type::block_bytes);
    {
        auto w = std::make_unique<world>(arena, small_arena, options.threads);
        if (options.shake) {
            const shake_options shaking{true, 64};
            arena.shake().set(shaking);
            small_arena.shake().set(shaking);
            w->zspage.shake().set(shaking);
            w->zbud.shake().set(shaking);
            w->z3fold.shake().set(shaking);
            w->records.shake().set(shaking);
            w->small_zspage.shake().set(shaking);
            w->small_records.shake().set(shaking);
        }
        std::vector<std::unique_ptr<worker>> workers;
        for (unsigned t = 0; t < options.threads; ++t) {
            workers.push_back(std::make_unique<worker>(*w, counts, t, round_seed * 31 + t));
        }
        background_compactor service(service_options());
        service.add_arena(arena);
        service.add_arena(small_arena);
        service.add_source(w->zspage);
        service.add_source(w->zbud);
        service.add_source(w->z3fold);
        service.add_source(w->records);
        service.add_source(w->small_zspage);
        service.add_source(w->small_records);
        service.start();

        std::atomic<bool> stop{false};
        std::thread compacting([&] { compact_loop(*w, counts, stop, round_seed ^ 0x5bd1e995u); });
        std::vector<std::thread> threads;
        // The round's operations shared out exactly: the first ops % threads workers do one more.
        const std::uint64_t per_worker = ops / options.threads;
        const std::uint64_t one_more = ops % options.threads;
        for (unsigned t = 0; t < options.threads; ++t) {
            threads.emplace_back(
                [&, t] { workers[t]->run(per_worker + (t < one_more ? 1 : 0), deadline); });
        }
        for (std::thread& t : threads) {
            t.join();
        }
        stop = true;
        compacting.join();
        service.stop();
        const background_compactor_stats service_stats = service.stats();
        counts.background_steps += service_stats.steps;
        counts.background_episodes += service_stats.episodes;
        counts.background_frames += service_stats.frames_moved;

        check_world(*w, workers, counts);

        // Even rounds free every object; odd rounds leave them to the destructors.
        if (counts.rounds % 2 == 0) {
            for (auto& wk : workers) {
                wk->free_all();
            }
        }
    }
    // Every model is gone: every frame is free, every record destroyed once.
    arena.check_invariants();
    small_arena.check_invariants();
    expect_equal(counts, "free frames after the models", arena.free_frames(), arena.frame_count());
    expect_equal(counts, "second arena's free frames after the models", small_arena.free_frames(),
                 small_arena.frame_count());
    expect_equal(counts, "tracked_record alive after the models",
                 static_cast<std::size_t>(lives().alive()), 0);
    ++counts.rounds;
    if (options.progress) {
        std::fprintf(stderr, "movable_stress: round %llu done, %llu ops so far, %llu mismatches\n",
                     static_cast<unsigned long long>(counts.rounds),
                     static_cast<unsigned long long>(counts.ops.load()),
                     static_cast<unsigned long long>(counts.mismatches.load()));
    }
}

std::uint64_t number_after(int argc, char** argv, int& i) {
    if (i + 1 >= argc) {
        std::fprintf(stderr, "movable_stress: %s needs a value\n", argv[i]);
        std::exit(2);
    }
    return std::strtoull(argv[++i], nullptr, 0);
}

run_options parse(int argc, char** argv) {
    run_options options;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--ops") {
            options.ops = number_after(argc, argv, i);
        } else if (arg == "--seconds") {
            options.seconds = static_cast<double>(number_after(argc, argv, i));
        } else if (arg == "--seed") {
            options.seed = static_cast<std::uint32_t>(number_after(argc, argv, i));
        } else if (arg == "--threads") {
            options.threads =
                static_cast<unsigned>(std::max<std::uint64_t>(1, number_after(argc, argv, i)));
        } else if (arg == "--shake") {
            options.shake = true;
        } else if (arg == "--progress") {
            options.progress = true;
        } else if (arg == "--round-ops") {
            options.round_ops = std::max<std::uint64_t>(1000, number_after(argc, argv, i));
        } else {
            std::fprintf(stderr, "usage: movable_stress [--ops N] [--seconds S] [--seed X] "
                                 "[--threads T] [--round-ops R] [--shake] [--progress]\n");
            std::exit(2);
        }
    }
    if (options.ops == 0 && options.seconds <= 0) {
        std::fprintf(stderr, "movable_stress: --ops 0 needs --seconds\n");
        std::exit(2);
    }
    return options;
}

// Runs the rounds and prints the totals line; the exit status.
int run(int argc, char** argv) {
    const run_options options = parse(argc, argv);
    const auto started = clock_type::now();
    const auto deadline = options.seconds > 0
                              ? started + std::chrono::duration_cast<clock_type::duration>(
                                              std::chrono::duration<double>(options.seconds))
                              : clock_type::time_point::max();
    const std::uint64_t limit = options.ops == 0 ? UINT64_MAX : options.ops;
    tallies counts;
    while (counts.ops.load() < limit && clock_type::now() < deadline) {
        const std::uint64_t left = limit - counts.ops.load();
        run_round(options, std::min(left, options.round_ops), deadline, counts);
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    const std::uint64_t ops = counts.ops.load();
    const std::uint64_t pool = counts.pool_compactions.load();
    const std::uint64_t arena = counts.arena_compactions.load();
    const std::uint64_t frames = counts.frames_migrated.load() + counts.background_frames;
    const auto n = [](std::uint64_t value) { return std::to_string(value); };
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.1f s (%.0f ops/s)", seconds,
                  seconds > 0 ? static_cast<double>(ops) / seconds : 0.0);
    const std::string line =
        "movable_stress: " + n(ops) + " ops, " + n(pool + arena + counts.background_episodes) +
        " compactions (" + n(pool) + " pool, " + n(arena) + " arena, " +
        n(counts.background_episodes) + " background episodes in " + n(counts.background_steps) +
        " steps), " + n(frames) + " frames migrated, " + n(counts.objects_moved) +
        " objects moved (" + n(static_cast<std::uint64_t>(lives().moved.load())) +
        " records by their move constructor), " + n(counts.pins_held.load()) + " pins held (" +
        n(counts.pins_across_compactions.load()) + " across compactions), " +
        n(counts.discards.load()) + " discards, " + n(counts.allocation_failures.load()) +
        " allocation failures, " + n(counts.rounds) + " rounds, " + n(options.threads) +
        " threads, seed " + n(options.seed) + ", " + rate + ", " + n(counts.mismatches.load()) +
        " mismatches";
    std::printf("%s\n", line.c_str());
    return counts.mismatches.load() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

} // namespace
} // namespace movable::stress

int main(int argc, char** argv) {
    try {
        return movable::stress::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "movable_stress: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "movable_stress: unknown exception\n");
    }
    return EXIT_FAILURE;
}
