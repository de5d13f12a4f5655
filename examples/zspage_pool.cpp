// The README's zspage_pool example: a compressed-page store keeps variable-size objects in a
// zspage_pool, frees half of them, compacts the pool, then the arena, and gives memory back.
#include <movable/movable.hpp>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

int main() {
    movable::frame_arena<> arena(64 << 20); // 64 MiB of 4 KiB frames
    movable::zspage_pool pool(arena);       // zspages of up to 8 frames
    std::mt19937 rng(42);

    // Store 20000 "compressed pages" of 100..3000 bytes; a handle stays valid while objects move.
    std::vector<movable::zspage_handle> pages;
    std::vector<std::byte> page(4096);
    for (int i = 0; i < 20000; ++i) {
        const std::size_t size = 100 + rng() % 2900;
        std::memset(page.data(), i & 0xff, size);
        const movable::zspage_handle h = pool.allocate(size); // throws std::bad_alloc when full
        pool.write(h, std::span(page).first(size));
        pages.push_back(h);
    }
    // Free every other page: the zspages are now half empty.
    for (std::size_t i = 0; i < pages.size(); i += 2) {
        pool.deallocate(pages[i]);
    }
    std::printf("in use: %zu frames, %zu could be freed by compaction\n",
                pool.stats().frames_in_use, pool.compactable_frames());

    // Pool compaction moves objects out of sparse zspages and frees them.
    const std::size_t freed = pool.compact();
    std::printf("compact() freed %zu frames; %zu in use\n", freed, pool.stats().frames_in_use);

    // Arena compaction migrates the pool's frames together; free blocks go back to the OS.
    movable::compactor<movable::frame_arena<>>(arena).compact();
    std::printf("released %zu MiB to the OS\n", arena.release_free_memory() >> 20);

    // Pinned access: the object cannot move while the mapping lives.
    {
        const auto mapping = pool.map(pages[1], movable::zspage_access::read);
        if (mapping.bytes()[0] != std::byte{1}) {
            return 1;
        }
    }
    std::vector<std::byte> back(pool.size(pages[3]));
    pool.read(pages[3], back);
    if (back[0] != std::byte{3}) {
        return 1;
    }
    std::fputs(pool.stats().table().c_str(), stdout);
    return 0;
}
