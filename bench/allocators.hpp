// The allocators the pool benchmarks compare with, in one place: jemalloc and mimalloc where
// CMake found them (MOVABLE_BENCH_HAVE_JEMALLOC / _MIMALLOC, see bench/CMakeLists.txt), glibc's
// own malloc (glibc_malloc.hpp), and the context lines that say which library each came from.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>

#if MOVABLE_BENCH_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
#include <mimalloc.h>
#endif

#include "glibc_malloc.hpp"

namespace movable::bench {

// Adds to the benchmark's context which library glibc's, jemalloc's and mimalloc's functions
// resolved to (or that one was not found at configure time). False, with a message naming
// `program`, when glibc's malloc cannot be found: the baselines would be meaningless.
inline bool add_allocator_context(const char* program) {
    benchmark::AddCustomContext("glibc_malloc_from",
                                library_of(reinterpret_cast<const void*>(glibc().malloc)));
#if MOVABLE_BENCH_HAVE_JEMALLOC
    benchmark::AddCustomContext("jemalloc_mallocx_from",
                                library_of(reinterpret_cast<const void*>(&mallocx)));
#else
    benchmark::AddCustomContext("jemalloc", "not found at configure time; skipped");
#endif
#if MOVABLE_BENCH_HAVE_MIMALLOC
    benchmark::AddCustomContext("mimalloc_mi_malloc_from",
                                library_of(reinterpret_cast<const void*>(&mi_malloc)));
#else
    benchmark::AddCustomContext("mimalloc", "not found at configure time; skipped");
#endif
    if (glibc().malloc == nullptr || glibc().free == nullptr) {
        std::fprintf(stderr, "%s: cannot find glibc's malloc in libc.so.6\n", program);
        return false;
    }
    return true;
}

} // namespace movable::bench
