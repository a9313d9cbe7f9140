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
  double iteration(const BatchFeatures& f) const override {
    return f.mode == api::Mode::merged ? 0.015 : 0.027;
  }
  std::vector<CostStep> switch_steps(const AdapterInfo* from,
                                     const AdapterInfo* to) const override {
    std::vector<CostStep> s;
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
  static constexpr double kSwitch = 0.020;
  ModelShape shape_;
};

}  // namespace

std::unique_ptr<CostModel> make_artifact_cost_model(const ModelShape& shape) {
  return std::make_unique<ArtifactCostModel>(shape);
}

}  // namespace lorasched
