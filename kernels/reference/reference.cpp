// Plain-loop oracle implementations. Written for obviousness, not speed: sums are accumulated
// in double, nothing is blocked or vectorised by hand. The only non-obvious code is the
// bit-exact merge residual, which follows the scheme documented in types.hpp with the same
// evaluation order of D as the cpu kernels, so that the cpu and the reference merge produce
// the same bits (the tests check this).
//
// This file is compiled with -ffp-contract=off (see kernels/CMakeLists.txt).

#include "lorasched/kernels/reference.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace lorasched::kernels::reference {

void gemm_xwt(const float* x, int m, int k, int ldx, const float* W, int n, float* y, int ldy,
              bool accumulate) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int p = 0; p < k; ++p) {
        acc += static_cast<double>(x[static_cast<size_t>(i) * ldx + p]) *
               static_cast<double>(W[static_cast<size_t>(j) * k + p]);
      }
      float& out = y[static_cast<size_t>(i) * ldy + j];
      out =
          accumulate ? static_cast<float>(static_cast<double>(out) + acc) : static_cast<float>(acc);
    }
  }
}

void lora_shrink(const float* x, int in, int ldx, std::span<const LoraSegment> segments, float* t) {
  size_t offset = 0;
  for (const LoraSegment& s : segments) {
    for (int j = 0; j < s.len; ++j) {
      const float* xrow = x + static_cast<size_t>(s.start + j) * ldx;
      for (int r = 0; r < s.rank; ++r) {
        double acc = 0.0;
        for (int i = 0; i < in; ++i) {
          acc += static_cast<double>(xrow[i]) *
                 static_cast<double>(s.A[static_cast<size_t>(r) * in + i]);
        }
        t[offset + static_cast<size_t>(j) * s.rank + r] = static_cast<float>(acc);
      }
    }
    offset += static_cast<size_t>(s.len) * static_cast<size_t>(s.rank);
  }
}

void lora_expand(const float* t, std::span<const LoraSegment> segments, int out, float* y,
                 int ldy) {
  size_t offset = 0;
  for (const LoraSegment& s : segments) {
    for (int j = 0; j < s.len; ++j) {
      float* yrow = y + static_cast<size_t>(s.start + j) * ldy;
      for (int o = 0; o < out; ++o) {
        double acc = 0.0;
        for (int r = 0; r < s.rank; ++r) {
          acc += static_cast<double>(t[offset + static_cast<size_t>(j) * s.rank + r]) *
                 static_cast<double>(s.B[static_cast<size_t>(o) * s.rank + r]);
        }
        yrow[o] = static_cast<float>(static_cast<double>(yrow[o]) + s.scale * acc);
      }
    }
    offset += static_cast<size_t>(s.len) * static_cast<size_t>(s.rank);
  }
}

namespace {

// Order-preserving integer image of a float's bits: non-negative floats map to their bit
// pattern, negative ones to the pattern with the 31 low bits flipped (so -0 -> -1, and larger
// magnitudes -> more negative). It is a bijection on bit patterns, so -0 and NaN payloads
// survive the round trip.
int32_t float_order(float f) {
  int32_t bits = 0;
  std::memcpy(&bits, &f, sizeof bits);
  return bits < 0 ? bits ^ 0x7fffffff : bits;
}

float float_from_order(int32_t key) {
  const int32_t bits = key < 0 ? key ^ 0x7fffffff : key;
  float f = 0.0f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// D[o, i] exactly as types.hpp prescribes: float, r ascending, starting from +0.
float delta(int o, int i, int in, const float* A, const float* B, int rank, float scale) {
  float d = 0.0f;
  for (int r = 0; r < rank; ++r) {
    const float sb = scale * B[static_cast<size_t>(o) * rank + r];
    d += sb * A[static_cast<size_t>(r) * in + i];
  }
  return d;
}

void check_merge_shape(int out, int in, int rank) {
  if (out < 0 || in < 0 || rank < 0) throw std::invalid_argument("lora_merge: negative shape");
  if (static_cast<uint64_t>(out) * static_cast<uint64_t>(in) >
      std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument("lora_merge: weight has more than 2^32-1 elements");
  }
}

}  // namespace

void lora_merge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                MergeResidual* residual) {
  check_merge_shape(out, in, rank);
  const size_t n = static_cast<size_t>(out) * static_cast<size_t>(in);
  residual->ulps.assign(n, 0);
  residual->exceptions.clear();
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      const size_t idx = static_cast<size_t>(o) * in + i;
      const float w = W[idx];
      const float d = delta(o, i, in, A, B, rank, scale);
      const float merged = w + d;
      const float u = merged - d;
      // Difference of the order-preserving images, taken in int64 (no wrap-around here).
      const int64_t diff =
          static_cast<int64_t>(float_order(w)) - static_cast<int64_t>(float_order(u));
      if (diff >= -127 && diff <= 127) {
        residual->ulps[idx] = static_cast<int8_t>(diff);
      } else {
        residual->ulps[idx] = MergeResidual::kUlpException;
        residual->exceptions.emplace_back(static_cast<uint32_t>(idx), w);
      }
      W[idx] = merged;
    }
  }
}

void lora_unmerge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                  const MergeResidual& residual) {
  check_merge_shape(out, in, rank);
  const size_t n = static_cast<size_t>(out) * static_cast<size_t>(in);
  if (residual.ulps.size() != n) {
    throw std::invalid_argument("lora_unmerge: residual has " +
                                std::to_string(residual.ulps.size()) + " entries, weight has " +
                                std::to_string(n));
  }
  size_t next_exception = 0;
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      const size_t idx = static_cast<size_t>(o) * in + i;
      const int8_t ulp = residual.ulps[idx];
      if (ulp == MergeResidual::kUlpException) {
        if (next_exception >= residual.exceptions.size() ||
            residual.exceptions[next_exception].first != idx) {
          throw std::invalid_argument("lora_unmerge: exception list does not match the ulps");
        }
        W[idx] = residual.exceptions[next_exception++].second;
        continue;
      }
      const float d = delta(o, i, in, A, B, rank, scale);
      const float u = W[idx] - d;
      const int64_t restored = static_cast<int64_t>(float_order(u)) + ulp;
      W[idx] = float_from_order(static_cast<int32_t>(restored));
    }
  }
}

void rmsnorm(const float* x, const float* weight, int rows, int dim, float eps, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    double sumsq = 0.0;
    for (int i = 0; i < dim; ++i) sumsq += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(sumsq / dim + static_cast<double>(eps));
    float* orow = out + static_cast<size_t>(r) * dim;
    for (int i = 0; i < dim; ++i) {
      orow[i] = static_cast<float>(static_cast<double>(xr[i]) * inv * weight[i]);
    }
  }
}

void rope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, float theta) {
  const int half = head_dim / 2;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* v = x + (static_cast<size_t>(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const double inv_freq = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
        const double angle = static_cast<double>(positions[t]) * inv_freq;
        const double c = std::cos(angle);
        const double s = std::sin(angle);
        const double a = v[i];
        const double b = v[i + half];
        // rotate_half(x) = [-x2, x1]; out = x * cos + rotate_half(x) * sin.
        v[i] = static_cast<float>(a * c - b * s);
        v[i + half] = static_cast<float>(b * c + a * s);
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void paged_kv_write(const PagedKvLayer& kv, const float* k, const float* v, int tokens,
                    const int32_t* slots) {
  const size_t row = static_cast<size_t>(kv.num_kv_heads) * kv.head_dim;
  const int64_t num_slots = static_cast<int64_t>(kv.num_blocks) * kv.block_size;
  check_kv_slots(slots, tokens, num_slots);
  for (int t = 0; t < tokens; ++t) {
    if (slots[t] == kPaddingSlot) continue;
    for (size_t e = 0; e < row; ++e) {
      kv.k[static_cast<size_t>(slots[t]) * row + e] = k[static_cast<size_t>(t) * row + e];
      kv.v[static_cast<size_t>(slots[t]) * row + e] = v[static_cast<size_t>(t) * row + e];
    }
  }
}

void paged_attention(const float* q, int num_heads, const PagedKvLayer& kv,
                     std::span<const AttentionSeq> seqs, float scale, float* out) {
  if (kv.num_kv_heads <= 0 || num_heads % kv.num_kv_heads != 0) {
    throw std::invalid_argument("paged_attention: num_heads must be a multiple of num_kv_heads");
  }
  const int hd = kv.head_dim;
  const int group = num_heads / kv.num_kv_heads;
  // Address of key/value `pos` of a sequence, kv head g.
  auto cache_at = [&](const float* base, const AttentionSeq& s, int pos, int g) {
    const int32_t block = s.block_table[pos / kv.block_size];
    const size_t slot = static_cast<size_t>(block) * kv.block_size + pos % kv.block_size;
    return base + (slot * kv.num_kv_heads + g) * hd;
  };
  std::vector<double> scores;
  for (const AttentionSeq& s : seqs) {
    if (s.q_len < 0 || s.q_len > s.context_len) {
      throw std::invalid_argument("paged_attention: q_len must be in [0, context_len]");
    }
    for (int j = 0; j < s.q_len; ++j) {
      const int pos = s.context_len - s.q_len + j;
      for (int h = 0; h < num_heads; ++h) {
        const int g = h / group;
        const float* qv = q + (static_cast<size_t>(s.q_start + j) * num_heads + h) * hd;
        scores.assign(static_cast<size_t>(pos) + 1, 0.0);
        double max_score = -std::numeric_limits<double>::infinity();
        for (int t = 0; t <= pos; ++t) {
          const float* kvec = cache_at(kv.k, s, t, g);
          double dot = 0.0;
          for (int e = 0; e < hd; ++e) dot += static_cast<double>(qv[e]) * kvec[e];
          scores[t] = dot * scale;
          max_score = std::max(max_score, scores[t]);
        }
        double sum = 0.0;
        for (int t = 0; t <= pos; ++t) {
          scores[t] = std::exp(scores[t] - max_score);
          sum += scores[t];
        }
        float* ov = out + (static_cast<size_t>(s.q_start + j) * num_heads + h) * hd;
        for (int e = 0; e < hd; ++e) {
          double acc = 0.0;
          for (int t = 0; t <= pos; ++t) acc += scores[t] * cache_at(kv.v, s, t, g)[e];
          ov[e] = static_cast<float>(acc / sum);
        }
      }
    }
  }
}

}  // namespace lorasched::kernels::reference
