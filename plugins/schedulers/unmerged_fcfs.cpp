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

  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan p;
    if (view.num_adapters == 1) {
      p.mode = Mode::merged;
      p.merged_adapter = 0;
    }
    const int32_t cap = view.limits.max_adapters_per_batch;
    seen_.assign(static_cast<size_t>(view.num_adapters), 0);
    int32_t adapters = 0;
    for (const RequestView& r : view.queued) {
      if (!seen_[static_cast<size_t>(r.adapter)]) {
        if (cap > 0 && adapters >= cap) break;
        seen_[static_cast<size_t>(r.adapter)] = 1;
        ++adapters;
      }
      p.requests.push_back(r.id);
    }
    return p;
  }

 private:
  std::vector<uint8_t> seen_;
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
