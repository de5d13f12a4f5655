// The resident bytes of a range of memory, as the kernel reports them with mincore(): for
// measuring what an arena's data mapping occupies in the tests that run under the sanitizers,
// where the process's RSS is dominated by shadow memory and says nothing about the arena.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

namespace movable::test {

inline std::size_t system_page_size() {
    return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// Bytes of the system pages overlapping [begin, begin + bytes) that are resident now (whole
// pages: the range is widened to page boundaries). Throws std::system_error when mincore fails.
inline std::size_t resident_bytes(const void* begin, std::size_t bytes) {
    if (bytes == 0) {
        return 0;
    }
    const std::size_t page = system_page_size();
    const auto first = reinterpret_cast<std::uintptr_t>(begin) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(begin) + bytes + page - 1) / page * page;
    std::vector<unsigned char> residency((end - first) / page);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): mincore takes the page-aligned address
    if (::mincore(reinterpret_cast<void*>(first), end - first, residency.data()) != 0) {
        throw std::system_error(errno, std::generic_category(), "mincore");
    }
    std::size_t pages = 0;
    for (const unsigned char flags : residency) {
        pages += flags & 1u;
    }
    return pages * page;
}

// The resident bytes of an arena's frames (its data mapping; not its descriptors).
template <class Arena>
std::size_t arena_resident_bytes(const Arena& arena) {
    return resident_bytes(arena.data(), arena.size_bytes());
}

} // namespace movable::test
