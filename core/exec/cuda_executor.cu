// The cuda executor's own kernels (declared in cuda_executor.hpp, namespace cuda_exec): row
// gathers (embedding lookup, each entry's last row) and the greedy argmax. The header is not
// included here so nvcc compiles CUDA code and kernel headers only; a signature that differed
// from the declaration would fail to link.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::cuda_exec {

namespace {

using kernels::cuda::DType;

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// A row copy moves elements of `Bits` (the storage size), whatever the dtype.
template <typename Bits>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const Bits* __restrict__ src, int64_t ld_src,
                       const int32_t* __restrict__ idx, int dim, Bits* __restrict__ dst,
                       int64_t ld_dst) {
  const int64_t row = blockIdx.x;
  const Bits* s = src + static_cast<int64_t>(idx[row]) * ld_src;
  Bits* d = dst + row * ld_dst;
  for (int i = static_cast<int>(threadIdx.x); i < dim; i += kThreads) d[i] = s[i];
}

// One block per row: each thread keeps the first largest of its strided elements, then a tree
// reduction that prefers the larger value and, on equal values, the smaller index.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    argmax_rows_kernel(const T* __restrict__ x, int n, int32_t* __restrict__ out) {
  const T* row = x + static_cast<int64_t>(blockIdx.x) * n;
  float best = -INFINITY;
  int bi = INT_MAX;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kThreads) {
    const float v = to_float(row[i]);
    if (v != v) continue;  // NaN never wins
    if (bi == INT_MAX || v > best) {
      best = v;
      bi = i;
    }
  }
  __shared__ float sv[kThreads];
  __shared__ int si[kThreads];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) {
      const float ov = sv[threadIdx.x + half];
      const int oi = si[threadIdx.x + half];
      const int mi = si[threadIdx.x];
      const bool take = oi != INT_MAX && (mi == INT_MAX || ov > sv[threadIdx.x] ||
                                          (ov == sv[threadIdx.x] && oi < mi));
      if (take) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = si[0] == INT_MAX ? 0 : si[0];
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": launch failed: " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
}

}  // namespace

void gather_rows(DType dtype, const void* src, int64_t ld_src, const int32_t* idx, int n, int dim,
                 void* dst, int64_t ld_dst, cudaStream_t stream) {
  if (n < 0 || dim < 0 || ld_src < dim || ld_dst < dim)
    throw std::invalid_argument("gather_rows: bad sizes");
  if (n == 0 || dim == 0) return;
  if (src == nullptr || idx == nullptr || dst == nullptr)
    throw std::invalid_argument("gather_rows: null pointer");
  switch (kernels::cuda::dtype_size(dtype)) {
    case 2:
      gather_rows_kernel<uint16_t><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
          static_cast<const uint16_t*>(src), ld_src, idx, dim, static_cast<uint16_t*>(dst), ld_dst);
      break;
    case 4:
      gather_rows_kernel<uint32_t><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
          static_cast<const uint32_t*>(src), ld_src, idx, dim, static_cast<uint32_t*>(dst), ld_dst);
      break;
    default:
      throw std::invalid_argument("gather_rows: unsupported dtype");
  }
  check_launch("gather_rows");
}

void argmax_rows(DType dtype, const void* x, int rows, int n, int32_t* out, cudaStream_t stream) {
  if (rows < 0 || n <= 0) throw std::invalid_argument("argmax_rows: bad sizes");
  if (rows == 0) return;
  if (x == nullptr || out == nullptr) throw std::invalid_argument("argmax_rows: null pointer");
  const auto grid = static_cast<unsigned>(rows);
  switch (dtype) {
    case DType::kF32:
      argmax_rows_kernel<float>
          <<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x), n, out);
      break;
    case DType::kF16:
      argmax_rows_kernel<__half>
          <<<grid, kThreads, 0, stream>>>(static_cast<const __half*>(x), n, out);
      break;
    case DType::kBF16:
      argmax_rows_kernel<__nv_bfloat16>
          <<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), n, out);
      break;
    default:
      throw std::invalid_argument("argmax_rows: unsupported dtype");
  }
  check_launch("argmax_rows");
}

}  // namespace lorasched::cuda_exec
