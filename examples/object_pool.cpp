// The README's object_pool example: a cache of records that hold std::strings, kept in an
// object_pool. Fill it, churn it (drop 60% at random, add some), look at the fragmentation,
// compact(), give the freed frames back to the OS, and check every record. A record is not
// trivially relocatable (a short std::string points into itself), so the pool moves records by
// move-construct + destroy; a trivially copyable type would move by memcpy.
#include <movable/movable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "examples/support/resident.hpp"

namespace {

struct record {
    std::uint64_t id = 0;
    std::string key;   // short: kept inside the record (small-string buffer)
    std::string value; // longer: on the heap, the record holds a pointer to it
};

// What record `id` holds, rebuilt at the end to check the pool.
std::string key_of(std::uint64_t id) {
    std::string key = "user:";
    key += std::to_string(id);
    return key;
}
std::string value_of(std::uint64_t id) {
    return std::string(24 + id % 40, static_cast<char>('a' + id % 26));
}

double mib(std::size_t bytes) {
    return static_cast<double>(bytes) / (1 << 20);
}

void print_frames(const char* when, const movable::object_pool_stats& s) {
    std::printf("%-14s %7zu records in %5zu frames (%5.1f MiB); they need %5zu: %.2f frames "
                "per frame needed\n",
                when, s.objects, s.frames, mib(s.frames * s.frame_size), s.min_frames,
                s.frames_per_min_frame());
}

} // namespace

int main() {
    using record_pool = movable::object_pool<record>;     // over a movable::frame_arena<>
    movable::frame_arena<> arena(std::size_t{256} << 20); // reserved, committed when touched
    record_pool pool(arena);                              // one 4 KiB frame per slab
    std::printf("record: %zu bytes, %zu per 4 KiB frame, moved by %s\n", sizeof(record),
                record_pool::objects_per_frame,
                record_pool::moves_by_memcpy ? "memcpy" : "move-construct + destroy");

    // Fill. A handle is one integer; it stays valid while its record moves.
    std::vector<std::pair<movable::object_handle<record>, std::uint64_t>> cache;
    std::uint64_t next_id = 0;
    const auto add = [&] {
        const std::uint64_t id = next_id++;
        cache.emplace_back(pool.emplace(record{id, key_of(id), value_of(id)}), id);
    };
    for (int i = 0; i < 200000; ++i) {
        add();
    }
    print_frames("filled:", pool.stats());

    // Churn: evict 60% at random, then add 20000. Every frame keeps a few records, so none
    // goes back to the arena: the pool is fragmented.
    std::mt19937 rng(42);
    std::shuffle(cache.begin(), cache.end(), rng);
    const std::size_t evicted = cache.size() * 3 / 5;
    for (std::size_t i = cache.size() - evicted; i < cache.size(); ++i) {
        pool.destroy(cache[i].first);
    }
    cache.resize(cache.size() - evicted);
    for (int i = 0; i < 20000; ++i) {
        add();
    }
    print_frames("after churn:", pool.stats());
    const std::size_t resident_before = movable::support::resident_bytes();

    // Compact: records move from the sparsest frames into the holes of the densest; the
    // emptied frames go back to the arena. Handles, and pins taken later, see the new places.
    const auto start = std::chrono::steady_clock::now();
    const std::size_t freed = pool.compact();
    const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
    const movable::object_pool_stats after = pool.stats();
    print_frames("compacted:", after);
    std::printf("compact() moved %zu records and freed %zu frames (%.1f MiB) in %.1f ms\n",
                after.objects_moved, freed, mib(freed * after.frame_size), took.count());

    // Give the arena's free frames back to the OS (madvise(MADV_DONTNEED); order 0: single
    // frames too). movable::compactor(arena).compact() first would gather the pool's frames so
    // that whole 4 MiB blocks come free.
    arena.discard_free_memory(0);
    const std::size_t resident_after = movable::support::resident_bytes();
    std::printf("resident set: %.1f MiB -> %.1f MiB (%.1f MiB back to the OS)\n",
                mib(resident_before), mib(resident_after),
                mib(resident_before - std::min(resident_before, resident_after)));

    // Read through a pin: the record stays in place while `p` lives.
    {
        const movable::pinned<record> p = pool.pin(cache.front().first);
        std::printf("record %llu: %s = %.12s...\n", static_cast<unsigned long long>(p->id),
                    p->key.c_str(), p->value.c_str());
    }

    // Check every record (visit pins it while the lambda runs).
    std::size_t intact = 0;
    for (const auto& [handle, id] : cache) {
        const auto holds = [id = id](const record& r) {
            return r.id == id && r.key == key_of(id) && r.value == value_of(id);
        };
        if (pool.visit(handle, holds)) {
            ++intact;
        }
    }
    std::printf("verified %zu of %zu records intact\n", intact, cache.size());
    return intact == cache.size() && pool.size() == cache.size() ? 0 : 1;
}
