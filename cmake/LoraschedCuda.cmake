# Helpers for CUDA targets.
# CMake 3.25 does not know nvcc's C++20 flag, and a CUDA target without CUDA_STANDARD falls
# back to CXX_STANDARD (20 at the top level), so generation fails. Where that is the case,
# lorasched_cuda_cxx20_scope() (also called in bench/ before its CUDA target) drops both
# standards from the directory scope and the targets get -std=c++20 by hand.
macro(lorasched_cuda_cxx20_scope)
  if(NOT "cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
    unset(CMAKE_CUDA_STANDARD)
    unset(CMAKE_CUDA_STANDARD_REQUIRED)
    unset(CMAKE_CXX_STANDARD)
    unset(CMAKE_CXX_STANDARD_REQUIRED)
    unset(CMAKE_CXX_EXTENSIONS)  # else CMP0128 adds -std=c++17 (the default, no extensions)
    set(LORASCHED_CXX20_FLAG -std=c++20)
  else()
    set(LORASCHED_CXX20_FLAG)
  endif()
endmacro()
