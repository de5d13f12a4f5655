// compressed_store: what the byte pools (zspage_pool, zbud_pool, z3fold_pool) all model, so code
// written once (a compressed-memory cache, the conformance suite, the fuzzer) runs over any of
// them: the kernel's zpool, without its run-time indirection.
//
// A Store models compressed_store when it has:
//   Store::handle        a distinct opaque handle type (store_handle<Tag>): default-constructed
//                        empty (false), comparable, kept as an integer with value()/from_value()
//   Store::access_mode   store_access (read, write)
//   Store::mapping       what map returns: bytes() (span of const bytes), writable_bytes()
//                        (span of bytes, write mappings only), unmap(); move-only, pins its object
//   allocate(size) -> handle         throws std::invalid_argument for size 0 or above
//                                    max_object_size(), std::bad_alloc when exhausted
//   try_allocate(size) -> handle     noexcept: the empty handle for either
//   deallocate(handle)               the empty handle throws std::invalid_argument; a stale one
//                                    is a contract violation (abort in Debug / MOVABLE_HARDENED)
//   read(handle, span<byte>) const, write(handle, span<const byte>)
//                                    a span larger than the object throws std::out_of_range
//   size(handle) const -> size_t     the size allocate was asked for
//   map(handle, access_mode) -> mapping
//   compact() -> size_t              frames the pool freed by moving its own objects
//   max_object_size() const -> size_t, arena() const -> the arena (frames come from it)
//   stats() const                    with frames_in_use, objects_in_use and bytes_stored
// Every handle stays valid across compact(), arena compaction (the pools' frames are movable
// through the core protocol) and other objects' churn.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include <movable/pool/store_handle.hpp>

namespace movable {

namespace detail {

template <class Store>
concept store_has_types = requires {
    typename Store::handle;
    typename Store::access_mode;
    typename Store::mapping;
}
&&std::same_as<typename Store::access_mode, store_access>;

template <class Store>
concept store_allocates = requires(Store& store, std::size_t size, typename Store::handle h,
                                   std::uint64_t value) {
    { store.allocate(size) } -> std::same_as<typename Store::handle>;
    { store.try_allocate(size) }
    noexcept->std::same_as<typename Store::handle>;
    store.deallocate(h);
    {static_cast<bool>(h)};
    { h.value() } -> std::same_as<std::uint64_t>;
    { Store::handle::from_value(value) } -> std::same_as<typename Store::handle>;
}
&&std::equality_comparable<typename Store::handle>&&
    std::default_initializable<typename Store::handle>;

template <class Store>
concept store_accesses = requires(Store& store, const Store& const_store, typename Store::handle h,
                                  std::span<std::byte> out, std::span<const std::byte> in,
                                  typename Store::mapping& m, const typename Store::mapping& cm) {
    const_store.read(h, out);
    store.write(h, in);
    { const_store.size(h) } -> std::convertible_to<std::size_t>;
    { store.map(h, store_access::read) } -> std::same_as<typename Store::mapping>;
    { cm.bytes() } -> std::convertible_to<std::span<const std::byte>>;
    { m.writable_bytes() } -> std::convertible_to<std::span<std::byte>>;
    m.unmap();
};

template <class Store>
concept store_compacts_and_counts = requires(Store& store, const Store& const_store) {
    { store.compact() } -> std::convertible_to<std::size_t>;
    { const_store.max_object_size() } -> std::convertible_to<std::size_t>;
    const_store.arena();
    { const_store.stats().frames_in_use } -> std::convertible_to<std::size_t>;
    { const_store.stats().objects_in_use } -> std::convertible_to<std::size_t>;
    { const_store.stats().bytes_stored } -> std::convertible_to<std::size_t>;
};

} // namespace detail

template <class Store>
concept compressed_store = detail::store_has_types<Store> && detail::store_allocates<Store> &&
    detail::store_accesses<Store> && detail::store_compacts_and_counts<Store>;

namespace detail {
// Says which piece of compressed_store a type misses: static_assert(check_compressed_store<S>()).
template <class Store>
consteval bool check_compressed_store() {
    static_assert(store_has_types<Store>,
                  "compressed_store: Store needs the types handle, mapping and access_mode (== "
                  "movable::store_access)");
    if constexpr (store_has_types<Store>) {
        static_assert(store_allocates<Store>,
                      "compressed_store: Store needs handle allocate(size), handle "
                      "try_allocate(size) noexcept, deallocate(handle), and a handle with bool, "
                      "==, value() and from_value()");
        static_assert(store_accesses<Store>,
                      "compressed_store: Store needs read(handle, span<byte>) const, "
                      "write(handle, span<const byte>), size(handle) const and map(handle, "
                      "access_mode) -> mapping with bytes(), writable_bytes() and unmap()");
        static_assert(store_compacts_and_counts<Store>,
                      "compressed_store: Store needs compact(), max_object_size() const, arena() "
                      "const and stats() const with frames_in_use, objects_in_use and "
                      "bytes_stored");
    }
    return compressed_store<Store>;
}
} // namespace detail

} // namespace movable
