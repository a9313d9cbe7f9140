// Dense GEMM: OpenBLAS sgemm, except for products with few rows (decode batches), where
// OpenBLAS 0.3.21 is far from the memory bound and the hand-written loop of small_gemm.cpp
// streams W once instead; plus the OpenBLAS thread-count controls.

#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "internal.hpp"
#include "lorasched/kernels/cpu.hpp"

namespace lorasched::kernels::cpu {
namespace {

// Up to this many rows of x the hand loop is used (AVX2 only). Measured with bench_kernels_cpu
// (BM_GemmOurs vs BM_GemmBlas) and a sweep over m on a 2-core AMD EPYC (Zen 4), OpenBLAS 0.3.21
// Cooperlake kernels, 1 thread: at hidden 1024 / 4096 (square W) the hand loop takes 0.08x /
// 0.19x of sgemm's time at m = 1, 0.4x / 0.55x at m = 8, about 0.9x at m = 24 and the same at
// m = 32. The hand loop is single-threaded while sgemm can use several BLAS threads, so with
// more than one BLAS thread it is kept to m <= 8 (there, with 2 threads on the same box, it
// still took 0.26x / 0.5x of sgemm's wall time at m = 8).
constexpr int kSmallRows = 24;
constexpr int kSmallRowsThreaded = 8;

}  // namespace

void gemm_xwt(const float* x, int m, int k, int ldx, const float* W, int n, float* y, int ldy,
              bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // empty sum: y stays (accumulate) or becomes 0
    if (!accumulate) {
      for (int i = 0; i < m; ++i) std::fill_n(y + static_cast<size_t>(i) * ldy, n, 0.0f);
    }
    return;
  }
  if (detail::use_avx2() &&
      m <= (openblas_get_num_threads() > 1 ? kSmallRowsThreaded : kSmallRows)) {
    detail::xwt_small(x, m, k, ldx, W, n, k, y, ldy, accumulate);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, ldx, W, k,
              accumulate ? 1.0f : 0.0f, y, ldy);
}

void set_blas_threads(int n) { openblas_set_num_threads(std::max(1, n)); }

int blas_threads() { return openblas_get_num_threads(); }

}  // namespace lorasched::kernels::cpu
