// Profiles: what `lorasched profile` measures on an executor (a grid of batches, weight
// switches, adapter loads and swaps, each the median of repeated runs), the JSON file it
// writes, and the cost model built from one (docs/costmodel.md).
//
// The profiler drives any Executor through its interface (run, switch_weights,
// load_adapter, swap_out/in) and times what the executor reports, so the cpu executor
// today and a cuda executor later are profiled the same way.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/exec/costmodel.hpp"

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
// A cost driven by a size: merge / unmerge / load of an adapter of rank `size`, or a swap of
// `size` KV blocks; `bytes` is what the cost model interpolates in.
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

// The default grid for a model shape (--quick: a small one for tests, seconds).
ProfileGrid default_profile_grid(const ModelShape& shape, bool quick, std::vector<int32_t> ranks);
// Adapters of each rank the grid needs (the rotation, at least the most distinct adapters
// in a batch, plus one to load).
int32_t profile_adapters_per_rank(const ProfileGrid& grid);

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
};

// What the profiler runs on: an executor holding the model and, in its host memory, the
// adapters listed (adapters[i].id is the id to pass to load_adapter), with a pool of
// `kv_blocks` blocks of `block_size` tokens.
struct ProfileTarget {
  Executor* executor = nullptr;
  ModelShape shape;
  int element_bytes = 4;
  int32_t block_size = 16;
  int64_t block_bytes = 0;
  int64_t kv_blocks = 0;
  std::vector<AdapterInfo> adapters;  // at least profile_adapters_per_rank() of each grid rank
};

// Runs the grid on the target (loads the adapters it needs first). `log` gets one line per
// part. The result has no machine, date or memory figures (the caller knows them).
Profile run_profile(const ProfileTarget& target, const ProfileGrid& grid,
                    const std::function<void(std::string_view)>& log = {});

// JSON (nlohmann). read_profile throws InputError naming the file and the key for a
// missing or corrupt file, a wrong format or version, or a missing or bad field.
void write_profile(const Profile& p, const std::filesystem::path& path);
Profile read_profile(const std::filesystem::path& path);
std::string profile_to_json(const Profile& p);
Profile profile_from_json(const std::string& text, const std::string& source);

// The cost model of a profile (docs/costmodel.md, "Profiles"). Throws InputError naming
// `source` when the profile was taken on another model shape than `shape`, or lacks a point
// the model needs.
std::unique_ptr<CostModel> profile_cost_model(const Profile& p, const std::string& source,
                                              const ModelShape& shape);

}  // namespace lorasched
