// The process's resident set size, from /proc/self/statm.
#pragma once

#include <cstddef>
#include <fstream>
#include <unistd.h>

namespace movable::test {

inline std::size_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t size_pages = 0;
    std::size_t resident_pages = 0;
    statm >> size_pages >> resident_pages;
    return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

} // namespace movable::test
