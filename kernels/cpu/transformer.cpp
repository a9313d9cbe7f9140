// Element-wise transformer kernels: RMSNorm, rotary embedding, SiLU-gated activation.

#include <cmath>
#include <cstddef>
#include <vector>

#include "lorasched/kernels/cpu.hpp"

namespace lorasched::kernels::cpu {

void rmsnorm(const float* x, const float* weight, int rows, int dim, float eps, float* out) {
  constexpr int kLanes = 8;  // independent partial sums, so the compiler can vectorise
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    double acc[kLanes] = {};
    int i = 0;
    for (; i + kLanes <= dim; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<double>(xr[i + l]) * xr[i + l];
    }
    double sumsq = 0.0;
    for (int l = 0; l < kLanes; ++l) sumsq += acc[l];
    for (; i < dim; ++i) sumsq += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(sumsq / dim + static_cast<double>(eps)));
    float* orow = out + static_cast<size_t>(r) * dim;  // may alias xr: element-wise from here
    for (int e = 0; e < dim; ++e) orow[e] = xr[e] * inv * weight[e];
  }
}

void rope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, float theta) {
  const int half = head_dim / 2;
  if (half == 0) return;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
  }
  std::vector<float> cos_t(half), sin_t(half);
  for (int t = 0; t < tokens; ++t) {
    // Angles in double: position * inv_freq in float loses ~1e-4 rad at positions ~4k.
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(positions[t]) * inv_freq[i];
      cos_t[i] = static_cast<float>(std::cos(angle));
      sin_t[i] = static_cast<float>(std::sin(angle));
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + (static_cast<size_t>(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i];
        const float b = v[i + half];
        v[i] = a * cos_t[i] - b * sin_t[i];
        v[i + half] = b * cos_t[i] + a * sin_t[i];
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace lorasched::kernels::cpu
