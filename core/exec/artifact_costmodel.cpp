#include "core/exec/artifact_costmodel.hpp"

namespace lorasched {

namespace {

// The artifact's vllm/core/scheduler.py merge_time / unmerge_time / switch_cost: 15 ms per
// merged iteration, 27 ms per unmerged one, whatever the batch; 20 ms per switch (a re-merge
// onto another adapter counts as one switch); prefill, adapter loads and swaps free.
class ArtifactCostModel final : public CostModel {
 public:
  explicit ArtifactCostModel(const ModelShape& shape) : shape_(shape) {}
  std::string describe() const override {
    return "dlora-artifact timing model (15 ms merged, 27 ms unmerged, 20 ms switch)";
  }
  // The unmerged time's excess over the merged one is what its LoRA work adds.
  IterationTime iteration_time(const BatchFeatures& f) const override {
    if (f.mode == api::Mode::merged) return {kMerged, 0};
    return {kMerged, kUnmerged - kMerged};
  }
  // One switch costs 20 ms, however done: a re-merge X -> Y is an unmerge and a merge of 10 ms
  // each, or one fused step of 20 ms.
  std::vector<CostStep> switch_steps(const AdapterInfo* from, const AdapterInfo* to,
                                     SwitchMethod method) const override {
    std::vector<CostStep> s;
    if (from && to && method == SwitchMethod::fused) {
      s.push_back({EventKind::adapter_switch, to->id, kSwitch, 0, from->id});
      return s;
    }
    const double each = (from && to) ? kSwitch / 2 : kSwitch;
    if (from) s.push_back({EventKind::unmerge, from->id, each, 0});
    if (to) s.push_back({EventKind::merge, to->id, each, 0});
    return s;
  }
  double load(int64_t) const override { return 0; }
  double swap(int64_t, bool) const override { return 0; }
  double device_memory_bytes() const override { return 80.0 * (1ull << 30); }  // A100-80GB
  int bytes_per_element() const override { return 2; }
  const ModelShape& shape() const override { return shape_; }

 private:
  static constexpr double kMerged = 0.015, kUnmerged = 0.027, kSwitch = 0.020;
  ModelShape shape_;
};

}  // namespace

std::unique_ptr<CostModel> make_artifact_cost_model(const ModelShape& shape) {
  return std::make_unique<ArtifactCostModel>(shape);
}

}  // namespace lorasched
