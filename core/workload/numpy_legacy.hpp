// NumPy's legacy global generator (numpy.random.seed / numpy.random.gamma, i.e. RandomState),
// draw for draw, for the one place that needs it: dLoRA's artifact re-seeds it with 0 whenever
// an adapter's Gamma process starts, so its arrivals are a fixed sequence of NumPy draws
// (docs/dlora-artifact.md G8, docs/workloads.md). NumPy freezes this stream for compatibility.
//
// The pieces, as RandomState defines them:
// - MT19937 seeded with a 32-bit integer: the reference init_genrand, which is exactly
//   std::mt19937's single-value seeding (the C++ standard fixes both the recurrence and the
//   output function).
// - A double in [0, 1) from two 32-bit outputs: (a >> 5) * 2^26 + (b >> 6), divided by 2^53.
// - Standard exponential: -log(1 - u).
// - Gaussian: Marsaglia's polar method; each accepted pair returns one value and keeps the
//   other for the next call; seeding drops a kept value.
// - Standard gamma: shape 1 is the exponential; shape < 1 Johnk-style rejection with one
//   uniform and one exponential per try; shape > 1 Marsaglia-Tsang with the gaussian above
//   and a squeeze test before the log test. gamma(shape, scale) = scale * standard_gamma.
// The transcendental functions are the C library's, as NumPy's are, so the draws are
// bit-identical where NumPy uses the same libm (glibc here).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace lorasched {

class NumpyLegacyRandom {
 public:
  explicit NumpyLegacyRandom(uint32_t seed = 0) { this->seed(seed); }

  // numpy.random.seed(seed) for an integer seed in [0, 2^32).
  void seed(uint32_t s) {
    mt_.seed(s);
    has_gauss_ = false;
    gauss_ = 0.0;
  }

  // numpy.random.random_sample(): uniform in [0, 1) with 53 bits.
  double random_double() {
    const auto a = static_cast<uint32_t>(mt_()) >> 5;
    const auto b = static_cast<uint32_t>(mt_()) >> 6;
    return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) / 9007199254740992.0;
  }

  double standard_exponential() { return -std::log(1.0 - random_double()); }

  double gauss() {
    if (has_gauss_) {
      has_gauss_ = false;
      const double kept = gauss_;
      gauss_ = 0.0;
      return kept;
    }
    double x1, x2, r2;
    do {
      x1 = 2.0 * random_double() - 1.0;
      x2 = 2.0 * random_double() - 1.0;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r2) / r2);
    gauss_ = f * x1;
    has_gauss_ = true;
    return f * x2;
  }

  double standard_gamma(double shape) {
    if (shape == 1.0) return standard_exponential();
    if (shape == 0.0) return 0.0;
    if (shape < 1.0) {
      for (;;) {
        const double u = random_double();
        const double v = standard_exponential();
        if (u <= 1.0 - shape) {
          const double x = std::pow(u, 1.0 / shape);
          if (x <= v) return x;
        } else {
          const double y = -std::log((1.0 - u) / shape);
          const double x = std::pow(1.0 - shape + shape * y, 1.0 / shape);
          if (x <= v + y) return x;
        }
      }
    }
    const double b = shape - 1.0 / 3.0;
    const double c = 1.0 / std::sqrt(9.0 * b);
    for (;;) {
      double x, v;
      do {
        x = gauss();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = random_double();
      if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return b * v;
      if (std::log(u) < 0.5 * x * x + b * (1.0 - v + std::log(v))) return b * v;
    }
  }

  // numpy.random.gamma(shape, scale).
  double gamma(double shape, double scale) { return scale * standard_gamma(shape); }

 private:
  std::mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace lorasched
