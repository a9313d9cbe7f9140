// The one fp16/bf16 conversion (lorasched/kernels/half.hpp), used by the safetensors reader and
// writer and by the CUDA backend's host side, against straightforward IEEE 754 arithmetic:
// every one of the 65,536 patterns of each format decodes to the value its fields define, and
// encoding rounds to the nearest representable value, ties to even, as found by searching the
// sorted table of all finite values (at every midpoint between neighbours, one float either
// side of it, and a million random floats).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "lorasched/kernels/half.hpp"

namespace lorasched::kernels {
namespace {

// The value of a binary16/bfloat16 pattern from its fields, in double.
struct Format {
  int exp_bits, mant_bits;
  double decode(uint16_t b) const {
    const int bias = (1 << (exp_bits - 1)) - 1;
    const uint32_t mant = b & ((1u << mant_bits) - 1);
    const uint32_t exp = (b >> mant_bits) & ((1u << exp_bits) - 1);
    const double sign = (b >> 15) ? -1.0 : 1.0;
    if (exp == (1u << exp_bits) - 1)
      return mant ? std::numeric_limits<double>::quiet_NaN()
                  : sign * std::numeric_limits<double>::infinity();
    if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), 1 - bias - mant_bits);
    return sign * std::ldexp(static_cast<double>(mant + (1u << mant_bits)),
                             static_cast<int>(exp) - bias - mant_bits);
  }
};
constexpr Format kF16{5, 10}, kBF16{8, 7};

template <class Decode>
void decodes_every_pattern(const Format& f, Decode decode) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const double want = f.decode(bits);
    const float got = decode(bits);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << b;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << b;
    }
    EXPECT_EQ(std::signbit(got), (b >> 15) == 1) << b;
  }
}

TEST(Half, DecodesEveryPatternExactly) {
  decodes_every_pattern(kF16, f16_to_f32);
  decodes_every_pattern(kBF16, bf16_to_f32);
}

// Nearest-even rounding of x to the format, from the sorted table of its non-negative finite
// values: overflow beyond the largest value plus half an ulp (ties to even: to infinity).
class Oracle {
 public:
  explicit Oracle(const Format& f) : f_(f) {
    for (uint32_t b = 0; b < 0x8000; ++b) {
      const double v = f.decode(static_cast<uint16_t>(b));
      if (std::isfinite(v)) values_.push_back({v, static_cast<uint16_t>(b)});
    }
    std::sort(values_.begin(), values_.end());
    const double top = values_.back().first, ulp = top - values_[values_.size() - 2].first;
    overflow_ = top + ulp / 2;  // the maximum's mantissa is odd: its tie goes to infinity
  }
  uint16_t round(double x) const {
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(x);
    if (a >= overflow_)
      return sign | static_cast<uint16_t>(((1u << f_.exp_bits) - 1) << f_.mant_bits);
    auto hi = std::lower_bound(values_.begin(), values_.end(), std::make_pair(a, uint16_t{0}));
    if (hi == values_.end()) return sign | values_.back().second;  // above the top, below overflow
    if (hi->first == a) return sign | hi->second;
    auto lo = hi - 1;
    const double dl = a - lo->first, dh = hi->first - a;
    if (dl < dh) return sign | lo->second;
    if (dh < dl) return sign | hi->second;
    return sign | ((lo->second & 1) ? hi->second : lo->second);
  }
  const std::vector<std::pair<double, uint16_t>>& values() const { return values_; }

 private:
  Format f_;
  std::vector<std::pair<double, uint16_t>> values_;
  double overflow_ = 0;
};

template <class Encode>
void rounds_like_the_oracle(const Format& f, Encode encode) {
  const Oracle oracle(f);
  std::vector<float> xs;
  const auto& v = oracle.values();
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    const auto mid = static_cast<float>((v[i].first + v[i + 1].first) / 2);  // exact in float
    xs.insert(xs.end(), {static_cast<float>(v[i].first), mid, std::nextafter(mid, 0.0f),
                         std::nextafter(mid, INFINITY)});
  }
  const double top = v.back().first, ulp = top - v[v.size() - 2].first;
  const auto overflow = static_cast<float>(top + ulp / 2);
  xs.insert(xs.end(), {overflow, std::nextafter(overflow, 0.0f), INFINITY, 1e-45f, 0.0f});
  std::mt19937 rng(1);
  for (int i = 0; i < 1'000'000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (!std::isnan(x)) xs.push_back(x);
  }
  for (float x : std::vector<float>(xs)) xs.push_back(-x);
  size_t wrong = 0;
  for (float x : xs) {
    const uint16_t got = encode(x), want = oracle.round(x);
    if (got != want && ++wrong <= 10) ADD_FAILURE() << x << ": got " << got << ", want " << want;
  }
  EXPECT_EQ(wrong, 0u) << "of " << xs.size();
}

TEST(Half, EncodesToTheNearestEven) {
  rounds_like_the_oracle(kF16, f32_to_f16);
  rounds_like_the_oracle(kBF16, f32_to_bf16);
}

TEST(Half, NaNsStayNaNAndRoundTripsAreExact) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    // Finite and infinite values come back bit for bit; NaNs come back quiet, payload kept.
    const float h = f16_to_f32(bits), g = bf16_to_f32(bits);
    EXPECT_EQ(f32_to_f16(h), std::isnan(h) ? (bits | 0x200u) : bits) << b;
    EXPECT_EQ(f32_to_bf16(g), std::isnan(g) ? (bits | 0x40u) : bits) << b;
  }
}

// A second oracle where the compiler has one: its own _Float16 conversions.
#ifdef __FLT16_MAX__
TEST(Float16, DecodesLikeTheCompilersFloat16) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto hv = static_cast<uint16_t>(h);
    const auto x = std::bit_cast<_Float16>(hv);
    const float want = static_cast<float>(x);
    const float got = f16_to_f32(hv);
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got)) << h;
    else
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << h;
  }
}

TEST(Float16, EncodesLikeTheCompilersFloat16) {
  // Every float bit pattern with a stride, plus the rounding edges.
  std::vector<float> xs = {65504.0f,
                           65519.99f,
                           65520.0f,
                           65536.0f,
                           0x1p-24f,
                           0x1p-25f,
                           std::nextafter(0x1p-25f, 1.0f),
                           0x1.8p-24f,
                           0x1.4p-24f,
                           0x1p-14f,
                           std::nextafter(0x1p-14f, 0.0f),
                           1.0f + 0x1p-11f,
                           1.0f + 0x1.8p-10f,
                           std::numeric_limits<float>::infinity(),
                           1e-40f,
                           0.0f};
  for (uint64_t b = 0; b < (1ull << 32); b += 4099) xs.push_back(std::bit_cast<float>(uint32_t(b)));
  for (float x : std::vector<float>(xs)) xs.push_back(-x);
  for (float x : xs) {
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(x))));
      continue;
    }
    const auto want = std::bit_cast<uint16_t>(static_cast<_Float16>(x));
    EXPECT_EQ(f32_to_f16(x), want) << x;
  }
}
#endif

}  // namespace
}  // namespace lorasched::kernels
