// tagged_ptr<T, Bits>: a T* and a small integer tag packed into one word, using the low bits
// that alignof(T) guarantees to be zero. atomic_tagged_ptr<T, Bits>: the same word read and
// written atomically, so the tag and the pointer are never torn apart.
//
// The tag budget is a compile-time fact: asking for more bits than alignof(T) leaves free is a
// compile error. A misaligned pointer or a tag that does not fit is a contract violation
// (checked in Debug and with MOVABLE_HARDENED). The word always round-trips through
// std::uintptr_t, never through arithmetic on the pointer itself.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include <movable/detail/contract.hpp>

namespace movable {

// Number of low bits that are always zero in a suitably aligned T*.
template <class T>
inline constexpr unsigned low_bits_available = static_cast<unsigned>(std::countr_zero(alignof(T)));

template <class T, unsigned Bits>
class tagged_ptr {
    static_assert(Bits <= low_bits_available<T>,
                  "tagged_ptr: Bits exceeds low_bits_available<T>; alignof(T) does not leave "
                  "that many low bits free in a T*");

public:
    using element_type = T;
    using tag_type = std::uintptr_t;

    static constexpr unsigned tag_bits = Bits;
    static constexpr tag_type tag_mask = (tag_type{1} << Bits) - 1;
    static constexpr tag_type max_tag = tag_mask;

    // A null pointer with tag 0.
    constexpr tagged_ptr() noexcept = default;

    // A null pointer with `tag`.
    constexpr tagged_ptr(std::nullptr_t, tag_type tag) noexcept : word_(tag) {
        MOVABLE_CONTRACT(tag <= max_tag, "tagged_ptr: tag does not fit in Bits");
    }

    // `pointer` must be aligned to alignof(T) (or null) and `tag` at most max_tag.
    explicit tagged_ptr(T* pointer, tag_type tag = 0) noexcept
        : word_(reinterpret_cast<std::uintptr_t>(pointer) | tag) {
        MOVABLE_CONTRACT((reinterpret_cast<std::uintptr_t>(pointer) & tag_mask) == 0,
                         "tagged_ptr: pointer is not sufficiently aligned for its tag bits");
        MOVABLE_CONTRACT(tag <= max_tag, "tagged_ptr: tag does not fit in Bits");
    }

    // The packed word, for storage in an atomic or a foreign field.
    [[nodiscard]] constexpr std::uintptr_t raw() const noexcept { return word_; }
    [[nodiscard]] static constexpr tagged_ptr from_raw(std::uintptr_t word) noexcept {
        tagged_ptr result;
        result.word_ = word;
        return result;
    }

    // The packed word holds the only copy of the address, so the pointer comes back from an
    // integer: what a tagged pointer is. NOLINTNEXTLINE(performance-no-int-to-ptr)
    [[nodiscard]] T* pointer() const noexcept { return reinterpret_cast<T*>(word_ & ~tag_mask); }
    [[nodiscard]] constexpr tag_type tag() const noexcept { return word_ & tag_mask; }
    [[nodiscard]] constexpr bool has_pointer() const noexcept { return (word_ & ~tag_mask) != 0; }

    void set_pointer(T* pointer) noexcept { *this = tagged_ptr(pointer, tag()); }
    constexpr void set_tag(tag_type tag) noexcept {
        MOVABLE_CONTRACT(tag <= max_tag, "tagged_ptr::set_tag: tag does not fit in Bits");
        word_ = (word_ & ~tag_mask) | tag;
    }

    T& operator*() const noexcept { return *pointer(); }
    T* operator->() const noexcept { return pointer(); }

    friend constexpr bool operator==(tagged_ptr, tagged_ptr) noexcept = default;

private:
    std::uintptr_t word_ = 0;
};

// tagged_ptr in an atomic word. Every operation takes an explicit memory order.
template <class T, unsigned Bits>
class atomic_tagged_ptr {
public:
    using value_type = tagged_ptr<T, Bits>;

    constexpr atomic_tagged_ptr() noexcept = default;
    explicit atomic_tagged_ptr(value_type initial) noexcept : word_(initial.raw()) {}
    atomic_tagged_ptr(const atomic_tagged_ptr&) = delete;
    atomic_tagged_ptr& operator=(const atomic_tagged_ptr&) = delete;

    [[nodiscard]] value_type load(std::memory_order order) const noexcept {
        return value_type::from_raw(word_.load(order));
    }
    void store(value_type value, std::memory_order order) noexcept {
        word_.store(value.raw(), order);
    }
    value_type exchange(value_type value, std::memory_order order) noexcept {
        return value_type::from_raw(word_.exchange(value.raw(), order));
    }
    // On failure `expected` receives the current value.
    bool compare_exchange_strong(value_type& expected, value_type desired,
                                 std::memory_order success, std::memory_order failure) noexcept {
        std::uintptr_t raw = expected.raw();
        const bool exchanged = word_.compare_exchange_strong(raw, desired.raw(), success, failure);
        expected = value_type::from_raw(raw);
        return exchanged;
    }
    bool compare_exchange_weak(value_type& expected, value_type desired, std::memory_order success,
                               std::memory_order failure) noexcept {
        std::uintptr_t raw = expected.raw();
        const bool exchanged = word_.compare_exchange_weak(raw, desired.raw(), success, failure);
        expected = value_type::from_raw(raw);
        return exchanged;
    }

    static constexpr bool is_always_lock_free = std::atomic<std::uintptr_t>::is_always_lock_free;

private:
    std::atomic<std::uintptr_t> word_{0};
};

} // namespace movable
