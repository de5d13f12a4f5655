# Runs as `cmake -DCXX=... -DSOURCE=... -DINCLUDE_DIR=... -P compile_fail.cmake`.
# Passes only when compiling SOURCE fails with exactly the library diagnostics SOURCE expects:
# its first lines, `// expect: REGEX` (one or more), each must match a library diagnostic the
# compiler printed, so a typo cannot make it pass, and every library diagnostic printed must
# match one of them, so a wrong second diagnostic (a check misreading a type that an earlier
# check already rejected) fails the test too.
#
# A library diagnostic is an error line carrying one of the library's static_assert messages:
# those start with the name of the concept or class that asserts (below), or are one of the
# layout checks. Other errors (the compiler's own follow-ups) are not judged.
set(library_diagnostic
    "(movable_owner|balloon_host|balloon_arena|frame_allocating_arena|zspage_arena|zbud_arena|compressed_store|compactor|migration_targets|tagged_ptr|frame_arena|object_pool): "
    "|frame must fit in one 64-byte cache line"
    "|movable_operations must leave the low bit"
    "|zspage descriptors must leave 4 low bits")
string(JOIN "" library_diagnostic ${library_diagnostic})

file(STRINGS "${SOURCE}" leading_lines LIMIT_COUNT 16)
set(expected_list "")
foreach(line IN LISTS leading_lines)
    if(NOT line MATCHES "^// expect: (.+)$")
        break()
    endif()
    list(APPEND expected_list "${CMAKE_MATCH_1}")
endforeach()
if(NOT expected_list)
    message(FATAL_ERROR "${SOURCE}: first line must be `// expect: REGEX`")
endif()

execute_process(
    COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE_DIR}" "${SOURCE}"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)
if(result EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()

# The output as a list of lines; `;`, `[` and `]` would split or join list elements, so they
# travel as placeholders and are restored line by line.
string(REPLACE ";" "<semicolon>" lines "${output}")
string(REPLACE "[" "<open-bracket>" lines "${lines}")
string(REPLACE "]" "<close-bracket>" lines "${lines}")
string(REPLACE "\n" ";" lines "${lines}")

set(unexpected "")
set(unmatched "${expected_list}")
foreach(line IN LISTS lines)
    string(REPLACE "<semicolon>" ";" line "${line}")
    string(REPLACE "<open-bracket>" "[" line "${line}")
    string(REPLACE "<close-bracket>" "]" line "${line}")
    if(NOT line MATCHES "error:" OR NOT line MATCHES "${library_diagnostic}")
        continue()
    endif()
    set(matched FALSE)
    foreach(expected IN LISTS expected_list)
        if(line MATCHES "${expected}")
            set(matched TRUE)
            list(REMOVE_ITEM unmatched "${expected}")
        endif()
    endforeach()
    if(NOT matched)
        string(APPEND unexpected "  ${line}\n")
    endif()
endforeach()

if(unmatched OR unexpected)
    list(JOIN unmatched "\n  " unmatched_text)
    message(FATAL_ERROR "${SOURCE} failed to compile, but not with exactly the expected "
                        "library diagnostics\nexpected but not printed:\n  ${unmatched_text}\n"
                        "printed but not expected:\n${unexpected}compiler said:\n${output}")
endif()
list(JOIN expected_list " | " expected_text)
message(STATUS "failed to compile as expected: ${expected_text}")
