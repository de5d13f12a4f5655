// The README's zspage_pool example: a compressed-page store keeps variable-size objects in a
// zspage_pool, frees half of them, compacts the pool, then the arena, and gives memory back.
#include <movable/movable.hpp>

#include <cstdio>
#include <vector>

int main() {
    movable::frame_arena<> arena(64 << 20); // 64 MiB of 4 KiB frames
    movable::zspage_pool pool(arena);       // zspages of up to 8 frames
    std::vector<std::byte> page(3000);

    // 20000 "compressed pages" of 100..2999 bytes. A handle stays valid while objects move.
    std::vector<movable::zspage_handle> pages;
    for (std::size_t i = 0; i < 20000; ++i) {
        const std::size_t size = 100 + i * 7919 % 2900;
        page[0] = static_cast<std::byte>(i);
        pages.push_back(pool.allocate(size)); // throws std::bad_alloc when the arena is full
        pool.write(pages.back(), std::span(page).first(size));
    }
    for (std::size_t i = 0; i < pages.size(); i += 2) { // free half: zspages half empty
        pool.deallocate(pages[i]);
    }
    const std::size_t in_use = pool.stats().frames_in_use;
    std::printf("%zu frames in use, compact() frees %zu of them\n", in_use, pool.compact());

    // Arena compaction gathers the pool's frames; whole free blocks go back to the OS.
    movable::compactor<movable::frame_arena<>>(arena).compact();
    std::printf("released %zu MiB to the OS\n", arena.discard_free_memory() >> 20);

    { // Pinned access: the object cannot move while the mapping lives.
        const auto mapping = pool.map(pages[1], movable::zspage_access::read);
        std::printf("page 1 holds %zu bytes starting with %d\n", mapping.bytes().size(),
                    static_cast<int>(mapping.bytes()[0]));
    }
    std::vector<std::byte> copy(pool.size(pages[3])); // or copy out (read) and in (write)
    pool.read(pages[3], copy);
    std::fputs(pool.stats().table().c_str(), stdout); // like zsmalloc's `classes` file
    return copy[0] == std::byte{3} ? 0 : 1;
}
