# Flags for the project's own targets (tests, benchmarks, examples); never put on `movable`.
add_library(movable_project_options INTERFACE)
target_compile_options(movable_project_options INTERFACE -Wall -Wextra -Wpedantic -Werror
    $<$<CXX_COMPILER_ID:GNU>:-Wno-interference-size>)
set(MOVABLE_SANITIZE "" CACHE STRING "Sanitizers for the project's own targets: address,undefined | thread | empty")
if(MOVABLE_SANITIZE)
    target_compile_options(movable_project_options INTERFACE -fsanitize=${MOVABLE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(movable_project_options INTERFACE -fsanitize=${MOVABLE_SANITIZE})
endif()
target_link_libraries(movable_project_options INTERFACE movable::movable)
