// Plain-loop implementations of every kernel: the oracle the cpu and cuda kernels are tested
// against.
#pragma once

#include <span>

#include "lorasched/kernels/types.hpp"

namespace lorasched::kernels::reference {

// y[m, n] = x[m, k] W[n, k]^T  (+ y if accumulate). Leading dimensions are row strides.
void gemm_xwt(const float* x, int m, int k, int ldx, const float* W, int n, float* y, int ldy,
              bool accumulate);

// LoRA shrink: for every segment, t_seg[len, rank] = x[start:start+len, :in] A^T.
// t is laid out as described for lora_workspace_floats.
void lora_shrink(const float* x, int in, int ldx, std::span<const LoraSegment> segments, float* t);

// LoRA expand: for every segment, y[start:start+len, :out] += scale * t_seg B^T.
void lora_expand(const float* t, std::span<const LoraSegment> segments, int out, float* y, int ldy);

// Merge W[out, in] += scale * B A (B: [out, rank], A: [rank, in]) and record what unmerge
// needs to restore W bit-exactly. D = scale * B A is evaluated per element as
// d = sum_r (scale * B[o, r]) * A[r, i], r ascending, in float, without FMA contraction
// differences between merge and unmerge (both call the same code).
void lora_merge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                MergeResidual* residual);

// Undo lora_merge exactly: afterwards W holds the bits it held before the merge.
void lora_unmerge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                  const MergeResidual& residual);

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight   (Llama RMSNorm; in place ok)
void rmsnorm(const float* x, const float* weight, int rows, int dim, float eps, float* out);

// Rotary embedding in place, HF Llama convention (rotate_half: dimension i pairs with
// i + head_dim/2), x: [tokens, heads, head_dim], positions: [tokens].
void rope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, float theta);

// SiLU-gated MLP activation: out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + exp(-z)).
void silu_mul(const float* gate, const float* up, size_t n, float* out);

// Write keys/values of `tokens` new tokens ([tokens, num_kv_heads, head_dim] each) into
// the cache at the given slots (slot = block_id * block_size + offset; kPaddingSlot: skipped).
// A slot outside the cache throws std::out_of_range before anything is written.
void paged_kv_write(const PagedKvLayer& kv, const float* k, const float* v, int tokens,
                    const int32_t* slots);

// Causal attention of the new tokens of each sequence over its paged cache.
// q, out: [total_tokens, num_heads, head_dim]; grouped-query attention with
// num_heads % kv.num_kv_heads == 0; scale usually 1/sqrt(head_dim).
void paged_attention(const float* q, int num_heads, const PagedKvLayer& kv,
                     std::span<const AttentionSeq> seqs, float scale, float* out);

}  // namespace lorasched::kernels::reference
