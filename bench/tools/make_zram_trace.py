#!/usr/bin/env python3
"""Writes bench/zram_trace_sizes.hpp: a histogram of the sizes that the 4 KiB pages of files on
this machine compress to, the way zram stores them (deflate at zlib level 1, raw stream as the
kernel's crypto deflate; a page whose bytes are all equal is not stored, zram keeps such pages as
a value; a page that does not shrink is stored whole, 4096 bytes).

Usage: python3 bench/tools/make_zram_trace.py [DIR...] > bench/zram_trace_sizes.hpp
       (default DIRs: /usr/bin /usr/lib /usr/share)

Which pages: every regular file under the directories (symbolic links not followed, each inode
once), in sorted path order; of each file every 8th page (page index % 8 == 0, the last partial
page zero-padded as in memory), at most 256 pages a file, so that no large file outweighs the
rest. Deterministic for a given set of files. Needs only Python's zlib module.
"""
import datetime
import os
import platform
import sys
import textwrap
import zlib

DEFAULT_DIRECTORIES = ["/usr/bin", "/usr/lib", "/usr/share"]
PAGE = 4096
STRIDE = 8
PAGES_PER_FILE = 256
BUCKET = 16  # zsmalloc's size-class spacing on 4 KiB pages
BUCKETS = PAGE // BUCKET


def compressed_size(page):
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)  # level 1, raw deflate
    size = len(compressor.compress(page)) + len(compressor.flush())
    return min(size, PAGE)  # zram stores a page that does not shrink as it is


def files_under(directories):
    seen = set()
    for top in directories:
        for root, dirs, names in os.walk(top):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(root, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                yield path, info.st_size


def main():
    directories = sys.argv[1:] or DEFAULT_DIRECTORIES
    counts = [0] * BUCKETS
    files = pages = same_filled = whole = 0
    for path, size in files_under(directories):
        try:
            with open(path, "rb") as f:
                taken = 0
                for index in range(0, (size + PAGE - 1) // PAGE, STRIDE):
                    if taken == PAGES_PER_FILE:
                        break
                    f.seek(index * PAGE)
                    page = f.read(PAGE).ljust(PAGE, b"\0")
                    taken += 1
                    if page.count(page[:1]) == PAGE:
                        same_filled += 1
                        continue
                    bytes_ = compressed_size(page)
                    whole += bytes_ == PAGE
                    counts[(bytes_ - 1) // BUCKET] += 1
                    pages += 1
                files += taken != 0
        except OSError:
            continue
    total = sum(counts)
    mean = sum((i * BUCKET + BUCKET / 2 + 0.5) * c for i, c in enumerate(counts)) / total
    today = datetime.date.today().isoformat()
    out = sys.stdout
    command = "python3 bench/tools/make_zram_trace.py"
    if directories != DEFAULT_DIRECTORIES:
        command += " " + " ".join(directories)
    prose = (
        f"Generated {today} on {platform.system()} {platform.release()} ({platform.machine()}), "
        f"zlib {zlib.ZLIB_RUNTIME_VERSION}, from every regular file under "
        f"{', '.join(directories)} ({files} files with pages): of each file every {STRIDE}th "
        f"page, at most {PAGES_PER_FILE} a file. Compression: deflate level 1, raw stream (as the "
        f"kernel's crypto deflate that zram uses). {same_filled} same-filled pages left out "
        f"(zram keeps them as a value, not in its pool); {whole} pages that did not shrink "
        f"counted as {PAGE} bytes (zram stores them whole). {pages} pages in the histogram, mean "
        f"about {mean:.0f} bytes. bench/zram_trace.hpp turns it into a deterministic stream of "
        f"sizes."
    )
    out.write(
        "// zram_trace_sizes: how the 4 KiB pages of real files compress, as zram would store them:\n"
        f"// a histogram of compressed sizes in {BUCKET}-byte buckets. Generated, do not edit;\n"
        "// regenerate from the project root with\n"
        f"//   {command} > bench/zram_trace_sizes.hpp\n"
    )
    for line in textwrap.wrap(prose, 97):
        out.write(f"// {line}\n")
    out.write(f"""#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace movable::bench::zram_trace {{

inline constexpr std::size_t page_bytes = {PAGE};
inline constexpr std::size_t bucket_bytes = {BUCKET};
// pages_per_bucket[i]: pages that compressed to {BUCKET} * i + 1 .. {BUCKET} * (i + 1) bytes
// clang-format off
inline constexpr std::array<std::uint32_t, {BUCKETS}> pages_per_bucket = {{
""")
    for start in range(0, BUCKETS, 8):
        row = ", ".join(str(c) for c in counts[start:start + 8])
        out.write(f"    {row},\n")
    out.write("""};
// clang-format on

} // namespace movable::bench::zram_trace
""")


if __name__ == "__main__":
    main()
