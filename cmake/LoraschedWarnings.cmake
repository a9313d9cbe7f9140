# Compiler options shared by every lorasched target: warnings (as errors unless
# LORASCHED_WERROR=OFF) and the sanitizer build.
add_library(lorasched_options INTERFACE)
target_compile_options(lorasched_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                            -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough>)
if(LORASCHED_WERROR)
  target_compile_options(lorasched_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>
                                                     $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
endif()
if(LORASCHED_SANITIZE)
  set(_san -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_compile_options(lorasched_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_san}>)
  # GCC 12's -Wmaybe-uninitialized reports false positives inside std::variant / <regex>
  # once the sanitizers instrument the code; keep it an error in the normal build only.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(lorasched_options INTERFACE
                           $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=maybe-uninitialized>)
  endif()
  target_link_options(lorasched_options INTERFACE ${_san})
endif()
if(LORASCHED_FUZZ)
  # libFuzzer's coverage feedback from every library the harnesses call (tests/fuzz); the
  # harness executables themselves link with -fsanitize=fuzzer.
  target_compile_options(lorasched_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()
