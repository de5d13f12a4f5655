// Small locks the models share: contended_mutex (a std::mutex that knows whether someone waits
// for it) and word_mutex (a mutex in one atomic word whose try_lock answers false, instead of
// being undefined, when the calling thread holds it).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace movable::detail {

// A std::mutex that knows whether someone is waiting for it, so a long holder (compaction)
// can step aside (the kernel's spin_is_contended). zspage_pool's class locks.
class contended_mutex {
public:
    void lock() {
        if (mutex_.try_lock()) {
            return;
        }
        waiting_.fetch_add(1, std::memory_order_relaxed);
        mutex_.lock();
        waiting_.fetch_sub(1, std::memory_order_relaxed);
    }
    [[nodiscard]] bool try_lock() { return mutex_.try_lock(); }
    void unlock() { mutex_.unlock(); }
    [[nodiscard]] bool contended() const noexcept { return waiters() != 0; }
    [[nodiscard]] std::uint32_t waiters() const noexcept {
        return waiting_.load(std::memory_order_relaxed);
    }

private:
    std::mutex mutex_;
    std::atomic<std::uint32_t> waiting_{0};
};

// A mutex whose try_lock is defined (and answers false) when the calling thread holds it:
// balloon's host lock, because migrate runs on the inflating thread when the arena or the host
// compacts. Not recursive: lock() by the holder deadlocks, as with std::mutex.
class word_mutex {
public:
    bool try_lock() noexcept {
        std::uint32_t expected = unlocked;
        return state_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                              std::memory_order_relaxed);
    }
    void lock() noexcept {
        if (try_lock()) {
            return;
        }
        while (state_.exchange(contended, std::memory_order_acquire) != unlocked) {
            state_.wait(contended, std::memory_order_relaxed);
        }
    }
    void unlock() noexcept {
        if (state_.exchange(unlocked, std::memory_order_release) == contended) {
            state_.notify_one();
        }
    }

private:
    static constexpr std::uint32_t unlocked = 0;
    static constexpr std::uint32_t locked = 1;
    static constexpr std::uint32_t contended = 2; // locked, and someone may be waiting
    std::atomic<std::uint32_t> state_{unlocked};
};

} // namespace movable::detail
