// A test owner: keeps logical pages in frames of a Pool (test_pool, or arena_frames over an
// arena), each filled with a pattern derived from its page number, and a page table saying
// where each page lives. Its answers to isolate/migrate can be scripted, and it counts every
// callback. A Pool provides allocate_frame() (null when exhausted), release(frame&),
// address_of(const frame&) and frame_size.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

#include <movable/migrate.hpp>
#include <movable/operations.hpp>

#include "test_pool.hpp"

namespace movable::test {

template <class Pool>
class basic_test_owner {
public:
    static constexpr std::size_t frame_size = Pool::frame_size;

    explicit basic_test_owner(Pool& pool, std::size_t pages = 0) : pool_(pool), table_(pages) {}
    basic_test_owner(const basic_test_owner&) = delete;
    basic_test_owner& operator=(const basic_test_owner&) = delete;
    ~basic_test_owner() { release_all(); }

    // Callbacks (the owner protocol) ----------------------------------------------------------
    // The policies run before the owner lock is taken, so a policy may call release_page on
    // another page (never on the frame being isolated or migrated: it is locked by the core).
    bool isolate(frame& f, migrate_mode) noexcept {
        ++isolate_calls;
        if (isolate_policy && !isolate_policy(f)) {
            return false;
        }
        std::lock_guard guard(mutex_);
        resident_.remove(f);
        return true;
    }
    migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
        ++migrate_calls;
        last_mode = mode;
        const migrate_status status =
            migrate_policy ? migrate_policy(src) : migrate_status::success;
        if (status != migrate_status::success) {
            return status;
        }
        std::lock_guard guard(mutex_);
        std::memcpy(pool_.address_of(dst), pool_.address_of(src), frame_size);
        const std::uintptr_t page = src.private_word();
        dst.set_private_word(page);
        table_[page] = &dst;
        set_movable(dst, *this);
        resident_.push_back(dst);
        return migrate_status::success;
    }
    void putback(frame& f) noexcept {
        std::lock_guard guard(mutex_);
        ++putback_calls;
        resident_.push_back(f);
    }

    // Owner's own API ----------------------------------------------------------------------------
    // Puts logical page `page` in a new frame filled with its pattern; null when the pool is
    // exhausted.
    frame* add_page(std::size_t page) {
        frame* f = pool_.allocate_frame();
        if (f == nullptr) {
            return nullptr;
        }
        fill(pool_.address_of(*f), page);
        f->set_private_word(page);
        f->lock();
        set_movable(*f, *this);
        {
            std::lock_guard guard(mutex_);
            if (table_.size() <= page) {
                table_.resize(page + 1);
            }
            table_[page] = f;
            resident_.push_back(*f);
        }
        f->unlock();
        return f;
    }

    // Releases logical page `page`. Lock order frame -> owner: find the frame, lock it, then
    // re-check under the owner lock that the page still lives there (it may have migrated).
    // Returns true when the core had it isolated (and will free it). When `intact` is given, it
    // receives whether the page held its pattern at the moment it was released.
    bool release_page(std::size_t page, bool* intact = nullptr) {
        for (;;) {
            frame* f = frame_of(page);
            if (f == nullptr) {
                return false;
            }
            f->lock();
            std::unique_lock guard(mutex_);
            if (table_[page] != f) {
                guard.unlock();
                f->unlock();
                continue;
            }
            if (intact != nullptr) {
                *intact = holds_pattern(pool_.address_of(*f), page);
            }
            table_[page] = nullptr;
            const bool core_owns_it = clear_movable(*f);
            if (!core_owns_it) {
                resident_.remove(*f);
            }
            guard.unlock();
            f->unlock();
            if (!core_owns_it) {
                pool_.free(*f);
            }
            ++pages_released;
            return core_owns_it;
        }
    }

    frame* frame_of(std::size_t page) {
        std::lock_guard guard(mutex_);
        return page < table_.size() ? table_[page] : nullptr;
    }
    // True when page `page` is resident and holds its pattern.
    bool page_intact(std::size_t page) {
        frame* f = frame_of(page);
        return f != nullptr && holds_pattern(pool_.address_of(*f), page);
    }
    std::size_t resident_count() {
        std::lock_guard guard(mutex_);
        return resident_.size();
    }
    // Releases every page still present (so pools can be destroyed clean).
    void release_all() {
        for (std::size_t page = 0; page < table_.size(); ++page) {
            release_page(page);
        }
    }

    // Byte i of page p is (p * 131 + i * 7) & 0xff: it repeats every 256 bytes, so one period
    // is computed and copied or compared (the fuzzer adds and checks pages by the million).
    static constexpr std::size_t pattern_period = 256;
    static_assert(frame_size % pattern_period == 0);
    static void fill_period(std::byte* memory, std::size_t page) {
        for (std::size_t i = 0; i < pattern_period; ++i) {
            memory[i] = static_cast<std::byte>((page * 131 + i * 7) & 0xff);
        }
    }
    static void fill(std::byte* memory, std::size_t page) {
        fill_period(memory, page);
        for (std::size_t i = pattern_period; i < frame_size; i += pattern_period) {
            std::memcpy(memory + i, memory, pattern_period);
        }
    }
    static bool holds_pattern(const std::byte* memory, std::size_t page) {
        std::byte period[pattern_period];
        fill_period(period, page);
        for (std::size_t i = 0; i < frame_size; i += pattern_period) {
            if (std::memcmp(memory + i, period, pattern_period) != 0) {
                return false;
            }
        }
        return true;
    }

    std::function<bool(frame&)> isolate_policy;
    std::function<migrate_status(frame&)> migrate_policy;
    std::atomic<int> isolate_calls{0};
    std::atomic<int> migrate_calls{0};
    std::atomic<int> putback_calls{0};
    std::atomic<int> pages_released{0};
    std::atomic<migrate_mode> last_mode{migrate_mode::sync};

private:
    Pool& pool_;
    std::mutex mutex_;
    std::vector<frame*> table_;
    frame_list resident_;
};

using test_owner = basic_test_owner<test_pool>;
static_assert(movable_owner<test_owner>);

} // namespace movable::test
