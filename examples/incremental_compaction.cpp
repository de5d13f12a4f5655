// The compactor's ways to run, on a fragmented arena: full, order-targeted, incremental with
// bounded pauses, and proactive.
#include <movable/movable.hpp>

#include <cstdio>

#include "page_store.hpp"

int main() {
    using arena_type = movable::frame_arena<4096, 9>; // 2 MiB max-order blocks
    arena_type arena(32 << 20);
    example::page_store<arena_type> store(arena);
    std::byte page[4096] = {};
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        store.insert(i, page);
    }
    for (std::size_t i = 0; i < arena.frame_count(); i += 2) {
        store.erase(i); // every other page: 16 MiB free, no block larger than 4 KiB
    }

    // clang-format off
    movable::compactor compaction(arena);
    compaction.compact({.order = 9});                       // stop once a 2 MiB block is free
    compaction.begin({.max_bytes_per_pass = 1 << 20});      // incremental: bounded pauses
    while (compaction.pass() == movable::compact_progress::incomplete) { /* run the program */ }
    movable::compact_stats stats = compaction.end();
    if (compaction.should_compact(20)) {                    // vm.compaction_proactiveness = 20
        compaction.compact(compaction.proactive_request(20));
    }
    compaction.compact();                                   // full
    // clang-format on

    std::printf("incremental run: %zu passes of at most 1 MiB moved %zu MiB; score now %u/100\n",
                stats.passes, stats.bytes_moved >> 20, arena.fragmentation_score());
    return arena.fragmentation_score() == 0 ? 0 : 1;
}
