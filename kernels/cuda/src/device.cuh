// Device-side helpers shared by the kernels (internal header, .cu files only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::kernels::cuda::dev {

// ---- storage <-> fp32 -------------------------------------------------------------------------
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ---- 16-byte vector loads ---------------------------------------------------------------------
// Elements of T in one 16-byte load.
template <typename T>
inline constexpr int kVec = 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Loads kVec<T> elements from a 16-byte aligned address (read-only path) as floats.
template <typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[kVec<T>]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) out[i] = to_float(e[i]);
}

// ---- reductions -------------------------------------------------------------------------------
// Sum over the 32 lanes with a fixed butterfly pattern (deterministic); every lane gets it.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

}  // namespace lorasched::kernels::cuda::dev

namespace lorasched::kernels::cuda::detail {

[[noreturn]] inline void bad_dtype(const char* what, DType dtype) {
  throw std::invalid_argument(std::string(what) + ": unsupported dtype " + dtype_name(dtype));
}

}  // namespace lorasched::kernels::cuda::detail

// Runtime dtype -> template type (FlashInfer-style dispatch). The trailing arguments are
// statements in which T names the storage type; other dtypes throw std::invalid_argument.
#define LORASCHED_DISPATCH_DTYPE(WHAT, DTYPE, T, ...)             \
  switch (DTYPE) {                                                \
    case ::lorasched::kernels::cuda::DType::kF32: {               \
      using T = float;                                            \
      __VA_ARGS__;                                                \
      break;                                                      \
    }                                                             \
    case ::lorasched::kernels::cuda::DType::kF16: {               \
      using T = __half;                                           \
      __VA_ARGS__;                                                \
      break;                                                      \
    }                                                             \
    case ::lorasched::kernels::cuda::DType::kBF16: {              \
      using T = __nv_bfloat16;                                    \
      __VA_ARGS__;                                                \
      break;                                                      \
    }                                                             \
    default:                                                      \
      ::lorasched::kernels::cuda::detail::bad_dtype(WHAT, DTYPE); \
  }

// Same, 16-bit dtypes only.
#define LORASCHED_DISPATCH_DTYPE16(WHAT, DTYPE, T, ...)           \
  switch (DTYPE) {                                                \
    case ::lorasched::kernels::cuda::DType::kF16: {               \
      using T = __half;                                           \
      __VA_ARGS__;                                                \
      break;                                                      \
    }                                                             \
    case ::lorasched::kernels::cuda::DType::kBF16: {              \
      using T = __nv_bfloat16;                                    \
      __VA_ARGS__;                                                \
      break;                                                      \
    }                                                             \
    default:                                                      \
      ::lorasched::kernels::cuda::detail::bad_dtype(WHAT, DTYPE); \
  }
