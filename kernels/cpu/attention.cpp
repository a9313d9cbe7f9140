// Paged KV cache write and causal paged attention (GQA; prefill and decode sequences mixed).

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "lorasched/kernels/cpu.hpp"

namespace lorasched::kernels::cpu {
namespace {

constexpr int kLanes = 8;  // independent partial sums per dot product

inline float dot(const float* a, const float* b, int n) {
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

void check_seq(const PagedKvLayer& kv, const AttentionSeq& s) {
  if (s.q_len < 0 || s.q_len > s.context_len || s.q_start < 0) {
    throw std::invalid_argument("paged_attention: need 0 <= q_len <= context_len, q_start >= 0");
  }
  const int blocks = (s.context_len + kv.block_size - 1) / kv.block_size;
  if (blocks > 0 && s.block_table == nullptr) {
    throw std::invalid_argument("paged_attention: missing block table");
  }
  for (int b = 0; b < blocks; ++b) {
    if (s.block_table[b] < 0 || s.block_table[b] >= kv.num_blocks) {
      throw std::out_of_range("paged_attention: block id out of range");
    }
  }
}

}  // namespace

void paged_kv_write(const PagedKvLayer& kv, const float* k, const float* v, int tokens,
                    const int32_t* slots) {
  const size_t row = static_cast<size_t>(kv.num_kv_heads) * kv.head_dim;
  const int64_t num_slots = static_cast<int64_t>(kv.num_blocks) * kv.block_size;
  check_kv_slots(slots, tokens, num_slots);  // all of them before writing any
  for (int t = 0; t < tokens; ++t) {
    const int32_t slot = slots[t];
    if (slot == kPaddingSlot) continue;
    std::memcpy(kv.k + static_cast<size_t>(slot) * row, k + static_cast<size_t>(t) * row,
                row * sizeof(float));
    std::memcpy(kv.v + static_cast<size_t>(slot) * row, v + static_cast<size_t>(t) * row,
                row * sizeof(float));
  }
}

void paged_attention(const float* q, int num_heads, const PagedKvLayer& kv,
                     std::span<const AttentionSeq> seqs, float scale, float* out) {
  if (kv.num_kv_heads <= 0 || num_heads % kv.num_kv_heads != 0 || kv.block_size <= 0 ||
      kv.head_dim < 0) {
    throw std::invalid_argument(
        "paged_attention: need num_heads % num_kv_heads == 0, block_size > 0");
  }
  const int hd = kv.head_dim;
  const int group = num_heads / kv.num_kv_heads;
  const size_t slot_stride = static_cast<size_t>(kv.num_kv_heads) * hd;
  std::vector<float> scores;  // [group][context]
  std::vector<float> acc;     // [group][head_dim]
  std::vector<float> inv_sum(group);
  for (const AttentionSeq& s : seqs) {
    check_seq(kv, s);
    scores.resize(static_cast<size_t>(group) * std::max(s.context_len, 1));
    acc.resize(static_cast<size_t>(group) * hd);
    for (int j = 0; j < s.q_len; ++j) {
      const int n = s.context_len - s.q_len + j + 1;  // keys 0..position
      const float* qt = q + static_cast<size_t>(s.q_start + j) * num_heads * hd;
      float* ot = out + static_cast<size_t>(s.q_start + j) * num_heads * hd;
      for (int g = 0; g < kv.num_kv_heads; ++g) {
        // The heads of one group share every key / value load.
        const float* qg = qt + static_cast<size_t>(g) * group * hd;
        for (int t0 = 0; t0 < n; t0 += kv.block_size) {
          const size_t block = static_cast<size_t>(s.block_table[t0 / kv.block_size]);
          const float* kb =
              kv.k + block * kv.block_size * slot_stride + static_cast<size_t>(g) * hd;
          const int tn = std::min(kv.block_size, n - t0);
          for (int t = 0; t < tn; ++t) {
            for (int h = 0; h < group; ++h) {
              scores[static_cast<size_t>(h) * n + t0 + t] =
                  dot(qg + static_cast<size_t>(h) * hd, kb + t * slot_stride, hd) * scale;
            }
          }
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int h = 0; h < group; ++h) {
          float* sh = scores.data() + static_cast<size_t>(h) * n;
          const float m = *std::max_element(sh, sh + n);
          float sum = 0.0f;
          for (int t = 0; t < n; ++t) {
            sh[t] = std::exp(sh[t] - m);
            sum += sh[t];
          }
          inv_sum[h] = 1.0f / sum;
        }
        for (int t0 = 0; t0 < n; t0 += kv.block_size) {
          const size_t block = static_cast<size_t>(s.block_table[t0 / kv.block_size]);
          const float* vb =
              kv.v + block * kv.block_size * slot_stride + static_cast<size_t>(g) * hd;
          const int tn = std::min(kv.block_size, n - t0);
          for (int t = 0; t < tn; ++t) {
            const float* vv = vb + t * slot_stride;
            for (int h = 0; h < group; ++h) {
              const float p = scores[static_cast<size_t>(h) * n + t0 + t];
              float* ah = acc.data() + static_cast<size_t>(h) * hd;
              for (int e = 0; e < hd; ++e) ah[e] += p * vv[e];
            }
          }
        }
        for (int h = 0; h < group; ++h) {
          float* oh = ot + (static_cast<size_t>(g) * group + h) * hd;
          const float* ah = acc.data() + static_cast<size_t>(h) * hd;
          for (int e = 0; e < hd; ++e) oh[e] = ah[e] * inv_sum[h];
        }
      }
    }
  }
}

}  // namespace lorasched::kernels::cpu
