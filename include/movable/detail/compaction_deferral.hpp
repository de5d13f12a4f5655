// compaction_deferral: the back-off after failed order-targeted compactions (the kernel's
// compact_considered / compact_defer_shift / compact_order_failed). A failure for an order makes
// the next 1, 2, 4 ... 64 requests for that order or above return at once; a success resets it.
#pragma once

#include <algorithm>
#include <limits>

namespace movable::detail {

class compaction_deferral {
public:
    static constexpr unsigned max_shift = 6; // up to 64 deferred requests

    // Counts a request for `order`; true when it is to be skipped (deferred).
    bool consider(int order) noexcept {
        if (order < order_failed_) {
            return false;
        }
        const unsigned limit = 1u << shift_;
        if (++considered_ >= limit) {
            considered_ = limit;
            return false;
        }
        return true;
    }
    // The compaction for `order` failed / succeeded.
    void failed(int order) noexcept {
        considered_ = 0;
        shift_ = std::min(shift_ + 1, max_shift);
        order_failed_ = std::min(order_failed_, order);
    }
    void succeeded(int order) noexcept {
        considered_ = 0;
        shift_ = 0;
        if (order >= order_failed_) {
            order_failed_ = order + 1;
        }
    }
    // The next request for `order` would be deferred (does not count it).
    [[nodiscard]] bool is_deferred(int order) const noexcept {
        return order >= order_failed_ && considered_ + 1 < (1u << shift_);
    }
    // A request for `order` after the longest deferral: hints may be stale (the kernel's
    // compaction_restarting).
    [[nodiscard]] bool restarting(int order) const noexcept {
        return shift_ == max_shift && order >= order_failed_;
    }
    [[nodiscard]] unsigned shift() const noexcept { return shift_; }

private:
    unsigned considered_ = 0;
    unsigned shift_ = 0;
    int order_failed_ = std::numeric_limits<int>::max();
};

} // namespace movable::detail
