// descriptor_table: type-stable descriptors that a racy reader may follow
// (pool/descriptor_table.hpp).
#include <movable/pool/descriptor_table.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

using movable::detail::descriptor_table;

namespace {

struct alignas(64) descriptor {
    std::atomic<std::uint64_t> pins{0};
    std::uint32_t value = 0;
};

} // namespace

TEST_CASE("find names only descriptors the table made, whatever address it is asked") {
    descriptor_table<descriptor> table(8);
    descriptor* first = table.take();
    descriptor* second = table.take();
    REQUIRE(first != nullptr);
    REQUIRE(second != nullptr);
    CHECK(table.find(first) == first);
    CHECK(table.find(second) == second);
    // Inside a descriptor, past the ones made, before the table, and garbage.
    CHECK(table.find(reinterpret_cast<const std::byte*>(first) + 8) == nullptr);
    CHECK(table.find(second + 1) == nullptr);
    CHECK(table.find(reinterpret_cast<const std::byte*>(first) - 64) == nullptr);
    CHECK(table.find(nullptr) == nullptr);
    const descriptor elsewhere; // memory the table never made
    CHECK(table.find(&elsewhere) == nullptr);
    CHECK(table.made() == 2);
    CHECK(table.in_use() == 2);
}

TEST_CASE("a descriptor given back is recycled with its memory as it was, pin word included") {
    descriptor_table<descriptor> table(4);
    descriptor* d = table.take();
    REQUIRE(d != nullptr);
    d->pins.fetch_add(3);
    d->value = 42;
    table.give_back(d);
    CHECK(table.in_use() == 0);
    // Still a descriptor of the table: a reader holding a stale pointer touches live memory.
    CHECK(table.find(d) == d);
    descriptor* again = table.take();
    CHECK(again == d);
    CHECK(again->pins.load() == 3); // a racy reader's count is never overwritten
    CHECK(again->value == 42);
    CHECK(table.made() == 1);
}

TEST_CASE("take answers null once every descriptor is in use, and again after one comes back") {
    descriptor_table<descriptor> table(3);
    std::vector<descriptor*> taken;
    for (int i = 0; i < 3; ++i) {
        taken.push_back(table.take());
        REQUIRE(taken.back() != nullptr);
    }
    CHECK(table.take() == nullptr);
    table.give_back(taken[1]);
    CHECK(table.take() == taken[1]);
    CHECK(table.take() == nullptr);
}
