// How a typed pool moves an object of type T from one place to another (relocation: the object
// at `from` ends, an equal one begins at `to`). relocation_traits<T> decides:
//   * by memcpy, when T is trivially relocatable: trivially copyable, declared so by the user
//     (specialize movable::trivially_relocatable<T> as std::true_type), or detected by the
//     compiler's __is_trivially_relocatable builtin where it has one;
//   * else by a nothrow move-construct at `to` followed by the destruction of `from`.
// A type that is neither is refused at compile time (check_relocatable<T>). Users may also
// specialize relocation_traits<T> itself, with the same two members.
#pragma once

#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

namespace movable {

// Specialize as std::true_type for a type whose objects may be moved by copying their bytes
// (nothing points into the object, and its destructor after a byte copy would be a no-op: e.g.
// a std::unique_ptr, a std::vector with libstdc++). The opt-in of P1144.
template <class T>
struct trivially_relocatable : std::false_type {};

namespace detail {
template <class T>
inline constexpr bool compiler_says_trivially_relocatable =
#if defined(__has_builtin)
#if __has_builtin(__is_trivially_relocatable)
    __is_trivially_relocatable(T);
#else
    false;
#endif
#else
    false;
#endif
} // namespace detail

template <class T>
struct relocation_traits {
    // True when relocate() copies bytes (and may be done for a whole frame at once). A type
    // that deleted its move and copy constructors said it must not move (std::atomic,
    // std::mutex): trivially copyable or not, only the user's opt-in moves it.
    static constexpr bool by_memcpy =
        trivially_relocatable<T>::value ||
        (std::is_move_constructible_v<T> &&
         (std::is_trivially_copyable_v<T> || detail::compiler_says_trivially_relocatable<T>));
    // True when T can be relocated at all.
    static constexpr bool relocatable = by_memcpy || std::is_nothrow_move_constructible_v<T>;

    // Ends the object at `from` and begins an equal one at `to` (uninitialized storage of
    // sizeof(T), suitably aligned, not overlapping `from`).
    static T* relocate(void* to, T* from) noexcept {
        if constexpr (by_memcpy) {
            std::memcpy(to, static_cast<const void*>(from), sizeof(T));
            return std::launder(static_cast<T*>(to));
        } else {
            static_assert(std::is_nothrow_move_constructible_v<T>);
            T* moved = ::new (to) T(std::move(*from));
            std::destroy_at(from);
            return moved;
        }
    }
};

namespace detail {
// Says why T cannot live in a pool that moves its objects.
template <class T>
consteval bool check_relocatable() {
    static_assert(!std::is_reference_v<T> && std::is_object_v<T> && !std::is_array_v<T> &&
                      !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "object_pool: T must be a non-const, non-volatile object type, not an array");
    static_assert(relocation_traits<T>::relocatable,
                  "object_pool: T cannot be relocated: it is not trivially relocatable and its "
                  "move constructor is missing or may throw (make it noexcept, or specialize "
                  "movable::trivially_relocatable<T> if a byte copy moves it)");
    static_assert(std::is_nothrow_destructible_v<T>, "object_pool: T's destructor may throw");
    return true;
}
} // namespace detail

} // namespace movable
