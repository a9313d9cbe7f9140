# lorasched_add_plugin(NAME <name> KIND <scheduler|threshold|migration|dispatcher>
#                      SOURCES <files...> [LIBS <libs...>])
# Builds one policy as its own shared library (liblorasched-<kind>-<name>.so) with hidden
# visibility, against the plugin API headers only, into the plugin directory of the build.
function(lorasched_add_plugin)
  cmake_parse_arguments(P "" "NAME;KIND" "SOURCES;LIBS" ${ARGN})
  if(NOT P_NAME OR NOT P_KIND OR NOT P_SOURCES)
    message(FATAL_ERROR "lorasched_add_plugin needs NAME, KIND and SOURCES")
  endif()
  set(target lorasched-${P_KIND}-${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${LORASCHED_PLUGIN_BUILD_DIR})
  target_link_libraries(${target} PRIVATE lorasched_plugin_api lorasched_options ${P_LIBS})
  install(TARGETS ${target} LIBRARY DESTINATION ${LORASCHED_PLUGIN_INSTALL_SUBDIR})
endfunction()
