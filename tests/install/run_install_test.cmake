# Installs movable from BINARY_DIR into a fresh prefix, then builds and runs two consumers:
# one that uses find_package(movable), one that uses add_subdirectory. Also checks the
# pkg-config file when pkg-config is available.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "command failed (${result}): ${ARGN}\n${out}")
    endif()
    message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix "${prefix}")
foreach(file include/movable/movable.hpp share/movable/cmake/movableConfig.cmake
             share/movable/cmake/movableConfigVersion.cmake share/pkgconfig/movable.pc)
    if(NOT EXISTS "${prefix}/${file}")
        message(FATAL_ERROR "install did not produce ${file}")
    endif()
endforeach()

foreach(kind find_package subdirectory)
    set(build "${WORK_DIR}/${kind}")
    run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/install/consumer_${kind}" -B "${build}"
        -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix}
        -DMOVABLE_SOURCE_DIR=${SOURCE_DIR})
    run(${CMAKE_COMMAND} --build "${build}")
    run("${build}/consumer")
endforeach()

find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
    set(ENV{PKG_CONFIG_PATH} "${prefix}/share/pkgconfig")
    execute_process(COMMAND ${PKG_CONFIG} --cflags movable OUTPUT_VARIABLE cflags
                    OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "pkg-config does not know movable")
    endif()
    separate_arguments(cflags UNIX_COMMAND "${cflags}")
    run(${CXX} ${cflags} "${SOURCE_DIR}/tests/install/consumer.cpp" -o "${WORK_DIR}/pc_consumer" -pthread)
    run("${WORK_DIR}/pc_consumer")
endif()
