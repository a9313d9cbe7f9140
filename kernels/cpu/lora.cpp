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

// Cut-overs, measured with bench_kernels_cpu (BM_Lora{Shrink,Expand}Segment{Ours,Blas}) on a
// 2-core AMD EPYC (Zen 4), OpenBLAS 0.3.21 (DYNAMIC_ARCH, Cooperlake kernels), 1 thread:
//  - 1-2 tokens: the hand loops win or tie everywhere (sgemm packs the whole A / B panel for a
//    product with one or two rows; sgemv pays one call per token).
//  - shrink (m = len, n = rank, k = in), >= 3 tokens: sgemm wins while OpenBLAS takes its
//    unpacked small-matrix kernel, i.e. m * n * k <= 100^3; above that its packed path is 2-6x
//    slower than the hand loop for short segments, and only catches up at about 64 tokens.
//  - expand (m = len, n = out, k = rank): sgemm packs B on every call and wins from about 12
//    tokens on.
// Without AVX2 the portable hand loops are only used for 1-2 tokens.
bool shrink_uses_gemm(int len, int rank, int in) {
  if (len < 3) return false;
  if (!detail::use_avx2()) return true;
  const int64_t macs = static_cast<int64_t>(len) * rank * in;
  return macs <= 1'000'000 || len >= 64;
}

bool expand_uses_gemm(int len) { return detail::use_avx2() ? len >= 12 : len >= 3; }

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
    if (expand_uses_gemm(s.len)) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.len, out, s.rank, s.scale, ts, s.rank,
                  s.B, s.rank, 1.0f, ys, ldy);
    } else {
      detail::xwt_short_k(ts, s.len, s.rank, s.rank, s.B, out, s.scale, ys, ldy);
    }
  }
}

}  // namespace lorasched::kernels::cpu
