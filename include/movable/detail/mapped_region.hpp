// mapped_region: an anonymous, MAP_NORESERVE reservation that is unmapped when its owner is
// destroyed, or when its owner's constructor throws after mapping it. Reads as zero until
// written; pages are committed only when touched (frame_arena's frames and descriptors, the
// handle table's directory).
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <system_error>

namespace movable::detail {

class mapped_region {
public:
    // Reserves `bytes` of read-write anonymous memory, committed only when touched. Throws
    // std::system_error when mmap fails.
    explicit mapped_region(std::size_t bytes) : bytes_(bytes) {
        void* mapped = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapped == MAP_FAILED) {
            throw std::system_error(errno, std::generic_category(),
                                    "movable: mmap of a reservation");
        }
        start_ = static_cast<std::byte*>(mapped);
    }
    ~mapped_region() { ::munmap(start_, bytes_); }
    mapped_region(const mapped_region&) = delete;
    mapped_region& operator=(const mapped_region&) = delete;

    [[nodiscard]] std::byte* start() const noexcept { return start_; }

private:
    std::byte* start_ = nullptr;
    std::size_t bytes_;
};

} // namespace movable::detail
