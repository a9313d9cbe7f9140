// Punica-style segmented LoRA (SGMV): several adapters of different ranks in one call, no
// padding of small ranks. Each segment is one small product; it goes either to OpenBLAS sgemm
// or to the hand-written loops of small_gemm.cpp, whichever was measured faster for its shape.

#include <cblas.h>

#include <cstddef>
#include <cstdint>

#include "internal.hpp"
#include "lorasched/kernels/cpu.hpp"

namespace lorasched::kernels::cpu {
namespace {

// Cut-overs, measured with bench_kernels_cpu (BM_Lora{Shrink,Expand}Segment{Ours,Blas}, CPU
// time) on a 2-core AMD EPYC (Zen 4), OpenBLAS 0.3.21 (DYNAMIC_ARCH, Cooperlake kernels),
// 1 thread, hidden 4096, ranks 8 / 16 / 64:
//  - shrink (m = len, n = rank, k = in): 1 token: the hand loop takes 0.93-0.98x of sgemm's
//    time. From 2 tokens sgemm wins by ~10% while OpenBLAS takes its unpacked small-matrix
//    kernel, i.e. m * n * k <= 100^3; above that its packed path is 2-5x slower than the hand
//    loop for short segments (e.g. rank 64, 4 tokens: 0.21x) and only catches up at ~64 tokens.
//  - expand (m = len, n = out, k = rank): sgemm packs B on every call; the hand loop takes
//    0.14-0.2x of its time at 1 token, 0.64-0.78x at 8 (1.03x at rank 64) and ties at 16.
// Without AVX2 the portable loops are only used for single tokens.
bool shrink_uses_gemm(int len, int rank, int in) {
  if (len < 2) return false;
  if (!detail::use_avx2()) return true;
  const int64_t macs = static_cast<int64_t>(len) * rank * in;
  return macs <= 1'000'000 || len >= 64;
}

bool expand_uses_gemm(int len, int rank) {
  if (!detail::use_avx2()) return len >= 2;
  return len >= 12 || (len >= 8 && rank >= 48);
}

}  // namespace

void lora_shrink(const float* x, int in, int ldx, std::span<const LoraSegment> segments, float* t) {
  size_t offset = 0;
  for (const LoraSegment& s : segments) {
    if (s.len <= 0 || s.rank <= 0) continue;
    float* ts = t + offset;
    offset += static_cast<size_t>(s.len) * static_cast<size_t>(s.rank);
    const float* xs = x + static_cast<size_t>(s.start) * ldx;
    if (in <= 0) {
      for (size_t e = 0; e < static_cast<size_t>(s.len) * s.rank; ++e) ts[e] = 0.0f;
    } else if (shrink_uses_gemm(s.len, s.rank, in)) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.len, s.rank, in, 1.0f, xs, ldx, s.A,
                  in, 0.0f, ts, s.rank);
    } else {
      detail::xwt_small(xs, s.len, in, ldx, s.A, s.rank, in, ts, s.rank, false);
    }
  }
}

void lora_expand(const float* t, std::span<const LoraSegment> segments, int out, float* y,
                 int ldy) {
  size_t offset = 0;
  for (const LoraSegment& s : segments) {
    if (s.len <= 0 || s.rank <= 0) continue;
    const float* ts = t + offset;
    offset += static_cast<size_t>(s.len) * static_cast<size_t>(s.rank);
    if (out <= 0) continue;
    float* ys = y + static_cast<size_t>(s.start) * ldy;
    if (expand_uses_gemm(s.len, s.rank)) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.len, out, s.rank, s.scale, ts, s.rank,
                  s.B, s.rank, 1.0f, ys, ldy);
    } else {
      detail::xwt_short_k(ts, s.len, s.rank, s.rank, s.B, out, s.scale, ys, ldy);
    }
  }
}

}  // namespace lorasched::kernels::cpu
