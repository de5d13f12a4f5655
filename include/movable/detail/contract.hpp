// Contract checks: misuse that is too expensive to detect in Release (a stale handle whose slot
// was reused, unlocking an unlocked frame, destroying a pool while an object is mapped) aborts
// with a message naming the call when the library is built in Debug (NDEBUG not defined) or
// with MOVABLE_HARDENED defined. A handle's slot bound and allocated bit are checked in every
// build (release_check below; docs/concepts.md, "Handles: what Release checks").
//
// MOVABLE_CONTRACT(condition, message) is the check. In Release its condition is not evaluated
// at all: it sits in the discarded branch of an `if constexpr`, still type-checked but never
// compiled to code, so even the atomic loads a condition makes disappear (a plain function
// taking a bool would evaluate them: GCC and Clang keep atomic loads whose value is unused).
// A macro, because only a macro can keep an argument from being evaluated; it wraps real
// functions (contract_violation) and a constexpr flag.
//
// Tiers: contracts (above); release_check, the few checks that stay on in every build because
// they cost one load on a cold path and protect stored data (each use says so); and the
// expensive tier (MOVABLE_EXPENSIVE_CHECKS), whole-structure invariant walks.
#pragma once

#include <cstdio>
#include <cstdlib>

#define MOVABLE_CONTRACT(condition, message)                                                       \
    do {                                                                                           \
        if constexpr (::movable::detail::contracts_enabled) {                                      \
            if (!(condition)) {                                                                    \
                ::movable::detail::contract_violation(message);                                    \
            }                                                                                      \
        }                                                                                          \
    } while (false)

namespace movable::detail {

#if defined(MOVABLE_HARDENED) || !defined(NDEBUG)
inline constexpr bool contracts_enabled = true;
#else
inline constexpr bool contracts_enabled = false;
#endif

// The expensive tier (MOVABLE_EXPENSIVE_CHECKS): invariant checks that walk whole structures
// after every operation, e.g. frame_arena's free lists after every allocation and free. For
// tests and fuzzing; off unless defined, whatever the build type.
#if defined(MOVABLE_EXPENSIVE_CHECKS)
inline constexpr bool expensive_checks_enabled = true;
#else
inline constexpr bool expensive_checks_enabled = false;
#endif

// Prints "movable: contract violated: <message>" and aborts. Never returns.
[[noreturn]] inline void contract_violation(const char* message) noexcept {
    std::fprintf(stderr, "movable: contract violated: %s\n", message);
    std::fflush(stderr);
    std::abort();
}

// Prints "movable: contract violated: <call>: <what>" and aborts. Never returns.
[[noreturn]] inline void contract_violation(const char* call, const char* what) noexcept {
    std::fprintf(stderr, "movable: contract violated: %s: %s\n", call, what);
    std::fflush(stderr);
    std::abort();
}

// A check that stays on in every build, for misuse that costs one load on a cold path to detect
// and would otherwise lose or corrupt stored data. Each use says why it is always on.
constexpr void release_check(bool condition, const char* message) noexcept {
    if (!condition) {
        contract_violation(message);
    }
}

} // namespace movable::detail
