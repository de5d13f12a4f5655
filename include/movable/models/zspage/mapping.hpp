// zspage_mapping<Pool> (zspage_pool<Arena>::mapping): a pinned object of a zspage_pool exposed
// as one contiguous span; an object that spans two frames is served through a copy.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <utility>

#include <movable/detail/contract.hpp>
#include <movable/detail/shake_frames.hpp>
#include <movable/models/zspage/handle.hpp>
#include <movable/models/zspage/zspage.hpp>

namespace movable {

// A pinned object exposed as one contiguous span (see zspage_pool::map). Move-only; ends at
// destruction or unmap(). Holds its zspage's pin in a detail::zspage_pin guard.
template <class Pool>
class zspage_mapping {
public:
    zspage_mapping() noexcept = default;
    zspage_mapping(zspage_mapping&& other) noexcept { *this = std::move(other); }
    zspage_mapping& operator=(zspage_mapping&& other) noexcept {
        if (this != &other) {
            unmap();
            pool_ = std::exchange(other.pool_, nullptr);
            pin_ = std::move(other.pin_);
            payload_offset_ = other.payload_offset_;
            bytes_ = std::exchange(other.bytes_, {});
            copy_ = std::move(other.copy_);
            access_ = other.access_;
        }
        return *this;
    }
    zspage_mapping(const zspage_mapping&) = delete;
    zspage_mapping& operator=(const zspage_mapping&) = delete;
    ~zspage_mapping() { unmap(); }

    [[nodiscard]] explicit operator bool() const noexcept { return pool_ != nullptr; }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
    // The object for writing; the mapping must have been made with zspage_access::write.
    [[nodiscard]] std::span<std::byte> writable_bytes() noexcept {
        MOVABLE_CONTRACT(access_ == zspage_access::write,
                         "zspage_pool::mapping::writable_bytes: mapped for reading only");
        return bytes_;
    }
    [[nodiscard]] zspage_access access() const noexcept { return access_; }
    // True when the object spans two frames and is served through a copy.
    [[nodiscard]] bool copied() const noexcept { return copy_ != nullptr; }

    // Writes a copy back (write access), unpins the zspage. Idempotent. Under the pool's shake
    // mode (shake.hpp) it then moves the frame(s) holding the object when no other pin holds them.
    void unmap() noexcept {
        if (pool_ == nullptr) {
            return;
        }
        const Pool* const pool = pool_;
        const std::byte* first_byte = nullptr; // of the object in its zspage; read while pinned
        const std::byte* last_byte = nullptr;
        if (pool->shake().enabled() && !bytes_.empty()) {
            first_byte = detail::zspage_byte_at(pool->arena(), *pin_.get(), payload_offset_);
            last_byte = detail::zspage_byte_at(pool->arena(), *pin_.get(),
                                               payload_offset_ + bytes_.size() - 1);
        }
        if (copy_ != nullptr) {
            if (access_ == zspage_access::write) {
                detail::zspage_copy_in(pool_->arena(), *pin_.get(), payload_offset_, copy_.get(),
                                       bytes_.size());
            }
            give_back_buffer(std::move(copy_));
        }
        pin_.release();
        pool_ = nullptr;
        bytes_ = {};
        if (first_byte != nullptr) {
            detail::shake_unpinned<Pool>(pool, first_byte, last_byte);
        }
    }

private:
    friend Pool;

    // A mapping of the pinned object at `payload_offset` of `pin`'s zspage, `size` bytes: the
    // bytes in place when they lie in one frame, else a copy. Throws std::bad_alloc if a copy
    // buffer cannot be had (the pin is released).
    zspage_mapping(const Pool& pool, detail::zspage_pin pin, std::size_t payload_offset,
                   std::size_t size, zspage_access access)
        : pool_(&pool), pin_(std::move(pin)), payload_offset_(payload_offset), access_(access) {
        detail::zspage& zs = *pin_.get();
        if (payload_offset % Pool::frame_size + size <= Pool::frame_size) {
            bytes_ = {detail::zspage_byte_at(pool.arena(), zs, payload_offset), size};
            return;
        }
        copy_ = take_buffer(); // on throw, pin_'s guard unpins
        detail::zspage_copy_out(pool.arena(), zs, payload_offset, copy_.get(), size);
        bytes_ = {copy_.get(), size};
    }

    // One spare copy buffer per thread, so mapping a spanning object rarely allocates.
    static std::unique_ptr<std::byte[]>& spare_buffer() noexcept {
        thread_local std::unique_ptr<std::byte[]> spare;
        return spare;
    }
    static std::unique_ptr<std::byte[]> take_buffer() {
        if (std::unique_ptr<std::byte[]> buffer = std::move(spare_buffer())) {
            return buffer;
        }
        return std::make_unique_for_overwrite<std::byte[]>(Pool::frame_size);
    }
    static void give_back_buffer(std::unique_ptr<std::byte[]> buffer) noexcept {
        if (spare_buffer() == nullptr) {
            spare_buffer() = std::move(buffer);
        }
    }

    const Pool* pool_ = nullptr;
    detail::zspage_pin pin_;
    std::size_t payload_offset_ = 0;
    std::span<std::byte> bytes_;
    std::unique_ptr<std::byte[]> copy_;
    zspage_access access_ = zspage_access::read;
};

} // namespace movable
