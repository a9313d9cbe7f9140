// How the engine reads a plan, shared with the plugin test kit so a plugin author checks a
// plan exactly as the engine will: its validity rules (validate_plan) and the walk of its
// tail (PlanTail), which the engine's admission and plan_candidates() both use.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "lorasched/plugin/policies.hpp"

namespace lorasched::api {

// A plan is valid when: its mode is one of the Mode values; every candidate it lists is a
// queued request of this replica, listed once; its tail is one of the Tail values, a
// Tail::adapter naming an existing adapter; merged mode names an existing adapter and lists
// only its requests, with no tail or a Tail::adapter of it; mixed mode names an existing
// adapter and lists requests of it and of at most limits.max_adapters_per_batch others;
// unmerged mode names no merged adapter and lists requests of at most
// limits.max_adapters_per_batch adapters. A Tail::adapter counts as one of the plan's adapters
// (in mixed mode unless it is the merged one); Tail::fcfs and Tail::fcfs_until_limit keep the
// limit by themselves.
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
  if (plan.tail != Tail::none && plan.tail != Tail::adapter && plan.tail != Tail::fcfs &&
      plan.tail != Tail::fcfs_until_limit)
    return Status::error("plan has tail " + std::to_string(static_cast<int>(plan.tail)) +
                         ", which is none of none (0), adapter (1), fcfs (2), fcfs_until_limit "
                         "(3)");
  if (plan.tail == Tail::adapter &&
      (plan.tail_adapter < 0 || plan.tail_adapter >= view.num_adapters))
    return Status::error("plan's tail names adapter " + std::to_string(plan.tail_adapter) +
                         ", but adapters are 0.." + std::to_string(view.num_adapters - 1));
  if (plan.mode == Mode::merged && plan.tail != Tail::none &&
      (plan.tail != Tail::adapter || plan.tail_adapter != plan.merged_adapter))
    return Status::error("merged plan on adapter " + std::to_string(plan.merged_adapter) +
                         " has a tail other than that adapter's queue");
  std::unordered_map<RequestId, AdapterId> queued;
  queued.reserve(static_cast<size_t>(view.queued.size()));
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
  if (plan.tail == Tail::adapter &&
      (plan.mode != Mode::mixed || plan.tail_adapter != plan.merged_adapter))
    adapters.insert(plan.tail_adapter);
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

// The walk of a valid plan's tail over a replica's queue: the requests it adds after the
// listed ones, in order, as far as the caller asks. Tell it the adapters of the listed
// requests first (listed()); `seen` is scratch of one byte per adapter, all zero, and is left
// all zero again.
class PlanTail {
 public:
  using Slot = RequestQueue::Slot;
  PlanTail(const RequestQueue& queue, const IterationPlan& plan, int32_t adapter_limit,
           std::vector<uint8_t>& seen)
      : queue_(queue), plan_(plan), limit_(adapter_limit), seen_(seen) {
    if (plan.tail == Tail::adapter)
      at_ = queue.of_adapter(plan.tail_adapter).begin();
    else if (plan.tail == Tail::fcfs || plan.tail == Tail::fcfs_until_limit)
      at_ = queue.all().begin();
  }
  PlanTail(const PlanTail&) = delete;
  PlanTail& operator=(const PlanTail&) = delete;
  ~PlanTail() {
    for (AdapterId a : seen_list_) seen_[static_cast<size_t>(a)] = 0;
  }

  // A listed request's adapter, for the adapter limit of an FCFS tail.
  void listed(AdapterId a) {
    if (plan_.tail == Tail::fcfs || plan_.tail == Tail::fcfs_until_limit) see(a);
  }

  // The next request of the tail that `is_listed` (a function of its id) does not reject,
  // or nullptr at its end.
  template <class IsListed>
  const RequestView* next(IsListed&& is_listed) {
    const auto end = QueueRange::iterator();
    while (at_ != end) {
      const RequestView& r = *at_;
      ++at_;
      if (is_listed(r.id)) continue;
      if (plan_.tail == Tail::adapter) return &r;
      if (plan_.mode == Mode::mixed && r.adapter == plan_.merged_adapter) return &r;
      if (seen_[static_cast<size_t>(r.adapter)]) return &r;
      if (limit_ > 0 && static_cast<int32_t>(seen_list_.size()) >= limit_) {
        if (plan_.tail == Tail::fcfs_until_limit) at_ = end;
        continue;
      }
      see(r.adapter);
      return &r;
    }
    return nullptr;
  }

 private:
  void see(AdapterId a) {
    if (plan_.mode == Mode::mixed && a == plan_.merged_adapter) return;
    auto& s = seen_[static_cast<size_t>(a)];
    if (!s) {
      s = 1;
      seen_list_.push_back(a);
    }
  }

  const RequestQueue& queue_;
  const IterationPlan& plan_;
  int32_t limit_;
  std::vector<uint8_t>& seen_;
  std::vector<AdapterId> seen_list_;
  QueueRange::iterator at_;
};

// Every candidate of a valid plan in the order the engine admits them: `requests`, then its
// tail in full. O(queue); for tests and tools (the engine walks the tail lazily).
inline std::vector<RequestId> plan_candidates(const ReplicaView& view, const IterationPlan& plan) {
  std::vector<RequestId> out(plan.requests);
  std::unordered_set<RequestId> listed(plan.requests.begin(), plan.requests.end());
  std::unordered_map<RequestId, AdapterId> adapter;
  for (const auto& r : view.queued) adapter.emplace(r.id, r.adapter);
  std::vector<uint8_t> seen(static_cast<size_t>(view.num_adapters), 0);
  PlanTail tail(*view.queue, plan, view.limits.max_adapters_per_batch, seen);
  for (RequestId id : plan.requests) tail.listed(adapter.at(id));
  while (const RequestView* r = tail.next([&](RequestId id) { return listed.count(id) != 0; }))
    out.push_back(r->id);
  return out;
}

}  // namespace lorasched::api
