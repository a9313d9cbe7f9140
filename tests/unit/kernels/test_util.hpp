// Shared helpers of the kernel tests: seeded random inputs and magnitude-relative comparison.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "lorasched/kernels/cpu.hpp"

namespace lorasched::kernels::testing {

// Selects the AVX2 (when the CPU has it) or the portable hand loops for one scope.
class SimdMode {
 public:
  explicit SimdMode(bool enabled) : before_(cpu::cpu_simd()) { cpu::set_cpu_simd(enabled); }
  ~SimdMode() { cpu::set_cpu_simd(before_); }
  SimdMode(const SimdMode&) = delete;
  SimdMode& operator=(const SimdMode&) = delete;

 private:
  bool before_;
};

inline std::vector<float> randn(size_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

inline int randint(std::mt19937& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float f : v) m = std::max(m, static_cast<double>(std::fabs(f)));
  return m;
}

// Every element within rtol * (|expected| + max |expected|): relative to the element where it
// is large, to the array's magnitude where cancellation made it small. Reports the first
// offending element; a NaN anywhere fails.
inline ::testing::AssertionResult all_close(const std::vector<float>& actual,
                                            const std::vector<float>& expected, double rtol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " != expected size " << expected.size();
  }
  const double scale = max_abs(expected);
  size_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const double tol = rtol * (std::fabs(static_cast<double>(expected[i])) + scale);
    if (!(err <= tol)) {  // also catches NaN
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << actual.size() << " elements differ; first at " << first << ": actual "
         << actual[first] << " expected " << expected[first] << " (max |expected| " << scale
         << ", rtol " << rtol << ")";
}

}  // namespace lorasched::kernels::testing
