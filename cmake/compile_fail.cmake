# Runs as `cmake -DCXX=... -DSOURCE=... -DINCLUDE_DIR=... -P compile_fail.cmake`.
# Passes only when compiling SOURCE fails AND the compiler output matches the regular
# expression on SOURCE's first line, `// expect: REGEX`, so a typo cannot make it pass.
file(STRINGS "${SOURCE}" first_line LIMIT_COUNT 1)
if(NOT first_line MATCHES "^// expect: (.+)$")
    message(FATAL_ERROR "${SOURCE}: first line must be `// expect: REGEX`")
endif()
set(expected "${CMAKE_MATCH_1}")
execute_process(
    COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE_DIR}" "${SOURCE}"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)
if(result EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
if(NOT output MATCHES "${expected}")
    message(FATAL_ERROR "${SOURCE} failed to compile, but not with the expected diagnostic\n"
                        "expected: ${expected}\ncompiler said:\n${output}")
endif()
message(STATUS "failed to compile as expected: ${expected}")
