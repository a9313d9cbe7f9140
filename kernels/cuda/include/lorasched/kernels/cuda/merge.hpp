// Merge / unmerge a LoRA adapter into 16-bit base weights on the GPU, bit-exactly reversible.
//
// The scheme of types.hpp MergeResidual, transposed to 16-bit storage:
//   D[o, i]  = sum_r (scale * B[o, r]) * A[r, i]    fp32, r ascending, explicit fma
//   merge:     W'  = rn16(W + D)
//              u   = rn16(W' - D)                   (what unmerge will compute)
//              ulps = key(W) - key(u)               key = order-preserving integer image
//                                                   of the 16-bit pattern (bijective, so
//                                                   +0/-0, inf and NaN patterns round-trip)
//   unmerge:   u = rn16(W' - D), W = key^-1(key(u) + ulps)
// D is produced by one device function shared by merge and unmerge, with explicit
// __fmaf_rn / __fadd_rn / __fsub_rn so compiler contraction cannot differ. Where
// key(W) - key(u) is outside [-127, 127] the int8 holds kUlpException and the original
// 16-bit pattern goes to an exception list (index o * in + i, original bits; the host copy is
// sorted by index).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::kernels::cuda {

// What unmerge needs to restore W. Reusable: a later merge reuses its device buffers when
// they are large enough.
struct MergeResidual16 {
  static constexpr int8_t kUlpException = INT8_MIN;

  DeviceBuffer<int8_t> ulps;               // [out * in], device
  DeviceBuffer<uint32_t> exception_index;  // [>= num_exceptions], device, in no particular order
  DeviceBuffer<uint16_t> exception_value;  // [>= num_exceptions], device, original bits
  std::vector<std::pair<uint32_t, uint16_t>> exceptions;  // host copy, sorted by index
  DeviceBuffer<uint32_t> counter;                         // scratch
  DeviceBuffer<uint32_t> redo_tiles;                      // scratch of lora_switch

  // The merge this residual belongs to (checked by unmerge).
  bool merged = false;
  DType dtype = DType::kF16;
  int out = 0;
  int in = 0;
  int rank = 0;
  float scale = 0.0f;

  size_t num_exceptions() const { return exceptions.size(); }
  // Memory held while merged: 1 byte per weight + 6 bytes per exception.
  size_t bytes() const {
    return static_cast<size_t>(out) * static_cast<size_t>(in) + exceptions.size() * 6;
  }
};

// W [out, in] += scale * B A in place (B [out, rank], A [rank, in], all `dtype` = kF16 or
// kBF16, contiguous, device memory), recording the residual. Two passes over W (count the
// exceptions, then merge); synchronises `stream` twice to size the exception list (and once
// more to copy it to the host when there are exceptions).
void lora_merge(DType dtype, void* W, int out, int in, const void* A, const void* B, int rank,
                float scale, MergeResidual16* residual, cudaStream_t stream = nullptr);

// Replaces the merged adapter (A_from, B_from, rank_from, scale_from: those of the matching
// lora_merge or last lora_switch, checked) by (A_to, B_to, rank_to, scale_to) in one pass over
// W: each element's base value is restored from the residual and the new adapter merged onto it
// in registers, exactly as lora_unmerge then lora_merge compute them, so W and the residual come
// out bit-identical to those two calls (and the base still restores bit-exactly after any chain
// of switches), reading and writing W once instead of three reads and two writes. The new
// exceptions go to a list reserved per tile of the pass; a tile whose exceptions do not fit is
// left untouched and done again with a list of the size needed (rare). Synchronises `stream`
// once to read the counts (twice more when a list was too short or exceptions exist: to grow
// it, and to keep the host copy).
void lora_switch(DType dtype, void* W, int out, int in, const void* A_from, const void* B_from,
                 int rank_from, float scale_from, const void* A_to, const void* B_to, int rank_to,
                 float scale_to, MergeResidual16* residual, cudaStream_t stream = nullptr);

// Restores the bits W held before the matching lora_merge. A, B, rank and scale must be those
// given to the merge (shape, dtype, rank and scale are checked); marks the residual unmerged.
void lora_unmerge(DType dtype, void* W, int out, int in, const void* A, const void* B, int rank,
                  float scale, MergeResidual16* residual, cudaStream_t stream = nullptr);

}  // namespace lorasched::kernels::cuda
