// The stores the compressed_store conformance suites (and the stress test) run over: adding a
// store to them is one line in MOVABLE_COMPRESSED_STORES_OVER (and its name in store_name). Also
// the byte patterns the suites write and check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <movable/frame_arena.hpp>
#include <movable/models/compressed_store.hpp>
#include <movable/models/z3fold_pool.hpp>
#include <movable/models/zbud_pool.hpp>
#include <movable/models/zspage_pool.hpp>

namespace movable::test {

using store_arena = frame_arena<4096, 4>; // 16 frames per max-order block

// The stores under test over `Arena`, for doctest's TEST_CASE_TEMPLATE; the suites' usual list
// is MOVABLE_COMPRESSED_STORES (over store_arena).
#define MOVABLE_COMPRESSED_STORES_OVER(Arena)                                                      \
    movable::zspage_pool<Arena>, movable::zbud_pool<Arena>, movable::z3fold_pool<Arena>
#define MOVABLE_COMPRESSED_STORES MOVABLE_COMPRESSED_STORES_OVER(movable::test::store_arena)

template <class Store>
inline constexpr const char* store_name = nullptr;
template <class Arena>
inline constexpr const char* store_name<zspage_pool<Arena>> = "zspage_pool";
template <class Arena>
inline constexpr const char* store_name<zbud_pool<Arena>> = "zbud_pool";
template <class Arena>
inline constexpr const char* store_name<z3fold_pool<Arena>> = "z3fold_pool";

// What a store's contract message for `call` starts with, e.g. "zbud_pool::read: handle is stale".
template <class Store>
std::string stale_message(const char* call) {
    return std::string(store_name<Store>) + "::" + call + ": handle is stale";
}

// Gives the calling thread's cached places back, for a store with per-thread caches
// (zspage_pool's release_thread_cache); nothing for one without.
template <class Store>
void release_thread_cache(Store& store) {
    if constexpr (requires { store.release_thread_cache(); }) {
        store.release_thread_cache();
    }
}

inline void fill_pattern(std::span<std::byte> bytes, std::uint32_t seed) {
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& b : bytes) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<std::byte>(x);
    }
}
inline std::vector<std::byte> pattern(std::size_t size, std::uint32_t seed) {
    std::vector<std::byte> bytes(size);
    fill_pattern(bytes, seed);
    return bytes;
}
inline bool holds_pattern(std::span<const std::byte> bytes, std::uint32_t seed) {
    return std::vector<std::byte>(bytes.begin(), bytes.end()) == pattern(bytes.size(), seed);
}

} // namespace movable::test
