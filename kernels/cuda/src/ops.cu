// RMSNorm, RoPE, the SiLU-gated MLP activation, row gathers and the greedy argmax.

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "device.cuh"
#include "lorasched/kernels/cuda/ops.hpp"

namespace lorasched::kernels::cuda {

namespace {

constexpr int kNormThreads = 256;

// One block per row: fp32 sum of squares reduced in a fixed order, then the scaling pass.
// Each element is read and written by the same thread, so in-place use is safe.
template <typename T>
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_kernel(const T* x, const T* __restrict__ weight, int dim, float eps, T* out) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += kNormThreads) {
    const float v = dev::to_float(x[base + i]);
    ss = fmaf(v, v, ss);
  }
  __shared__ float partial[kNormThreads / 32];
  ss = dev::warp_sum(ss);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kNormThreads / 32; ++w) total += partial[w];
  const float inv = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += kNormThreads) {
    const float v = dev::to_float(x[base + i]);
    out[base + i] = dev::from_float<T>(v * inv * dev::to_float(weight[i]));
  }
}

// One block per token; thread i < head_dim / 2 computes its angle once (double precision)
// and rotates the pair (i, i + head_dim / 2) of every head.
template <typename T>
__global__ void rope_kernel(T* x, int heads, int head_dim, const int32_t* __restrict__ positions,
                            double theta) {
  const int token = static_cast<int>(blockIdx.x);
  const int half = head_dim / 2;
  const double pos = static_cast<double>(positions[token]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(i) / head_dim);
    double sd = 0.0;
    double cd = 0.0;
    sincos(pos * inv_freq, &sd, &cd);
    const float s = static_cast<float>(sd);
    const float c = static_cast<float>(cd);
    for (int h = 0; h < heads; ++h) {
      T* row = x + (static_cast<int64_t>(token) * heads + h) * head_dim;
      const float a = dev::to_float(row[i]);
      const float b = dev::to_float(row[i + half]);
      row[i] = dev::from_float<T>(a * c - b * s);
      row[i + half] = dev::from_float<T>(b * c + a * s);
    }
  }
}

template <typename T>
__global__ void silu_mul_kernel(const T* gate, const T* up, size_t n, T* out) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = dev::to_float(gate[i]);
    const float u = dev::to_float(up[i]);
    out[i] = dev::from_float<T>(g / (1.0f + expf(-g)) * u);
  }
}

constexpr int kRowThreads = 256;

// A row copy moves elements of `Bits` (the storage size), whatever the dtype.
template <typename Bits>
__global__ void __launch_bounds__(kRowThreads)
    gather_rows_kernel(const Bits* __restrict__ src, int64_t ld_src,
                       const int32_t* __restrict__ idx, int dim, Bits* __restrict__ dst,
                       int64_t ld_dst) {
  const int64_t row = blockIdx.x;
  const Bits* s = src + static_cast<int64_t>(idx[row]) * ld_src;
  Bits* d = dst + row * ld_dst;
  for (int i = static_cast<int>(threadIdx.x); i < dim; i += kRowThreads) d[i] = s[i];
}

// One block per row: each thread keeps the first largest of its strided elements, then a tree
// reduction that prefers the larger value and, on equal values, the smaller index.
template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    argmax_rows_kernel(const T* __restrict__ x, int n, int32_t* __restrict__ out) {
  const T* row = x + static_cast<int64_t>(blockIdx.x) * n;
  float best = -INFINITY;
  int bi = INT_MAX;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kRowThreads) {
    const float v = dev::to_float(row[i]);
    if (v != v) continue;  // NaN never wins
    if (bi == INT_MAX || v > best) {
      best = v;
      bi = i;
    }
  }
  __shared__ float sv[kRowThreads];
  __shared__ int si[kRowThreads];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int half = kRowThreads / 2; half > 0; half /= 2) {
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

}  // namespace

void rmsnorm(DType dtype, const void* x, const void* weight, int rows, int dim, float eps,
             void* out, cudaStream_t stream) {
  if (rows < 0 || dim <= 0) throw std::invalid_argument("rmsnorm: bad shape");
  if (rows == 0) return;
  if (x == nullptr || weight == nullptr || out == nullptr) {
    throw std::invalid_argument("rmsnorm: null pointer");
  }
  LORASCHED_DISPATCH_DTYPE("rmsnorm", dtype, T, {
    rmsnorm_kernel<T><<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), dim, eps, static_cast<T*>(out));
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

void rope(DType dtype, void* x, int tokens, int heads, int head_dim, const int32_t* positions,
          float theta, cudaStream_t stream) {
  if (tokens < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0) {
    throw std::invalid_argument("rope: bad shape (head_dim must be even)");
  }
  if (!(theta > 0.0f)) throw std::invalid_argument("rope: theta must be > 0");
  if (tokens == 0) return;
  if (x == nullptr || positions == nullptr) throw std::invalid_argument("rope: null pointer");
  const int threads = std::min(128, ((head_dim / 2 + 31) / 32) * 32);
  LORASCHED_DISPATCH_DTYPE("rope", dtype, T, {
    rope_kernel<T><<<static_cast<unsigned>(tokens), threads, 0, stream>>>(
        static_cast<T*>(x), heads, head_dim, positions, static_cast<double>(theta));
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

void silu_mul(DType dtype, const void* gate, const void* up, size_t n, void* out,
              cudaStream_t stream) {
  if (n == 0) return;
  if (gate == nullptr || up == nullptr || out == nullptr) {
    throw std::invalid_argument("silu_mul: null pointer");
  }
  const size_t blocks = std::min<size_t>((n + 255) / 256, 65535);
  LORASCHED_DISPATCH_DTYPE("silu_mul", dtype, T, {
    silu_mul_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), n, static_cast<T*>(out));
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

void gather_rows(DType dtype, const void* src, int64_t ld_src, const int32_t* idx, int n, int dim,
                 void* dst, int64_t ld_dst, cudaStream_t stream) {
  if (n < 0 || dim < 0 || ld_src < dim || ld_dst < dim)
    throw std::invalid_argument("gather_rows: bad sizes");
  if (n == 0 || dim == 0) return;
  if (src == nullptr || idx == nullptr || dst == nullptr)
    throw std::invalid_argument("gather_rows: null pointer");
  switch (dtype_size(dtype)) {
    case 2:
      gather_rows_kernel<uint16_t><<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
          static_cast<const uint16_t*>(src), ld_src, idx, dim, static_cast<uint16_t*>(dst), ld_dst);
      break;
    case 4:
      gather_rows_kernel<uint32_t><<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
          static_cast<const uint32_t*>(src), ld_src, idx, dim, static_cast<uint32_t*>(dst), ld_dst);
      break;
    default:
      throw std::invalid_argument("gather_rows: unsupported dtype");
  }
  LORASCHED_CUDA_CHECK_LAUNCH();
}

void argmax_rows(DType dtype, const void* x, int rows, int n, int32_t* out, cudaStream_t stream) {
  if (rows < 0 || n <= 0) throw std::invalid_argument("argmax_rows: bad sizes");
  if (rows == 0) return;
  if (x == nullptr || out == nullptr) throw std::invalid_argument("argmax_rows: null pointer");
  const auto grid = static_cast<unsigned>(rows);
  switch (dtype) {
    case DType::kF32:
      argmax_rows_kernel<float>
          <<<grid, kRowThreads, 0, stream>>>(static_cast<const float*>(x), n, out);
      break;
    case DType::kF16:
      argmax_rows_kernel<__half>
          <<<grid, kRowThreads, 0, stream>>>(static_cast<const __half*>(x), n, out);
      break;
    case DType::kBF16:
      argmax_rows_kernel<__nv_bfloat16>
          <<<grid, kRowThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), n, out);
      break;
    default:
      throw std::invalid_argument("argmax_rows: unsupported dtype");
  }
  LORASCHED_CUDA_CHECK_LAUNCH();
}

}  // namespace lorasched::kernels::cuda
