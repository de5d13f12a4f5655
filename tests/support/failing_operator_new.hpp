// A replacement of the global operator new that can be told to fail, for the heap-exhaustion
// tests (allocation_failure_test, allocation_failure_points_test). Include it in exactly one
// translation unit of a program built without sanitizers (they replace operator new too). It
// keeps its own books: every operator new matched by a delete (live_blocks).
//
// Two ways to fail: fail_allocations_from(n), process-wide, fails the n-th allocation from now
// and every later one until stop_failing(); a failure_point (below) fails the k-th allocation
// the arming thread makes while armed (only that one, or that one and every later one), and
// counts the allocations it saw, so a test can try every k.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>

namespace {

// The arming thread's failure point: 0 when none is armed.
struct failure_point_state {
    long countdown = 0;  // > 0: the countdown-th allocation from here fails
    bool sticky = false; // and, once one failed, every later one
    bool failed = false; // one failed already
    long seen = 0;       // allocations made while armed (those that succeeded)
    bool armed = false;
};
thread_local failure_point_state point_state; // trivially initialised: usable in operator new

std::atomic<long> allocations{0}; // operator new calls that succeeded
std::atomic<long> live_blocks{0}; // blocks from operator new not deleted yet
std::atomic<long> fail_from{0};   // 0: never fail; n > 0: the n-th call from now and later fail

void* allocate_or_fail(std::size_t size, std::size_t alignment) {
    failure_point_state& point = point_state;
    if (point.armed) {
        if (point.failed && point.sticky) {
            throw std::bad_alloc();
        }
        if (point.countdown > 0 && --point.countdown == 0) {
            point.failed = true;
            throw std::bad_alloc();
        }
        ++point.seen;
    }
    long armed = fail_from.load(std::memory_order_relaxed);
    if (armed > 0) {
        if (armed == 1) {
            throw std::bad_alloc(); // stays at 1: every later call fails too
        }
        fail_from.store(armed - 1, std::memory_order_relaxed);
    }
    const std::size_t rounded = (size + alignment - 1) / alignment * alignment;
    void* p = alignment <= alignof(std::max_align_t) ? std::malloc(size == 0 ? 1 : size)
                                                     : std::aligned_alloc(alignment, rounded);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    allocations.fetch_add(1, std::memory_order_relaxed);
    live_blocks.fetch_add(1, std::memory_order_relaxed);
    return p;
}

// Out of line on purpose: inlined into a replacement operator delete that is itself inlined into
// library code, its std::free would meet a pointer GCC saw come from operator new and trip
// -Wmismatched-new-delete, which cannot know that these operators are the replacements.
[[gnu::noinline]] void release(void* p) noexcept {
    if (p != nullptr) {
        live_blocks.fetch_sub(1, std::memory_order_relaxed);
        std::free(p);
    }
}

// Fails the n-th allocation from now and every one after it, until disarmed.
[[maybe_unused]] void fail_allocations_from(long n) {
    fail_from.store(n, std::memory_order_relaxed);
}
[[maybe_unused]] void stop_failing() {
    fail_from.store(0, std::memory_order_relaxed);
}

// The calling thread's failure point: fails its k-th allocation while armed (k = 0: none, it
// only counts), and with `sticky` every one after it too. Arm it around the operation under test
// only, so the set-up and the checks allocate freely. Other threads are never failed.
class failure_point {
public:
    failure_point(long k, bool sticky) noexcept : k_(k), sticky_(sticky) {}
    ~failure_point() { disarm(); }
    failure_point(const failure_point&) = delete;
    failure_point& operator=(const failure_point&) = delete;

    void arm() noexcept {
        point_state = failure_point_state{};
        point_state.countdown = k_;
        point_state.sticky = sticky_;
        point_state.armed = true;
    }
    void disarm() noexcept {
        if (point_state.armed) {
            seen_ += point_state.seen;
            failed_ = failed_ || point_state.failed;
            k_ = point_state.failed ? 0 : point_state.countdown; // what is left of it
            point_state = failure_point_state{};
        }
    }
    // Runs f armed. A std::bad_alloc that f lets out ends it, as it would a caller that catches
    // it; the point is disarmed either way.
    template <class F>
    void run_armed(F&& f) {
        arm();
        try {
            std::forward<F>(f)();
        } catch (const std::bad_alloc&) {
        }
        disarm();
    }
    // Allocations that succeeded while armed.
    [[nodiscard]] long seen() const noexcept { return seen_; }
    // Whether the k-th allocation was reached (and failed).
    [[nodiscard]] bool failed() const noexcept { return failed_; }

private:
    long k_;
    bool sticky_;
    long seen_ = 0;
    bool failed_ = false;
};

} // namespace

void* operator new(std::size_t size) {
    return allocate_or_fail(size, alignof(std::max_align_t));
}
void* operator new[](std::size_t size) {
    return allocate_or_fail(size, alignof(std::max_align_t));
}
void* operator new(std::size_t size, std::align_val_t alignment) {
    return allocate_or_fail(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
    return allocate_or_fail(size, static_cast<std::size_t>(alignment));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return allocate_or_fail(size, alignof(std::max_align_t));
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return allocate_or_fail(size, alignof(std::max_align_t));
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void operator delete(void* p) noexcept {
    release(p);
}
void operator delete[](void* p) noexcept {
    release(p);
}
void operator delete(void* p, std::size_t) noexcept {
    release(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    release(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    release(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    release(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    release(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    release(p);
}
