// Hand-written small products (see internal.hpp): an AVX2+FMA version picked at run time and a
// portable version. They beat OpenBLAS 0.3.21 sgemm where it packs a whole operand for a
// product with only a few rows (decode), and sgemv where it pays a call per row.

#include <cstddef>

#include "internal.hpp"

#if LORASCHED_X86_DISPATCH
#include <immintrin.h>
#endif

namespace lorasched::kernels::cpu::detail {
namespace {

// ---- portable ----------------------------------------------------------------------------------

constexpr int kLanes = 8;  // independent partial sums per dot product (vectorisable)

float dot_portable(const float* a, const float* b, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void xwt_small_portable(const float* x, int m, int k, int ldx, const float* W, int n, int ldw,
                        float* y, int ldy, bool accumulate) {
  for (int o = 0; o < n; ++o) {
    const float* w = W + static_cast<size_t>(o) * ldw;
    for (int j = 0; j < m; ++j) {
      const float d = dot_portable(x + static_cast<size_t>(j) * ldx, w, k);
      float& out = y[static_cast<size_t>(j) * ldy + o];
      out = accumulate ? out + d : d;
    }
  }
}

void xwt_short_k_portable(const float* t, int m, int k, int ldt, const float* B, int n, float scale,
                          float* y, int ldy) {
  for (int j = 0; j < m; ++j) {
    const float* tj = t + static_cast<size_t>(j) * ldt;
    float* yj = y + static_cast<size_t>(j) * ldy;
    for (int o = 0; o < n; ++o)
      yj[o] += scale * dot_portable(tj, B + static_cast<size_t>(o) * k, k);
  }
}

// ---- AVX2 + FMA --------------------------------------------------------------------------------

#if LORASCHED_X86_DISPATCH
#define LORASCHED_AVX2 __attribute__((target("avx2,fma")))

// Lane mask selecting the first n (0..8) floats of an 8-float chunk, for maskload.
LORASCHED_AVX2 inline __m256i tail_mask(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

LORASCHED_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// [sum(a0), sum(a1), sum(a2), sum(a3)]
LORASCHED_AVX2 inline __m128 hsum4x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// NT rows of x times RB rows of W (from o0): NT * RB dot products over k sharing the loads.
template <int NT, int RB>
LORASCHED_AVX2 void xwt_block_avx2(const float* x, int ldx, const float* W, int ldw, int k, int o0,
                                   float* y, int ldy, bool accumulate) {
  __m256 acc[NT][RB];
  for (int j = 0; j < NT; ++j) {
    for (int b = 0; b < RB; ++b) acc[j][b] = _mm256_setzero_ps();
  }
  const float* xs[NT];
  for (int j = 0; j < NT; ++j) xs[j] = x + static_cast<size_t>(j) * ldx;
  const float* w[RB];
  for (int b = 0; b < RB; ++b) w[b] = W + static_cast<size_t>(o0 + b) * ldw;
  int i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 xv[NT];
    for (int j = 0; j < NT; ++j) xv[j] = _mm256_loadu_ps(xs[j] + i);
    for (int b = 0; b < RB; ++b) {
      const __m256 wv = _mm256_loadu_ps(w[b] + i);
      for (int j = 0; j < NT; ++j) acc[j][b] = _mm256_fmadd_ps(xv[j], wv, acc[j][b]);
    }
  }
  if (i < k) {
    const __m256i mask = tail_mask(k - i);
    __m256 xv[NT];
    for (int j = 0; j < NT; ++j) xv[j] = _mm256_maskload_ps(xs[j] + i, mask);
    for (int b = 0; b < RB; ++b) {
      const __m256 wv = _mm256_maskload_ps(w[b] + i, mask);
      for (int j = 0; j < NT; ++j) acc[j][b] = _mm256_fmadd_ps(xv[j], wv, acc[j][b]);
    }
  }
  for (int j = 0; j < NT; ++j) {
    float* yj = y + static_cast<size_t>(j) * ldy + o0;
    if constexpr (RB == 4) {
      __m128 s = hsum4x8(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
      if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(yj));
      _mm_storeu_ps(yj, s);
    } else {
      for (int b = 0; b < RB; ++b) {
        const float s = hsum8(acc[j][b]);
        yj[b] = accumulate ? yj[b] + s : s;
      }
    }
  }
}

// NT rows of x against all of W, 4 (NT <= 2) or 2 (NT == 4) W rows at a time.
template <int NT>
LORASCHED_AVX2 void xwt_rows_avx2(const float* x, int ldx, const float* W, int ldw, int k, int o0,
                                  int o1, float* y, int ldy, bool accumulate) {
  constexpr int RB = NT >= 4 ? 2 : 4;
  int o = o0;
  for (; o + RB <= o1; o += RB) xwt_block_avx2<NT, RB>(x, ldx, W, ldw, k, o, y, ldy, accumulate);
  for (; o < o1; ++o) xwt_block_avx2<NT, 1>(x, ldx, W, ldw, k, o, y, ldy, accumulate);
}

LORASCHED_AVX2 void xwt_small_avx2(const float* x, int m, int k, int ldx, const float* W, int n,
                                   int ldw, float* y, int ldy, bool accumulate) {
  // W in panels of 16 rows (64 KiB at k = 1024), all rows of x per panel: W comes from memory
  // once, x (few rows) stays in cache.
  constexpr int kPanel = 16;
  for (int o0 = 0; o0 < n; o0 += kPanel) {
    const int o1 = o0 + kPanel < n ? o0 + kPanel : n;
    int j = 0;
    for (; j + 4 <= m; j += 4) {
      xwt_rows_avx2<4>(x + static_cast<size_t>(j) * ldx, ldx, W, ldw, k, o0, o1,
                       y + static_cast<size_t>(j) * ldy, ldy, accumulate);
    }
    for (; j + 2 <= m; j += 2) {
      xwt_rows_avx2<2>(x + static_cast<size_t>(j) * ldx, ldx, W, ldw, k, o0, o1,
                       y + static_cast<size_t>(j) * ldy, ldy, accumulate);
    }
    if (j < m) {
      xwt_rows_avx2<1>(x + static_cast<size_t>(j) * ldx, ldx, W, ldw, k, o0, o1,
                       y + static_cast<size_t>(j) * ldy, ldy, accumulate);
    }
  }
}

// One row t of y: y[o] += scale * dot(t, B_o), 8 rows of B per step with a transposing
// horizontal sum, so that y is updated 8 floats at a time.
LORASCHED_AVX2 void short_k_row_avx2(const float* t, int k, const float* B, int n, float scale,
                                     float* y) {
  const int full = k / 8 * 8;
  const __m256i mask = tail_mask(k - full);
  const __m256 sv = _mm256_set1_ps(scale);
  int o = 0;
  for (; o + 8 <= n; o += 8) {
    __m256 acc[8];
    for (int q = 0; q < 8; ++q) acc[q] = _mm256_setzero_ps();
    const float* b = B + static_cast<size_t>(o) * k;
    for (int r = 0; r < full; r += 8) {
      const __m256 tv = _mm256_loadu_ps(t + r);
      for (int q = 0; q < 8; ++q) {
        acc[q] = _mm256_fmadd_ps(tv, _mm256_loadu_ps(b + static_cast<size_t>(q) * k + r), acc[q]);
      }
    }
    if (full < k) {
      const __m256 tv = _mm256_maskload_ps(t + full, mask);
      for (int q = 0; q < 8; ++q) {
        acc[q] = _mm256_fmadd_ps(
            tv, _mm256_maskload_ps(b + static_cast<size_t>(q) * k + full, mask), acc[q]);
      }
    }
    const __m256 h0 =
        _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    const __m256 h1 =
        _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
    const __m256 sums =
        _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
    _mm256_storeu_ps(y + o, _mm256_fmadd_ps(sv, sums, _mm256_loadu_ps(y + o)));
  }
  for (; o < n; ++o) {
    const float* b = B + static_cast<size_t>(o) * k;
    __m256 acc = _mm256_setzero_ps();
    for (int r = 0; r < full; r += 8) {
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(t + r), _mm256_loadu_ps(b + r), acc);
    }
    if (full < k) {
      acc = _mm256_fmadd_ps(_mm256_maskload_ps(t + full, mask), _mm256_maskload_ps(b + full, mask),
                            acc);
    }
    y[o] += scale * hsum8(acc);
  }
}

#undef LORASCHED_AVX2
#endif  // LORASCHED_X86_DISPATCH

}  // namespace

void xwt_small(const float* x, int m, int k, int ldx, const float* W, int n, int ldw, float* y,
               int ldy, bool accumulate) {
#if LORASCHED_X86_DISPATCH
  if (use_avx2()) return xwt_small_avx2(x, m, k, ldx, W, n, ldw, y, ldy, accumulate);
#endif
  xwt_small_portable(x, m, k, ldx, W, n, ldw, y, ldy, accumulate);
}

void xwt_short_k(const float* t, int m, int k, int ldt, const float* B, int n, float scale,
                 float* y, int ldy) {
#if LORASCHED_X86_DISPATCH
  if (use_avx2()) {
    for (int j = 0; j < m; ++j) {
      short_k_row_avx2(t + static_cast<size_t>(j) * ldt, k, B, n, scale,
                       y + static_cast<size_t>(j) * ldy);
    }
    return;
  }
#endif
  xwt_short_k_portable(t, m, k, ldt, B, n, scale, y, ldy);
}

}  // namespace lorasched::kernels::cpu::detail
