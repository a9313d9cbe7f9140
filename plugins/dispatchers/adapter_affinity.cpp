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
#include <cstdint>
#include <limits>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class AdapterAffinity : public Dispatcher {
 public:
  explicit AdapterAffinity(const CreateArgs& a)
      : merge_ratio_(a.params.real("merge_speed_ratio")),
        substitute_(a.params.boolean("substitute")) {}

  // The artifact's per-replica cost (exposed for tests through the plugin's behaviour).
  static double cost(const ReplicaState& r, int32_t B, double merge_ratio) {
    double c = 0;
    int64_t residual = 0;
    for (int32_t cnt : r.unfinished_per_adapter) {
      residual += cnt % B;
      c += static_cast<double>(cnt / B) * merge_ratio;
    }
    return c + static_cast<double>(residual / B);
  }

  DispatchDecision dispatch(const ClusterView& v, const DispatchRequest& req) override {
    const int32_t B = std::max(1, v.limits.max_batch_size);
    const AdapterId m = req.adapter;
    auto hosts = [](const ReplicaState& r, AdapterId a) {
      for (AdapterId h : r.hosted)
        if (h == a) return true;
      return false;
    };
    DispatchDecision d;
    bool placed = false;
    for (const ReplicaState& r : v.replicas) placed = placed || hosts(r, m);
    if (!placed) {
      int32_t fewest = std::numeric_limits<int32_t>::max();
      for (const ReplicaState& r : v.replicas)
        if (r.unfinished < fewest) {
          fewest = r.unfinished;
          d.replica = r.replica;
        }
      return d;
    }
    double best = std::numeric_limits<double>::infinity();
    for (const ReplicaState& r : v.replicas)
      if (hosts(r, m)) {
        const double c = cost(r, B, merge_ratio_);
        if (c < best) {
          best = c;
          d.replica = r.replica;
        }
      }
    if (substitute_) {
      std::vector<int32_t> copies(static_cast<size_t>(v.num_adapters), 0);
      for (const ReplicaState& r : v.replicas)
        for (AdapterId h : r.hosted) ++copies[static_cast<size_t>(h)];
      const double load =
          v.link_bandwidth > 0 && static_cast<size_t>(m) < v.adapter_bytes.size()
              ? static_cast<double>(v.adapter_bytes[static_cast<size_t>(m)]) / v.link_bandwidth
              : 0.0;
      for (const ReplicaState& r : v.replicas) {
        if (hosts(r, m)) continue;
        for (AdapterId h : r.hosted) {
          const int32_t cnt = static_cast<size_t>(h) < r.unfinished_per_adapter.size()
                                  ? r.unfinished_per_adapter[static_cast<size_t>(h)]
                                  : 0;
          if (cnt == 0 && copies[static_cast<size_t>(h)] > 1) {
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
