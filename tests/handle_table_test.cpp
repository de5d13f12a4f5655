// The handle table (pool/handle_table.hpp) used directly: slots, the lock-free free stack,
// generations and retirement, and the packed words around it (handle value, slot word,
// location).
#include <movable/pool/handle_table.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "examples/support/resident.hpp"

using namespace movable;
using detail::handle_table;
using detail::handle_value;
using detail::location_format;
using detail::slot_word;

namespace {

// What a pool does to an acquired slot: mark it allocated in `class_id` at `location`.
void mark_allocated(handle_table& table, std::uint32_t slot, std::uint64_t location,
                    std::uint32_t class_id) {
    table.word(slot).store(slot_word::make(location, class_id, true), std::memory_order_release);
}

// What a pool does to free a slot: mark it free, end its generation, then release or retire.
// True when the slot was released (false: retired).
bool free_slot(handle_table& table, std::uint32_t slot) {
    const std::uint32_t class_id = slot_word::class_id(table.word(slot).load());
    table.word(slot).store(slot_word::make(0, class_id, false), std::memory_order_release);
    if (table.end_generation(slot)) {
        table.release(slot);
        return true;
    }
    table.retire(slot);
    return false;
}

} // namespace

// ---- the packed words --------------------------------------------------------------------------

TEST_CASE("a handle value round-trips its slot and generation, and 0 is never a handle") {
    for (std::uint32_t slot : {0u, 1u, 1023u, 0xfffffffeu}) {
        for (std::uint32_t generation : {0u, 1u, 0x12345678u, handle_value::last_generation}) {
            const std::uint64_t value = handle_value::make(slot, generation);
            CHECK(value != 0);
            CHECK(handle_value::slot(value) == slot);
            CHECK(handle_value::generation(value) == generation);
        }
    }
    CHECK(handle_value::slot(0) == handle_table::none); // the empty handle names no slot
}

TEST_CASE("a slot word keeps its tag, class and location apart") {
    const std::uint64_t largest_location = ~std::uint64_t{0} >> slot_word::location_shift;
    for (std::uint64_t location : {std::uint64_t{0}, std::uint64_t{12345}, largest_location}) {
        for (std::uint32_t class_id :
             {0u, 17u, static_cast<std::uint32_t>(slot_word::class_mask)}) {
            for (bool allocated : {false, true}) {
                const std::uint64_t word = slot_word::make(location, class_id, allocated);
                CHECK(slot_word::location(word) == location);
                CHECK(slot_word::class_id(word) == class_id);
                CHECK(slot_word::allocated(word) == allocated);
            }
        }
    }
    CHECK(slot_word::class_count == slot_word::class_mask + 1);
}

TEST_CASE("a location round-trips its frame index and object index") {
    const location_format format(255); // 8 object bits
    CHECK(format.object_bits() == 8);
    for (std::size_t frame_index : {std::size_t{0}, std::size_t{1}, std::size_t{1} << 40}) {
        for (std::uint32_t object : {0u, 1u, 254u, 255u}) {
            const std::uint64_t location = format.make(frame_index, object);
            CHECK(format.frame_index(location) == frame_index);
            CHECK(format.object(location) == object);
            // And through a slot word.
            const std::uint64_t word = slot_word::make(location, 3, true);
            CHECK(format.frame_index(slot_word::location(word)) == frame_index);
            CHECK(format.object(slot_word::location(word)) == object);
        }
    }
    CHECK(format.fits(std::size_t{1} << 40));
    CHECK_FALSE(format.fits(std::size_t{1} << (slot_word::location_bits - 8)));
    CHECK(format.fits((std::size_t{1} << (slot_word::location_bits - 8)) - 1));
}

// ---- slots, the free stack and generations -----------------------------------------------------

TEST_CASE("a fresh table hands out slots in order; a released slot is the next one acquired") {
    handle_table table(4096);
    CHECK(table.published() == 0);
    CHECK_FALSE(table.contains(0));
    CHECK(table.acquire() == 0);
    CHECK(table.acquire() == 1);
    CHECK(table.acquire() == 2);
    CHECK(table.published() == 3);
    CHECK(table.contains(2));
    CHECK_FALSE(table.contains(3));
    mark_allocated(table, 1, 42, 5);
    CHECK(free_slot(table, 1));
    mark_allocated(table, 0, 43, 6);
    CHECK(free_slot(table, 0));
    CHECK(table.acquire() == 0); // last in, first out
    CHECK(table.acquire() == 1);
    CHECK(table.acquire() == 3); // the stack is empty: a new slot
    CHECK(table.published() == 4);
}

TEST_CASE("a released slot word is free, keeps its class and links the next free slot") {
    handle_table table(4096);
    const std::uint32_t a = table.acquire();
    const std::uint32_t b = table.acquire();
    mark_allocated(table, a, 7, 9);
    mark_allocated(table, b, 8, 11);
    CHECK(free_slot(table, a));
    CHECK(free_slot(table, b));
    const std::uint64_t word = table.word(b).load();
    CHECK_FALSE(slot_word::allocated(word));
    CHECK(slot_word::class_id(word) == 11);
    CHECK(slot_word::location(word) == std::uint64_t{a} + 1); // next free slot + 1
    CHECK(slot_word::location(table.word(a).load()) == 0);    // bottom of the stack
}

TEST_CASE("ending a generation bumps it; a slot never marked allocated keeps its generation") {
    handle_table table(4096);
    const std::uint32_t slot = table.acquire();
    CHECK(table.slot(slot).generation.load() == 0);
    mark_allocated(table, slot, 1, 0);
    CHECK(free_slot(table, slot));
    CHECK(table.slot(slot).generation.load() == 1);
    CHECK(table.acquire() == slot);
    table.release(slot); // handed back unused, as allocate does when the arena is exhausted
    CHECK(table.slot(slot).generation.load() == 1);
    CHECK(table.acquire() == slot);
    mark_allocated(table, slot, 1, 0);
    CHECK(free_slot(table, slot));
    CHECK(table.slot(slot).generation.load() == 2);
}

TEST_CASE("a slot whose generation runs out is retired and never handed out again") {
    handle_table table(4096);
    const std::uint32_t slot = table.acquire();
    table.slot(slot).generation.store(handle_value::last_generation - 1);
    mark_allocated(table, slot, 1, 0);
    CHECK(free_slot(table, slot)); // last_generation - 1 -> last_generation: still released
    CHECK(table.acquire() == slot);
    CHECK(table.slot(slot).generation.load() == handle_value::last_generation);
    mark_allocated(table, slot, 1, 0);
    CHECK_FALSE(free_slot(table, slot)); // would wrap to 0: retired
    CHECK(table.retired() == 1);
    CHECK(table.slot(slot).generation.load() == handle_value::last_generation);
    CHECK_FALSE(slot_word::allocated(table.word(slot).load())); // stays marked free
    CHECK(table.acquire() == slot + 1);
}

TEST_CASE("slots never move when the table grows; a full table answers none") {
    handle_table table(handle_table::chunk_slots + 1); // two chunks
    const std::uint32_t first = table.acquire();
    detail::handle_slot* const address = &table.slot(first);
    for (std::size_t i = 1; i < 2 * handle_table::chunk_slots; ++i) {
        REQUIRE(table.acquire() == i);
    }
    CHECK(&table.slot(first) == address);
    CHECK(table.acquire() == handle_table::none);
    mark_allocated(table, 5, 1, 0);
    CHECK(free_slot(table, 5));
    CHECK(table.acquire() == 5); // a full table still reuses freed slots
}

TEST_CASE("a table sized for billions of slots holds memory only for the chunks in use") {
    const std::size_t before = movable::support::resident_bytes();
    handle_table table(std::size_t{1} << 32); // a 32 MiB directory if it were all resident
    for (int i = 0; i < 5000; ++i) {          // five chunks
        CHECK(table.acquire() != handle_table::none);
    }
    CHECK(movable::support::resident_bytes() < before + (std::size_t{4} << 20));
}

// ---- under threads ---------------------------------------------------------------------------

// The free stack's ABA guard: threads pop and push the same few slots as fast as they can, so
// pops whose head went stale (another thread popped it, pushed it back) are likely; how many
// happen is up to the scheduler, and nothing here depends on it. A slot handed to two threads
// at once, or lost, is a bug whatever the interleaving.
TEST_CASE("under concurrent acquire and release every slot has at most one holder") {
    constexpr std::size_t threads = 4;
    constexpr std::size_t rounds = 20000;
    constexpr std::size_t slots = 8;
    handle_table table(handle_table::chunk_slots);
    for (std::size_t i = 0; i < slots; ++i) {
        REQUIRE(table.acquire() == i);
    }
    for (std::uint32_t i = 0; i < slots; ++i) {
        table.release(i);
    }
    auto holders = std::make_unique<std::atomic<int>[]>(handle_table::chunk_slots);
    std::atomic<std::size_t> double_holds{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (std::size_t t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            while (!go.load(std::memory_order_acquire)) {
                std::this_thread::yield();
            }
            for (std::size_t round = 0; round < rounds; ++round) {
                const std::uint32_t slot = table.acquire();
                if (slot == handle_table::none ||
                    holders[slot].fetch_add(1, std::memory_order_acq_rel) != 0) {
                    double_holds.fetch_add(1, std::memory_order_relaxed);
                    continue;
                }
                mark_allocated(table, slot, round, static_cast<std::uint32_t>(t));
                holders[slot].fetch_sub(1, std::memory_order_acq_rel);
                free_slot(table, slot);
            }
        });
    }
    go.store(true, std::memory_order_release);
    for (std::thread& worker : workers) {
        worker.join();
    }
    CHECK(double_holds.load() == 0);
    // At most one slot per thread beyond the seeded ones: the stack ran dry only if all of
    // them were held at once. Every slot is back on the stack: acquiring them all finds each
    // exactly once.
    CHECK(table.published() <= slots + threads);
    std::set<std::uint32_t> back;
    for (std::size_t i = 0; i < table.published(); ++i) {
        back.insert(table.acquire());
    }
    CHECK(back.size() == table.published());
    CHECK(*back.rbegin() < table.published());
    std::uint64_t generations = 0;
    for (std::uint32_t slot : back) {
        generations += table.slot(slot).generation.load();
    }
    CHECK(generations == threads * rounds); // every free ended exactly one generation
}
