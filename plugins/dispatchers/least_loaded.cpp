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
    if (view.least_loaded >= 0)  // the host's index: fewest unfinished, lowest on ties
      d.replica = view.replicas[static_cast<size_t>(view.least_loaded)].replica;
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
