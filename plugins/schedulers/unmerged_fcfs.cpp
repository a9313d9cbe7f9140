// Scheduler `unmerged-fcfs`: the S-LoRA / Punica baseline (dLoRA artifact policy `fcfs`).
// Every iteration runs unmerged: the oldest queued requests first, across adapters,
// stopping at the first request of a new adapter once the batch holds the per-batch
// adapter limit (the artifact's _strict_fcfs_schedule). With a single adapter the
// artifact's worker runs merged; so does this policy.
#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class UnmergedFcfs : public Scheduler {
 public:
  explicit UnmergedFcfs(const CreateArgs&) {}

  // The candidates are the whole queue up to that first request: a plan tail, walked by the
  // engine only as far as admission goes (O(1) here, however long the queue).
  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan p;
    if (view.num_adapters == 1) {
      p.mode = Mode::merged;
      p.merged_adapter = 0;
      p.tail = Tail::adapter;  // every request is adapter 0's
      p.tail_adapter = 0;
      return p;
    }
    p.tail = Tail::fcfs_until_limit;
    return p;
  }
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::scheduler,
          "unmerged-fcfs",
          "S-LoRA/Punica baseline: always unmerged, oldest requests first across adapters (dLoRA "
          "artifact `fcfs`)",
          {}};
}

}  // namespace

LORASCHED_PLUGIN(UnmergedFcfs, info)
