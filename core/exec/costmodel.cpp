#include "core/exec/costmodel.hpp"

#include <fmt/format.h>

#include "core/common/error.hpp"
#include "core/common/strings.hpp"

namespace lorasched {

BatchFeatures batch_features(const ExecBatch& batch, const std::vector<AdapterInfo>& adapters) {
  BatchFeatures f;
  f.mode = batch.mode;
  f.entries = static_cast<int32_t>(batch.entries.size());
  std::vector<api::AdapterId> seen;
  for (const auto& e : batch.entries) {
    if (e.prefill) {
      f.prefill_tokens += e.new_tokens;
      f.prefill_sq_tokens += static_cast<int64_t>(e.new_tokens) * e.new_tokens;
    } else {
      f.decode_seqs += 1;
      f.decode_context += e.context_tokens;
    }
    const bool lora = batch.mode == api::Mode::unmerged || e.adapter != batch.merged_adapter;
    if (lora) {
      f.lora_token_rank += static_cast<int64_t>(e.new_tokens) *
                           adapters[static_cast<size_t>(e.adapter)].rank;
      if (std::find(seen.begin(), seen.end(), e.adapter) == seen.end()) seen.push_back(e.adapter);
    }
  }
  f.distinct_adapters = static_cast<int32_t>(seen.size());
  return f;
}

namespace {

// The timing model dLoRA's artifact assumes when it tunes alpha/beta (vllm/core/scheduler.py
// merge_time / unmerge_time / switch_cost): 15 ms per merged iteration, 27 ms per unmerged
// one, whatever the batch; 20 ms per switch (a re-merge onto another adapter counts as one
// switch); prefill, adapter loads and swaps free. For equivalence checks, not a hardware model.
class ArtifactCostModel final : public CostModel {
 public:
  explicit ArtifactCostModel(const ModelShape& shape) : shape_(shape) {}
  std::string describe() const override {
    return "dlora-artifact timing model (15 ms merged, 27 ms unmerged, 20 ms switch)";
  }
  double iteration(const BatchFeatures& f) const override {
    return f.mode == api::Mode::merged ? 0.015 : 0.027;
  }
  std::vector<CostStep> switch_steps(const AdapterInfo* from, const AdapterInfo* to) const override {
    std::vector<CostStep> s;
    const double each = (from && to) ? kSwitch / 2 : kSwitch;
    if (from) s.push_back({EventKind::unmerge, from->id, each, 0});
    if (to) s.push_back({EventKind::merge, to->id, each, 0});
    return s;
  }
  double load(int64_t) const override { return 0; }
  double swap(int64_t) const override { return 0; }
  double device_memory_bytes() const override { return 80.0 * (1ull << 30); }  // A100-80GB
  int bytes_per_element() const override { return 2; }
  const ModelShape& shape() const override { return shape_; }

 private:
  static constexpr double kSwitch = 0.020;
  ModelShape shape_;
};

}  // namespace

std::vector<std::string> cost_model_presets() { return {"dlora-artifact"}; }

std::unique_ptr<CostModel> make_cost_model(const std::string& spec, const ModelShape& shape) {
  if (spec == "dlora-artifact") return std::make_unique<ArtifactCostModel>(shape);
  throw InputError(fmt::format("unknown cost model '{}'{} (presets: {}; or a profile file)", spec,
                               did_you_mean(spec, cost_model_presets()),
                               join(cost_model_presets(), ", ")));
}

CostModelExecutor::CostModelExecutor(std::shared_ptr<const CostModel> model,
                                     std::vector<AdapterInfo> adapters)
    : model_(std::move(model)), adapters_(std::move(adapters)) {}

IterationResult CostModelExecutor::run(const ExecBatch& batch) {
  IterationResult r;
  r.seconds = model_->iteration(batch_features(batch, adapters_));
  return r;
}

std::vector<CostStep> CostModelExecutor::switch_weights(api::AdapterId from, api::AdapterId to) {
  if (from == to) return {};
  const AdapterInfo* f = from == api::kNoAdapter ? nullptr : &adapters_.at(static_cast<size_t>(from));
  const AdapterInfo* t = to == api::kNoAdapter ? nullptr : &adapters_.at(static_cast<size_t>(to));
  return model_->switch_steps(f, t);
}

CostStep CostModelExecutor::load_adapter(api::AdapterId adapter) {
  const int64_t bytes = adapters_.at(static_cast<size_t>(adapter)).bytes;
  return {EventKind::adapter_load, adapter, model_->load(bytes), bytes};
}

CostStep CostModelExecutor::swap_out(api::RequestId, std::span<const int32_t> blocks) {
  const int64_t bytes = static_cast<int64_t>(blocks.size()) * block_bytes_;
  return {EventKind::preempt_swap, api::kNoAdapter, model_->swap(bytes), bytes};
}

CostStep CostModelExecutor::swap_in(api::RequestId, std::span<const int32_t> blocks) {
  const int64_t bytes = static_cast<int64_t>(blocks.size()) * block_bytes_;
  return {EventKind::swap_in, api::kNoAdapter, model_->swap(bytes), bytes};
}

}  // namespace lorasched
