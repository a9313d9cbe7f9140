// dLoRA's adapter placement and replication (artifact vllm/engine/engine_manager.py
// `find_best_lora_weight_schedule` and `calc_min_bt`, docs/cluster.md): a greedy that adds
// adapter replicas while the cluster's "burst tolerance" (for every adapter, the memory of
// the replicas hosting it over its expected share of the load; the minimum over adapters)
// does not drop.
#pragma once

#include <cstdint>
#include <vector>

#include "lorasched/plugin/types.hpp"

namespace lorasched::cluster {

// How the initial placement is topped up to G + N - 1 adapter replicas (artifact, is_init).
enum class TopUp : uint8_t {
  // MigrationType.PERIOD_MIG (dLoRA): copies of one adapter (`replicated`; the artifact
  // draws it with an unseeded random.randint) round-robin onto replicas lacking it.
  one_adapter,
  // Other migration types: round-robin over replicas and adapter ids.
  round_robin,
};

// The placement state the artifact's EngineManager keeps between calls.
struct PlacementState {
  // replica -> adapters, in the order they were added (the artifact's list order).
  std::vector<std::vector<api::AdapterId>> lists;
  // replica -> memory left for the burst tolerance (bytes): the replica's memory minus the
  // size of every adapter ever added there. As in the artifact, it only ever decreases
  // (adapters dropped by migration do not give their memory back).
  std::vector<double> avail_mem;
};

// min over adapters t of (sum over replicas hosting t of avail_mem) / expected[t].
double calc_min_bt(const PlacementState& s, const std::vector<double>& expected);

// One call of `find_best_lora_weight_schedule`. `current`: replicas per adapter (updated);
// `capacity`: per-replica adapter capacity (nullptr in the initial call, as in the
// artifact). Returns the number of adapter replicas added. Loops the artifact could spin in
// forever (nothing accepted while unplaced adapters remain) stop instead.
int64_t find_best_lora_weight_schedule(PlacementState& s, bool is_init,
                                       const std::vector<double>& expected,
                                       std::vector<int32_t>& current,
                                       const std::vector<int32_t>* capacity,
                                       const std::vector<int64_t>& adapter_bytes,
                                       TopUp top_up = TopUp::one_adapter,
                                       api::AdapterId replicated = 0);

// The initial placement of the artifact's EngineManager.__init__: expected load uniform,
// every replica with `memory_bytes` available. Lists keep the artifact's insertion order.
PlacementState initial_placement(int32_t replicas, const std::vector<int64_t>& adapter_bytes,
                                 double memory_bytes, TopUp top_up, api::AdapterId replicated);

}  // namespace lorasched::cluster
