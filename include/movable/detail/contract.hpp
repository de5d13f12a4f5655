// Contract checks: misuse that is too expensive to detect in Release (double free, a stale
// handle, unlocking an unlocked frame) aborts with a message naming the call when the library
// is built in Debug (NDEBUG not defined) or with MOVABLE_HARDENED defined. In Release the
// checks compile to nothing.
#pragma once

#include <cstdio>
#include <cstdlib>

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

// Checks `condition` when contracts are enabled. The message names the call and the misuse,
// e.g. "frame::unlock: frame is not locked". Use `if constexpr (contracts_enabled)` around a
// check whose condition itself costs something.
constexpr void contract(bool condition, const char* message) noexcept {
    if constexpr (contracts_enabled) {
        if (!condition) {
            contract_violation(message);
        }
    }
}

} // namespace movable::detail
