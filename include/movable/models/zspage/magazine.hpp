// zspage_pool's per-thread cache: a magazine of reserved places per size class (the members that
// fill, use and empty it are in models/zspage/thread_cache_impl.hpp). zspage_pool's internals:
// users never name these.
//
// A reservation is a taken place of a zspage (off its free list, counted in its in-use count,
// its header naming the slot) owned by a handle slot whose word holds the place's location, not
// marked allocated. It sits in one thread's magazine, under its class. allocate turns it into an
// object by marking the word allocated; deallocate turns an object back into a reservation of
// the freeing thread. Both pin the place's zspage as a reader does (without a lock), so they
// never race with a mover. Movers see reservations through the headers: migration moves them
// with their frame (rewriting the word, still unallocated), and compaction takes them back (the
// place goes back on the free list, the word becomes `stolen`; the thread gives the slot back
// when it next pops it).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include <movable/pool/handle_table.hpp>

namespace movable::detail {

struct zspage_magazine {
    // The word of a reserved slot whose place compaction took back (a location no arena has).
    static constexpr std::uint64_t stolen =
        slot_word::make(~std::uint64_t{0} >> slot_word::location_shift, 0, false);
    // Reservations a class's cache holds at most: as many as fit `bytes_per_class`, between 2
    // and `capacity`; half of that is reserved at once when it is empty, and kept when it is
    // full. So a thread holds at most about bytes_per_class per class it uses.
    static constexpr std::uint32_t capacity = 32;
    static constexpr std::size_t bytes_per_class = 16384;
    static constexpr std::uint32_t capacity_for(std::size_t object_size) noexcept {
        const std::size_t fit = bytes_per_class / (object_size == 0 ? 1 : object_size);
        return static_cast<std::uint32_t>(fit < 2 ? 2 : fit > capacity ? capacity : fit);
    }

    struct class_cache {
        // Written by the magazine's thread alone (a load and a store, no read-modify-write);
        // stats and invariant checks read them.
        std::atomic<std::uint32_t> count{0};
        // Requested bytes of the objects this thread allocated less those it freed (negative
        // when it frees others' objects): the class's bytes in use outside its lock.
        std::atomic<std::int64_t> bytes{0};
        std::array<std::uint32_t, capacity> slots{};

        [[nodiscard]] std::uint32_t size() const noexcept {
            return count.load(std::memory_order_relaxed);
        }
        void set_size(std::uint32_t n) noexcept { count.store(n, std::memory_order_relaxed); }
        void add_bytes(std::int64_t change) noexcept {
            bytes.store(bytes.load(std::memory_order_relaxed) + change, std::memory_order_relaxed);
        }
    };

    // One per size class of the pool, made on the thread's first call (null until then) and
    // published with release: stats and invariant checks read the caches of other threads.
    [[nodiscard]] class_cache* classes() const noexcept {
        return published_.load(std::memory_order_acquire);
    }
    void adopt(std::unique_ptr<class_cache[]> caches) noexcept {
        owned_ = std::move(caches);
        published_.store(owned_.get(), std::memory_order_release);
    }

private:
    std::unique_ptr<class_cache[]> owned_;
    std::atomic<class_cache*> published_{nullptr};
};

} // namespace movable::detail
