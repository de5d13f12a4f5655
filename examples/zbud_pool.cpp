// The README's zbud_pool example: a zswap-like cache keeps compressed pages in a zbud_pool and,
// when its arena is full, evicts the least recently stored frames to a "backing store"; the
// same code runs over any movable::compressed_store.
#include <movable/movable.hpp>

#include <cstdio>
#include <map>
#include <span>
#include <vector>

// Stores a page in any compressed store (zspage_pool, zbud_pool): the empty handle when the
// store is full.
template <movable::compressed_store Store>
typename Store::handle store_page(Store& store, std::span<const std::byte> page) {
    const typename Store::handle h = store.try_allocate(page.size());
    if (h) {
        store.write(h, page);
    }
    return h;
}

int main() {
    movable::frame_arena<> arena(4 << 20);        // 4 MiB of 4 KiB frames: 1024 frames
    movable::zbud_pool pool(arena);               // at most two compressed pages per frame
    std::map<std::uint64_t, std::size_t> page_of; // handle -> page number
    std::map<std::size_t, std::vector<std::byte>> written_back; // the "disk"
    std::vector<std::byte> page(2000);

    for (std::size_t number = 0; number < 3000; ++number) {
        page[0] = static_cast<std::byte>(number);
        const std::span<const std::byte> bytes = std::span(page).first(900 + number * 7 % 1100);
        movable::zbud_handle h = store_page(pool, bytes);
        if (!h) { // full: write the oldest frames' pages back, then try again
            pool.evict(8, [&](movable::zbud_handle old, std::span<const std::byte> data) {
                written_back[page_of.at(old.value())].assign(data.begin(), data.end());
                page_of.erase(old.value());
            });
            h = store_page(pool, bytes);
        }
        page_of[h.value()] = number;
    }
    const movable::zbud_pool_stats stats = pool.stats();
    std::printf("%zu pages in %zu frames (%zu bytes stored), %zu written back; %zu frames "
                "evicted\n",
                stats.objects_in_use, stats.frames_in_use, stats.bytes_stored, written_back.size(),
                stats.frames_evicted);
    // Frames move (arena compaction) and handles stay valid.
    movable::compactor<movable::frame_arena<>>(arena).compact();
    std::vector<std::byte> first(1);
    pool.read(movable::zbud_handle::from_value(page_of.begin()->first), first);
    return first[0] == static_cast<std::byte>(page_of.begin()->second) ? 0 : 1;
}
