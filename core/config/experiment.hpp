// An experiment file (TOML) as typed structs. Every error names FILE:LINE:COL and is
// raised before any work starts (InputError, exit code 2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/metrics/summary.hpp"
#include "core/workload/workload.hpp"
#include "lorasched/plugin/types.hpp"

namespace lorasched {

// Closed sets of the experiment file, parsed into these at the config boundary (the names
// are what the file writes; to_string gives them back).
enum class ExecutorKind : uint8_t { cpu, costmodel, cuda };
enum class Preemption : uint8_t { recompute, swap };
enum class MigrationKv : uint8_t { recompute, transfer };
enum class AdapterSource : uint8_t { synthetic, peft };
// [engine] switch: how the weights go from one merged adapter to another. fused: one pass,
// W += s_b B_b A_b - s_a B_a A_a; unmerge_merge: dLoRA's artifact's unmerge then merge.
enum class WeightSwitch : uint8_t { fused, unmerge_merge };
// [cluster] costmodel_lora: the LoRA kernels the hardware presets price the unmerged path
// with (docs/costmodel.md): dLoRA's artifact's, or Punica's SGMV.
enum class CostModelLora : uint8_t { artifact, sgmv };

template <class E>
struct EnumName {
  E value;
  const char* name;
};
inline constexpr EnumName<ExecutorKind> kExecutorKinds[] = {{ExecutorKind::cpu, "cpu"},
                                                            {ExecutorKind::costmodel, "costmodel"},
                                                            {ExecutorKind::cuda, "cuda"}};
inline constexpr EnumName<Preemption> kPreemptions[] = {{Preemption::recompute, "recompute"},
                                                        {Preemption::swap, "swap"}};
inline constexpr EnumName<MigrationKv> kMigrationKvs[] = {{MigrationKv::recompute, "recompute"},
                                                          {MigrationKv::transfer, "transfer"}};
inline constexpr EnumName<AdapterSource> kAdapterSources[] = {
    {AdapterSource::synthetic, "synthetic"}, {AdapterSource::peft, "peft"}};
inline constexpr EnumName<WeightSwitch> kWeightSwitches[] = {
    {WeightSwitch::fused, "fused"}, {WeightSwitch::unmerge_merge, "unmerge-merge"}};
inline constexpr EnumName<CostModelLora> kCostModelLoras[] = {{CostModelLora::artifact, "artifact"},
                                                              {CostModelLora::sgmv, "sgmv"}};

template <class E, size_t N>
const char* enum_name(E v, const EnumName<E> (&names)[N]) {
  for (const auto& n : names)
    if (n.value == v) return n.name;
  return "?";
}
inline const char* to_string(ExecutorKind v) { return enum_name(v, kExecutorKinds); }
inline const char* to_string(Preemption v) { return enum_name(v, kPreemptions); }
inline const char* to_string(MigrationKv v) { return enum_name(v, kMigrationKvs); }
inline const char* to_string(AdapterSource v) { return enum_name(v, kAdapterSources); }
inline const char* to_string(WeightSwitch v) { return enum_name(v, kWeightSwitches); }
inline const char* to_string(CostModelLora v) { return enum_name(v, kCostModelLoras); }

struct SourcePos {
  std::string file;
  int line = 0;
  int column = 0;
  std::string str() const;  // "file:line:col" (or "file" when the position is unknown)
};

// One parameter of a plugin table as written in the file, checked against the plugin's
// ParamSpecs when the plugin is resolved (core/config/plugins.hpp).
struct RawParam {
  std::string key;
  api::ParamValue value;
  SourcePos pos;
};

struct PluginConfig {
  std::string table;  // "scheduler", "threshold", "migration", "dispatcher"
  std::string name;   // plugin name ("dlora") or path to a plugin library
  SourcePos pos;      // of the `plugin` key (or of the table when defaulted)
  std::vector<RawParam> params;
};

struct RunSection {
  std::string name;
  uint64_t seed = 1;
  std::filesystem::path output;  // results file; default results/<name>.h5
};

struct ModelSection {
  std::string preset = "tiny";  // tiny | small | llama2-7b | llama2-13b | llama2-70b
  std::filesystem::path path;   // HF model directory (overrides preset)
  uint64_t seed = 0;            // synthetic weights: 0 = derived from run.seed
};

struct AdaptersSection {
  int32_t count = 8;
  std::vector<int32_t> ranks = {8};  // assigned round-robin (adapter i gets ranks[i % n])
  double lora_alpha = 0;             // 0: alpha = rank (scale 1)
  bool use_rslora = false;
  AdapterSource source = AdapterSource::synthetic;
  std::vector<std::filesystem::path> paths;  // source = "peft": one directory per adapter
};

struct EngineSection {
  int32_t max_batch_size = 16;         // B (dLoRA's max_num_seqs)
  int32_t max_batched_tokens = 4096;   // per iteration
  int32_t block_size = 16;             // tokens per KV block
  int32_t max_model_len = 4096;        // prompt + output cap (vLLM max_model_len)
  int32_t max_adapters_per_batch = 0;  // 0: no limit besides the pool
  double watermark = 0.01;             // fraction of KV blocks kept free at admission
  Preemption preemption = Preemption::recompute;
  std::optional<int64_t> kv_blocks;     // pool size in KV blocks (explicit)
  std::optional<double> pool_gib;       // pool size in GiB (KV blocks + adapters)
  double gpu_memory_utilization = 0.9;  // else: this share of the device memory minus weights
  int64_t swap_blocks = 1 << 20;        // host blocks available for swapped KV
  bool unified_pool = true;             // adapters take pool blocks (S-LoRA unified paging)
  WeightSwitch weight_switch = WeightSwitch::fused;  // `switch`
};

// [cluster] costmodel_scale: the cost model rescaled to a hardware regime, at dLoRA's
// reference batch (16 decodes, context 512, 16 distinct rank-16 adapters unmerged).
struct CostModelScale {
  std::optional<double> unmerged_ratio;     // unmerged / merged iteration time
  std::optional<double> switch_iterations;  // one adapter-to-adapter switch, in merged iterations
};

struct ClusterSection {
  int32_t replicas = 1;
  ExecutorKind executor = ExecutorKind::cpu;
  int32_t threads = 0;                 // cpu executor: BLAS threads (0 = all cores)
  std::string costmodel = "";          // costmodel: preset name or profile file
  CostModelLora costmodel_lora = CostModelLora::artifact;  // hardware presets
  CostModelScale costmodel_scale;
  double migration_interval_s = 10.0;  // migration plugin period (dLoRA: 10 s)
  MigrationKv migration_kv = MigrationKv::recompute;
  // GB/s (10^9 B/s) between replicas and host<->device: dLoRA's PCIE_BANDWIDTH, 32 GiB/s
  // (engine_manager.py 20-21), which its ILP and dispatch cost use; exact in binary.
  double link_gbps = 34.359738368;
};

struct MetricsSection {
  bool log_batches = false;
  SummaryOptions summary;  // warmup_s, cooldown_s (the measurement window), slo_per_token_s
};

// How `lorasched run` summarises a sweep beyond one row per run.
struct ReportSection {
  // Sweep coordinates to group runs by ("variant" or a swept dotted key); runs that differ
  // only in the other coordinates (e.g. run.seed) form one row: mean ± 95% CI.
  std::vector<std::string> group_by;
  bool plot = false;  // draw scripts/plot.py's figures after the run (needs python3 + h5py)
};

struct Experiment {
  std::filesystem::path path;  // the experiment file
  std::string text;            // this run's own TOML: the file with its sweep point and --set
                               // overrides applied (the file's text itself without either)
  std::string file_text;       // the experiment file as written
  std::string label;           // the sweep point ("" without a sweep)
  // The sweep point's coordinates: ("variant", name) and (dotted key, value text).
  std::vector<std::pair<std::string, std::string>> coords;
  int32_t index = 0;  // position in the sweep
  RunSection run;
  ModelSection model;
  AdaptersSection adapters;
  WorkloadSpec workload;
  EngineSection engine;
  ClusterSection cluster;
  PluginConfig scheduler{"scheduler", "unmerged-fcfs", {}, {}};
  PluginConfig threshold{"threshold", "fixed", {}, {}};
  PluginConfig migration{"migration", "none", {}, {}};
  PluginConfig dispatcher{"dispatcher", "least-loaded", {}, {}};
  MetricsSection metrics;
  ReportSection report;
  std::vector<std::filesystem::path> plugin_paths;  // [plugins] paths
};

// Reads an experiment file and expands its [sweep] into one Experiment per point (a
// single one without a sweep). `overrides` are "dotted.key=value" strings applied before
// the sweep (value parsed as TOML, or as a bare string). Throws InputError
// "FILE:LINE:COL: message".
std::vector<Experiment> load_experiments(const std::filesystem::path& file,
                                         const std::vector<std::string>& overrides = {});

// The same from text (for tests); `file` names it in messages.
std::vector<Experiment> parse_experiments(const std::string& text, const std::string& file,
                                          const std::vector<std::string>& overrides = {});

}  // namespace lorasched
