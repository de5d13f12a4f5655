#include <movable/pool/fullness_groups.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace movable;

namespace {

struct node {
    std::uint32_t in_use = 0;
    std::uint8_t group = detail::fullness_groups<node>::unlisted;
    node* previous = nullptr;
    node* next = nullptr;
    bool eligible = true;
};

} // namespace

TEST_CASE("fullness_group sorts by tenths of use, full apart, empty at 0") {
    CHECK(detail::fullness_group(0, 100) == 0);
    CHECK(detail::fullness_group(1, 100) == 1);
    CHECK(detail::fullness_group(9, 100) == 1);
    CHECK(detail::fullness_group(10, 100) == 2);
    CHECK(detail::fullness_group(99, 100) == 10);
    CHECK(detail::fullness_group(100, 100) == fullness_group_count);
}

TEST_CASE("allocation takes the fullest node with room; compaction picks densest and sparsest") {
    detail::fullness_groups<node> groups;
    groups.capacity = 10;
    std::vector<node> nodes(4);
    nodes[0].in_use = 2;
    nodes[1].in_use = 8;
    nodes[2].in_use = 10; // full
    nodes[3].in_use = 5;
    for (node& n : nodes) {
        groups.link(n);
    }
    CHECK(groups.listed() == 4);
    CHECK(groups.fullest_not_full() == &nodes[1]);
    nodes[1].eligible = false;
    const auto eligible = [](const node& n) { return n.eligible; };
    node* densest = groups.take_densest(eligible);
    CHECK(densest == &nodes[3]); // the fuller one is not eligible, the full one never is
    node* sparsest = groups.take_sparsest(eligible);
    CHECK(sparsest == &nodes[0]);
    CHECK(groups.listed() == 2);
    CHECK(densest->group == detail::fullness_groups<node>::unlisted);
    densest->in_use = 10;
    groups.link(*densest);
    CHECK(groups.histogram()[fullness_group_count - 1] == 2);
    nodes[2].in_use = 3;
    groups.refile(nodes[2]);
    CHECK(nodes[2].group == detail::fullness_group(3, 10));
    std::size_t violations = 0;
    std::size_t visited = 0;
    groups.check([&](bool holds, const char*) { violations += holds ? 0 : 1; },
                 [&](node&) { ++visited; });
    CHECK(violations == 0);
    CHECK(visited == 3);
    nodes[1].in_use = 9; // changed without refile: on the wrong list
    std::vector<std::string> found;
    groups.check(
        [&](bool holds, const char* what) {
            if (!holds) {
                found.emplace_back(what);
            }
        },
        [](node&) {});
    REQUIRE(found.size() == 1);
    CHECK(found[0].find("not on the fullness list") != std::string::npos);
    std::size_t taken = 0;
    groups.take_all([&](node& n) {
        CHECK(n.group == detail::fullness_groups<node>::unlisted);
        ++taken;
    });
    CHECK(taken == 3);
    CHECK(groups.listed() == 0);
}
