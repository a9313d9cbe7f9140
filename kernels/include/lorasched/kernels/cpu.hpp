// CPU kernels (OpenBLAS for the matrix products): what the cpu executor runs.
#pragma once

#include <span>

#include "lorasched/kernels/types.hpp"

namespace lorasched::kernels::cpu {

// y[m, n] = x[m, k] W[n, k]^T  (+ y if accumulate). Leading dimensions are row strides.
void gemm_xwt(const float* x, int m, int k, int ldx, const float* W, int n, float* y, int ldy,
              bool accumulate);

// Number of threads OpenBLAS uses for gemm_xwt and the long LoRA segments (n < 1 means 1).
// Process-wide: it is OpenBLAS's own setting.
void set_blas_threads(int n);
int blas_threads();

// The hand-written loops (short LoRA segments, merge) have AVX2 versions picked at run time
// when the CPU has AVX2+FMA; set_cpu_simd(false) forces the portable loops (for tests and
// benchmarks). cpu_simd() says whether the AVX2 versions are in use. Process-wide setting.
void set_cpu_simd(bool enabled);
bool cpu_simd();

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
// Throws std::invalid_argument when the residual does not fit the weight's shape.
void lora_unmerge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                  const MergeResidual& residual);

// Switch the merged adapter from (A_from, B_from) to (A_to, B_to) in one pass over W:
// W = W_base + scale_to * B_to A_to where W_base is what lora_unmerge of the from-adapter would
// restore, and the residual becomes the to-adapter's. W and the residual come out bit-identical
// to lora_unmerge followed by lora_merge (so the base weights still restore exactly after any
// chain of switches), reading and writing W once instead of twice. Throws
// std::invalid_argument when the residual does not fit the weight's shape.
void lora_switch(float* W, int out, int in, const float* A_from, const float* B_from, int rank_from,
                 float scale_from, const float* A_to, const float* B_to, int rank_to,
                 float scale_to, MergeResidual* residual);

// Threads lora_merge / lora_unmerge / lora_switch split the rows over (default 1, n < 1 means 1).
// The results (weights and residual) do not depend on it. Process-wide setting.
void set_merge_threads(int n);
int merge_threads();

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

}  // namespace lorasched::kernels::cpu
