// Internal interface between the cpu kernel files: run-time ISA dispatch and the hand-written
// small-product loops shared by gemm_xwt (few rows) and the LoRA kernels (short segments).
#pragma once

#include <cstddef>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LORASCHED_X86_DISPATCH 1
#else
#define LORASCHED_X86_DISPATCH 0
#endif

namespace lorasched::kernels::cpu::detail {

// True when the CPU has AVX2 and FMA and set_cpu_simd(false) has not been called. The library
// is compiled for the baseline ISA (no -march), so AVX2 code is only reached through this.
bool use_avx2();

// y[j, o] = dot(x_j, W_o) (+ y[j, o] if accumulate) for j < m, o < n; x rows have k floats at
// stride ldx, W rows k floats at stride ldw. W is streamed once; for few rows of x (decode).
void xwt_small(const float* x, int m, int k, int ldx, const float* W, int n, int ldw, float* y,
               int ldy, bool accumulate);

// y[j, o] += scale * dot(t_j, B_o) for j < m, o < n, where B rows are `k` floats (k small, e.g.
// a LoRA rank) and t rows are at stride ldt.
void xwt_short_k(const float* t, int m, int k, int ldt, const float* B, int n, float scale,
                 float* y, int ldy);

}  // namespace lorasched::kernels::cpu::detail
