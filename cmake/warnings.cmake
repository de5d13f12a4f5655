# Flags for the project's own targets (tests, benchmarks, examples); never put on `movable`.
# movable_warnings: warnings as errors only. movable_project_options: those plus the sanitizers
# chosen with MOVABLE_SANITIZE (every target but the few that must run without them).
add_library(movable_warnings INTERFACE)
target_compile_options(movable_warnings INTERFACE -Wall -Wextra -Wpedantic -Werror
    $<$<CXX_COMPILER_ID:GNU>:-Wno-interference-size>)
target_link_libraries(movable_warnings INTERFACE movable::movable)

add_library(movable_project_options INTERFACE)
set(MOVABLE_SANITIZE "" CACHE STRING "Sanitizers for the project's own targets: address,undefined | thread | empty")
if(MOVABLE_SANITIZE)
    target_compile_options(movable_project_options INTERFACE -fsanitize=${MOVABLE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(movable_project_options INTERFACE -fsanitize=${MOVABLE_SANITIZE})
endif()
target_link_libraries(movable_project_options INTERFACE movable_warnings)
