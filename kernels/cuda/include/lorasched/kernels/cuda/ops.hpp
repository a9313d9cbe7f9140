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

}  // namespace lorasched::kernels::cuda
