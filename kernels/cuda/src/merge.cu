// Bit-exact merge / unmerge of a LoRA adapter into 16-bit weights. See merge.hpp.
//
// One kernel template runs the three passes (count exceptions, merge, unmerge) over the same
// tiling, so D is computed by literally the same code in merge and unmerge. A block owns a
// tile of kTileRows x kTileCols weights; rank is walked in chunks of kRankChunk, staging
// scale * B and A in shared memory as fp32, r ascending, one __fmaf_rn per r.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "device.cuh"
#include "lorasched/kernels/cuda/merge.hpp"

namespace lorasched::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTileCols = 128;  // one column per thread ...
constexpr int kRowGroups = kThreads / kTileCols;
constexpr int kRowsPerThread = 16;                      // ... and 16 rows, kRowGroups apart
constexpr int kTileRows = kRowGroups * kRowsPerThread;  // 32
constexpr int kRankChunk = 32;

enum class Pass { kCount, kMerge, kUnmerge };

// Order-preserving integer image of a 16-bit float pattern (sign-magnitude -> biased), a
// bijection on all 65536 patterns: -NaN..-0 -> 0x0000..0x7FFF, +0..+NaN -> 0x8000..0xFFFF.
__device__ __forceinline__ int order_key(uint16_t h) {
  return (h & 0x8000u) ? static_cast<int>(static_cast<uint16_t>(~h))
                       : static_cast<int>(h | 0x8000u);
}
__device__ __forceinline__ uint16_t from_order_key(int k) {
  const uint32_t u = static_cast<uint32_t>(k);
  return (u & 0x8000u) ? static_cast<uint16_t>(u & 0x7FFFu) : static_cast<uint16_t>(~u & 0xFFFFu);
}

__device__ __forceinline__ uint16_t bits_of(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ uint16_t bits_of(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
template <typename T>
__device__ __forceinline__ T from_bits(uint16_t b);
template <>
__device__ __forceinline__ __half from_bits<__half>(uint16_t b) {
  return __ushort_as_half(b);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_bits<__nv_bfloat16>(uint16_t b) {
  return __ushort_as_bfloat16(b);
}

// rn16(a + d) and rn16(a - d) without contraction.
template <typename T>
__device__ __forceinline__ uint16_t add_round(uint16_t w, float d) {
  return bits_of(dev::from_float<T>(__fadd_rn(dev::to_float(from_bits<T>(w)), d)));
}
template <typename T>
__device__ __forceinline__ uint16_t sub_round(uint16_t w, float d) {
  return bits_of(dev::from_float<T>(__fsub_rn(dev::to_float(from_bits<T>(w)), d)));
}

// D = scale * B A for the thread's kRowsPerThread rows (row0 + g + k * kRowGroups) of the tile
// at (row0, col0), column col0 + c: fp32, r ascending, one __fmaf_rn per r. Every merge,
// unmerge and switch computes D with this one function, so the values agree bit for bit.
// Block-uniform: every thread of the block calls it with the same arguments but c and g.
template <typename T>
__device__ __forceinline__ void tile_delta(const T* __restrict__ A, const T* __restrict__ B,
                                           int rank, float scale, int out, int in, int row0,
                                           int col0, int c, int g,
                                           float (&sA)[kRankChunk][kTileCols],
                                           float (&sB)[kTileRows][kRankChunk],
                                           float (&d)[kRowsPerThread]) {
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) d[k] = 0.0f;
  for (int rc = 0; rc < rank; rc += kRankChunk) {
    const int n = min(kRankChunk, rank - rc);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kRankChunk * kTileCols; idx += kThreads) {
      const int r = idx / kTileCols;
      const int cc = idx % kTileCols;
      const int gc = col0 + cc;
      sA[r][cc] =
          (r < n && gc < in) ? dev::to_float(A[static_cast<int64_t>(rc + r) * in + gc]) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < kTileRows * kRankChunk; idx += kThreads) {
      const int rr = idx / kRankChunk;
      const int r = idx % kRankChunk;
      const int gr = row0 + rr;
      sB[rr][r] = (r < n && gr < out)
                      ? __fmul_rn(scale, dev::to_float(B[static_cast<int64_t>(gr) * rank + rc + r]))
                      : 0.0f;
    }
    __syncthreads();
    for (int r = 0; r < n; ++r) {
      const float a = sA[r][c];
#pragma unroll
      for (int k = 0; k < kRowsPerThread; ++k) {
        d[k] = __fmaf_rn(sB[g + k * kRowGroups][r], a, d[k]);
      }
    }
  }
}

template <typename T, Pass P>
__global__ void __launch_bounds__(kThreads)
    merge_kernel(uint16_t* __restrict__ W, int out, int in, const T* __restrict__ A,
                 const T* __restrict__ B, int rank, float scale, int8_t* __restrict__ ulps,
                 uint32_t* __restrict__ counter, uint32_t* __restrict__ exc_index,
                 uint16_t* __restrict__ exc_value, uint32_t exc_capacity) {
  __shared__ float sA[kRankChunk][kTileCols];  // A[r, col0 + c]
  __shared__ float sB[kTileRows][kRankChunk];  // scale * B[row0 + rr, r]
  const int col0 = static_cast<int>(blockIdx.x) * kTileCols;
  const int row0 = static_cast<int>(blockIdx.y) * kTileRows;
  const int c = threadIdx.x % kTileCols;
  const int g = threadIdx.x / kTileCols;
  const int col = col0 + c;

  float d[kRowsPerThread];
  tile_delta<T>(A, B, rank, scale, out, in, row0, col0, c, g, sA, sB, d);

  uint32_t exceptions = 0;
  if (col < in) {
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int row = row0 + g + k * kRowGroups;
      if (row >= out) break;
      const size_t idx = static_cast<size_t>(row) * static_cast<size_t>(in) + col;
      const uint16_t w = W[idx];
      if constexpr (P == Pass::kUnmerge) {
        const uint16_t u = sub_round<T>(w, d[k]);
        const int8_t diff = ulps[idx];
        // Exceptions get u here and their original bits from the scatter kernel after.
        W[idx] = diff == MergeResidual16::kUlpException
                     ? u
                     : from_order_key(order_key(u) + static_cast<int>(diff));
      } else {
        const uint16_t merged = add_round<T>(w, d[k]);
        const uint16_t u = sub_round<T>(merged, d[k]);
        const int diff = order_key(w) - order_key(u);
        const bool exception = diff < -127 || diff > 127;
        if constexpr (P == Pass::kCount) {
          exceptions += exception ? 1u : 0u;
        } else {
          W[idx] = merged;
          ulps[idx] = exception ? MergeResidual16::kUlpException : static_cast<int8_t>(diff);
          if (exception) {
            const uint32_t slot = atomicAdd(counter, 1u);
            if (slot < exc_capacity) {
              exc_index[slot] = static_cast<uint32_t>(idx);
              exc_value[slot] = w;
            }
          }
        }
      }
    }
  }
  if constexpr (P == Pass::kCount) {
    // Block sum, one atomic per block.
    __shared__ uint32_t warp_counts[kThreads / 32];
    uint32_t v = exceptions;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x % 32 == 0) warp_counts[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t total = 0;
      for (int w = 0; w < kThreads / 32; ++w) total += warp_counts[w];
      if (total > 0) atomicAdd(counter, total);
    }
  }
}

__global__ void scatter_exceptions(uint16_t* __restrict__ W, const uint32_t* __restrict__ index,
                                   const uint16_t* __restrict__ value, uint32_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    W[index[i]] = value[i];
  }
}

// Counters of a switch (MergeResidual16::counter): exceptions written, exceptions of tiles that
// did not fit, tiles to redo.
enum SwitchCounter { kWritten = 0, kOverflow = 1, kRedo = 2, kSwitchCounters = 3 };

// Reserves n slots of the exception list for a whole tile, or none when they do not all fit:
// successful reservations stay contiguous from 0, so the list never has holes.
__device__ __forceinline__ bool reserve(uint32_t* counters, uint32_t n, uint32_t capacity,
                                        uint32_t* start) {
  uint32_t used = atomicAdd(&counters[kWritten], 0u);
  while (true) {
    if (used + n > capacity) {
      atomicAdd(&counters[kOverflow], n);
      return false;
    }
    const uint32_t seen = atomicCAS(&counters[kWritten], used, used + n);
    if (seen == used) {
      *start = used;
      return true;
    }
    used = seen;
  }
}

// One pass of the fused switch over a tile: W holds the from-adapter's merge, except at the
// from-adapter's exceptions (ulps == kUlpException), where the caller has scattered the base bits
// back. Per element: base = the from-adapter's unmerge, then the to-adapter's merge of it,
// exactly as merge_kernel would compute it. The tile's new exceptions get slots reserved all at
// once; when they do not fit, the tile is left untouched and queued for a second launch with a
// larger list. tiles: null for every tile in order, else the tile numbers to do.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    switch_kernel(uint16_t* __restrict__ W, int out, int in, const T* __restrict__ Af,
                  const T* __restrict__ Bf, int rank_f, float scale_f, const T* __restrict__ At,
                  const T* __restrict__ Bt, int rank_t, float scale_t, int8_t* __restrict__ ulps,
                  uint32_t* __restrict__ counters, uint32_t* __restrict__ exc_index,
                  uint16_t* __restrict__ exc_value, uint32_t exc_capacity,
                  const uint32_t* __restrict__ tiles, uint32_t* __restrict__ redo) {
  __shared__ float sA[kRankChunk][kTileCols];
  __shared__ float sB[kTileRows][kRankChunk];
  __shared__ uint32_t warp_counts[kThreads / 32];
  __shared__ uint32_t tile_start;
  __shared__ bool tile_fits;
  const int tiles_x = (in + kTileCols - 1) / kTileCols;
  const uint32_t tile = tiles != nullptr ? tiles[blockIdx.x] : blockIdx.x;
  const int col0 = static_cast<int>(tile % static_cast<uint32_t>(tiles_x)) * kTileCols;
  const int row0 = static_cast<int>(tile / static_cast<uint32_t>(tiles_x)) * kTileRows;
  const int c = threadIdx.x % kTileCols;
  const int g = threadIdx.x / kTileCols;
  const int col = col0 + c;

  float df[kRowsPerThread], dt[kRowsPerThread];
  tile_delta<T>(Af, Bf, rank_f, scale_f, out, in, row0, col0, c, g, sA, sB, df);
  tile_delta<T>(At, Bt, rank_t, scale_t, out, in, row0, col0, c, g, sA, sB, dt);

  uint16_t base[kRowsPerThread], merged[kRowsPerThread];
  int8_t diff8[kRowsPerThread];
  uint32_t fresh = 0;  // bit k: row k is a new exception
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int row = row0 + g + k * kRowGroups;
    diff8[k] = 0;
    base[k] = merged[k] = 0;
    if (col >= in || row >= out) continue;
    const size_t idx = static_cast<size_t>(row) * static_cast<size_t>(in) + col;
    const uint16_t w = W[idx];
    const int8_t old = ulps[idx];
    base[k] = old == MergeResidual16::kUlpException
                  ? w
                  : from_order_key(order_key(sub_round<T>(w, df[k])) + static_cast<int>(old));
    merged[k] = add_round<T>(base[k], dt[k]);
    const int diff = order_key(base[k]) - order_key(sub_round<T>(merged[k], dt[k]));
    if (diff < -127 || diff > 127) {
      fresh |= 1u << k;
      diff8[k] = MergeResidual16::kUlpException;
    } else {
      diff8[k] = static_cast<int8_t>(diff);
    }
  }

  // The tile's new exceptions: an exclusive prefix over the threads, then one reservation.
  const uint32_t mine = static_cast<uint32_t>(__popc(fresh));
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  uint32_t incl = mine;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const uint32_t v = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += v;
  }
  if (lane == 31) warp_counts[warp] = incl;
  __syncthreads();
  uint32_t before = incl - mine;
  uint32_t total = 0;
  for (int w = 0; w < kThreads / 32; ++w) {
    if (w < warp) before += warp_counts[w];
    total += warp_counts[w];
  }
  if (threadIdx.x == 0) {
    uint32_t start = 0;
    tile_fits = total == 0 || reserve(counters, total, exc_capacity, &start);
    tile_start = start;
    if (!tile_fits) redo[atomicAdd(&counters[kRedo], 1u)] = tile;
  }
  __syncthreads();
  if (!tile_fits) return;  // untouched: the second launch redoes the whole tile
  uint32_t slot = tile_start + before;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int row = row0 + g + k * kRowGroups;
    if (col >= in || row >= out) continue;
    const size_t idx = static_cast<size_t>(row) * static_cast<size_t>(in) + col;
    W[idx] = merged[k];
    ulps[idx] = diff8[k];
    if (fresh & (1u << k)) {
      exc_index[slot] = static_cast<uint32_t>(idx);
      exc_value[slot] = base[k];
      ++slot;
    }
  }
}

void validate(const char* what, DType dtype, const void* W, int out, int in, const void* A,
              const void* B, int rank) {
  if (dtype != DType::kF16 && dtype != DType::kBF16) detail::bad_dtype(what, dtype);
  if (out <= 0 || in <= 0 || rank < 0) {
    throw std::invalid_argument(std::string(what) + ": bad shape");
  }
  if (static_cast<uint64_t>(out) * static_cast<uint64_t>(in) >
      std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument(std::string(what) + ": more than 2^32 weights");
  }
  if (W == nullptr || (rank > 0 && (A == nullptr || B == nullptr))) {
    throw std::invalid_argument(std::string(what) + ": null pointer");
  }
}

template <Pass P>
void launch(DType dtype, void* W, int out, int in, const void* A, const void* B, int rank,
            float scale, MergeResidual16* res, uint32_t exc_capacity, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((in + kTileCols - 1) / kTileCols),
                  static_cast<unsigned>((out + kTileRows - 1) / kTileRows));
  if (grid.y > 65535u) throw std::invalid_argument("lora_merge: out too large");
  LORASCHED_DISPATCH_DTYPE16("lora_merge", dtype, T, {
    merge_kernel<T, P><<<grid, kThreads, 0, stream>>>(
        static_cast<uint16_t*>(W), out, in, static_cast<const T*>(A), static_cast<const T*>(B),
        rank, scale, res->ulps.get(), res->counter.get(), res->exception_index.get(),
        res->exception_value.get(), exc_capacity);
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

uint32_t read_counter(const MergeResidual16& res, cudaStream_t stream) {
  uint32_t value = 0;
  res.counter.download(std::span<uint32_t>(&value, 1), stream);
  return value;
}

// The residual's exception list, downloaded and sorted by index (the host copy).
void download_exceptions(MergeResidual16& res, uint32_t count, cudaStream_t stream) {
  res.exceptions.clear();
  if (count == 0) return;
  std::vector<uint32_t> index(count);
  std::vector<uint16_t> value(count);
  LORASCHED_CUDA_CHECK(cudaMemcpyAsync(index.data(), res.exception_index.get(),
                                       count * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream));
  LORASCHED_CUDA_CHECK(cudaMemcpyAsync(value.data(), res.exception_value.get(),
                                       count * sizeof(uint16_t), cudaMemcpyDeviceToHost, stream));
  LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream));
  res.exceptions.reserve(count);
  for (uint32_t i = 0; i < count; ++i) res.exceptions.emplace_back(index[i], value[i]);
  std::sort(res.exceptions.begin(), res.exceptions.end());
}

// Grows a device buffer to n elements, keeping its first `keep`.
template <typename T>
void grow_keeping(DeviceBuffer<T>& buf, size_t n, size_t keep, cudaStream_t stream) {
  if (buf.size() >= n) return;
  DeviceBuffer<T> bigger(n);
  if (keep > 0)
    LORASCHED_CUDA_CHECK(cudaMemcpyAsync(bigger.get(), buf.get(), keep * sizeof(T),
                                         cudaMemcpyDeviceToDevice, stream));
  LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream));  // before the old buffer is freed
  buf = std::move(bigger);
}

// The exception list a switch starts with: twice the previous merge's, at least 1,024 entries.
constexpr size_t kMinSwitchExceptions = 1024;

}  // namespace

void lora_merge(DType dtype, void* W, int out, int in, const void* A, const void* B, int rank,
                float scale, MergeResidual16* residual, cudaStream_t stream) {
  validate("lora_merge", dtype, W, out, in, A, B, rank);
  if (residual == nullptr) throw std::invalid_argument("lora_merge: null residual");
  if (residual->merged) {
    throw std::logic_error("lora_merge: residual still holds an un-restored merge");
  }
  MergeResidual16& res = *residual;
  const size_t numel = static_cast<size_t>(out) * static_cast<size_t>(in);
  res.ulps.ensure(numel);
  res.counter.ensure(1);

  // Pass 1: count the exceptions (W untouched).
  res.counter.zero(stream);
  launch<Pass::kCount>(dtype, W, out, in, A, B, rank, scale, &res, 0, stream);
  const uint32_t count = read_counter(res, stream);

  // Pass 2: merge, with an exception list of exactly that size.
  res.exception_index.ensure(count);
  res.exception_value.ensure(count);
  res.counter.zero(stream);
  launch<Pass::kMerge>(dtype, W, out, in, A, B, rank, scale, &res, count, stream);
  const uint32_t written = read_counter(res, stream);
  if (written != count) {
    // Both passes evaluate the same deterministic code; this would be a kernel bug, and W
    // may hold merged values whose originals were not all recorded.
    throw std::logic_error("lora_merge: exception count changed between passes (" +
                           std::to_string(count) + " vs " + std::to_string(written) + ")");
  }

  // Exceptions were appended in atomic order. The device list stays so (the unmerge scatter and
  // a switch's write the base bits back to distinct indices, in any order); the host copy is
  // sorted by index.
  download_exceptions(res, count, stream);
  res.merged = true;
  res.dtype = dtype;
  res.out = out;
  res.in = in;
  res.rank = rank;
  res.scale = scale;
}

void lora_unmerge(DType dtype, void* W, int out, int in, const void* A, const void* B, int rank,
                  float scale, MergeResidual16* residual, cudaStream_t stream) {
  validate("lora_unmerge", dtype, W, out, in, A, B, rank);
  if (residual == nullptr) throw std::invalid_argument("lora_unmerge: null residual");
  MergeResidual16& res = *residual;
  if (!res.merged) throw std::logic_error("lora_unmerge: residual holds no merge");
  if (res.dtype != dtype || res.out != out || res.in != in || res.rank != rank ||
      std::bit_cast<uint32_t>(res.scale) != std::bit_cast<uint32_t>(scale)) {
    throw std::invalid_argument(
        "lora_unmerge: dtype, shape, rank or scale differ from the matching lora_merge");
  }
  launch<Pass::kUnmerge>(dtype, W, out, in, A, B, rank, scale, &res, 0, stream);
  const auto n = static_cast<uint32_t>(res.exceptions.size());
  if (n > 0) {
    const unsigned blocks = std::min<unsigned>((n + 255u) / 256u, 1024u);
    scatter_exceptions<<<blocks, 256, 0, stream>>>(
        static_cast<uint16_t*>(W), res.exception_index.get(), res.exception_value.get(), n);
    LORASCHED_CUDA_CHECK_LAUNCH();
  }
  res.merged = false;
}

void lora_switch(DType dtype, void* W, int out, int in, const void* A_from, const void* B_from,
                 int rank_from, float scale_from, const void* A_to, const void* B_to, int rank_to,
                 float scale_to, MergeResidual16* residual, cudaStream_t stream) {
  validate("lora_switch", dtype, W, out, in, A_from, B_from, rank_from);
  validate("lora_switch", dtype, W, out, in, A_to, B_to, rank_to);
  if (residual == nullptr) throw std::invalid_argument("lora_switch: null residual");
  MergeResidual16& res = *residual;
  if (!res.merged) throw std::logic_error("lora_switch: residual holds no merge");
  if (res.dtype != dtype || res.out != out || res.in != in || res.rank != rank_from ||
      std::bit_cast<uint32_t>(res.scale) != std::bit_cast<uint32_t>(scale_from)) {
    throw std::invalid_argument(
        "lora_switch: dtype, shape, rank or scale of the from-adapter differ from its lora_merge");
  }
  const int tiles_x = (in + kTileCols - 1) / kTileCols;
  const int tiles_y = (out + kTileRows - 1) / kTileRows;
  const auto tiles = static_cast<uint32_t>(tiles_x) * static_cast<uint32_t>(tiles_y);

  // The from-adapter's exceptions: their base bits go back into W (the indices are distinct),
  // where the kernel reads them for the elements their ulps mark.
  const auto n_old = static_cast<uint32_t>(res.exceptions.size());
  if (n_old > 0) {
    const unsigned blocks = std::min<unsigned>((n_old + 255u) / 256u, 1024u);
    scatter_exceptions<<<blocks, 256, 0, stream>>>(
        static_cast<uint16_t*>(W), res.exception_index.get(), res.exception_value.get(), n_old);
    LORASCHED_CUDA_CHECK_LAUNCH();
  }
  const size_t capacity = std::max<size_t>(2 * static_cast<size_t>(n_old), kMinSwitchExceptions);
  res.exception_index.ensure(capacity);
  res.exception_value.ensure(capacity);
  res.counter.ensure(kSwitchCounters);
  res.redo_tiles.ensure(tiles);
  LORASCHED_CUDA_CHECK(
      cudaMemsetAsync(res.counter.get(), 0, kSwitchCounters * sizeof(uint32_t), stream));

  auto launch_switch = [&](unsigned grid, const uint32_t* tile_list, uint32_t cap) {
    LORASCHED_DISPATCH_DTYPE16("lora_switch", dtype, T, {
      switch_kernel<T><<<grid, kThreads, 0, stream>>>(
          static_cast<uint16_t*>(W), out, in, static_cast<const T*>(A_from),
          static_cast<const T*>(B_from), rank_from, scale_from, static_cast<const T*>(A_to),
          static_cast<const T*>(B_to), rank_to, scale_to, res.ulps.get(), res.counter.get(),
          res.exception_index.get(), res.exception_value.get(), cap, tile_list,
          res.redo_tiles.get());
    });
    LORASCHED_CUDA_CHECK_LAUNCH();
  };
  auto read_counters = [&] {
    std::array<uint32_t, kSwitchCounters> c{};
    res.counter.download(std::span<uint32_t>(c.data(), c.size()), stream);
    return c;
  };
  launch_switch(tiles, nullptr, static_cast<uint32_t>(res.exception_index.size()));
  auto counters = read_counters();
  if (counters[kRedo] > 0) {
    // Rare (an adapter whose delta dwarfs many weights): the list was too short for some tiles,
    // which were left untouched. Make room for exactly what they need and redo them.
    const uint32_t written = counters[kWritten];
    const size_t need = static_cast<size_t>(written) + counters[kOverflow];
    grow_keeping(res.exception_index, need, written, stream);
    grow_keeping(res.exception_value, need, written, stream);
    DeviceBuffer<uint32_t> redo(counters[kRedo]);
    LORASCHED_CUDA_CHECK(cudaMemcpyAsync(redo.get(), res.redo_tiles.get(),
                                         counters[kRedo] * sizeof(uint32_t),
                                         cudaMemcpyDeviceToDevice, stream));
    LORASCHED_CUDA_CHECK(
        cudaMemsetAsync(res.counter.get() + kOverflow, 0, 2 * sizeof(uint32_t), stream));
    launch_switch(counters[kRedo], redo.get(), static_cast<uint32_t>(need));
    counters = read_counters();  // also waits before `redo` is freed
    if (counters[kRedo] > 0 || counters[kWritten] != need) {
      // The second launch had exactly the room it needs; this would be a kernel bug, and W may
      // hold switched values whose base bits were not all recorded.
      throw std::logic_error("lora_switch: exception list sizing failed (" +
                             std::to_string(counters[kWritten]) + " of " + std::to_string(need) +
                             ")");
    }
  }
  download_exceptions(res, counters[kWritten], stream);
  res.rank = rank_to;
  res.scale = scale_to;
}

}  // namespace lorasched::kernels::cuda
