// Workloads: the requests of a run (arrival time, adapter, prompt and output lengths),
// from arrival models, real traces, or dLoRA's artifact-style generator. Seeded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lorasched {

struct RequestSpec {
  int64_t id = 0;       // 0 .. n-1 in arrival order
  double arrival = 0;   // seconds from the start of the run
  int32_t adapter = 0;  // 0 .. num_adapters-1
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;
};

// How lengths are drawn. kind: "fixed" (value), "uniform" (min..max inclusive),
// "lognormal" (median, sigma, clipped to min..max), "trace" (rows sampled from the
// lengths of an Azure LLM trace file, `trace`), or "from-trace" (the arrival trace's
// own lengths, only with arrival = "trace" or "adapter-trace").
struct LengthSpec {
  std::string kind = "fixed";
  int32_t value = 128;
  int32_t min = 1;
  int32_t max = 4096;
  double median = 128;
  double sigma = 1.0;
  std::filesystem::path trace;
};

// Adapter popularity. kind: "uniform"; "zipf" (adapter i has weight 1/(i+1)^s);
// "drifting" (a hot set of `hot_count` adapters takes `hot_share` of the requests and
// moves to other adapters every `drift_period_s` seconds; the rest share the remainder
// uniformly); "trace" (the adapter column of an adapter trace).
struct PopularitySpec {
  std::string kind = "uniform";
  double zipf_s = 1.0;
  int32_t hot_count = 2;
  double hot_share = 0.8;
  double drift_period_s = 30.0;
};

// dLoRA's evaluation workload (artifact vllm/workload_generator/trace.py, see
// docs/workloads.md): per-function popularity over time bins, functions sorted by
// popularity and mapped to adapters `map_stride` at a time round-robin, per adapter and
// interval a Gamma process at its share of the total rate.
struct ArtifactSpec {
  // Per-function invocation counts per time bin: CSV with one row per function and one
  // column per bin (header `function,bin0,bin1,...`). Empty: generate them.
  std::filesystem::path function_counts;
  int32_t num_functions = 512;                    // generated: number of functions
  std::string function_popularity = "lognormal";  // generated: "lognormal" | "zipf"
  double function_sigma = 3.0;                    // lognormal sigma of per-function mean rates
  double function_zipf_s = 1.0;                   // zipf exponent of per-function rates
  double intensity_sigma = 0.3;    // generated: lognormal variation of each bin's intensity
  int32_t num_bins = 60;           // generated: bins in the window
  double bin_minutes = 1.0;        // minutes per bin
  double interval_minutes = 60.0;  // the artifact's `interval`: bins grouped into intervals
  int32_t map_stride = 1;
  // What an adapter's rate in an interval is a share of (docs/workloads.md): "interval"
  // (its invocations / all invocations of that interval, so every interval runs at `rate`)
  // or "window" (its invocations in the interval / all invocations of the whole window).
  std::string rate_share = "interval";
  // How num_requests is split over the intervals: "even" (the artifact: num_requests /
  // intervals each, one more for each of the first num_requests mod intervals) or
  // "invocations" (proportional to the interval's invocations, largest remainder).
  std::string quota = "even";
  // Where the Gamma gaps come from: "independent" (the run's seed, every adapter and interval
  // its own draws) or "numpy-reseed" (the artifact: NumPy's legacy generator re-seeded with 0
  // whenever an adapter's process starts, drawn in batches of int(rate * interval_minutes *
  // 1.2), so every adapter and interval reuses the same draws and the seed plays no part).
  std::string gaps = "independent";
};

struct WorkloadSpec {
  // "poisson" (rate), "gamma" (rate, cv), "trace" (Azure LLM trace: TIMESTAMP,
  // ContextTokens, GeneratedTokens), "adapter-trace" (arrival_s,adapter,prompt_tokens,
  // output_tokens, replayed exactly), "artifact" (ArtifactSpec).
  std::string arrival = "poisson";
  double rate = 1.0;  // requests per second (poisson, gamma, artifact's total rate)
  // The offered rate as a fraction of the configuration's capacity under the scheduler
  // `load_reference` (core/cli/capacity.cpp resolves it into `rate`, or a trace's
  // `target_rate`, before a run).
  std::optional<double> load;
  std::string load_reference = "unmerged-fcfs";
  double cv = 1.0;  // coefficient of variation of inter-arrival times (gamma, artifact)
  std::filesystem::path trace;
  double time_scale = 1.0;                   // trace: multiply inter-arrival times by this
  std::optional<double> target_rate;         // trace: rescale time to reach this mean rate
  double trace_start_s = 0;                  // trace: skip arrivals before this offset
  std::optional<int32_t> max_prompt_tokens;  // clip prompt lengths (trace and sampled)
  std::optional<int32_t> max_output_tokens;  // clip output lengths
  std::optional<int64_t> num_requests;       // stop after this many requests
  std::optional<double> duration_s;          // stop at this arrival time
  PopularitySpec popularity;
  LengthSpec prompt;
  LengthSpec output{"fixed", 32, 1, 4096, 32, 1.0, {}};
  ArtifactSpec artifact;
};

// The offered rate a workload is run at, and how a load or a capacity search sets it: `rate`
// for generated arrivals, `target_rate` for a replayed trace (its time axis rescaled).
bool rate_is_trace_target(const WorkloadSpec& w);
double offered_rate(const WorkloadSpec& w);  // 0 for a trace replayed at its own pace
void set_offered_rate(WorkloadSpec& w, double rate);

// Generates the requests, sorted by arrival, ids 0..n-1. Throws InputError naming the
// file and line for a malformed trace, and the parameter for an invalid spec (zero or
// negative rate, empty trace, neither num_requests nor duration_s where one is needed...).
std::vector<RequestSpec> generate_workload(const WorkloadSpec& spec, int32_t num_adapters,
                                           uint64_t seed);

// Writes requests in the adapter trace format (header arrival_s,adapter,prompt_tokens,
// output_tokens; arrival with full double precision), so other tools replay them exactly.
void write_adapter_trace(const std::filesystem::path& path, const std::vector<RequestSpec>& reqs);

// ---- pieces of the artifact generator, exposed for tests and tools --------------------------

// Per-function invocation counts, counts[function][bin].
using FunctionCounts = std::vector<std::vector<double>>;

// Reads a `function,bin0,bin1,...` CSV (one row per function, non-negative counts).
FunctionCounts read_function_counts(const std::filesystem::path& path);

// Generates `num_functions` x `num_bins` counts with heavy-tailed per-function mean rates
// (ArtifactSpec::function_popularity) and lognormal per-bin variation (intensity_sigma).
FunctionCounts generate_function_counts(const ArtifactSpec& spec, uint64_t seed);

// Function indices sorted by total invocations, most popular first, ties by index.
std::vector<int32_t> functions_by_popularity(const FunctionCounts& counts);

// The artifact's `map_model`: the adapter of every function (indexed like `counts`). The
// k-th most popular function goes to adapter (k / map_stride) % num_adapters.
std::vector<int32_t> map_functions_to_adapters(const FunctionCounts& counts, int32_t num_adapters,
                                               int32_t map_stride);

}  // namespace lorasched
