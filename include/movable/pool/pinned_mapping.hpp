// pinned_mapping<Pool, Container>, shared by the buddy pools (zbud_pool::mapping,
// z3fold_pool::mapping): a pinned object exposed as one contiguous span, in place (a buddy never
// spans frames). The pin is on the object's frame descriptor (container_pin).
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include <movable/detail/contract.hpp>
#include <movable/pool/pins.hpp>
#include <movable/pool/store_handle.hpp>
#include <movable/shake.hpp>

namespace movable {

// A pinned object exposed as one contiguous span (see the pool's map). Move-only; ends at
// destruction or unmap(). While it lasts, the object's frame is neither migrated, compacted nor
// evicted. Under the pool's shake mode (shake.hpp) its end moves the frame to a new place when no
// other pin holds it.
template <class Pool, class Container>
class pinned_mapping {
public:
    pinned_mapping() noexcept = default;
    pinned_mapping(pinned_mapping&& other) noexcept
        : pin_(std::move(other.pin_)), bytes_(std::exchange(other.bytes_, {})),
          access_(other.access_), read_only_message_(other.read_only_message_),
          shake_(std::exchange(other.shake_, {})) {}
    pinned_mapping& operator=(pinned_mapping&& other) noexcept {
        if (this != &other) {
            unmap();
            pin_ = std::move(other.pin_);
            bytes_ = std::exchange(other.bytes_, {});
            access_ = other.access_;
            read_only_message_ = other.read_only_message_;
            shake_ = std::exchange(other.shake_, {});
        }
        return *this;
    }
    pinned_mapping(const pinned_mapping&) = delete;
    pinned_mapping& operator=(const pinned_mapping&) = delete;
    ~pinned_mapping() { unmap(); }

    [[nodiscard]] explicit operator bool() const noexcept { return pin_.get() != nullptr; }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
    // The object for writing; the mapping must have been made with store_access::write.
    [[nodiscard]] std::span<std::byte> writable_bytes() noexcept {
        MOVABLE_CONTRACT(access_ == store_access::write, read_only_message_);
        return bytes_;
    }
    [[nodiscard]] store_access access() const noexcept { return access_; }
    // Always false: a buddy lies in one frame and is served in place.
    [[nodiscard]] static constexpr bool copied() noexcept { return false; }

    // Unpins the frame. Idempotent.
    void unmap() noexcept {
        const bool held = pin_.get() != nullptr;
        pin_.release();
        const std::span<std::byte> bytes = std::exchange(bytes_, {});
        if (held) {
            std::exchange(shake_, {}).run(bytes.data(), bytes.size());
        }
    }

private:
    friend Pool;

    // `read_only_message` (a literal) names the pool in the contract violation of
    // writable_bytes on a read mapping.
    // `shake`: the pool's unpin_shake hook (empty when its shake is off).
    pinned_mapping(detail::container_pin<Container> pin, std::span<std::byte> bytes,
                   store_access access, const char* read_only_message,
                   detail::unpin_shake shake) noexcept
        : pin_(std::move(pin)), bytes_(bytes), access_(access),
          read_only_message_(read_only_message), shake_(shake) {}

    detail::container_pin<Container> pin_;
    std::span<std::byte> bytes_;
    store_access access_ = store_access::read;
    const char* read_only_message_ = "";
    detail::unpin_shake shake_;
};

} // namespace movable
