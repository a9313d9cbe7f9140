// Element-wise and row-wise transformer ops on the GPU, fp32 math on `dtype` storage.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::kernels::cuda {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight   (x, out [rows, dim]; in place ok)
void rmsnorm(DType dtype, const void* x, const void* weight, int rows, int dim, float eps,
             void* out, cudaStream_t stream = nullptr);

// Rotary embedding in place, HF rotate_half convention: x [tokens, heads, head_dim], element i
// pairs with i + head_dim / 2, angle = positions[t] * theta^(-2i / head_dim) (computed in
// double, applied in fp32). positions: device int32 [tokens]. head_dim must be even.
void rope(DType dtype, void* x, int tokens, int heads, int head_dim, const int32_t* positions,
          float theta, cudaStream_t stream = nullptr);

// out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + exp(-z)); out may alias gate or up.
void silu_mul(DType dtype, const void* gate, const void* up, size_t n, void* out,
              cudaStream_t stream = nullptr);

// dst[i, :] = src[idx[i], :] for i < n: rows of `dim` elements of `dtype` (embedding lookup,
// each sequence's last row), row strides in elements. idx: device int32 [n], values checked by
// the caller.
void gather_rows(DType dtype, const void* src, int64_t ld_src, const int32_t* idx, int n, int dim,
                 void* dst, int64_t ld_dst, cudaStream_t stream = nullptr);

// out[i] = the first index of the largest value of row i of x [rows, n] (NaN never wins; a row
// of NaN gives 0), as std::max_element picks it. out: device int32 [rows].
void argmax_rows(DType dtype, const void* x, int rows, int n, int32_t* out,
                 cudaStream_t stream = nullptr);

}  // namespace lorasched::kernels::cuda
