// Fullness groups, shared by the pools: the containers of a pool's objects (zspage_pool's
// zspages, object_pool's slabs) sorted by in-use ratio into intrusive lists, so that allocation
// takes the fullest container that has room and compaction empties the sparsest into the
// densest (the kernel's zsmalloc fullness groups, ZS_INUSE_RATIO_10 .. ZS_INUSE_RATIO_100).
// Under the pool's lock for those containers; no lock of its own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace movable {

// Fullness groups a container can be in by in-use ratio: [0]: under 10% ... [9]: under 100%,
// [10]: full. Empty containers are freed, never listed.
inline constexpr std::size_t fullness_group_count = 11;

namespace detail {

// The group of a container holding `in_use` of `capacity` objects: 1..10 for under 10% ..
// under 100%, 11 for full, 0 for empty (list index; fullness_group_count + 1 lists).
inline constexpr unsigned fullness_group(std::size_t in_use, std::size_t capacity) noexcept {
    if (in_use == 0) {
        return 0;
    }
    if (in_use >= capacity) {
        return fullness_group_count; // full
    }
    return static_cast<unsigned>(100 * in_use / capacity / 10 + 1);
}
static_assert(fullness_group(0, 10) == 0 && fullness_group(1, 10) == 2 &&
                  fullness_group(1, 100) == 1 && fullness_group(99, 100) == 10 &&
                  fullness_group(10, 10) == fullness_group_count,
              "fullness_group: empty is 0, full is fullness_group_count, others by tenths");

// An intrusive doubly linked list of containers. Node has `Node* previous, *next`.
template <class Node>
struct fullness_list {
    Node* head = nullptr;
    std::size_t size = 0;

    void push_front(Node& node) noexcept {
        node.previous = nullptr;
        node.next = head;
        if (head != nullptr) {
            head->previous = &node;
        }
        head = &node;
        ++size;
    }
    void remove(Node& node) noexcept {
        (node.previous != nullptr ? node.previous->next : head) = node.next;
        if (node.next != nullptr) {
            node.next->previous = node.previous;
        }
        node.previous = node.next = nullptr;
        --size;
    }
};

// A pool's containers of one kind of object by fullness group. Node has `in_use` (objects
// allocated), `std::uint8_t group` (the list it is on, `unlisted` when none) and the list links.
// Every container holds `capacity` objects.
template <class Node>
struct fullness_groups {
    static constexpr unsigned list_count = fullness_group_count + 1; // [0] empty: unused
    static constexpr std::uint8_t unlisted = 0xff;

    std::array<fullness_list<Node>, list_count> lists{};
    std::size_t capacity = 0;

    // Puts node on the list of its fullness group (it must be on none).
    void link(Node& node) noexcept {
        const unsigned group = fullness_group(node.in_use, capacity);
        node.group = static_cast<std::uint8_t>(group);
        lists[group].push_front(node);
    }
    void unlink(Node& node) noexcept {
        lists[node.group].remove(node);
        node.group = unlisted;
    }
    // Moves a listed node to the list of its current fullness group, if that changed.
    void refile(Node& node) noexcept {
        const unsigned group = fullness_group(node.in_use, capacity);
        if (group != node.group) {
            lists[node.group].remove(node);
            node.group = static_cast<std::uint8_t>(group);
            lists[group].push_front(node);
        }
    }
    // The fullest node that is not full, or null: where allocation goes.
    [[nodiscard]] Node* fullest_not_full() const noexcept {
        for (unsigned group = fullness_group_count - 1; group >= 1; --group) {
            if (lists[group].head != nullptr) {
                return lists[group].head;
            }
        }
        return nullptr;
    }
    // Compaction's picks: the densest / sparsest not-full node for which `eligible(node)` holds,
    // taken off its list; null when there is none.
    template <class Eligible>
    Node* take_densest(Eligible&& eligible) noexcept {
        for (unsigned group = fullness_group_count - 1; group >= 1; --group) {
            if (Node* node = first_in(group, eligible)) {
                unlink(*node);
                return node;
            }
        }
        return nullptr;
    }
    template <class Eligible>
    Node* take_sparsest(Eligible&& eligible) noexcept {
        for (unsigned group = 1; group < fullness_group_count; ++group) {
            if (Node* node = first_in(group, eligible)) {
                unlink(*node);
                return node;
            }
        }
        return nullptr;
    }
    // Takes every node off the lists, calling take(node) for each after it is unlinked.
    template <class Take>
    void take_all(Take&& take) noexcept {
        for (fullness_list<Node>& list : lists) {
            while (Node* node = list.head) {
                unlink(*node);
                take(*node);
            }
        }
    }
    // Listed nodes (all groups).
    [[nodiscard]] std::size_t listed() const noexcept {
        std::size_t total = 0;
        for (const fullness_list<Node>& list : lists) {
            total += list.size;
        }
        return total;
    }
    // Listed nodes in each fullness group 1..fullness_group_count (index 0: under 10%).
    [[nodiscard]] std::array<std::size_t, fullness_group_count> histogram() const noexcept {
        std::array<std::size_t, fullness_group_count> out{};
        for (std::size_t g = 0; g < fullness_group_count; ++g) {
            out[g] = lists[g + 1].size;
        }
        return out;
    }

    // Checks the lists (for check_invariants): lists[0] empty, every list's links and size
    // agree, every node on the list its count says; calls visit(node) for each listed node.
    // `invariant(holds, what)` reports a violation.
    template <class Invariant, class Visit>
    void check(Invariant&& invariant, Visit&& visit) const {
        invariant(lists[0].head == nullptr && lists[0].size == 0,
                  "an empty container is on a fullness list");
        for (unsigned g = 0; g < list_count; ++g) {
            std::size_t length = 0;
            const Node* previous = nullptr;
            for (Node* node = lists[g].head; node != nullptr; node = node->next) {
                invariant(++length <= lists[g].size && node->previous == previous,
                          "a fullness list's links or size are inconsistent");
                invariant(node->group == g && fullness_group(node->in_use, capacity) == g,
                          "a container is not on the fullness list its in-use count says");
                visit(*node);
                previous = node;
            }
            invariant(length == lists[g].size, "a fullness list's links or size are inconsistent");
        }
    }

private:
    template <class Eligible>
    Node* first_in(unsigned group, Eligible& eligible) const noexcept {
        for (Node* node = lists[group].head; node != nullptr; node = node->next) {
            if (eligible(*node)) {
                return node;
            }
        }
        return nullptr;
    }
};

} // namespace detail
} // namespace movable
