// Dispatcher `least-loaded`: a new request joins the replica with the fewest unfinished
// requests (ties: lowest replica id), which places its adapter there if needed.
#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class LeastLoaded : public Dispatcher {
 public:
  explicit LeastLoaded(const CreateArgs&) {}
  DispatchDecision dispatch(const ClusterView& view, const DispatchRequest&) override {
    DispatchDecision d;
    int32_t best = INT32_MAX;
    for (const ReplicaState& r : view.replicas)
      if (r.unfinished < best) {
        best = r.unfinished;
        d.replica = r.replica;
      }
    return d;
  }
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::dispatcher,
          "least-loaded",
          "send each request to the replica with the fewest unfinished requests",
          {}};
}

}  // namespace

LORASCHED_PLUGIN(LeastLoaded, info)
