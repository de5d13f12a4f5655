// The README's z3fold_pool example: the same stream of compressed-page sizes stored in a
// zbud_pool and a z3fold_pool (any movable::compressed_store), a third of the pages freed, each
// pool compacted; prints the frames each needs, and checks every page afterwards.
#include <movable/movable.hpp>

#include <cstddef>
#include <cstdio>
#include <span>
#include <vector>

struct frames_used {
    std::size_t stored = 0, churned = 0, compacted = 0; // all 0: a page came back wrong
};

// Stores `count` pages of 300..1499 bytes, frees every third, compacts; the frames in use after
// each step.
template <movable::compressed_store Store>
frames_used churn(Store& store, std::size_t count) {
    std::vector<typename Store::handle> pages;
    std::vector<std::byte> page(1500);
    for (std::size_t number = 0; number < count; ++number) {
        page[0] = static_cast<std::byte>(number);
        pages.push_back(store.allocate(300 + number * 389 % 1200));
        store.write(pages.back(), std::span(page).first(store.size(pages.back())));
    }
    const std::size_t stored = store.stats().frames_in_use;
    for (std::size_t number = 0; number < count; number += 3) {
        store.deallocate(pages[number]);
    }
    const std::size_t after_churn = store.stats().frames_in_use;
    store.compact(); // z3fold: middles move inside frames, lone objects into other frames
    std::byte first{};
    for (std::size_t number = 1; number < count; number += (number % 3 == 1) ? 1 : 2) {
        store.read(pages[number], std::span(&first, 1));
        if (first != static_cast<std::byte>(number)) {
            return {};
        }
    }
    return {stored, after_churn, store.stats().frames_in_use};
}

int main() {
    movable::frame_arena<> zbud_arena(8 << 20);
    movable::frame_arena<> z3fold_arena(8 << 20);
    movable::zbud_pool zbud(zbud_arena);       // at most two pages per frame
    movable::z3fold_pool z3fold(z3fold_arena); // at most three pages per frame
    const frames_used a = churn(zbud, 3000);
    const frames_used b = churn(z3fold, 3000);
    std::printf("frames stored / after churn / after compact: zbud %zu / %zu / %zu, z3fold %zu / "
                "%zu / %zu\n",
                a.stored, a.churned, a.compacted, b.stored, b.churned, b.compacted);
    return a.compacted != 0 && b.compacted != 0 ? 0 : 1;
}
