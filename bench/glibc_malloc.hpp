// glibc's own malloc, free and malloc_trim, for baselines in programs that link jemalloc or
// mimalloc (which replace the process-wide malloc): looked up in libc.so.6 itself, since mimalloc's
// override also exports __libc_malloc and that name cannot be trusted. library_of() says which
// shared object a function resolved to, for the benchmarks' context lines. Link ${CMAKE_DL_LIBS}.
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <string>

namespace movable::bench {

struct libc_functions {
    void* (*malloc)(std::size_t) = nullptr;
    void (*free)(void*) = nullptr;
    int (*malloc_trim)(std::size_t) = nullptr; // gives free heap memory back to the OS
};

// Both null when libc.so.6 is not loaded (the program should say so and stop).
inline const libc_functions& glibc() {
    static const libc_functions functions = [] {
        libc_functions f;
        if (void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD)) {
            f.malloc = reinterpret_cast<void* (*)(std::size_t)>(::dlsym(libc, "malloc"));
            f.free = reinterpret_cast<void (*)(void*)>(::dlsym(libc, "free"));
            f.malloc_trim = reinterpret_cast<int (*)(std::size_t)>(::dlsym(libc, "malloc_trim"));
        }
        return f;
    }();
    return functions;
}

// The path of the shared object (or program) that defines `function`, or "unknown".
inline std::string library_of(const void* function) {
    Dl_info info{};
    if (function == nullptr || ::dladdr(function, &info) == 0 || info.dli_fname == nullptr) {
        return "unknown";
    }
    return info.dli_fname;
}

} // namespace movable::bench
