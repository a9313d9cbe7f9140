// IEEE binary16 (fp16) and bfloat16 <-> fp32 conversions of one value, the project's only copy:
// the safetensors reader and writer (core/checkpoint) and the CUDA backend's host-side
// conversions (kernels/cuda/src/common.cu) both use these. Plain bit arithmetic, callable from
// host C++ and from CUDA device code.
//
// To fp32: exact for every one of the 65,536 patterns (subnormals, infinities, NaN payloads).
// From fp32: round to nearest, ties to even; overflow to infinity (fp16: |x| >= 65520); a NaN
// stays a NaN, made quiet, with the top payload bits kept. For every input but a NaN this is
// what the GPU's __float2half_rn / __float2bfloat16_rn compute (which return one canonical NaN).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LORASCHED_HOST_DEVICE __host__ __device__
#else
#define LORASCHED_HOST_DEVICE
#endif

namespace lorasched::kernels {

namespace half_detail {
LORASCHED_HOST_DEVICE inline uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
LORASCHED_HOST_DEVICE inline float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace half_detail

LORASCHED_HOST_DEVICE inline float f16_to_f32(uint16_t h) {
  using namespace half_detail;
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in fp32.
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return float_of(bits_of(mag) | sign);
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
}

LORASCHED_HOST_DEVICE inline float bf16_to_f32(uint16_t b) {
  return half_detail::float_of(static_cast<uint32_t>(b) << 16);
}

LORASCHED_HOST_DEVICE inline uint16_t f32_to_f16(float f) {
  const uint32_t x = half_detail::bits_of(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u)  // NaN: keep the top payload bits, force quiet
    return static_cast<uint16_t>(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
  if (absx >= 0x477ff000u)  // >= 65520 rounds to infinity (ties to even)
    return static_cast<uint16_t>(sign | 0x7c00u);
  const uint32_t e = absx >> 23;
  if (e < 113) {  // below 2^-14: half subnormal (or zero); unit 2^-24
    if (e < 102) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to zero
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t r = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (r > half || (r == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  const uint32_t mant = absx & 0x7fffffu;
  uint32_t q = ((e - 112) << 10) | (mant >> 13);
  const uint32_t r = mant & 0x1fffu;
  if (r > 0x1000u || (r == 0x1000u && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

LORASCHED_HOST_DEVICE inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = half_detail::bits_of(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  const uint32_t bias = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + bias) >> 16);
}

}  // namespace lorasched::kernels
