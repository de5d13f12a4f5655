// A balloon: frames lent to a host stay movable, so compaction still frees large blocks.
#include <movable/movable.hpp>

#include <cstdio>
#include <vector>

// The host: here it only counts; a hypervisor driver would pass frame addresses on.
struct counting_host {
    std::size_t lent = 0;
    std::size_t replaced = 0;
    bool lend(movable::frame&) noexcept { // inflate: take this frame (false: refuse it)
        ++lent;
        return true;
    }
    void reclaim(movable::frame&) noexcept { --lent; } // deflate: the frame comes back
    // Migration: lend the new frame first, then return the old one.
    movable::balloon_replace_result replace(movable::frame&, movable::frame&) noexcept {
        ++replaced;
        return movable::balloon_replace_result::replaced;
    }
};

int main() {
    movable::frame_arena<> arena(16 << 20); // 4096 frames of 4 KiB, 4 MiB max-order blocks
    counting_host host;
    movable::balloon balloon(arena, host);

    // The balloon takes every other frame while the program takes the rest, then the program
    // frees its frames: half the arena is free, but not one 4 MiB block.
    std::vector<movable::frame*> program;
    while (balloon.inflate(1).inflated == 1) {
        if (movable::frame* f = arena.try_allocate()) {
            program.push_back(f);
        }
    }
    for (movable::frame* f : program) {
        arena.deallocate(*f);
    }
    std::printf("balloon %zu frames; largest free block %zu KiB\n", balloon.size(),
                (arena.frame_size << arena.largest_free_order()) / 1024);

    // Compact until a 4 MiB block is free: balloon frames move, the host is told each time.
    movable::compactor compaction(arena);
    movable::compact_request request;
    request.order = static_cast<int>(arena.max_order);
    compaction.compact(request);
    std::printf("after compaction: largest free block %zu KiB; host told of %zu moves; "
                "balloon still %zu frames\n",
                (arena.frame_size << arena.largest_free_order()) / 1024, host.replaced,
                balloon.size());

    const std::size_t deflated = balloon.deflate(balloon.size());
    std::printf("deflated %zu frames; host holds %zu\n", deflated, host.lent);
    return arena.has_free_block(arena.max_order) && host.lent == 0 ? 0 : 1;
}
