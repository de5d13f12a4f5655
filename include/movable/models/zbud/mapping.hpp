// zbud_mapping<Pool> (zbud_pool<Arena>::mapping): a pinned object of a zbud_pool exposed as one
// contiguous span, in place (a buddy never spans frames).
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include <movable/detail/contract.hpp>
#include <movable/models/zbud/zbud_frame.hpp>
#include <movable/pool/pins.hpp>
#include <movable/pool/store_handle.hpp>

namespace movable {

// A pinned object exposed as one contiguous span (see zbud_pool::map). Move-only; ends at
// destruction or unmap(). While it lasts, the object's frame is neither migrated, compacted nor
// evicted.
template <class Pool>
class zbud_mapping {
public:
    zbud_mapping() noexcept = default;
    zbud_mapping(zbud_mapping&& other) noexcept
        : pin_(std::move(other.pin_)), bytes_(std::exchange(other.bytes_, {})),
          access_(other.access_) {}
    zbud_mapping& operator=(zbud_mapping&& other) noexcept {
        if (this != &other) {
            unmap();
            pin_ = std::move(other.pin_);
            bytes_ = std::exchange(other.bytes_, {});
            access_ = other.access_;
        }
        return *this;
    }
    zbud_mapping(const zbud_mapping&) = delete;
    zbud_mapping& operator=(const zbud_mapping&) = delete;
    ~zbud_mapping() = default; // pin_'s guard unpins

    [[nodiscard]] explicit operator bool() const noexcept { return pin_.get() != nullptr; }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
    // The object for writing; the mapping must have been made with store_access::write.
    [[nodiscard]] std::span<std::byte> writable_bytes() noexcept {
        MOVABLE_CONTRACT(access_ == store_access::write,
                         "zbud_pool::mapping::writable_bytes: mapped for reading only");
        return bytes_;
    }
    [[nodiscard]] store_access access() const noexcept { return access_; }
    // Always false: a buddy lies in one frame and is served in place.
    [[nodiscard]] static constexpr bool copied() noexcept { return false; }

    // Unpins the frame. Idempotent.
    void unmap() noexcept {
        pin_.release();
        bytes_ = {};
    }

private:
    friend Pool;

    zbud_mapping(detail::container_pin<detail::zbud_frame> pin, std::span<std::byte> bytes,
                 store_access access) noexcept
        : pin_(std::move(pin)), bytes_(bytes), access_(access) {}

    detail::container_pin<detail::zbud_frame> pin_;
    std::span<std::byte> bytes_;
    store_access access_ = store_access::read;
};

} // namespace movable
