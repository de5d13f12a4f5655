// Per-thread caches for the pools: each thread that uses a pool gets a cache of its own (for
// object_pool, a magazine of reserved places), which only that thread touches, so the common
// allocate and free take no pool lock and touch no cache line another thread writes. This file
// keeps the bookkeeping every pool with such caches needs:
//
//   * pool_caches<Cache>: a pool's member. It owns the caches of every thread that used the
//     pool, and registers the pool as alive, with a serial number no other pool ever had,
//     until retire().
//   * Each thread keeps a short list of (pool, serial, cache), looked up on every call (most
//     recently used first). When the thread exits, each of its caches whose pool is still alive
//     is flushed back to that pool, under the registry's mutex, so the pool cannot be retired
//     meanwhile. Lock order: registry mutex -> the pool's locks.
//   * A pool retires its caches first thing in its destructor: from then on no exiting thread
//     touches it, and an entry of a thread for it is never used again (a later pool at the same
//     address has another serial). The caches' contents go with the pool's memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace movable::detail {

// Gives a thread's cache back to its pool (called at thread exit, pool alive).
using flush_cache_fn = void (*)(void* pool, void* cache) noexcept;

// The pools alive now, by address, with their serials.
class live_pools {
public:
    // Never destroyed: threads may exit after static destruction began.
    static live_pools& instance() {
        static live_pools* const pools = new live_pools();
        return *pools;
    }
    // Registers `pool`; its serial. Throws std::bad_alloc.
    std::uint64_t add(const void* pool) {
        const std::lock_guard guard(mutex_);
        const std::uint64_t serial = next_serial_++;
        pools_[pool] = serial;
        return serial;
    }
    void remove(const void* pool) noexcept {
        const std::lock_guard guard(mutex_);
        pools_.erase(pool);
    }
    // Erases the entries (of a thread's list) whose pool is gone.
    template <class Entries>
    void forget_dead(Entries& entries) noexcept {
        const std::lock_guard guard(mutex_);
        std::erase_if(entries, [&](const auto& e) {
            const auto found = pools_.find(e.pool);
            return found == pools_.end() || found->second != e.serial;
        });
    }
    // flush(pool, cache) when the pool at `pool` with `serial` is still alive.
    void flush_if_alive(void* pool, std::uint64_t serial, void* cache,
                        flush_cache_fn flush) noexcept {
        const std::lock_guard guard(mutex_);
        const auto found = pools_.find(pool);
        if (found != pools_.end() && found->second == serial) {
            flush(pool, cache);
        }
    }

private:
    live_pools() = default;
    std::mutex mutex_;
    std::unordered_map<const void*, std::uint64_t> pools_;
    std::uint64_t next_serial_ = 1;
};

// The calling thread's caches, one per pool it used.
class thread_caches {
public:
    struct entry {
        void* pool = nullptr;
        std::uint64_t serial = 0;
        void* cache = nullptr;
        flush_cache_fn flush = nullptr;
    };

    thread_caches() = default;
    thread_caches(const thread_caches&) = delete;
    thread_caches& operator=(const thread_caches&) = delete;
    ~thread_caches() {
        for (const entry& e : entries_) {
            live_pools::instance().flush_if_alive(e.pool, e.serial, e.cache, e.flush);
        }
    }

    static thread_caches& here() noexcept {
        thread_local thread_caches caches;
        return caches;
    }

    // The cache this thread has for the pool at `pool` with `serial`, or null. An entry for an
    // earlier pool at the same address is dropped.
    void* find(const void* pool, std::uint64_t serial) noexcept {
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            if (entries_[i].pool != pool) {
                continue;
            }
            if (entries_[i].serial != serial) {
                entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
                return nullptr;
            }
            if (i != 0) {
                std::swap(entries_[i], entries_[0]); // most recently used first
            }
            return entries_[0].cache;
        }
        return nullptr;
    }
    // False when memory ran out. Entries of pools destroyed since go first, so a thread that
    // uses many short-lived pools keeps a short list.
    bool add(const entry& e) noexcept {
        live_pools::instance().forget_dead(entries_);
        try {
            entries_.insert(entries_.begin(), e);
            return true;
        } catch (const std::bad_alloc&) {
            return false;
        }
    }
    // Entries in this thread's list.
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    // Forgets this thread's entry for a pool (its cache was given back by the thread itself).
    void remove(const void* pool) noexcept {
        std::erase_if(entries_, [&](const entry& e) { return e.pool == pool; });
    }

private:
    std::vector<entry> entries_;
};

template <class Cache>
class pool_caches {
public:
    // Registers `pool` as alive. Throws std::bad_alloc.
    explicit pool_caches(void* pool) : pool_(pool), serial_(live_pools::instance().add(pool)) {}
    ~pool_caches() { retire(); }
    pool_caches(const pool_caches&) = delete;
    pool_caches& operator=(const pool_caches&) = delete;

    // The calling thread's cache, made on first use; null when memory ran out (the caller then
    // goes the uncached way) or after retire().
    Cache* local(flush_cache_fn flush) noexcept {
        thread_caches& mine = thread_caches::here();
        if (void* cache = mine.find(pool_, serial_)) {
            return static_cast<Cache*>(cache);
        }
        return make(mine, flush);
    }
    // From now on no thread flushes into the pool at exit, and local() answers null. Idempotent.
    void retire() noexcept {
        if (!retired_) {
            retired_ = true;
            live_pools::instance().remove(pool_);
        }
    }
    // The cache of a thread that exited, flushed: the next thread new to the pool takes it.
    void orphan(Cache& cache) noexcept {
        const std::lock_guard guard(mutex_);
        for (owned& o : caches_) {
            o.in_use = o.in_use && o.cache.get() != &cache;
        }
    }
    // fn(cache) for every cache, in use or not. The pool must be quiescent (its destructor,
    // invariant checks): the caches' threads are not running calls on it.
    template <class Fn>
    void for_each(Fn&& fn) const {
        const std::lock_guard guard(mutex_);
        for (const owned& o : caches_) {
            fn(*o.cache);
        }
    }
    // Caches made so far (threads that used the pool, less those whose cache was reused).
    [[nodiscard]] std::size_t size() const {
        const std::lock_guard guard(mutex_);
        return caches_.size();
    }

private:
    struct owned {
        std::unique_ptr<Cache> cache;
        bool in_use = true;
    };

    Cache* make(thread_caches& mine, flush_cache_fn flush) noexcept {
        if (retired_) {
            return nullptr;
        }
        try {
            Cache* raw = nullptr;
            {
                const std::lock_guard guard(mutex_);
                for (owned& o : caches_) {
                    if (!o.in_use) {
                        o.in_use = true;
                        raw = o.cache.get();
                        break;
                    }
                }
                if (raw == nullptr) {
                    caches_.push_back({std::make_unique<Cache>(), true});
                    raw = caches_.back().cache.get();
                }
            }
            if (!mine.add({pool_, serial_, raw, flush})) {
                orphan(*raw);
                return nullptr;
            }
            return raw;
        } catch (const std::bad_alloc&) {
            return nullptr;
        }
    }

    void* pool_;
    std::uint64_t serial_;
    bool retired_ = false;
    mutable std::mutex mutex_;
    std::vector<owned> caches_;
};

} // namespace movable::detail
