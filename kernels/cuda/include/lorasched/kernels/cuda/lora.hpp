// Multi-adapter LoRA shrink / expand on the GPU (Punica's SGMV and BGMV).
//
// Every row (token) of a batch uses at most one adapter; ranks differ between adapters and
// nothing is padded to the largest rank: each kernel block works on one adapter's rows and
// reads that adapter's rank and weights from a device-side table.
//
//   shrink: t = x A^T            x [rows, in] (dtype), A [rank, in] (dtype), t fp32
//   expand: y += scale * t B^T   B [out, rank] (dtype), y [rows, out] (dtype)
//
// t is fp32 (the CPU layout): it is tiny (rank floats per row) and keeping it in fp32 avoids
// a second rounding between shrink and expand, so the only rounding of the LoRA term is the
// final one into y.
//
// Two batch forms, both described by a LoraBatchPlan built on the host:
//  * segmented (SGMV): runs of consecutive rows sharing an adapter slot (prefill). t holds
//    segment i's [len_i, rank_i] block at offset sum_{j<i} len_j * rank_j, exactly the CPU
//    layout of lora_workspace_floats for the same segment order.
//  * gathered (BGMV): one slot per row (-1 = no adapter), any interleaving (decode). t holds
//    row i's rank_i values at offset sum_{j<i, slot_j >= 0} rank_j, i.e. the CPU layout of
//    one length-1 segment per adapted row, in row order.
// Rows not covered get no LoRA term (y is left bit-identical).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::kernels::cuda {

// One adapter on one projection of one layer, as stored in the device table. A and B are
// device pointers to row-major contiguous arrays in the storage dtype of the calls that use
// them: A [rank, in], B [out, rank] (the CPU layout). rank 0 means "no LoRA term".
struct LoraAdapterRef {
  const void* A = nullptr;
  const void* B = nullptr;
  int32_t rank = 0;
  float scale = 1.0f;
};

// A run of consecutive rows [start, start + len) sharing adapter slot `slot`.
struct LoraSlotSegment {
  int32_t start = 0;
  int32_t len = 0;
  int32_t slot = 0;
};

// The device-resident adapter table of one projection (slot -> adapter). Upload it when the
// set of loaded adapters changes; it is read by every shrink / expand call.
class LoraAdapterTable {
 public:
  void assign(std::span<const LoraAdapterRef> slots, cudaStream_t stream = nullptr);
  const LoraAdapterRef* device() const { return dev_.get(); }
  int size() const { return static_cast<int>(ranks_.size()); }
  const std::vector<int32_t>& ranks() const { return ranks_; }

 private:
  DeviceBuffer<LoraAdapterRef> dev_;
  std::vector<int32_t> ranks_;
};

namespace detail {
// One kernel block's rows: up to rows_per_tile consecutive rows of one adapter.
struct LoraTile {
  int32_t row0 = 0;
  int32_t nrows = 0;
  int32_t slot = 0;
  int32_t rank = 0;
  int64_t t_offset = 0;  // t index of (row0, r = 0); row j of the tile at t_offset + j * rank
};
}  // namespace detail

// Where each adapted row's LoRA work goes, uploaded to the device. Build once per batch;
// it only depends on the slots' ranks, so it serves every projection whose table has the
// same ranks (checked on each call).
class LoraBatchPlan {
 public:
  // Segments must lie in [0, num_rows) and not overlap; len 0 or rank 0 segments are skipped.
  // rows_per_tile: 0 picks 8-row tiles when segments average at least 4 rows, else 1 (see
  // lora.cu); 1 or 8 forces one form (benchmarks and tests).
  static LoraBatchPlan segmented(std::span<const LoraSlotSegment> segments, int num_rows,
                                 std::span<const int32_t> slot_ranks, cudaStream_t stream = nullptr,
                                 int rows_per_tile = 0);
  // row_slot[i] in [-1, slot_ranks.size()); num_rows = row_slot.size().
  static LoraBatchPlan gathered(std::span<const int32_t> row_slot,
                                std::span<const int32_t> slot_ranks, cudaStream_t stream = nullptr);

  int num_rows() const { return num_rows_; }
  size_t t_floats() const { return t_floats_; }  // size of t in floats
  int max_rank() const { return max_rank_; }
  int rows_per_tile() const { return rows_per_tile_; }  // 1 = BGMV kernels, 8 = SGMV kernels
  int num_tiles() const { return static_cast<int>(tiles_.size()); }
  const std::vector<int32_t>& slot_ranks() const { return slot_ranks_; }
  const detail::LoraTile* device_tiles() const { return dev_tiles_.get(); }

 private:
  void upload(cudaStream_t stream);

  int num_rows_ = 0;
  size_t t_floats_ = 0;
  int max_rank_ = 0;
  int rows_per_tile_ = 1;
  std::vector<int32_t> slot_ranks_;
  std::vector<detail::LoraTile> tiles_;
  DeviceBuffer<detail::LoraTile> dev_tiles_;
};

// t = x A^T per adapted row (fp32 t, layout above). x: [plan.num_rows(), in], row stride ldx.
void lora_shrink(DType dtype, const void* x, int in, int64_t ldx, const LoraAdapterTable& table,
                 const LoraBatchPlan& plan, float* t, cudaStream_t stream = nullptr);

// y += scale * t B^T per adapted row. y: [plan.num_rows(), out], row stride ldy.
void lora_expand(DType dtype, const float* t, const LoraAdapterTable& table,
                 const LoraBatchPlan& plan, int out, void* y, int64_t ldy,
                 cudaStream_t stream = nullptr);

}  // namespace lorasched::kernels::cuda
