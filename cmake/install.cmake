include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS movable EXPORT movableTargets)
install(DIRECTORY include/movable DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT movableTargets NAMESPACE movable:: DESTINATION ${CMAKE_INSTALL_DATADIR}/movable/cmake)

configure_package_config_file(cmake/movableConfig.cmake.in
    ${PROJECT_BINARY_DIR}/movableConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/movable/cmake)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/movableConfigVersion.cmake
    COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/movableConfig.cmake ${PROJECT_BINARY_DIR}/movableConfigVersion.cmake
    DESTINATION ${CMAKE_INSTALL_DATADIR}/movable/cmake)

configure_file(cmake/movable.pc.in ${PROJECT_BINARY_DIR}/movable.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/movable.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
