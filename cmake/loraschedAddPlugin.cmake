# lorasched_add_plugin(NAME <name> KIND <scheduler|threshold|migration|dispatcher>
#                      SOURCES <files...> [LIBS <libs...>] [OUTPUT_DIRECTORY <dir>] [NO_INSTALL])
#
# For out-of-tree plugins, from the installed lorasched package (find_package(lorasched)).
# Builds target lorasched-<kind>-<name>: a MODULE library liblorasched-<kind>-<name>.so (the
# file name the loader looks for, by kind and name) with hidden visibility (only the three
# symbols LORASCHED_PLUGIN exports are visible), against the installed plugin API headers,
# linked with --no-undefined so a missing definition fails the build, not the load.
# It lands in OUTPUT_DIRECTORY (default: the top of the build tree, so an experiment's
# `[plugins] paths = ["build"]` finds it), and `cmake --install` puts it in
# <prefix>/lib/lorasched/plugins unless NO_INSTALL. The source must call
# LORASCHED_PLUGIN(Class, info) and info() must name the plugin <name>.
include_guard(GLOBAL)
include(GNUInstallDirs)

function(lorasched_add_plugin)
  cmake_parse_arguments(P "NO_INSTALL" "NAME;KIND;OUTPUT_DIRECTORY" "SOURCES;LIBS" ${ARGN})
  if(P_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "lorasched_add_plugin: unexpected arguments: ${P_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT P_NAME OR NOT P_KIND OR NOT P_SOURCES)
    message(FATAL_ERROR "lorasched_add_plugin needs NAME, KIND and SOURCES")
  endif()
  if(NOT P_KIND MATCHES "^(scheduler|threshold|migration|dispatcher)$")
    message(FATAL_ERROR "lorasched_add_plugin: KIND ${P_KIND} is not one of scheduler, threshold, "
                        "migration, dispatcher")
  endif()
  if(NOT P_NAME MATCHES "^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
    message(FATAL_ERROR "lorasched_add_plugin: NAME ${P_NAME}: use lowercase letters, digits and "
                        "'-', starting with a letter (e.g. my-sched)")
  endif()
  if(NOT P_OUTPUT_DIRECTORY)
    set(P_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
  endif()
  set(target lorasched-${P_KIND}-${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    SUFFIX ".so"
    OUTPUT_NAME "lorasched-${P_KIND}-${P_NAME}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${P_OUTPUT_DIRECTORY}")
  target_link_libraries(${target} PRIVATE lorasched::plugin_api ${P_LIBS})
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    target_link_options(${target} PRIVATE "LINKER:--no-undefined")
  endif()
  if(NOT P_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/lorasched/plugins)
  endif()
endfunction()
