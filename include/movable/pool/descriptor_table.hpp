// descriptor_table<T>: type-stable descriptors for a pool's containers (zspage_pool's zspages).
// Descriptors live in one reserved, no-reserve mapping (committed as they are first used) and
// are recycled, never unmapped, until the table dies. So a pointer that once named a descriptor
// names a T for the table's whole life, and find() says whether any address is one of them:
// a reader may follow a racy pointer (a frame's private word read without the frame's lock),
// check it with find(), and touch the descriptor's atomics without ever touching freed memory,
// then validate what it read (pool/pins.hpp's optimistic container pins).
//
// T must be trivially destructible (descriptors are never destroyed one by one) and aligned to
// at most a page. A recycled descriptor keeps its memory as it was: whoever takes it
// re-initialises every field but the ones racy readers may be changing (its pin word).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

#include <movable/detail/mapped_region.hpp>

namespace movable::detail {

template <class T>
class descriptor_table {
    static_assert(std::is_trivially_destructible_v<T>,
                  "descriptor_table: descriptors are never destroyed one by one");
    static_assert(alignof(T) <= 4096, "descriptor_table: descriptors are page-aligned at most");

public:
    // Room for `capacity` descriptors (virtual: committed as used). Throws std::system_error
    // when the reservation fails.
    explicit descriptor_table(std::size_t capacity)
        : capacity_(capacity), region_(std::max<std::size_t>(capacity, 1) * sizeof(T)) {}
    descriptor_table(const descriptor_table&) = delete;
    descriptor_table& operator=(const descriptor_table&) = delete;

    // A descriptor: a recycled one, or one made now (value-initialised); null when all
    // `capacity` are in use or memory for the free list ran out.
    [[nodiscard]] T* take() noexcept {
        const std::lock_guard guard(lock_);
        if (!free_.empty()) {
            T* recycled = free_.back();
            free_.pop_back();
            ++in_use_;
            return recycled;
        }
        const std::size_t made = made_.load(std::memory_order_relaxed);
        if (made == capacity_) {
            return nullptr;
        }
        try {
            free_.reserve(made + 1); // give_back never allocates
        } catch (const std::bad_alloc&) {
            return nullptr;
        }
        T* fresh = ::new (at(made)) T();
        made_.store(made + 1, std::memory_order_release); // find() sees it built
        ++in_use_;
        return fresh;
    }
    // Takes a descriptor back for reuse. Its memory stays a T.
    void give_back(T* descriptor) noexcept {
        const std::lock_guard guard(lock_);
        free_.push_back(descriptor); // capacity reserved by take()
        --in_use_;
    }

    // The descriptor at `address` when it is one this table made, else null. Any address may be
    // asked, garbage included.
    [[nodiscard]] T* find(const void* address) const noexcept {
        const auto at_address = reinterpret_cast<std::uintptr_t>(address);
        const auto first = reinterpret_cast<std::uintptr_t>(region_.start());
        if (at_address < first) {
            return nullptr;
        }
        const std::uintptr_t offset = at_address - first;
        if (offset % sizeof(T) != 0 ||
            offset / sizeof(T) >= made_.load(std::memory_order_acquire)) {
            return nullptr;
        }
        return std::launder(reinterpret_cast<T*>(region_.start() + offset));
    }

    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    // Descriptors ever made (their memory is committed), and those handed out now.
    [[nodiscard]] std::size_t made() const noexcept {
        return made_.load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::size_t in_use() const noexcept {
        const std::lock_guard guard(lock_);
        return in_use_;
    }

private:
    [[nodiscard]] std::byte* at(std::size_t index) const noexcept {
        return region_.start() + index * sizeof(T);
    }

    std::size_t capacity_;
    mapped_region region_;
    std::atomic<std::size_t> made_{0};
    mutable std::mutex lock_;
    std::vector<T*> free_;
    std::size_t in_use_ = 0;
};

} // namespace movable::detail
