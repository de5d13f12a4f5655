// store_handle<Tag>, the opaque reference to an object of a byte pool (zspage_pool, zbud_pool,
// z3fold_pool), one distinct type per pool kind so that handles of two kinds never mix, and
// store_access, how a mapping of an object is used. The handle's value is packed by
// detail::handle_value (pool/handle_table.hpp).
#pragma once

#include <cstdint>

namespace movable {

// An opaque reference to an object of a pool. Stays valid while the object is allocated,
// across compaction and frame migration. The empty handle (default) is false.
template <class Tag>
class store_handle {
public:
    constexpr store_handle() noexcept = default;
    [[nodiscard]] constexpr explicit operator bool() const noexcept { return value_ != 0; }
    friend constexpr bool operator==(store_handle, store_handle) noexcept = default;

    // The handle as one integer (0 for the empty handle), e.g. to keep it in a table.
    [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }
    [[nodiscard]] static constexpr store_handle from_value(std::uint64_t value) noexcept {
        store_handle handle;
        handle.value_ = value;
        return handle;
    }

private:
    std::uint64_t value_ = 0; // detail::handle_value: (generation << 32) | (slot index + 1)
};

// How a mapping is used: `read` (the object must not be written through it) or `write` (read
// and write; an object served through a copy is written back when the mapping ends).
enum class store_access : std::uint8_t { read, write };

} // namespace movable
