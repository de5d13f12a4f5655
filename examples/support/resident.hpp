// The process's resident set size, from /proc/self/statm: what the demo, the benchmarks and the
// tests measure memory given back to the OS with. Not part of the library; include it as
// "examples/support/resident.hpp" (the project root is on the include path of every program
// built here, through the movable_support target).
#pragma once

#include <cstddef>
#include <fstream>
#include <unistd.h>

namespace movable::support {

inline std::size_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t size_pages = 0;
    std::size_t resident_pages = 0;
    statm >> size_pages >> resident_pages;
    return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

} // namespace movable::support
