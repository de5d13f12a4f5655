// The demo: fragment an arena the way a long-running program does, compact it, give the free
// memory back to the OS, and show each step: a map of the arena, order statistics, resident
// size, and fragmentation.svg (before and after, one cell per frame). With --json it prints the
// same steps as one JSON object instead (the arena's and the compaction's statistics,
// docs/stats.md).
//
//   fragmentation_demo [--arena-mib N] [--svg PATH] [--seed S] [--json]
#include <movable/compaction.hpp>
#include <movable/stats_json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "examples/support/resident.hpp"
#include "page_store.hpp"

namespace {

using arena_type = movable::frame_arena<4096, 9>; // 2 MiB max-order blocks, as huge pages
constexpr std::size_t block = arena_type::block_frames;

enum class cell : char { free_frame, released, movable, unmovable };

using movable::support::resident_bytes;

double mib(std::size_t bytes) {
    return static_cast<double>(bytes) / (1 << 20);
}

std::vector<cell> snapshot(const arena_type& arena, const std::vector<bool>& unmovable) {
    std::vector<cell> cells(arena.frame_count());
    for (std::size_t i = 0; i < cells.size(); ++i) {
        if (arena.is_free(i)) {
            // A free frame the OS has taken back reads as zero and costs nothing.
            cells[i] = cell::free_frame;
        } else {
            cells[i] = unmovable[i] ? cell::unmovable : cell::movable;
        }
    }
    return cells;
}

// One character per max-order block.
void print_map(const std::vector<cell>& cells) {
    std::string line;
    for (std::size_t first = 0; first < cells.size(); first += block) {
        std::size_t used = 0;
        bool has_unmovable = false;
        for (std::size_t i = first; i < first + block; ++i) {
            used += (cells[i] == cell::movable || cells[i] == cell::unmovable) ? 1 : 0;
            has_unmovable = has_unmovable || cells[i] == cell::unmovable;
        }
        line += has_unmovable      ? 'U'
                : used == 0        ? '.'
                : used == block    ? '#'
                : used * 2 > block ? '+'
                                   : '-';
    }
    std::printf("  map  [%s]\n", line.c_str());
}

void print_state(const char* title, const arena_type& arena, const std::vector<cell>& cells) {
    const auto stats = arena.stats();
    std::printf("\n%s\n", title);
    print_map(cells);
    std::printf("  free blocks by order:");
    for (unsigned order = 0; order <= arena_type::max_order; ++order) {
        std::printf(" %u:%zu", order, stats.free_blocks_of_order(order));
    }
    std::printf("\n  free %.1f MiB of %.1f MiB, largest free block order %d (%.0f KiB)\n",
                mib(stats.free_frames * arena_type::frame_size), mib(arena.size_bytes()),
                stats.largest_free_order,
                stats.largest_free_order < 0
                    ? 0.0
                    : static_cast<double>(arena_type::frame_size << stats.largest_free_order) /
                          1024);
    std::printf("  fragmentation score %u/100, fragmentation index for a %zu KiB block %.3f\n",
                arena.fragmentation_score(), arena_type::block_bytes / 1024,
                arena.fragmentation_index(arena_type::max_order));
    std::printf("  resident set of the process: %.1f MiB\n", mib(resident_bytes()));
}

void write_svg(const std::string& path, const std::vector<cell>& before,
               const std::vector<cell>& after, const std::vector<cell>& released) {
    const std::size_t columns = 128;
    const std::size_t rows = (before.size() + columns - 1) / columns;
    const int size = 3;
    const int panel_width = static_cast<int>(columns) * size;
    const int panel_height = static_cast<int>(rows) * size;
    const int gap = 24;
    const int top = 40;
    std::ofstream svg(path);
    svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << 3 * panel_width + 4 * gap
        << "' height='" << panel_height + top + 56 << "' font-family='sans-serif' font-size='13'>\n"
        << "<rect width='100%' height='100%' fill='white'/>\n";
    auto colour = [](cell c) {
        switch (c) {
        case cell::free_frame:
            return "#d9d9d9";
        case cell::released:
            return "#ffffff";
        case cell::movable:
            return "#3b6fb6";
        case cell::unmovable:
            return "#d1495b";
        }
        return "#000000";
    };
    const std::vector<cell>* panels[] = {&before, &after, &released};
    const char* titles[] = {"1. fragmented", "2. compacted", "3. free memory released"};
    for (int p = 0; p < 3; ++p) {
        const int x0 = gap + p * (panel_width + gap);
        svg << "<text x='" << x0 << "' y='24'>" << titles[p] << "</text>\n";
        svg << "<rect x='" << x0 - 1 << "' y='" << top - 1 << "' width='" << panel_width + 2
            << "' height='" << panel_height + 2 << "' fill='none' stroke='#888'/>\n";
        const auto& cells = *panels[p];
        // One rectangle per run of equal cells in a row keeps the file small.
        for (std::size_t row = 0; row < rows; ++row) {
            const std::size_t end = std::min(cells.size(), (row + 1) * columns);
            for (std::size_t run = row * columns; run < end;) {
                std::size_t next = run + 1;
                while (next < end && cells[next] == cells[run]) {
                    ++next;
                }
                if (cells[run] != cell::released) { // white background
                    svg << "<rect x='" << x0 + static_cast<int>(run % columns) * size << "' y='"
                        << top + static_cast<int>(row) * size << "' width='"
                        << static_cast<int>(next - run) * size << "' height='" << size << "' fill='"
                        << colour(cells[run]) << "'/>\n";
                }
                run = next;
            }
        }
    }
    const int legend_y = top + panel_height + 28;
    const std::pair<cell, const char*> legend[] = {{cell::movable, "movable frame"},
                                                   {cell::unmovable, "unmovable frame"},
                                                   {cell::free_frame, "free frame"},
                                                   {cell::released, "free, returned to the OS"}};
    int x = gap;
    for (auto [c, text] : legend) {
        svg << "<rect x='" << x << "' y='" << legend_y - 11 << "' width='12' height='12' fill='"
            << colour(c) << "' stroke='#888'/><text x='" << x + 18 << "' y='" << legend_y << "'>"
            << text << "</text>\n";
        x += 190;
    }
    svg << "<text x='" << gap << "' y='" << legend_y + 22
        << "' fill='#555'>one cell per 4 KiB frame, " << columns << " frames per row; " << block
        << " frames (2 MiB) per max-order block</text>\n";
    svg << "</svg>\n";
}

} // namespace

int main(int argc, char** argv) {
    std::size_t arena_mib = 64;
    std::string svg_path = "fragmentation.svg";
    unsigned seed = 2026;
    bool json = false; // print the statistics as JSON instead of the text below
    for (int i = 1; i < argc; ++i) {
        const std::string option = argv[i];
        const bool has_value = i + 1 < argc;
        if (option == "--json") {
            json = true;
        } else if (option == "--arena-mib" && has_value) {
            arena_mib = std::strtoul(argv[++i], nullptr, 10);
        } else if (option == "--svg" && has_value) {
            svg_path = argv[++i];
        } else if (option == "--seed" && has_value) {
            seed = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
        } else {
            std::fprintf(stderr, "usage: %s [--arena-mib N] [--svg PATH] [--seed S] [--json]\n",
                         argv[0]);
            return 2;
        }
    }

    arena_type arena(arena_mib << 20);
    example::page_store<arena_type> store(arena);
    std::mt19937 random(seed);
    std::vector<bool> unmovable(arena.frame_count(), false);
    std::vector<movable::frame*> unmovable_frames;
    std::vector<std::byte> page(arena_type::frame_size);
    auto fill = [&](std::size_t number) {
        for (std::size_t i = 0; i < page.size(); i += 8) {
            std::memcpy(&page[i], &number, sizeof number);
        }
    };

    // With --json the text is not printed; one JSON object goes to stdout at the end.
    if (!json) {
        std::printf(
            "movable fragmentation demo: %zu MiB arena, %zu frames of %zu KiB, %zu max-order "
            "blocks of %zu KiB\n",
            arena_mib, arena.frame_count(), arena_type::frame_size / 1024, arena.block_count(),
            arena_type::block_bytes / 1024);
        std::printf("legend: '#' full block, '+' more than half used, '-' less than half used, "
                    "'.' free block, 'U' holds an unmovable frame\n");
    }

    // A long-running program: pages come and go; now and then an unmovable allocation.
    std::size_t next_page = 0;
    std::vector<std::size_t> live;
    for (int step = 0; step < 4; ++step) {
        while (arena.free_frames() > arena.frame_count() / 64) {
            if (random() % 100 == 0) {
                if (movable::frame* f = arena.try_allocate(0, movable::frame_kind::unmovable)) {
                    unmovable[arena.index_of(*f)] = true;
                    unmovable_frames.push_back(f);
                    continue;
                }
            }
            fill(next_page);
            if (!store.insert(next_page, page.data())) {
                break;
            }
            live.push_back(next_page++);
        }
        std::shuffle(live.begin(), live.end(), random);
        const std::size_t keep = live.size() * 55 / 100;
        for (std::size_t i = keep; i < live.size(); ++i) {
            store.erase(live[i]);
        }
        live.resize(keep);
    }
    const std::size_t resident_fragmented = resident_bytes();
    const auto before = snapshot(arena, unmovable);
    const std::string fragmented_json = json ? movable::to_json(arena) : std::string();
    if (!json) {
        print_state("after churn (fragmented):", arena, before);
    }

    movable::compactor<arena_type> compaction(arena);
    const auto start = std::chrono::steady_clock::now();
    const movable::compact_stats stats = compaction.compact();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!json) {
        std::printf(
            "\ncompaction: migrated %zu frames (an ideal plan moves %zu), "
            "%.1f MiB in %.2f ms, %.2f GiB/s; %zu max-order blocks freed; scanned %zu + %zu "
            "frames\n",
            stats.migrated, stats.minimum_moves, mib(stats.bytes_moved), seconds * 1e3,
            static_cast<double>(stats.bytes_moved) / seconds / (1u << 30),
            stats.max_order_blocks_freed, stats.migrate_scanned, stats.free_scanned);
    }
    const auto after = snapshot(arena, unmovable);
    const std::string compacted_json = json ? movable::to_json(arena) : std::string();
    if (!json) {
        print_state("after compaction:", arena, after);
    }

    const std::size_t released = arena.discard_free_memory(0);
    auto after_release = after;
    for (auto& c : after_release) {
        c = c == cell::free_frame ? cell::released : c;
    }
    if (!json) {
        std::printf(
            "\nreleased %.1f MiB of free memory to the OS: resident set %.1f MiB -> %.1f MiB\n",
            mib(released), mib(resident_fragmented), mib(resident_bytes()));
    }

    // Nothing was lost: every live page still holds what was written.
    std::size_t intact = 0;
    std::vector<std::byte> out(arena_type::frame_size);
    for (std::size_t number : live) {
        fill(number);
        intact += store.read(number, out.data()) && out == page ? 1 : 0;
    }
    if (!json) {
        std::printf("verified %zu of %zu live pages intact\n", intact, live.size());
    }
    write_svg(svg_path, before, after, after_release);
    if (!json) {
        std::printf("wrote %s\n", svg_path.c_str());
    } else {
        std::cout << "{\"schema\":\"movable.fragmentation_demo/1\",\"fragmented\":"
                  << fragmented_json << ",\"compaction\":";
        movable::write_json(std::cout, stats);
        std::cout << ",\"compaction_seconds\":" << seconds << ",\"compacted\":" << compacted_json
                  << ",\"released_bytes\":" << released << ",\"released\":";
        movable::write_json(std::cout, arena);
        std::cout << ",\"live_pages\":" << live.size() << ",\"intact_pages\":" << intact << "}\n";
    }

    for (movable::frame* f : unmovable_frames) {
        arena.deallocate(*f);
    }
    return intact == live.size() ? 0 : 1;
}
