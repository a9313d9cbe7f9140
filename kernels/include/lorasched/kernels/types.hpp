// Shared argument types of the LoRA and transformer kernels (reference, cpu and cuda).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lorasched::kernels {

// All matrices are row-major. A linear layer's weight W has shape [out, in] and computes
// y = x W^T, like torch.nn.Linear. A LoRA adapter on that layer is A: [rank, in],
// B: [out, rank] and a scale s; the adapted layer computes y = x W^T + s * (x A^T) B^T.

// One run of consecutive tokens (rows of x / y) that share one adapter: Punica's SGMV
// segment. Segments may appear in any order but must not overlap; tokens covered by no
// segment get no LoRA term. A segment with rank 0 or len 0 is allowed and does nothing.
struct LoraSegment {
  int32_t start = 0;         // first row in x / y
  int32_t len = 0;           // number of rows
  const float* A = nullptr;  // [rank, in]
  const float* B = nullptr;  // [out, rank]
  int32_t rank = 0;
  float scale = 1.0f;
};

// Shrink output layout: segment i writes its [len_i, rank_i] block contiguously at
// t + offset_i with offset_i = sum_{j<i} len_j * rank_j, so there is no padding of small
// ranks to the largest one.
inline size_t lora_workspace_floats(std::span<const LoraSegment> segments) {
  size_t n = 0;
  for (const auto& s : segments) n += static_cast<size_t>(s.len) * static_cast<size_t>(s.rank);
  return n;
}

// What unmerge needs, besides the adapter itself, to restore the base weights bit-exactly.
// merge computes W' = fl(W + D) with D = s * B A evaluated in a fixed order; unmerge
// computes u = fl(W' - D) with the same D, then W = u moved by `ulps[i]` units in the last
// place (difference of the order-preserving integer images of W and u). Where that
// difference does not fit in an int8 (|D| much larger than |W|), ulps[i] holds
// kUlpException and the original value is kept in `exceptions`, sorted by index.
// Memory cost while merged: 1 byte per merged weight element plus 8 bytes per exception
// (exceptions are rare: they need |s B A| >> |W| at that element).
struct MergeResidual {
  static constexpr int8_t kUlpException = INT8_MIN;
  std::vector<int8_t> ulps;
  std::vector<std::pair<uint32_t, float>> exceptions;
  size_t bytes() const { return ulps.size() + exceptions.size() * sizeof(exceptions[0]); }
};

// One sequence in a paged-attention call. Its q_len new tokens are rows
// [q_start, q_start + q_len) of q and out; they sit at positions
// context_len - q_len .. context_len - 1 and attend causally to keys 0..position.
// Their keys/values must already be written into the cache (paged_kv_write).
struct AttentionSeq {
  int32_t q_start = 0;
  int32_t q_len = 0;
  int32_t context_len = 0;
  const int32_t* block_table = nullptr;  // ceil(context_len / block_size) physical block ids
};

// One layer's paged KV cache: k and v each [num_blocks, block_size, num_kv_heads, head_dim].
struct PagedKvLayer {
  float* k = nullptr;
  float* v = nullptr;
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// paged_kv_write's slot for a padding token: nothing is written for it. Every other slot must
// lie in [0, num_blocks * block_size): an out-of-range slot is a caller's bug that would drop a
// key/value silently, so it is refused (std::out_of_range on the host, before anything is
// written; a device-side assertion in the CUDA kernel), never skipped.
inline constexpr int32_t kPaddingSlot = -1;

// Throws std::out_of_range naming the first slot of `slots[0..tokens)` that is neither
// kPaddingSlot nor in [0, num_slots).
inline void check_kv_slots(const int32_t* slots, int tokens, int64_t num_slots) {
  for (int t = 0; t < tokens; ++t) {
    const int32_t s = slots[t];
    if (s != kPaddingSlot && (s < 0 || s >= num_slots))
      throw std::out_of_range("paged_kv_write: token " + std::to_string(t) + " has slot " +
                              std::to_string(s) + ", outside [0, " + std::to_string(num_slots) +
                              ") and not the padding slot -1");
  }
}

}  // namespace lorasched::kernels
