// Read-only views of replica and cluster state that the engine hands to policies.
// Views are valid only during the call they are passed to.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lorasched/plugin/queue.hpp"
#include "lorasched/plugin/types.hpp"

namespace lorasched::api {

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

// KV blocks a context of `tokens` tokens holds: the engine allocates whole blocks. The one
// rule, shared by the engine's admission and the test kit's hand-built views.
constexpr int64_t kv_blocks_for(int64_t tokens, int32_t block_size) {
  return (tokens + block_size - 1) / block_size;
}

struct ReplicaView {
  int32_t replica = 0;
  double now = 0;
  int64_t iteration = 0;     // index of the iteration being planned
  int32_t num_adapters = 0;  // adapter ids are 0 .. num_adapters-1
  ReplicaLimits limits;
  Mode mode = Mode::unmerged;             // how the replica's weights are now
  AdapterId merged_adapter = kNoAdapter;  // set when mode == merged
  // Every unfinished request not in flight (waiting, ready and swapped), oldest arrival
  // first; ties keep the order waiting, ready, swapped (dLoRA's FCFS). A walk from the front
  // (`for (const RequestView& r : view.queued)`, `.front()`); `.size()` is free, each step of
  // a walk costs one link, so stop as soon as you have what you need (queue.hpp).
  QueueRange queued;
  // Adapter a's queued requests, in the same order; `.size()` is their number.
  QueueRange queued_of(AdapterId a) const { return queue->of_adapter(a); }
  std::span<const AdapterView> adapters;  // indexed by adapter id
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_free = 0;
  // The queue `queued` and queued_of() walk (the engine's own, read-only here).
  const RequestQueue* queue = nullptr;
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
  // The adapters with unfinished requests on it (unfinished_per_adapter > 0), ascending: a
  // walk over what the replica holds instead of over every adapter.
  std::span<const AdapterId> active_adapters;
  int32_t unfinished = 0;  // all its unfinished requests
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
  // Indexes the host keeps up to date, so a dispatch need not scan the cluster:
  // per adapter id, the indexes in `replicas` of the replicas hosting it, ascending;
  std::span<const std::span<const int32_t>> adapter_hosts;
  // the index in `replicas` of the replica with the fewest unfinished requests (the lowest
  // index on ties), -1 without replicas.
  int32_t least_loaded = -1;
};

// Storage for the indexes of a ClusterView built by hand (tests, tools, benchmarks).
struct ClusterViewIndex {
  std::vector<std::vector<int32_t>> hosts;
  std::vector<std::span<const int32_t>> host_spans;
  std::vector<std::vector<AdapterId>> active;
};

// Fills the index fields of `v` (adapter_hosts, least_loaded, and each state's
// active_adapters) from its other fields; `states` are the ReplicaStates `v.replicas` shows,
// `index` keeps what the spans point to. Call it again after changing the view.
inline void index_cluster_view(ClusterView& v, std::span<ReplicaState> states,
                               ClusterViewIndex& index) {
  const size_t N = v.num_adapters > 0 ? static_cast<size_t>(v.num_adapters) : 0;
  index.hosts.assign(N, {});
  index.active.assign(states.size(), {});
  v.least_loaded = -1;
  for (size_t j = 0; j < states.size(); ++j) {
    ReplicaState& s = states[j];
    for (AdapterId a : s.hosted)
      if (a >= 0 && static_cast<size_t>(a) < N &&
          (index.hosts[static_cast<size_t>(a)].empty() ||
           index.hosts[static_cast<size_t>(a)].back() != static_cast<int32_t>(j)))
        index.hosts[static_cast<size_t>(a)].push_back(static_cast<int32_t>(j));
    for (size_t a = 0; a < s.unfinished_per_adapter.size(); ++a)
      if (s.unfinished_per_adapter[a] > 0) index.active[j].push_back(static_cast<AdapterId>(a));
    s.active_adapters = index.active[j];
    if (v.least_loaded < 0 || s.unfinished < states[static_cast<size_t>(v.least_loaded)].unfinished)
      v.least_loaded = static_cast<int32_t>(j);
  }
  index.host_spans.assign(index.hosts.begin(), index.hosts.end());
  v.adapter_hosts = index.host_spans;
}

}  // namespace lorasched::api
