// Helpers for the cluster tests: hand-built cluster views, plugins from the build tree,
// simulations from TOML text.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/cluster/simulation.hpp"
#include "core/config/experiment.hpp"
#include "core/plugin/loader.hpp"
#include "lorasched/plugin/testkit.hpp"

namespace lorasched::test {

inline PluginRegistry& registry() {
  static PluginRegistry r(plugin_search_path());
  return r;
}

template <class T>
PluginInstance<T> load(const std::string& name,
                       const std::map<std::string, api::ParamValue>& params = {},
                       int32_t num_adapters = 4) {
  auto lib = registry().find(api::kind_of<T>(), name);
  api::CreateArgs args;
  args.params = testkit::params_for(lib->info, params);
  args.seed = 1;
  args.num_adapters = num_adapters;
  args.limits.max_adapters_per_batch = num_adapters;
  return instantiate<T>(lib, args);
}

// A cluster built by hand: replicas with hosted adapters, KV blocks and requests.
class ClusterBuilder {
 public:
  ClusterBuilder(int32_t replicas, int32_t num_adapters) : n_(num_adapters) {
    reps_.resize(static_cast<size_t>(replicas));
    for (int32_t r = 0; r < replicas; ++r) {
      reps_[static_cast<size_t>(r)].state.replica = r;
      reps_[static_cast<size_t>(r)].counts.assign(static_cast<size_t>(num_adapters), 0);
      reps_[static_cast<size_t>(r)].state.kv_blocks_total = 1 << 20;
    }
    exec_.assign(static_cast<size_t>(num_adapters), std::numeric_limits<double>::quiet_NaN());
    bytes_.assign(static_cast<size_t>(num_adapters), 1 << 20);
  }
  ClusterBuilder& host(int32_t r, std::vector<api::AdapterId> adapters) {
    rep(r).hosted = std::move(adapters);
    rep(r).state.adapter_slots = static_cast<int32_t>(rep(r).hosted.size());
    return *this;
  }
  ClusterBuilder& blocks(int32_t r, int64_t total) {
    rep(r).state.kv_blocks_total = total;
    return *this;
  }
  // A request with `tokens` of context (prompt), so ceil(tokens / 16) logical blocks.
  api::RequestId add(int32_t r, api::AdapterId a, int32_t tokens = 16,
                     api::RequestState st = api::RequestState::ready) {
    api::RequestView v;
    v.id = next_++;
    v.adapter = a;
    v.arrival = static_cast<double>(v.id) * 0.01;
    v.prompt_tokens = tokens;
    v.output_tokens = 100;
    v.generated = 0;
    v.state = st;
    v.kv_blocks = st == api::RequestState::waiting ? 0 : (tokens + 15) / 16;
    rep(r).requests.push_back(v);
    ++rep(r).counts[static_cast<size_t>(a)];
    return v.id;
  }
  ClusterBuilder& exec_time(api::AdapterId a, double t) {
    exec_[static_cast<size_t>(a)] = t;
    return *this;
  }
  ClusterBuilder& link(double bytes_per_s, int64_t block_bytes) {
    bw_ = bytes_per_s;
    block_bytes_ = block_bytes;
    return *this;
  }
  ClusterBuilder& batch(int32_t b) {
    limits_.max_batch_size = b;
    return *this;
  }
  // Outstanding requests per adapter without request views (dispatcher views).
  ClusterBuilder& counts(int32_t r, std::vector<int32_t> c) {
    c.resize(static_cast<size_t>(n_), 0);
    rep(r).counts = std::move(c);
    return *this;
  }

  const api::ClusterView& view() {
    states_.clear();
    for (auto& x : reps_) {
      api::ReplicaState s = x.state;
      s.hosted = x.hosted;
      s.unfinished_per_adapter = x.counts;
      s.unfinished = 0;
      for (int32_t c : x.counts) s.unfinished += c;
      s.requests = x.requests;
      int64_t used = 0;
      for (const auto& q : x.requests) used += q.kv_blocks;
      s.kv_blocks_used = used;
      states_.push_back(s);
    }
    view_.now = 100;
    view_.num_adapters = n_;
    view_.limits = limits_;
    view_.replicas = states_;
    view_.adapter_bytes = bytes_;
    view_.adapter_mean_exec_time = exec_;
    view_.kv_block_bytes = block_bytes_;
    view_.link_bandwidth = bw_;
    api::index_cluster_view(view_, states_, index_);
    return view_;
  }

 private:
  struct Rep {
    api::ReplicaState state;
    std::vector<api::AdapterId> hosted;
    std::vector<int32_t> counts;
    std::vector<api::RequestView> requests;
  };
  Rep& rep(int32_t r) { return reps_.at(static_cast<size_t>(r)); }
  int32_t n_;
  std::vector<Rep> reps_;
  std::vector<api::ReplicaState> states_;
  std::vector<double> exec_;
  std::vector<int64_t> bytes_;
  double bw_ = 1e12;
  int64_t block_bytes_ = 1;
  api::ReplicaLimits limits_;
  api::RequestId next_ = 0;
  api::ClusterView view_;
  api::ClusterViewIndex index_;
};

// One experiment from TOML text; kept alive with its simulation.
struct Run {
  std::vector<Experiment> experiments;
  std::unique_ptr<Simulation> sim;
};

inline std::unique_ptr<Run> make_run(const std::string& toml) {
  auto run = std::make_unique<Run>();
  run->experiments = parse_experiments(toml, "test.toml");
  run->sim = std::make_unique<Simulation>(run->experiments.at(0), registry());
  return run;
}

}  // namespace lorasched::test
