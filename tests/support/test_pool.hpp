// A minimal frame allocator for the core tests: N frames over one aligned buffer, a free list,
// and a switch that makes the k-th target allocation fail. Models migration_targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include <movable/frame.hpp>
#include <movable/operations.hpp>

namespace movable::test {

class test_pool {
public:
    static constexpr std::size_t frame_size = 4096;

    explicit test_pool(std::size_t frame_count)
        : frames_(frame_count), memory_(static_cast<std::byte*>(::operator new (
                                    frame_count* frame_size, std::align_val_t{frame_size}))) {
        for (auto& f : frames_) {
            free_.push_back(f);
        }
    }
    ~test_pool() {
        while (free_.pop_front() != nullptr) {
        }
        ::operator delete (memory_, std::align_val_t{frame_size});
    }
    test_pool(const test_pool&) = delete;
    test_pool& operator=(const test_pool&) = delete;

    // Targets interface ------------------------------------------------------------------------
    frame* allocate(const frame& /*source*/) {
        std::lock_guard guard(mutex_);
        ++target_requests_;
        if (fail_target_at_ != 0 && target_requests_ >= fail_target_at_) {
            return nullptr;
        }
        return take_locked();
    }
    void free(frame& f) {
        f.release_last_reference();
        std::lock_guard guard(mutex_);
        free_.push_back(f);
        ++released_;
    }

    // For owners ---------------------------------------------------------------------------------
    frame* allocate_frame() {
        std::lock_guard guard(mutex_);
        return take_locked();
    }
    std::byte* address_of(const frame& f) {
        return memory_ + static_cast<std::size_t>(&f - frames_.data()) * frame_size;
    }
    std::size_t index_of(const frame& f) const {
        return static_cast<std::size_t>(&f - frames_.data());
    }
    frame& at(std::size_t index) { return frames_[index]; }

    // Fault injection: the k-th target request from now (1-based) and all after it fail.
    void fail_target_allocation_at(std::size_t k) {
        std::lock_guard guard(mutex_);
        fail_target_at_ = k == 0 ? 0 : target_requests_ + k;
    }

    std::size_t free_count() const {
        std::lock_guard guard(mutex_);
        return free_.size();
    }
    std::size_t released_count() const {
        std::lock_guard guard(mutex_);
        return released_;
    }
    std::size_t frame_count() const { return frames_.size(); }

private:
    frame* take_locked() {
        frame* f = free_.pop_front();
        if (f != nullptr) {
            f->acquire_first_reference();
        }
        return f;
    }

    mutable std::mutex mutex_;
    std::vector<frame> frames_;
    std::byte* memory_;
    frame_list free_;
    std::size_t target_requests_ = 0;
    std::size_t fail_target_at_ = 0;
    std::size_t released_ = 0;
};

} // namespace movable::test
