// A profile: what `lorasched profile` measures on an executor (a grid of batches, weight
// switches, adapter loads and swaps, each the median of repeated runs), as data. Where it comes
// from and where it goes live beside it, one concern per file (docs/costmodel.md):
//   profile_grid.hpp   which points to measure
//   profiler.hpp       measuring them on any Executor
//   profile_json.hpp   the JSON file
//   profile_model.hpp  the cost model fitted to a profile
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/shape.hpp"

namespace lorasched {

inline constexpr const char* kProfileFormat = "lorasched-profile";
inline constexpr int kProfileVersion = 1;

// One measured point: the median of `samples` (seconds), taken after warm-up runs.
struct Measurement {
  double seconds = 0;
  std::vector<double> samples;
};

// A prefill-only batch: `seqs` sequences, `tokens` tokens in all (as even as possible), on
// the base weights (merged mode: the merged adapter's requests, no LoRA term).
struct PrefillPoint {
  int32_t tokens = 0, seqs = 0;
  Measurement m;
};
// A decode-only batch on the base weights: `batch` sequences of `context` tokens each.
struct DecodePoint {
  int32_t batch = 0, context = 0;
  Measurement m;
};
// The prefill batch (tokens, seqs = adapters) run unmerged, each sequence with its own
// adapter of rank `rank`: its LoRA cost is this minus the prefill point's time.
struct LoraPoint {
  int32_t tokens = 0, adapters = 0, rank = 0;
  Measurement m;
};
// A prefill + decode batch on the base weights (gives the overhead the two share).
struct MixedPoint {
  int32_t prefill_tokens = 0, prefill_seqs = 0, decode_batch = 0, decode_context = 0;
  Measurement m;
};
// A cost driven by a size: merge / unmerge / load of an adapter of rank `size`, a fused switch
// between two adapters of rank `size`, or a swap of `size` KV blocks; `bytes` is what the cost
// model interpolates in.
struct SizePoint {
  int32_t size = 0;
  int64_t bytes = 0;
  Measurement m;
};

struct ProfileGrid {
  std::vector<int32_t> prefill_tokens;  // also the LoRA grid's token counts
  std::vector<int32_t> prefill_seqs;    // also the LoRA grid's distinct adapters
  std::vector<int32_t> decode_batch;
  std::vector<int32_t> decode_context;
  std::vector<int32_t> ranks;  // LoRA grid, merges, loads
  std::vector<int32_t> swap_blocks;
  std::vector<MixedPoint> mixed;  // the mixed batches (m unused)
  int64_t max_kv_tokens = 0;      // points needing more KV slots are skipped
  // Adapters of each rank the LoRA points cycle through, D at a time, from one run of a
  // point to the next: in serving, consecutive unmerged batches hold other adapters, whose
  // weights are not in the caches (at least the largest prefill_seqs).
  int32_t adapter_rotation = 1;
  int repeats = 5;  // timed runs per point (median)
  int warmup = 1;   // untimed runs first
};

struct MachineInfo {
  std::string hostname;
  std::string cpu_model;
  int threads = 0;
  std::string executor;  // "cpu"
  std::string device;    // the executor's device()
};

struct Profile {
  int version = kProfileVersion;
  MachineInfo machine;
  std::string date;  // ISO 8601, UTC
  ModelShape shape;
  int element_bytes = 4;
  int32_t block_size = 16;
  int64_t block_bytes = 0;         // one KV block, all layers, K and V
  double device_memory_bytes = 0;  // what the executor may use (weights + pool)
  double default_pool_bytes = 0;   // the pool it gets when an experiment sets none
  ProfileGrid grid;
  double seconds_taken = 0;  // wall time of the profiling run
  std::vector<PrefillPoint> prefill;
  std::vector<DecodePoint> decode;
  std::vector<LoraPoint> lora;
  std::vector<MixedPoint> mixed;
  std::vector<SizePoint> merge, unmerge, load, swap_out, swap_in;
  // Fused switches between two adapters of rank `size` (bytes: both adapters). Optional in the
  // file: profiles taken before the fused switch existed price it as an unmerge plus a merge.
  std::vector<SizePoint> switches;
};

// The median of samples (the mean of the two middle ones for an even count); 0 for none.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace lorasched
