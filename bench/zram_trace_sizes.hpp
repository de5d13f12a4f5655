// zram_trace_sizes: how the 4 KiB pages of real files compress, as zram would store them:
// a histogram of compressed sizes in 16-byte buckets. Generated, do not edit;
// regenerate from the project root with
//   python3 bench/tools/make_zram_trace.py > bench/zram_trace_sizes.hpp
// Generated 2026-11-26 on Linux 6.18.44-fc-v669 (x86_64), zlib 1.2.13, from every regular file
// under /usr/bin, /usr/lib, /usr/share (121781 files with pages): of each file every 8th page, at
// most 256 a file. Compression: deflate level 1, raw stream (as the kernel's crypto deflate that
// zram uses). 227 same-filled pages left out (zram keeps them as a value, not in its pool); 6687
// pages that did not shrink counted as 4096 bytes (zram stores them whole). 207688 pages in the
// histogram, mean about 1443 bytes. bench/zram_trace.hpp turns it into a deterministic stream of
// sizes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace movable::bench::zram_trace {

inline constexpr std::size_t page_bytes = 4096;
inline constexpr std::size_t bucket_bytes = 16;
// pages_per_bucket[i]: pages that compressed to 16 * i + 1 .. 16 * (i + 1) bytes
// clang-format off
inline constexpr std::array<std::uint32_t, 256> pages_per_bucket = {
    0, 0, 261, 383, 477, 1012, 655, 555,
    1021, 1029, 1257, 1067, 910, 759, 873, 825,
    880, 822, 926, 967, 937, 1418, 1107, 1138,
    1374, 1298, 1332, 1229, 1151, 1232, 1235, 1457,
    1108, 1217, 1193, 1271, 1338, 1447, 1553, 1508,
    1487, 1396, 1362, 1345, 1507, 1300, 1438, 1581,
    1709, 1621, 1551, 1510, 1525, 1509, 1478, 1429,
    1493, 1524, 1522, 1523, 1464, 1565, 1486, 1440,
    1551, 1397, 1471, 1403, 1532, 1474, 1602, 1603,
    1544, 1555, 1547, 1485, 1469, 1486, 1467, 1533,
    1542, 1561, 1602, 1568, 1502, 1558, 1696, 1644,
    1617, 1528, 1614, 1485, 1581, 1601, 1502, 1627,
    1458, 1598, 1601, 1586, 1571, 1531, 1650, 1515,
    1583, 1548, 1541, 1551, 1530, 1444, 1348, 1302,
    1477, 1369, 1280, 1296, 1230, 1209, 1184, 1152,
    1202, 1090, 1074, 1096, 1020, 974, 907, 875,
    854, 795, 721, 802, 715, 736, 701, 722,
    684, 631, 637, 591, 593, 566, 609, 543,
    533, 525, 539, 536, 518, 477, 509, 492,
    459, 455, 514, 466, 452, 505, 452, 455,
    417, 416, 445, 401, 403, 417, 339, 388,
    359, 311, 300, 278, 242, 268, 216, 204,
    174, 151, 147, 130, 105, 85, 90, 86,
    66, 91, 89, 74, 64, 69, 56, 58,
    55, 55, 93, 72, 46, 63, 49, 47,
    72, 52, 61, 68, 76, 70, 70, 77,
    66, 76, 67, 84, 89, 107, 110, 101,
    96, 94, 100, 66, 82, 68, 89, 84,
    271, 83, 60, 44, 66, 75, 50, 47,
    58, 60, 73, 64, 79, 77, 94, 107,
    113, 143, 120, 151, 168, 207, 210, 232,
    180, 213, 237, 248, 328, 341, 315, 6917,
};
// clang-format on

} // namespace movable::bench::zram_trace
