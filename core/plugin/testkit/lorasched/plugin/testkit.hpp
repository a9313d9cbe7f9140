// Test kit for plugin authors: build a replica or cluster view by hand, create a policy
// with its default parameters, call it, and check its plan with the engine's own rules.
// Header-only; needs no GPU, no engine and no loader.
//
//   lorasched::testkit::ReplicaBuilder b(/*num_adapters=*/4);
//   b.add(/*adapter=*/1, /*arrival=*/0.0).add(2, 0.1);
//   auto fixed = lorasched::testkit::make_policy<MyThreshold>(info_function());
//   auto sched = lorasched::testkit::make_policy<MyScheduler>(my_info(), {}, fixed.get());
//   auto plan = sched->plan(b.view());
//   EXPECT_TRUE(lorasched::testkit::check_plan(b.view(), plan).is_ok());
#pragma once

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace lorasched::testkit {

// The parameters a plugin would get from an experiment file that sets `overrides` (by
// name) and leaves the rest at their declared defaults. Unknown names throw.
inline api::Params params_for(const api::PluginInfo& info,
                              const std::map<std::string, api::ParamValue>& overrides = {}) {
  api::Params p;
  for (const auto& s : info.params) p.set(s.name, s.default_value);
  for (const auto& [k, v] : overrides) {
    if (!p.has(k)) throw std::invalid_argument("unknown parameter '" + k + "' for " + info.name);
    p.set(k, v);
  }
  return p;
}

// Creates policy class T (the class a plugin exports) as the engine would: guarded, so its
// checked_* functions work, with CreateArgs built from the info's defaults + overrides.
template <class T>
std::unique_ptr<api::PolicyBase<T>> make_policy(
    const api::PluginInfo& info, const std::map<std::string, api::ParamValue>& overrides = {},
    api::Threshold* threshold = nullptr, int32_t num_adapters = 4, api::ReplicaLimits limits = {}) {
  api::CreateArgs args;
  args.params = params_for(info, overrides);
  args.seed = 1;
  args.replica = 0;
  args.num_adapters = num_adapters;
  if (limits.max_adapters_per_batch == 0) limits.max_adapters_per_batch = num_adapters;
  args.limits = limits;
  args.threshold = threshold;
  return std::unique_ptr<api::PolicyBase<T>>(new api::Guarded<T>(args));
}

// The engine's validity rules for a plan (same function the engine calls).
inline api::Status check_plan(const api::ReplicaView& view, const api::IterationPlan& plan) {
  return api::validate_plan(view, plan);
}

// Every candidate of a (valid) plan, in the order the engine admits them: plan.requests, then
// its tail (IterationPlan::tail) in full, walked by the engine's own code (api::PlanTail).
inline std::vector<api::RequestId> candidates(const api::ReplicaView& view,
                                              const api::IterationPlan& plan) {
  return api::plan_candidates(view, plan);
}

// A replica's state, built by hand. Requests get ids 0, 1, 2, ... in the order added; view()
// lists them in the engine's FCFS order (arrival, ties by state waiting < ready < swapped,
// then by order added), kept by the engine's own queue (api::RequestQueue). A request that
// holds KV (ready, swapped) holds the engine's api::kv_blocks_for(context, limits.block_size)
// blocks: set limits() before adding.
class ReplicaBuilder {
 public:
  explicit ReplicaBuilder(int32_t num_adapters,
                          int32_t max_batch_size = api::ReplicaLimits{}.max_batch_size)
      : queue_(num_adapters) {
    limits_.max_batch_size = max_batch_size;
    limits_.max_adapters_per_batch = num_adapters;
    adapters_.resize(static_cast<size_t>(num_adapters));
    for (int32_t a = 0; a < num_adapters; ++a)
      adapters_[static_cast<size_t>(a)] = {a, 16, 0, true, 0};
  }
  ReplicaBuilder& add(api::AdapterId adapter, double arrival, int32_t prompt = 32,
                      int32_t output = 16, api::RequestState state = api::RequestState::waiting,
                      int32_t generated = 0) {
    api::RequestView r;
    r.id = next_id_++;
    r.adapter = adapter;
    r.arrival = arrival;
    r.prompt_tokens = prompt;
    r.output_tokens = output;
    r.generated = generated;
    r.state = state;
    r.kv_blocks =
        state == api::RequestState::waiting
            ? 0
            : static_cast<int32_t>(api::kv_blocks_for(prompt + generated, limits_.block_size));
    adapters_.at(static_cast<size_t>(adapter)).unfinished += 1;
    slots_.push_back(queue_.push(r));
    return *this;
  }
  // n requests of one adapter arriving at t0, t0 + dt, ...
  ReplicaBuilder& add_many(api::AdapterId adapter, int n, double t0, double dt = 0.001) {
    for (int i = 0; i < n; ++i) add(adapter, t0 + i * dt);
    return *this;
  }
  ReplicaBuilder& merged(api::AdapterId adapter) {
    mode_ = adapter == api::kNoAdapter ? api::Mode::unmerged : api::Mode::merged;
    merged_ = adapter;
    return *this;
  }
  ReplicaBuilder& now(double t) {
    now_ = t;
    return *this;
  }
  ReplicaBuilder& iteration(int64_t i) {
    iteration_ = i;
    return *this;
  }
  ReplicaBuilder& kv(int64_t total, int64_t free) {
    kv_total_ = total;
    kv_free_ = free;
    return *this;
  }
  ReplicaBuilder& limits(const api::ReplicaLimits& l) {
    limits_ = l;
    return *this;
  }
  ReplicaBuilder& adapter(api::AdapterId id, int32_t rank, int64_t bytes, bool resident) {
    auto& a = adapters_.at(static_cast<size_t>(id));
    a.rank = rank;
    a.bytes = bytes;
    a.resident = resident;
    return *this;
  }
  // Drops requests (e.g. the ones a plan ran to completion).
  ReplicaBuilder& remove(api::RequestId id) {
    if (id < 0 || static_cast<size_t>(id) >= slots_.size()) return *this;
    const api::RequestQueue::Slot s = slots_[static_cast<size_t>(id)];
    if (queue_.holds(s, id)) {
      adapters_.at(static_cast<size_t>(queue_.node(s).request.adapter)).unfinished -= 1;
      queue_.erase(s);
    }
    return *this;
  }

  const api::ReplicaView& view() {
    view_.replica = 0;
    view_.now = now_;
    view_.iteration = iteration_;
    view_.num_adapters = static_cast<int32_t>(adapters_.size());
    view_.limits = limits_;
    view_.mode = mode_;
    view_.merged_adapter = merged_;
    view_.queued = queue_.all();
    view_.adapters = adapters_;
    view_.kv_blocks_total = kv_total_;
    view_.kv_blocks_free = kv_free_;
    view_.queue = &queue_;
    return view_;
  }

 private:
  api::ReplicaLimits limits_;
  api::RequestQueue queue_;
  std::vector<api::RequestQueue::Slot> slots_;  // by request id
  std::vector<api::AdapterView> adapters_;
  api::Mode mode_ = api::Mode::unmerged;
  api::AdapterId merged_ = api::kNoAdapter;
  double now_ = 0;
  int64_t iteration_ = 0;
  int64_t kv_total_ = 1024, kv_free_ = 1024;
  api::RequestId next_id_ = 0;
  api::ReplicaView view_;
};

// A cluster's state, built by hand, for migration and dispatcher policies. Replicas are
// 0, 1, ...; requests get ids 0, 1, ... in the order added.
class ClusterBuilder {
 public:
  ClusterBuilder(int32_t replicas, int32_t num_adapters, int64_t kv_blocks_per_replica = 1024) {
    limits_.max_adapters_per_batch = num_adapters;
    reps_.resize(static_cast<size_t>(replicas));
    for (int32_t r = 0; r < replicas; ++r) {
      Rep& rep = reps_[static_cast<size_t>(r)];
      rep.state.replica = r;
      rep.state.kv_blocks_total = kv_blocks_per_replica;
      rep.state.adapter_slots = num_adapters;
      rep.per_adapter.assign(static_cast<size_t>(num_adapters), 0);
    }
    bytes_.assign(static_cast<size_t>(num_adapters), 1 << 20);
    exec_.assign(static_cast<size_t>(num_adapters), std::numeric_limits<double>::quiet_NaN());
  }
  // Adapter `a` placed on replica `r`.
  ClusterBuilder& host(int32_t r, api::AdapterId a) {
    auto& h = reps_.at(static_cast<size_t>(r)).hosted;
    if (std::find(h.begin(), h.end(), a) == h.end()) {
      h.push_back(a);
      std::sort(h.begin(), h.end());
    }
    return *this;
  }
  // An unfinished request of adapter `a` on replica `r` holding `kv_blocks` blocks.
  ClusterBuilder& add(int32_t r, api::AdapterId a, int32_t kv_blocks = 4, double arrival = 0,
                      api::RequestState state = api::RequestState::ready) {
    Rep& rep = reps_.at(static_cast<size_t>(r));
    api::RequestView v;
    v.id = next_id_++;
    v.adapter = a;
    v.arrival = arrival;
    v.prompt_tokens = limits_.block_size * kv_blocks;
    v.output_tokens = 16;
    v.state = state;
    v.kv_blocks = kv_blocks;
    rep.requests.push_back(v);
    rep.per_adapter.at(static_cast<size_t>(a)) += 1;
    rep.state.kv_blocks_used += kv_blocks;
    return host(r, a);
  }
  ClusterBuilder& adapter_slots(int32_t r, int32_t slots) {
    reps_.at(static_cast<size_t>(r)).state.adapter_slots = slots;
    return *this;
  }
  ClusterBuilder& mean_exec_time(api::AdapterId a, double seconds) {
    exec_.at(static_cast<size_t>(a)) = seconds;
    return *this;
  }
  ClusterBuilder& now(double t) {
    now_ = t;
    return *this;
  }
  // Bytes per second between replicas and host<->device. The default is the simulator's
  // ([cluster] link_gbps): dLoRA's PCIe constant, 32 GiB/s = 2^35 B/s.
  ClusterBuilder& link_bandwidth(double bytes_per_second) {
    link_bandwidth_ = bytes_per_second;
    return *this;
  }
  ClusterBuilder& kv_block_bytes(int64_t bytes) {
    kv_block_bytes_ = bytes;
    return *this;
  }

  const api::ClusterView& view() {
    states_.clear();
    for (Rep& rep : reps_) {
      rep.state.hosted = rep.hosted;
      rep.state.unfinished_per_adapter = rep.per_adapter;
      rep.state.unfinished = static_cast<int32_t>(rep.requests.size());
      rep.state.requests = rep.requests;
      states_.push_back(rep.state);
    }
    view_.now = now_;
    view_.num_adapters = static_cast<int32_t>(bytes_.size());
    view_.limits = limits_;
    view_.replicas = states_;
    view_.adapter_bytes = bytes_;
    view_.adapter_mean_exec_time = exec_;
    view_.kv_block_bytes = kv_block_bytes_;
    view_.link_bandwidth = link_bandwidth_;
    api::index_cluster_view(view_, states_, index_);
    return view_;
  }

 private:
  struct Rep {
    api::ReplicaState state;
    std::vector<api::AdapterId> hosted;
    std::vector<int32_t> per_adapter;
    std::vector<api::RequestView> requests;
  };
  api::ReplicaLimits limits_;
  std::vector<Rep> reps_;
  std::vector<api::ReplicaState> states_;
  std::vector<int64_t> bytes_;
  std::vector<double> exec_;
  double now_ = 0;
  double link_bandwidth_ = 34359738368.0;  // 2^35 B/s
  int64_t kv_block_bytes_ = 1 << 20;
  api::RequestId next_id_ = 0;
  api::ClusterView view_;
  api::ClusterViewIndex index_;
};

}  // namespace lorasched::testkit
