// Scheduler `merged-only`: the HF PEFT baseline (dLoRA artifact policy `merge`). Every
// iteration runs merged, on one adapter, with only that adapter's requests.
//   switch_rule = "oldest" (artifact): each iteration merges the adapter of the oldest
//     queued request (_always_merge_schedule), so it switches as soon as another
//     adapter holds the oldest request.
//   switch_rule = "drain": keep the merged adapter until its queue empties, then merge
//     the adapter of the oldest queued request (PEFT's serve-one-adapter-at-a-time).
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class MergedOnly : public Scheduler {
 public:
  explicit MergedOnly(const CreateArgs& args)
      : drain_(args.params.string("switch_rule") == "drain") {}

  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan p;
    if (view.queued.empty()) return p;
    AdapterId target = view.queued.front().adapter;
    if (drain_ && view.mode == Mode::merged && !view.queued_of(view.merged_adapter).empty())
      target = view.merged_adapter;
    p.mode = Mode::merged;
    p.merged_adapter = target;
    p.tail = Tail::adapter;  // all of its queued requests, oldest first
    p.tail_adapter = target;
    return p;
  }

 private:
  bool drain_;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::scheduler,
          "merged-only",
          "HF PEFT baseline: always merged, one adapter per batch (dLoRA artifact `merge`)",
          {param_choice("switch_rule", "oldest", {"oldest", "drain"},
                        "oldest: merge the adapter of the oldest queued request every iteration "
                        "(the artifact); drain: keep the merged adapter until its queue empties")}};
}

}  // namespace

LORASCHED_PLUGIN(MergedOnly, info)
