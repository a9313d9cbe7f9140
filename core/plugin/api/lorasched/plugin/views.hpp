// Read-only views of replica and cluster state that the engine hands to policies.
// Views are valid only during the call they are passed to.
#pragma once

#include <cstdint>
#include <span>

#include "lorasched/plugin/types.hpp"

namespace lorasched::api {

// dLoRA / vLLM 0.1.4 request states. waiting: not prefilled (or preempted by
// recomputation); ready: KV cache on the device, waiting for its next iteration; swapped:
// KV cache in host memory; running: in the iteration being executed.
enum class RequestState : uint8_t {
  waiting = 0,
  ready = 1,
  swapped = 2,
  running = 3,
  finished = 4
};

inline const char* to_string(RequestState s) {
  switch (s) {
    case RequestState::waiting:
      return "waiting";
    case RequestState::ready:
      return "ready";
    case RequestState::swapped:
      return "swapped";
    case RequestState::running:
      return "running";
    case RequestState::finished:
      return "finished";
  }
  return "?";
}

struct RequestView {
  RequestId id = 0;
  AdapterId adapter = 0;
  double arrival = 0;  // seconds of virtual time
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;  // tokens it will generate in total (EOS ignored, as in dLoRA)
  int32_t generated = 0;      // tokens generated so far
  RequestState state = RequestState::waiting;
  int32_t kv_blocks = 0;  // KV blocks it holds (device or host when swapped)
  int32_t context_tokens() const { return prompt_tokens + generated; }
};

struct AdapterView {
  AdapterId id = 0;
  int32_t rank = 0;
  int64_t bytes = 0;       // size of its weights on the device
  bool resident = false;   // its weights are in the replica's pool
  int32_t unfinished = 0;  // unfinished requests of this adapter on the replica
};

// Limits of one replica's iterations (dLoRA artifact defaults).
struct ReplicaLimits {
  int32_t max_batch_size = 16;        // B = max_num_seqs
  int32_t max_batched_tokens = 4096;  // prompt + generation tokens per iteration
  int32_t block_size = 16;            // tokens per KV block
  int32_t max_adapters_per_batch =
      0;                        // distinct adapters an unmerged batch may hold (gpu_capacity)
  int32_t prompt_limit = 4096;  // longer prompts are rejected (finished as ignored)
};

struct ReplicaView {
  int32_t replica = 0;
  double now = 0;
  int64_t iteration = 0;     // index of the iteration being planned
  int32_t num_adapters = 0;  // adapter ids are 0 .. num_adapters-1
  ReplicaLimits limits;
  Mode mode = Mode::unmerged;             // how the replica's weights are now
  AdapterId merged_adapter = kNoAdapter;  // set when mode == merged
  // Every unfinished request not in flight (waiting, ready and swapped), oldest arrival
  // first; ties keep the order waiting, ready, swapped (dLoRA's FCFS).
  std::span<const RequestView> queued;
  std::span<const AdapterView> adapters;  // indexed by adapter id
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_free = 0;
};

// What happened in one iteration, reported to the scheduler and threshold plugins after it.
struct IterationOutcome {
  int32_t replica = 0;
  int64_t iteration = 0;
  double start = 0;        // virtual time the iteration started (before any switch)
  double switch_time = 0;  // merge/unmerge/adapter-load time paid before it ran
  double duration = 0;     // execution time of the batch itself
  Mode mode = Mode::unmerged;
  AdapterId merged_adapter = kNoAdapter;
  int32_t batch_size = 0;
  int32_t prefill_tokens = 0;
  int32_t decode_tokens = 0;
  int32_t distinct_adapters = 0;
  std::span<const RequestId> batch;  // admitted requests in batch order
};

// ---- cluster level ---------------------------------------------------------------------------

struct ReplicaState {
  int32_t replica = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;
  int32_t adapter_slots = 0;                        // adapters it may host at once
  std::span<const AdapterId> hosted;                // adapters placed on it, ascending
  std::span<const int32_t> unfinished_per_adapter;  // indexed by adapter id
  int32_t unfinished = 0;                           // all its unfinished requests
  // Its unfinished requests (waiting, running, swapped, ready). Filled for migration
  // policies; empty in dispatcher views (which are built for every request).
  std::span<const RequestView> requests;
};

struct ClusterView {
  double now = 0;
  int32_t num_adapters = 0;
  ReplicaLimits limits;  // per replica (all replicas share them)
  std::span<const ReplicaState> replicas;
  std::span<const int64_t> adapter_bytes;  // indexed by adapter id
  // Mean execution time (sum of the iteration times a request was in) of the finished
  // requests of each adapter, over the whole cluster; NaN when none finished yet.
  std::span<const double> adapter_mean_exec_time;
  int64_t kv_block_bytes = 0;  // bytes of one KV block across all layers
  double link_bandwidth = 0;   // bytes/s between replicas (PCIe/NVLink/network)
};

}  // namespace lorasched::api
