// frame: the descriptor of one fixed-size block of memory (default 4 KiB), and frame_list, an
// intrusive list over the frame's hook.
//
// Reference count rules (the core, the arena and every owner follow them):
//   * A free frame has count 0. try_get() fails at zero, so nothing can pin a free frame.
//   * Allocating a frame sets its count to 1: the allocation reference, held by whoever uses
//     the frame (the owner of a movable frame). Freeing it consumes that reference
//     (release_last_reference(), which waits out transient references, then sets 0).
//   * Isolation takes one more reference and keeps it while the frame is isolated.
//   * Anyone may take a transient reference with try_get() to look at a frame safely; it must
//     be dropped without waiting on anything (isolate_movable_frame holds one only across a
//     try_lock). So a frame's count returns to its long-lived value in bounded time.
//
// The frame lock protects the mapping word, the owner pointer and the ISOLATED flag: they are
// only changed with the frame locked. The lock is a bit in the flags word; waiters sleep on
// std::atomic::wait after a short spin, so a long hold never burns a core.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>

#include <movable/detail/contract.hpp>

namespace movable {

class frame;
class frame_list;
namespace detail {
struct frame_access;
}

// The intrusive hook. Whoever owns the frame owns the hook: the arena while the frame is free,
// the owner while it is allocated, the core (migrate_frames' list) while it is isolated.
struct frame_hook {
    frame* next = nullptr;
    frame* prev = nullptr;
    frame_list* list = nullptr; // the list the frame is on, or null
};

class frame {
public:
    // Bits of the flags word. ISOLATED is set and cleared only by the core.
    enum flag : std::uint32_t {
        locked_flag = 1u << 0,
        lock_waiters_flag = 1u << 1,
        isolated_flag = 1u << 2,
        multi_frame_flag = 1u << 3, // part of an allocation of more than one frame
    };

    frame() noexcept = default;
    frame(const frame&) = delete;
    frame& operator=(const frame&) = delete;

    // ---- Lockable -------------------------------------------------------------------------
    void lock() noexcept;
    [[nodiscard]] bool try_lock() noexcept;
    void unlock() noexcept;
    [[nodiscard]] bool is_locked() const noexcept {
        return (flags_.load(std::memory_order_relaxed) & locked_flag) != 0;
    }
    // True while a thread sleeps in lock() (or is about to): it spun, found the lock still
    // held and announced itself; the holder's unlock() clears it and wakes it. A snapshot, for
    // tests and diagnostics that must know a thread is blocked on this frame.
    [[nodiscard]] bool has_lock_waiters() const noexcept {
        return (flags_.load(std::memory_order_relaxed) & lock_waiters_flag) != 0;
    }
    [[nodiscard]] bool is_isolated() const noexcept {
        return (flags_.load(std::memory_order_acquire) & isolated_flag) != 0;
    }
    // True for every frame of an allocation of more than one frame (set by the allocator that
    // hands it out). Such frames cannot be movable: migration moves one frame at a time, so
    // set_movable refuses them.
    [[nodiscard]] bool is_multi_frame() const noexcept {
        return (flags_.load(std::memory_order_relaxed) & multi_frame_flag) != 0;
    }
    // For allocators: marks or unmarks the frames of a multi-frame allocation.
    void set_multi_frame(bool multi) noexcept {
        if (multi) {
            flags_.fetch_or(multi_frame_flag, std::memory_order_relaxed);
        } else {
            flags_.fetch_and(~std::uint32_t{multi_frame_flag}, std::memory_order_relaxed);
        }
    }

    // ---- Reference count ------------------------------------------------------------------
    // Takes a reference unless the count is zero (frame free or being freed).
    [[nodiscard]] bool try_get() noexcept;
    // Drops a reference that is not the last (the last is consumed by release_last_reference).
    void put() noexcept;
    [[nodiscard]] std::uint32_t reference_count() const noexcept {
        return count_.load(std::memory_order_acquire);
    }
    // For allocators: a free frame (count 0) becomes allocated (count 1).
    void acquire_first_reference() noexcept;
    // For allocators: the caller holds the allocation reference of a frame that is not
    // isolated; waits out transient references, then the count becomes 0 (free) and the
    // mapping, owner and private words are reset, so a frame comes out of any allocator clean
    // (an owner's clear_movable leaves the MOVABLE bit behind, as the kernel's does).
    void release_last_reference() noexcept;

    // ---- Words the owner and the core share ------------------------------------------------
    // The mapping word (see operations.hpp): tagged pointer to the owner type's operations.
    [[nodiscard]] std::uintptr_t mapping_word(std::memory_order order) const noexcept {
        return mapping_.load(order);
    }
    // The owner instance; set by set_movable, read by the operations trampolines.
    [[nodiscard]] void* owner() const noexcept { return owner_.load(std::memory_order_acquire); }
    // One word for the owner's own use (an index, a handle, a back pointer). The core resets
    // it to 0 when a migrated frame is released.
    [[nodiscard]] std::uintptr_t private_word() const noexcept {
        return private_.load(std::memory_order_relaxed);
    }
    void set_private_word(std::uintptr_t value) noexcept {
        private_.store(value, std::memory_order_relaxed);
    }
    // One word for the allocator that hands out frames (buddy order, free bit, mobility kind).
    [[nodiscard]] std::uint32_t allocator_word() const noexcept {
        return allocator_.load(std::memory_order_relaxed);
    }
    void set_allocator_word(std::uint32_t value) noexcept {
        allocator_.store(value, std::memory_order_relaxed);
    }

    frame_hook hook;

private:
    friend struct detail::frame_access;

    static constexpr int spins_before_sleeping = 64;

    // A default frame is all zero bytes (hook included), so zero-filled memory holds free
    // frames: frame_arena maps its descriptors and never constructs them (frame_test checks it).
    std::atomic<std::uint32_t> flags_{0};
    std::atomic<std::uint32_t> count_{0};
    std::atomic<std::uintptr_t> mapping_{0};
    std::atomic<void*> owner_{nullptr};
    std::atomic<std::uintptr_t> private_{0};
    std::atomic<std::uint32_t> allocator_{0};
};

static_assert(sizeof(frame) <= 64, "frame must fit in one 64-byte cache line");

namespace detail {
// The core's and operations.hpp's access to the words only they may change.
struct frame_access {
    // Sets or clears ISOLATED. Frame locked.
    static void set_isolated(frame& f, bool isolated) noexcept {
        MOVABLE_CONTRACT(f.is_locked(), "set_isolated: frame is not locked");
        if (isolated) {
            f.flags_.fetch_or(frame::isolated_flag, std::memory_order_release);
        } else {
            f.flags_.fetch_and(~std::uint32_t{frame::isolated_flag}, std::memory_order_release);
        }
    }
    // Unlocks the frame and sets or clears ISOLATED in one read-modify-write (the core ends
    // isolate and migrate with both). Frame locked.
    static void unlock_setting_isolated(frame& f, bool isolated) noexcept {
        std::uint32_t current = f.flags_.load(std::memory_order_relaxed);
        std::uint32_t desired = 0;
        do {
            MOVABLE_CONTRACT((current & frame::locked_flag) != 0,
                             "frame::unlock: frame is not locked");
            desired = (current & ~std::uint32_t{frame::locked_flag | frame::lock_waiters_flag |
                                                frame::isolated_flag}) |
                      (isolated ? std::uint32_t{frame::isolated_flag} : 0);
        } while (!f.flags_.compare_exchange_weak(current, desired, std::memory_order_release,
                                                 std::memory_order_relaxed));
        if ((current & frame::lock_waiters_flag) != 0) {
            f.flags_.notify_all();
        }
    }
    // Stores the mapping word and the owner. Frame locked.
    static void store_mapping(frame& f, std::uintptr_t mapping, void* owner) noexcept {
        f.owner_.store(owner, std::memory_order_relaxed);
        f.mapping_.store(mapping, std::memory_order_release);
    }
};
} // namespace detail

inline bool frame::try_lock() noexcept {
    std::uint32_t current = flags_.load(std::memory_order_relaxed);
    while ((current & locked_flag) == 0) {
        if (flags_.compare_exchange_weak(current, current | locked_flag, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

inline void frame::lock() noexcept {
    for (int attempt = 0;; ++attempt) {
        std::uint32_t current = flags_.load(std::memory_order_relaxed);
        if ((current & locked_flag) == 0) {
            if (flags_.compare_exchange_weak(current, current | locked_flag,
                                             std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
                return;
            }
            continue;
        }
        if (attempt < spins_before_sleeping) {
            continue;
        }
        // Announce a waiter so unlock() knows to wake us, then sleep until the word changes.
        if ((current & lock_waiters_flag) == 0 &&
            !flags_.compare_exchange_weak(current, current | lock_waiters_flag,
                                          std::memory_order_relaxed, std::memory_order_relaxed)) {
            continue;
        }
        flags_.wait(current | lock_waiters_flag, std::memory_order_relaxed);
    }
}

inline void frame::unlock() noexcept {
    const std::uint32_t previous = flags_.fetch_and(~std::uint32_t{locked_flag | lock_waiters_flag},
                                                    std::memory_order_release);
    MOVABLE_CONTRACT((previous & locked_flag) != 0, "frame::unlock: frame is not locked");
    if ((previous & lock_waiters_flag) != 0) {
        flags_.notify_all();
    }
}

inline bool frame::try_get() noexcept {
    std::uint32_t current = count_.load(std::memory_order_relaxed);
    while (current != 0) {
        if (count_.compare_exchange_weak(current, current + 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

inline void frame::put() noexcept {
    const std::uint32_t previous = count_.fetch_sub(1, std::memory_order_release);
    MOVABLE_CONTRACT(previous > 1,
                     "frame::put: dropped the last reference; free the frame through its "
                     "allocator instead");
}

inline void frame::acquire_first_reference() noexcept {
    std::uint32_t expected = 0;
    const bool was_free = count_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                                         std::memory_order_relaxed);
    MOVABLE_CONTRACT(was_free, "frame::acquire_first_reference: frame is already allocated");
}

inline void frame::release_last_reference() noexcept {
    MOVABLE_CONTRACT(!is_isolated(),
                     "frame::release_last_reference: frame is isolated; the core frees it");
    for (int attempt = 0;; ++attempt) {
        std::uint32_t expected = 1;
        if (count_.compare_exchange_weak(expected, 0, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
            // Nobody can take a reference now (try_get fails at zero), so nobody reads these.
            owner_.store(nullptr, std::memory_order_relaxed);
            mapping_.store(0, std::memory_order_relaxed);
            private_.store(0, std::memory_order_relaxed);
            return;
        }
        MOVABLE_CONTRACT(expected != 0,
                         "frame::release_last_reference: frame is already free (double free)");
        if (attempt > 16) {
            std::this_thread::yield(); // a transient reference is being dropped
        }
    }
}

// ---- frame_list -----------------------------------------------------------------------------

// Intrusive doubly linked list of frames, over frame::hook. O(1) push, pop and remove. A frame
// is on at most one list at a time (contract-checked).
class frame_list {
public:
    class iterator {
    public:
        using value_type = frame;
        using difference_type = std::ptrdiff_t;
        iterator() noexcept = default;
        explicit iterator(frame* f) noexcept : current_(f) {}
        frame& operator*() const noexcept { return *current_; }
        frame* operator->() const noexcept { return current_; }
        iterator& operator++() noexcept {
            current_ = current_->hook.next;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator previous = *this;
            ++*this;
            return previous;
        }
        friend bool operator==(iterator, iterator) noexcept = default;

    private:
        frame* current_ = nullptr;
    };

    frame_list() noexcept = default;
    frame_list(const frame_list&) = delete;
    frame_list& operator=(const frame_list&) = delete;
    frame_list(frame_list&& other) noexcept { splice_back(other); }
    frame_list& operator=(frame_list&& other) noexcept {
        if (this != &other) {
            MOVABLE_CONTRACT(empty(), "frame_list::operator=: target list is not empty");
            splice_back(other);
        }
        return *this;
    }
    ~frame_list() { MOVABLE_CONTRACT(empty(), "frame_list: destroyed while frames are on it"); }

    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] frame* front() const noexcept { return head_; }
    [[nodiscard]] frame* back() const noexcept { return tail_; }
    [[nodiscard]] bool contains(const frame& f) const noexcept { return f.hook.list == this; }

    iterator begin() const noexcept { return iterator(head_); }
    iterator end() const noexcept { return iterator(nullptr); }

    void push_back(frame& f) noexcept {
        link_check(f);
        f.hook = {nullptr, tail_, this};
        (tail_ ? tail_->hook.next : head_) = &f;
        tail_ = &f;
        ++size_;
    }
    void push_front(frame& f) noexcept {
        link_check(f);
        f.hook = {head_, nullptr, this};
        (head_ ? head_->hook.prev : tail_) = &f;
        head_ = &f;
        ++size_;
    }
    void remove(frame& f) noexcept {
        MOVABLE_CONTRACT(f.hook.list == this, "frame_list::remove: frame is not on this list");
        (f.hook.prev ? f.hook.prev->hook.next : head_) = f.hook.next;
        (f.hook.next ? f.hook.next->hook.prev : tail_) = f.hook.prev;
        f.hook = {};
        --size_;
    }
    frame* pop_front() noexcept {
        frame* f = head_;
        if (f != nullptr) {
            remove(*f);
        }
        return f;
    }
    // Moves every frame of `other` to the back of this list.
    void splice_back(frame_list& other) noexcept {
        while (frame* f = other.pop_front()) {
            push_back(*f);
        }
    }

private:
    static void link_check(const frame& f) noexcept {
        MOVABLE_CONTRACT(f.hook.list == nullptr, "frame_list: frame is already on a list");
    }

    frame* head_ = nullptr;
    frame* tail_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace movable
