// SGMV / BGMV LoRA shrink and expand. See lora.hpp for the layouts.
//
// Both forms run the same two kernels over a list of tiles (one tile = up to TT consecutive
// rows of one adapter): TT = 1 is the gathered (BGMV, decode) instantiation, TT = 8 the
// segmented (SGMV, prefill) one, where each weight vector loaded is reused for 8 rows.
//
// shrink: block (tile, group of kShrinkRanks rank rows); its 128 threads split `in`, each
//   thread loads 16-byte vectors of the tile's x rows and of the group's A rows and keeps
//   TT x kShrinkRanks fp32 partial dot products, reduced across the block in a fixed order.
// expand: block (tile, 128 output columns); a thread owns one output column o, streams
//   B[o, :] in 16-byte vectors and reads t of the tile's rows from shared memory.
// When a row length is not a multiple of the vector width or a base pointer is not 16-byte
// aligned, the same kernels take a scalar path (decided per block, uniformly).
// Results are deterministic: every output is reduced in a fixed order, no atomics.

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "device.cuh"
#include "lorasched/kernels/cuda/lora.hpp"

namespace lorasched::kernels::cuda {

using detail::LoraTile;

namespace {

constexpr int kThreads = 128;  // threads per block, both kernels
// Rank rows per shrink block. Each block reads its tile's x rows once per group of kShrinkRanks
// rank rows, so a larger group reuses each x load for more ranks, but every thread keeps
// TT x kShrinkRanks accumulators plus kShrinkRanks 16-byte vectors of A in registers. ptxas
// for sm_90 (nvcc 13.0, `nvcc -arch=sm_90 -Xptxas -v`, the 8-row fp16 shrink): 71 registers at
// 2, 108 at 4, 165 at 8 (no spills). 4 is the largest group that stays under 128 registers per
// thread, i.e. 4 resident blocks (16 warps) per SM instead of 3 at 8. Not yet timed on a GPU.
constexpr int kShrinkRanks = 4;
// Rank values of t staged in shared memory per step of the expand (TT x 64 floats: 2 KiB at
// TT = 8). Common LoRA ranks (8 to 64) then take a single step, i.e. one pair of
// __syncthreads per block; ranks 128 and 256 take 2 and 4.
constexpr int kExpandChunk = 64;
constexpr int kSegmentTile = 8;  // rows per tile of the segmented form

template <typename T, int TT>
__global__ void __launch_bounds__(kThreads)
    lora_shrink_kernel(const T* __restrict__ x, int in, int64_t ldx,
                       const LoraAdapterRef* __restrict__ adapters,
                       const LoraTile* __restrict__ tiles, float* __restrict__ t) {
  constexpr int RT = kShrinkRanks;
  constexpr int V = dev::kVec<T>;
  const LoraTile tile = tiles[blockIdx.x];
  const int r0 = static_cast<int>(blockIdx.y) * RT;
  if (r0 >= tile.rank) return;  // block-uniform: this adapter has fewer rank rows
  const T* __restrict__ A = static_cast<const T*>(adapters[tile.slot].A);
  const int nr = min(RT, tile.rank - r0);
  const int nt = tile.nrows;

  // Rows past the tile / the rank are clamped to valid ones; their sums are never stored.
  const T* xrow[TT];
#pragma unroll
  for (int j = 0; j < TT; ++j) xrow[j] = x + static_cast<int64_t>(tile.row0 + min(j, nt - 1)) * ldx;
  const T* arow[RT];
#pragma unroll
  for (int i = 0; i < RT; ++i) arow[i] = A + static_cast<int64_t>(r0 + min(i, nr - 1)) * in;

  float acc[TT][RT];
#pragma unroll
  for (int j = 0; j < TT; ++j) {
#pragma unroll
    for (int i = 0; i < RT; ++i) acc[j][i] = 0.0f;
  }

  const bool vec =
      (in % V == 0) && (ldx % V == 0) && dev::aligned16(xrow[0]) && dev::aligned16(arow[0]);
  if (vec) {
    const int nvec = in / V;
    for (int c = threadIdx.x; c < nvec; c += kThreads) {
      float a[RT][V];
#pragma unroll
      for (int i = 0; i < RT; ++i) dev::load_vec(arow[i] + c * V, a[i]);
#pragma unroll
      for (int j = 0; j < TT; ++j) {
        float xv[V];
        dev::load_vec(xrow[j] + c * V, xv);
#pragma unroll
        for (int i = 0; i < RT; ++i) {
#pragma unroll
          for (int e = 0; e < V; ++e) acc[j][i] = fmaf(xv[e], a[i][e], acc[j][i]);
        }
      }
    }
  } else {
    for (int k = threadIdx.x; k < in; k += kThreads) {
      float a[RT];
#pragma unroll
      for (int i = 0; i < RT; ++i) a[i] = dev::to_float(arow[i][k]);
#pragma unroll
      for (int j = 0; j < TT; ++j) {
        const float xv = dev::to_float(xrow[j][k]);
#pragma unroll
        for (int i = 0; i < RT; ++i) acc[j][i] = fmaf(xv, a[i], acc[j][i]);
      }
    }
  }

  // Block reduction: butterfly within each warp, then the warps' sums in warp order.
  constexpr int kWarps = kThreads / 32;
  __shared__ float partial[kWarps][TT * RT];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < TT; ++j) {
#pragma unroll
    for (int i = 0; i < RT; ++i) {
      const float s = dev::warp_sum(acc[j][i]);
      if (lane == 0) partial[warp][j * RT + i] = s;
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < TT * RT; idx += kThreads) {
    const int j = idx / RT;
    const int i = idx % RT;
    if (j < nt && i < nr) {
      float s = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) s += partial[w][idx];
      t[tile.t_offset + static_cast<int64_t>(j) * tile.rank + r0 + i] = s;
    }
  }
}

template <typename T, int TT>
__global__ void __launch_bounds__(kThreads)
    lora_expand_kernel(const float* __restrict__ t, int out, int64_t ldy, T* __restrict__ y,
                       const LoraAdapterRef* __restrict__ adapters,
                       const LoraTile* __restrict__ tiles) {
  constexpr int V = dev::kVec<T>;
  const LoraTile tile = tiles[blockIdx.x];
  const LoraAdapterRef ad = adapters[tile.slot];
  const int rank = tile.rank;
  const int nt = tile.nrows;
  const int o = static_cast<int>(blockIdx.y) * kThreads + static_cast<int>(threadIdx.x);
  const T* __restrict__ B = static_cast<const T*>(ad.B);
  const T* brow = B + static_cast<int64_t>(min(o, out - 1)) * rank;  // clamped, result unused
  const bool vec = (rank % V == 0) && dev::aligned16(B);

  __shared__ float ts[TT][kExpandChunk];
  float acc[TT];
#pragma unroll
  for (int j = 0; j < TT; ++j) acc[j] = 0.0f;

  for (int rc = 0; rc < rank; rc += kExpandChunk) {
    const int n = min(kExpandChunk, rank - rc);
    __syncthreads();  // the previous chunk is no longer read
    for (int idx = threadIdx.x; idx < TT * kExpandChunk; idx += kThreads) {
      const int j = idx / kExpandChunk;
      const int c = idx % kExpandChunk;
      ts[j][c] =
          (j < nt && c < n) ? t[tile.t_offset + static_cast<int64_t>(j) * rank + rc + c] : 0.0f;
    }
    __syncthreads();
    if (vec) {  // n is a multiple of V: rank and kExpandChunk are
      for (int c = 0; c < n; c += V) {
        float b[V];
        dev::load_vec(brow + rc + c, b);
#pragma unroll
        for (int j = 0; j < TT; ++j) {
#pragma unroll
          for (int e = 0; e < V; ++e) acc[j] = fmaf(ts[j][c + e], b[e], acc[j]);
        }
      }
    } else {
      for (int c = 0; c < n; ++c) {
        const float b = dev::to_float(brow[rc + c]);
#pragma unroll
        for (int j = 0; j < TT; ++j) acc[j] = fmaf(ts[j][c], b, acc[j]);
      }
    }
  }
  if (o >= out) return;
#pragma unroll
  for (int j = 0; j < TT; ++j) {
    if (j < nt) {
      T* p = y + static_cast<int64_t>(tile.row0 + j) * ldy + o;
      *p = dev::from_float<T>(fmaf(ad.scale, acc[j], dev::to_float(*p)));
    }
  }
}

// Runtime rows-per-tile -> template parameter.
#define LORASCHED_DISPATCH_TILE_ROWS(ROWS, TT, ...)                                      \
  switch (ROWS) {                                                                        \
    case 1: {                                                                            \
      constexpr int TT = 1;                                                              \
      __VA_ARGS__;                                                                       \
      break;                                                                             \
    }                                                                                    \
    case kSegmentTile: {                                                                 \
      constexpr int TT = kSegmentTile;                                                   \
      __VA_ARGS__;                                                                       \
      break;                                                                             \
    }                                                                                    \
    default:                                                                             \
      throw std::logic_error("lora: unsupported rows per tile " + std::to_string(ROWS)); \
  }

void check_rank(int32_t rank, const char* what) {
  if (rank < 0) throw std::invalid_argument(std::string(what) + ": negative rank");
}

void check_table(const LoraAdapterTable& table, const LoraBatchPlan& plan, const char* what) {
  if (table.ranks() != plan.slot_ranks()) {
    throw std::invalid_argument(std::string(what) +
                                ": the adapter table's ranks differ from the plan's slot ranks");
  }
}

}  // namespace

// ---- LoraAdapterTable -------------------------------------------------------------------------

void LoraAdapterTable::assign(std::span<const LoraAdapterRef> slots, cudaStream_t stream) {
  std::vector<int32_t> ranks;
  ranks.reserve(slots.size());
  for (const auto& s : slots) {
    check_rank(s.rank, "LoraAdapterTable::assign");
    if (s.rank > 0 && (s.A == nullptr || s.B == nullptr)) {
      throw std::invalid_argument("LoraAdapterTable::assign: null A or B for a rank > 0 slot");
    }
    ranks.push_back(s.rank);
  }
  dev_.ensure(slots.size());
  dev_.upload(slots, stream);
  // The upload is ordered before later kernels on `stream`; callers using another stream
  // must synchronise themselves.
  ranks_ = std::move(ranks);
}

// ---- LoraBatchPlan ----------------------------------------------------------------------------

void LoraBatchPlan::upload(cudaStream_t stream) {
  for (const auto& s : slot_ranks_) check_rank(s, "LoraBatchPlan");
  max_rank_ = 0;
  for (const auto& tile : tiles_) max_rank_ = std::max(max_rank_, tile.rank);
  if ((max_rank_ + kShrinkRanks - 1) / kShrinkRanks > 65535) {
    throw std::invalid_argument("LoraBatchPlan: rank too large");
  }
  dev_tiles_.ensure(tiles_.size());
  dev_tiles_.upload(std::span<const LoraTile>(tiles_), stream);
}

LoraBatchPlan LoraBatchPlan::segmented(std::span<const LoraSlotSegment> segments, int num_rows,
                                       std::span<const int32_t> slot_ranks, cudaStream_t stream,
                                       int rows_per_tile) {
  if (num_rows < 0) throw std::invalid_argument("LoraBatchPlan::segmented: negative num_rows");
  LoraBatchPlan plan;
  plan.num_rows_ = num_rows;
  plan.slot_ranks_.assign(slot_ranks.begin(), slot_ranks.end());
  for (const auto r : plan.slot_ranks_) check_rank(r, "LoraBatchPlan::segmented");

  // Validate: in range, no overlap (sort a copy of the intervals).
  std::vector<std::pair<int32_t, int32_t>> spans;
  size_t adapted_rows = 0;
  size_t active_segments = 0;
  for (const auto& s : segments) {
    if (s.len < 0 || s.start < 0 || static_cast<int64_t>(s.start) + s.len > num_rows) {
      throw std::invalid_argument("LoraBatchPlan::segmented: segment outside [0, num_rows)");
    }
    if (s.slot < 0 || static_cast<size_t>(s.slot) >= slot_ranks.size()) {
      throw std::invalid_argument("LoraBatchPlan::segmented: slot out of range");
    }
    if (s.len > 0) spans.emplace_back(s.start, s.start + s.len);
    if (s.len > 0 && slot_ranks[s.slot] > 0) {
      adapted_rows += static_cast<size_t>(s.len);
      ++active_segments;
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].second) {
      throw std::invalid_argument("LoraBatchPlan::segmented: overlapping segments");
    }
  }
  // 8-row tiles when segments average at least 4 rows. A block of either kernel reads its
  // adapter's weight rows (shrink: kShrinkRanks rows of A; expand: a 128-column slice of B) once
  // per tile and its activation rows once per row, but an 8-row tile computes all 8 rows
  // whatever the segment's length. Counting rows read per segment of length L, shrink:
  // ceil(L / 8) x (4 + 8) for 8-row tiles against L x (4 + 1) for 1-row tiles, equal near
  // L = 2.4; the expand's 8-row tile also does 8 rows of FMAs for L useful ones. So the
  // cut-over sits above the point where the reads break even: at a mean of 4 rows, 8-row tiles
  // read 12 rows where 1-row tiles read 20. (A model, not yet timed on a GPU:
  // bench_kernels_cuda's lora_tile_rows/* measures both forms at mean lengths 1 to 16.)
  plan.rows_per_tile_ = rows_per_tile > 0 ? rows_per_tile
                        : (active_segments > 0 && adapted_rows >= 4 * active_segments)
                            ? kSegmentTile
                            : 1;
  if (plan.rows_per_tile_ != 1 && plan.rows_per_tile_ != kSegmentTile)
    throw std::invalid_argument("LoraBatchPlan::segmented: rows_per_tile must be 0, 1 or 8");

  size_t offset = 0;
  for (const auto& s : segments) {
    const int32_t rank = slot_ranks[s.slot];
    if (s.len > 0 && rank > 0) {
      for (int32_t q = 0; q < s.len; q += plan.rows_per_tile_) {
        LoraTile tile;
        tile.row0 = s.start + q;
        tile.nrows = std::min(plan.rows_per_tile_, s.len - q);
        tile.slot = s.slot;
        tile.rank = rank;
        tile.t_offset = static_cast<int64_t>(offset + static_cast<size_t>(q) * rank);
        plan.tiles_.push_back(tile);
      }
    }
    offset += static_cast<size_t>(s.len) * static_cast<size_t>(rank);
  }
  plan.t_floats_ = offset;
  if (plan.tiles_.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument("LoraBatchPlan::segmented: too many tiles");
  }
  plan.upload(stream);
  return plan;
}

LoraBatchPlan LoraBatchPlan::gathered(std::span<const int32_t> row_slot,
                                      std::span<const int32_t> slot_ranks, cudaStream_t stream) {
  if (row_slot.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument("LoraBatchPlan::gathered: too many rows");
  }
  LoraBatchPlan plan;
  plan.num_rows_ = static_cast<int>(row_slot.size());
  plan.slot_ranks_.assign(slot_ranks.begin(), slot_ranks.end());
  plan.rows_per_tile_ = 1;
  size_t offset = 0;
  for (size_t i = 0; i < row_slot.size(); ++i) {
    const int32_t slot = row_slot[i];
    if (slot < -1 || (slot >= 0 && static_cast<size_t>(slot) >= slot_ranks.size())) {
      throw std::invalid_argument("LoraBatchPlan::gathered: slot out of range");
    }
    if (slot < 0) continue;
    const int32_t rank = slot_ranks[slot];
    check_rank(rank, "LoraBatchPlan::gathered");
    if (rank == 0) continue;
    LoraTile tile;
    tile.row0 = static_cast<int32_t>(i);
    tile.nrows = 1;
    tile.slot = slot;
    tile.rank = rank;
    tile.t_offset = static_cast<int64_t>(offset);
    plan.tiles_.push_back(tile);
    offset += static_cast<size_t>(rank);
  }
  plan.t_floats_ = offset;
  plan.upload(stream);
  return plan;
}

// ---- launches ---------------------------------------------------------------------------------

void lora_shrink(DType dtype, const void* x, int in, int64_t ldx, const LoraAdapterTable& table,
                 const LoraBatchPlan& plan, float* t, cudaStream_t stream) {
  check_table(table, plan, "lora_shrink");
  if (in <= 0) throw std::invalid_argument("lora_shrink: in must be > 0");
  if (ldx < in) throw std::invalid_argument("lora_shrink: ldx < in");
  if (plan.num_tiles() == 0) return;
  if (x == nullptr || t == nullptr) throw std::invalid_argument("lora_shrink: null pointer");
  const dim3 grid(static_cast<unsigned>(plan.num_tiles()),
                  static_cast<unsigned>((plan.max_rank() + kShrinkRanks - 1) / kShrinkRanks));
  LORASCHED_DISPATCH_DTYPE("lora_shrink", dtype, T, {
    LORASCHED_DISPATCH_TILE_ROWS(plan.rows_per_tile(), TT, {
      lora_shrink_kernel<T, TT><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(x), in, ldx, table.device(), plan.device_tiles(), t);
    });
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

void lora_expand(DType dtype, const float* t, const LoraAdapterTable& table,
                 const LoraBatchPlan& plan, int out, void* y, int64_t ldy, cudaStream_t stream) {
  check_table(table, plan, "lora_expand");
  if (out <= 0) throw std::invalid_argument("lora_expand: out must be > 0");
  if (ldy < out) throw std::invalid_argument("lora_expand: ldy < out");
  if (plan.num_tiles() == 0) return;
  if (y == nullptr || t == nullptr) throw std::invalid_argument("lora_expand: null pointer");
  const unsigned col_blocks = static_cast<unsigned>((out + kThreads - 1) / kThreads);
  if (col_blocks > 65535u) throw std::invalid_argument("lora_expand: out too large");
  const dim3 grid(static_cast<unsigned>(plan.num_tiles()), col_blocks);
  LORASCHED_DISPATCH_DTYPE("lora_expand", dtype, T, {
    LORASCHED_DISPATCH_TILE_ROWS(plan.rows_per_tile(), TT, {
      lora_expand_kernel<T, TT><<<grid, kThreads, 0, stream>>>(t, out, ldy, static_cast<T*>(y),
                                                               table.device(), plan.device_tiles());
    });
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

}  // namespace lorasched::kernels::cuda
