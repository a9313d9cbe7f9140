# What `make install PREFIX=...` (cmake --install) puts under the prefix:
#   bin/lorasched                                   (core/cli)
#   lib/lorasched/plugins/liblorasched-*.so         the built-ins (cmake/LoraschedPlugin.cmake);
#                                                   the binary finds them relative to itself
#   include/lorasched/plugin/*.hpp                  the plugin API and the test kit, nothing else
#   lib/cmake/lorasched/                            the CMake package of the plugin SDK:
#       find_package(lorasched CONFIG REQUIRED) -> lorasched::plugin_api, lorasched::testkit,
#       lorasched::lorasched (the binary), lorasched_add_plugin(), LORASCHED_EXECUTABLE,
#       LORASCHED_PLUGIN_DIR, LORASCHED_API_VERSION, LORASCHED_VERSION
#   share/doc/lorasched/                            plugin-guide.md, user-guide.md, policies.md
# docs/plugin-guide.md walks through it; scripts/sdk-check exercises it.
include(CMakePackageConfigHelpers)
include(LoraschedScaffold)  # lorasched_api_version()

set(LORASCHED_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/lorasched)
lorasched_api_version(LORASCHED_API_VERSION)

# Public headers: the plugin API (core/plugin/api) and the test kit (core/plugin/testkit).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/core/plugin/api/lorasched
                  ${PROJECT_SOURCE_DIR}/core/plugin/testkit/lorasched
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")

# The two header-only targets, as lorasched::plugin_api and lorasched::testkit.
set_target_properties(lorasched_plugin_api PROPERTIES EXPORT_NAME plugin_api)
set_target_properties(lorasched_plugin_testkit PROPERTIES EXPORT_NAME testkit)
install(TARGETS lorasched_plugin_api lorasched_plugin_testkit EXPORT loraschedTargets)
install(EXPORT loraschedTargets NAMESPACE lorasched:: DESTINATION ${LORASCHED_INSTALL_CMAKEDIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/loraschedConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/loraschedConfig.cmake
  INSTALL_DESTINATION ${LORASCHED_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_BINDIR LORASCHED_PLUGIN_INSTALL_SUBDIR CMAKE_INSTALL_DOCDIR)
# The package version is the project's; whether a plugin loads is decided by the plugin API
# version (LORASCHED_API_VERSION, checked by the loader), not by this.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/loraschedConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/loraschedConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/loraschedConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/loraschedAddPlugin.cmake
        DESTINATION ${LORASCHED_INSTALL_CMAKEDIR})

install(FILES ${PROJECT_SOURCE_DIR}/docs/plugin-guide.md ${PROJECT_SOURCE_DIR}/docs/user-guide.md
              ${PROJECT_SOURCE_DIR}/docs/policies.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
