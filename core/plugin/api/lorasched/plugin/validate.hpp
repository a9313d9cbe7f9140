// The engine's rules for a valid plan, shared with the plugin test kit so a plugin author
// checks a plan exactly as the engine will.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "lorasched/plugin/policies.hpp"

namespace lorasched::api {

// A plan is valid when: its mode is one of the Mode values; every candidate is a queued
// request of this replica, listed once; merged mode names an existing adapter and lists only
// its requests; mixed mode names an existing adapter and lists requests of it and of at most
// limits.max_adapters_per_batch others; unmerged mode names no merged adapter and lists
// requests of at most limits.max_adapters_per_batch adapters.
inline Status validate_plan(const ReplicaView& view, const IterationPlan& plan) {
  if (plan.mode != Mode::unmerged && plan.mode != Mode::merged && plan.mode != Mode::mixed)
    return Status::error("plan has mode " + std::to_string(static_cast<int>(plan.mode)) +
                         ", which is none of unmerged (0), merged (1), mixed (2)");
  if (has_merged_weights(plan.mode)) {
    if (plan.merged_adapter < 0 || plan.merged_adapter >= view.num_adapters)
      return Status::error(std::string(to_string(plan.mode)) + " plan names adapter " +
                           std::to_string(plan.merged_adapter) + ", but adapters are 0.." +
                           std::to_string(view.num_adapters - 1));
  } else if (plan.merged_adapter != kNoAdapter) {
    return Status::error("unmerged plan names merged adapter " +
                         std::to_string(plan.merged_adapter));
  }
  std::unordered_map<RequestId, AdapterId> queued;
  queued.reserve(view.queued.size());
  for (const auto& r : view.queued) queued.emplace(r.id, r.adapter);
  std::unordered_set<RequestId> seen;
  std::unordered_set<AdapterId> adapters;
  seen.reserve(plan.requests.size());
  for (RequestId id : plan.requests) {
    auto it = queued.find(id);
    if (it == queued.end())
      return Status::error("plan lists request " + std::to_string(id) +
                           ", which is not queued on replica " + std::to_string(view.replica));
    if (!seen.insert(id).second)
      return Status::error("plan lists request " + std::to_string(id) + " twice");
    if (plan.mode == Mode::merged && it->second != plan.merged_adapter)
      return Status::error("merged plan on adapter " + std::to_string(plan.merged_adapter) +
                           " lists request " + std::to_string(id) + " of adapter " +
                           std::to_string(it->second));
    if (plan.mode != Mode::mixed || it->second != plan.merged_adapter) adapters.insert(it->second);
  }
  // Adapters computed through the unmerged path (all in unmerged mode, the others in
  // mixed mode) are limited per batch.
  const int32_t cap = view.limits.max_adapters_per_batch;
  if (plan.mode != Mode::merged && cap > 0 && static_cast<int32_t>(adapters.size()) > cap)
    return Status::error(std::string(to_string(plan.mode)) + " plan holds requests of " +
                         std::to_string(adapters.size()) + " adapters" +
                         (plan.mode == Mode::mixed ? " besides the merged one" : "") +
                         ", over the limit of " + std::to_string(cap) + " adapters per batch");
  return Status::ok();
}

}  // namespace lorasched::api
