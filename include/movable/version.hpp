// The library's version: the one place it is written. CMakeLists.txt reads these three lines for
// project(VERSION), from which the CMake package version file and movable.pc take it.
#pragma once

#define MOVABLE_VERSION_MAJOR 0
#define MOVABLE_VERSION_MINOR 1
#define MOVABLE_VERSION_PATCH 0
