// Dispatcher `adapter-affinity`: dLoRA's select_engine (artifact
// vllm/engine/engine_manager.py get_engine_req_model_cnt / select_engine). A replica's cost
// is the batches its outstanding requests make, merged batches weighted by 0.6:
//   cost = sum_m floor(cnt_m / B) * 0.6 + floor((sum_m cnt_m mod B) / B)
// A request goes to the cheapest replica hosting its adapter (ties: the first); when no
// replica hosts it, to the replica with the fewest outstanding requests (first on ties),
// which then hosts it. With `substitute` (the artifact's DISPATCH_MIG), a replica that
// does not host the adapter is also a candidate, at its cost + the adapter's load time,
// when it hosts an idle adapter (no outstanding request there) that has another replica:
// the request's adapter then replaces that one.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class AdapterAffinity : public Dispatcher {
 public:
  explicit AdapterAffinity(const CreateArgs& a)
      : merge_ratio_(a.params.real("merge_speed_ratio")),
        substitute_(a.params.boolean("substitute")) {}

  // The artifact's per-replica cost (exposed for tests through the plugin's behaviour). Over
  // the adapters with requests there, in id order (the others add nothing).
  static double cost(const ReplicaState& r, int32_t B, double merge_ratio) {
    double c = 0;
    int64_t residual = 0;
    for (AdapterId a : r.active_adapters) {
      const int32_t cnt = r.unfinished_per_adapter[static_cast<size_t>(a)];
      residual += cnt % B;
      c += static_cast<double>(cnt / B) * merge_ratio;
    }
    return c + static_cast<double>(residual / B);
  }

  DispatchDecision dispatch(const ClusterView& v, const DispatchRequest& req) override {
    const int32_t B = std::max(1, v.limits.max_batch_size);
    const AdapterId m = req.adapter;
    if (v.adapter_hosts.size() != static_cast<size_t>(v.num_adapters))
      throw std::invalid_argument("the cluster view has no adapter_hosts index");
    auto hosts_of = [&](AdapterId a) {
      return a >= 0 && a < v.num_adapters ? v.adapter_hosts[static_cast<size_t>(a)]
                                          : std::span<const int32_t>{};
    };
    DispatchDecision d;
    const auto hosting = hosts_of(m);  // indexes in v.replicas, ascending
    if (hosting.empty()) {  // nowhere yet: the replica with the fewest outstanding requests
      if (v.least_loaded >= 0) d.replica = v.replicas[static_cast<size_t>(v.least_loaded)].replica;
      return d;
    }
    double best = std::numeric_limits<double>::infinity();
    for (int32_t j : hosting) {
      const ReplicaState& r = v.replicas[static_cast<size_t>(j)];
      const double c = cost(r, B, merge_ratio_);
      if (c < best) {
        best = c;
        d.replica = r.replica;
      }
    }
    if (substitute_) {
      const double load =
          v.link_bandwidth > 0 && static_cast<size_t>(m) < v.adapter_bytes.size()
              ? static_cast<double>(v.adapter_bytes[static_cast<size_t>(m)]) / v.link_bandwidth
              : 0.0;
      size_t next_hosting = 0;  // replicas hosting m, skipped in the walk
      for (size_t j = 0; j < v.replicas.size(); ++j) {
        if (next_hosting < hosting.size() && hosting[next_hosting] == static_cast<int32_t>(j)) {
          ++next_hosting;
          continue;
        }
        const ReplicaState& r = v.replicas[j];
        for (AdapterId h : r.hosted) {
          const int32_t cnt = static_cast<size_t>(h) < r.unfinished_per_adapter.size()
                                  ? r.unfinished_per_adapter[static_cast<size_t>(h)]
                                  : 0;
          if (cnt == 0 && hosts_of(h).size() > 1) {
            const double c = cost(r, B, merge_ratio_) + load;
            if (c < best) {
              best = c;
              d.replica = r.replica;
              d.evict = h;
            }
            break;
          }
        }
      }
    }
    return d;
  }

 private:
  double merge_ratio_;
  bool substitute_;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::dispatcher,
          "adapter-affinity",
          "dLoRA's dispatch: the cheapest replica (in batches of outstanding requests) hosting "
          "the request's adapter",
          {param_real("merge_speed_ratio", 0.6, "weight of a full batch of one adapter", 0.0),
           param_bool("substitute", false,
                      "dLoRA's DISPATCH_MIG: also replicas that can swap an idle replicated "
                      "adapter for the request's, at cost + the adapter's load time")}};
}

}  // namespace

LORASCHED_PLUGIN(AdapterAffinity, info)
