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
  target_link_options(lorasched_options INTERFACE ${_san})
endif()
