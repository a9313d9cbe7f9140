// The rows a run records: one per request, per iteration, per event, per batch slot.
// These are the compound types of the HDF5 datasets (docs/results-format.md).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace lorasched {

inline constexpr double kNoTime = std::numeric_limits<double>::quiet_NaN();

enum class RequestStatus : int8_t {
  unfinished = 0,     // still running when the run ended (duration limit)
  finished = 1,       // generated all its output tokens
  ignored = 2,        // prompt longer than the replica's prompt limit (never ran, as in vLLM)
  length_capped = 3,  // prompt + output reached the model's maximum length
};

struct RequestRecord {
  int64_t id = 0;
  int32_t adapter = 0;
  int32_t replica = -1;              // replica that finished it (last one if migrated)
  double arrival = kNoTime;          // seconds of virtual time
  double first_scheduled = kNoTime;  // start of the first iteration it was in
  double first_token = kNoTime;      // end of its prefill iteration
  double finish = kNoTime;           // end of the iteration producing its last token
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;        // tokens generated
  double queueing_delay = kNoTime;  // first_scheduled - arrival
  double exec_time = 0;             // sum of the (switch + execution) times of its iterations
  int32_t migrations = 0;
  int32_t preemptions = 0;
  int8_t status = static_cast<int8_t>(RequestStatus::unfinished);
};

struct IterationRecord {
  int32_t replica = 0;
  int64_t iteration = 0;
  double start = 0;        // virtual time the iteration began (switches included)
  double switch_time = 0;  // merge / unmerge / adapter loads / swaps paid before the batch
  double duration = 0;     // execution of the batch
  int8_t mode = 0;         // 0 unmerged, 1 merged, 2 mixed
  int32_t merged_adapter = -1;
  int32_t batch_size = 0;
  int32_t prefill_tokens = 0;
  int32_t decode_tokens = 0;
  int32_t distinct_adapters = 0;
  int32_t queued = 0;          // requests queued when it was planned
  int64_t kv_blocks_used = 0;  // pool blocks in use (KV + adapters) after admission
  double alpha = kNoTime;      // thresholds in force when it was planned (NaN: no threshold)
  double beta = kNoTime;
  double decision_wall_us = 0;  // wall time of the scheduler's decision, microseconds
};

enum class EventKind : int8_t {
  merge = 0,
  unmerge = 1,
  adapter_load = 2,
  adapter_evict = 3,
  preempt_swap = 4,       // KV swapped out to host memory
  preempt_recompute = 5,  // KV dropped, request recomputed later
  swap_in = 6,
  migrate_request = 7,      // request moved from `replica` to `other_replica`
  migrate_adapter = 8,      // adapter copied to `other_replica` (placement change)
  threshold_change = 9,     // value = new alpha, value2 = new beta
  migration_decision = 10,  // duration = solve time, value = objective, value2 = bound
  warning = 11,             // something the run recovered from; see `adapter`/`request`
  request_ignored = 12,
  // The plan's first waiting or swapped request could not get KV blocks, so ready requests
  // the plan does not run were preempted for it (not in dLoRA's artifact: docs/policies.md).
  // request = that request, value = the blocks it needs, value2 = requests preempted (the
  // preempt events right after this one on the same replica).
  relief = 13,
};
inline constexpr int kNumEventKinds = 14;
inline const char* const kEventKindNames[kNumEventKinds] = {"merge",
                                                            "unmerge",
                                                            "adapter_load",
                                                            "adapter_evict",
                                                            "preempt_swap",
                                                            "preempt_recompute",
                                                            "swap_in",
                                                            "migrate_request",
                                                            "migrate_adapter",
                                                            "threshold_change",
                                                            "migration_decision",
                                                            "warning",
                                                            "request_ignored",
                                                            "relief"};

struct EventRecord {
  double time = 0;  // virtual time the event began
  int32_t replica = -1;
  int8_t kind = 0;  // EventKind
  int32_t adapter = -1;
  int64_t request = -1;
  double duration = 0;  // seconds it cost (stalls the replica unless noted)
  int64_t bytes = 0;    // bytes moved or touched
  int32_t other_replica = -1;
  double value = kNoTime;
  double value2 = kNoTime;
};

// One row per request per iteration when [metrics] log_batches = true.
struct BatchLogRecord {
  int64_t iteration = 0;
  int32_t replica = 0;
  int64_t request = 0;
  int32_t position = 0;  // index in the batch, admission order
};

// Headline figures of one run (computed from the records; see metrics/summary.hpp).
struct Summary {
  int64_t requests = 0;
  int64_t finished = 0;
  int64_t ignored = 0;
  int64_t unfinished = 0;
  double makespan = 0;  // virtual seconds from the first arrival to the last finish
  double throughput_rps = 0;
  double throughput_tokens = 0;  // output tokens per second
  double latency_mean = kNoTime, latency_p50 = kNoTime, latency_p90 = kNoTime,
         latency_p99 = kNoTime;
  double per_token_latency_mean = kNoTime, per_token_latency_p90 = kNoTime;  // latency/output
  double ttft_mean = kNoTime, ttft_p90 = kNoTime;
  double queueing_mean = kNoTime, queueing_p90 = kNoTime;
  int64_t iterations = 0;
  int64_t merged_iterations = 0;
  int64_t merges = 0, unmerges = 0, adapter_loads = 0, adapter_evictions = 0;
  int64_t preemptions = 0, migrations = 0, threshold_changes = 0;
  double switch_time_total = 0;
  double wall_seconds = 0;  // wall-clock time of the run (not part of the deterministic data)
};

// Everything one run produced, in memory, before it is written.
struct RunRecords {
  std::vector<RequestRecord> requests;
  std::vector<IterationRecord> iterations;
  std::vector<EventRecord> events;
  std::vector<BatchLogRecord> batches;
};

}  // namespace lorasched
