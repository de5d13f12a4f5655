// The README's quick start: an owner, an arena, a compaction when one is due.
#include <movable/movable.hpp>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

// 1. An owner: whatever keeps data in frames and can let them move.
struct blob_store {
    movable::frame_arena<>& arena;
    std::mutex mutex; // held by whoever writes a blob, and by migrate while it copies one
    std::vector<movable::frame*> blobs; // blob number -> the frame holding it

    // Called with f locked. true: the compactor may take f away for a moment.
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    // Called with both frames locked. Copy src to dst, point our references at dst, make dst
    // movable. In `async` mode wait for nothing: answer `retry` when the mutex is taken.
    movable::migrate_status migrate(movable::frame& dst, movable::frame& src,
                                    movable::migrate_mode mode) noexcept {
        std::unique_lock guard(mutex, std::try_to_lock);
        if (!guard.owns_lock()) {
            if (mode == movable::migrate_mode::async) {
                return movable::migrate_status::retry;
            }
            guard.lock();
        }
        std::memcpy(arena.address_of(dst), arena.address_of(src), arena.frame_size);
        blobs[src.private_word()] = &dst;
        dst.set_private_word(src.private_word());
        movable::set_movable(dst, *this);
        return movable::migrate_status::success;
    }
    // The compactor gives back a frame it did not move.
    void putback(movable::frame&) noexcept {}
};
static_assert(movable::movable_owner<blob_store>);

int main() {
    // 2. An arena: 16 MiB of frames (mmap), buddy-allocated in blocks of up to 4 MiB.
    movable::frame_arena<> arena(16 << 20);
    blob_store store{arena, {}, {}};

    // 3. Fill it, then free every other blob: the free half is scattered in 4 KiB holes.
    for (std::size_t i = 0; i < arena.frame_count(); ++i) {
        movable::frame& f = arena.allocate();
        std::memset(arena.address_of(f), static_cast<int>(i & 0xff), arena.frame_size);
        f.set_private_word(i);
        std::lock_guard frame_guard(f);
        movable::set_movable(f, store);
        store.blobs.push_back(&f);
    }
    for (std::size_t i = 0; i < store.blobs.size(); i += 2) {
        movable::frame& f = *store.blobs[i];
        f.lock();
        const bool compactor_frees_it = movable::clear_movable(f); // it holds f isolated now
        f.unlock();
        if (!compactor_frees_it) {
            arena.deallocate(f); // unlocked: a free frame's lock is nobody's
        }
        store.blobs[i] = nullptr;
    }
    std::printf("before: largest free block %zu KiB, fragmentation score %u\n",
                (arena.frame_size << arena.largest_free_order()) / 1024,
                arena.fragmentation_score());

    // 4. Compact when it is due, as the kernel's proactive compaction does: with
    //    vm.compaction_proactiveness 20 (its default), once the fragmentation score is above
    //    90, and down to 80. The odd blobs move up until one 4 MiB block is free, no further.
    movable::compactor compaction(arena);
    constexpr unsigned proactiveness = 20;
    if (compaction.should_compact(proactiveness)) {
        const movable::compact_stats stats =
            compaction.compact(compaction.proactive_request(proactiveness));
        std::printf("after:  largest free block %zu KiB, fragmentation score %u; moved %zu "
                    "frames, max-order blocks freed: %zu\n",
                    (arena.frame_size << arena.largest_free_order()) / 1024,
                    arena.fragmentation_score(), stats.migrated, stats.max_order_blocks_freed);
    }
    std::printf("released %zu MiB to the OS\n", arena.discard_free_memory() >> 20);

    // Every blob kept its bytes.
    for (std::size_t i = 1; i < store.blobs.size(); i += 2) {
        const std::byte* bytes = arena.address_of(*store.blobs[i]);
        if (bytes[0] != static_cast<std::byte>(i & 0xff)) {
            return 1;
        }
    }
    for (movable::frame* f : store.blobs) { // tidy up
        if (f != nullptr) {
            std::lock_guard frame_guard(*f);
            (void)movable::clear_movable(*f);
        }
    }
    for (movable::frame* f : store.blobs) {
        if (f != nullptr) {
            arena.deallocate(*f);
        }
    }
    return 0;
}
