#include "core/exec/costmodel_scale.hpp"

#include <fmt/format.h>

#include "core/common/error.hpp"

namespace lorasched {

namespace {

class ScaledCostModel final : public CostModel {
 public:
  ScaledCostModel(std::unique_ptr<CostModel> inner, std::optional<double> unmerged_ratio,
                  std::optional<double> switch_iterations, SwitchMethod method)
      : inner_(std::move(inner)), ratio_(unmerged_ratio), iterations_(switch_iterations) {
    const double merged = inner_->iteration(reference_batch(false));
    if (ratio_) {
      const IterationTime u = inner_->iteration_time(reference_batch(true));
      if (!(u.lora > 0))
        throw InputError(fmt::format(
            "costmodel_scale.unmerged_ratio: cost model {} has no LoRA cost at the reference "
            "batch to scale",
            inner_->describe()));
      lora_factor_ = (*ratio_ * merged - u.base) / u.lora;
      if (lora_factor_ < 0)
        throw InputError(fmt::format(
            "costmodel_scale.unmerged_ratio = {}: the unmerged reference batch's base part alone "
            "takes {:.3f} merged iterations on cost model {}",
            *ratio_, u.base / merged, inner_->describe()));
    }
    if (iterations_) {
      const AdapterInfo a = reference_adapter(inner_->shape(), inner_->bytes_per_element(), 0);
      const AdapterInfo b = reference_adapter(inner_->shape(), inner_->bytes_per_element(), 1);
      double seconds = 0;
      for (const CostStep& s : inner_->switch_steps(&a, &b, method)) seconds += s.seconds;
      if (!(seconds > 0))
        throw InputError(fmt::format(
            "costmodel_scale.switch_iterations: cost model {} has no switch cost to scale",
            inner_->describe()));
      switch_factor_ = *iterations_ * merged / seconds;
    }
  }

  std::string describe() const override {
    std::string s = inner_->describe() + ", scaled to";
    if (ratio_) s += fmt::format(" unmerged/merged {} (LoRA part x{:.4g})", *ratio_, lora_factor_);
    if (ratio_ && iterations_) s += " and";
    if (iterations_)
      s += fmt::format(" a switch of {} merged iterations (x{:.4g})", *iterations_, switch_factor_);
    return s + " at the reference batch";
  }
  IterationTime iteration_time(const BatchFeatures& f) const override {
    IterationTime t = inner_->iteration_time(f);
    t.lora *= lora_factor_;
    return t;
  }
  std::vector<CostStep> switch_steps(const AdapterInfo* from, const AdapterInfo* to,
                                     SwitchMethod method) const override {
    std::vector<CostStep> steps = inner_->switch_steps(from, to, method);
    for (CostStep& s : steps) s.seconds *= switch_factor_;
    return steps;
  }
  double load(int64_t bytes) const override { return inner_->load(bytes); }
  double swap(int64_t bytes, bool to_device) const override {
    return inner_->swap(bytes, to_device);
  }
  double device_memory_bytes() const override { return inner_->device_memory_bytes(); }
  double default_pool_bytes() const override { return inner_->default_pool_bytes(); }
  int bytes_per_element() const override { return inner_->bytes_per_element(); }
  const ModelShape& shape() const override { return inner_->shape(); }

 private:
  std::unique_ptr<CostModel> inner_;
  std::optional<double> ratio_, iterations_;
  double lora_factor_ = 1, switch_factor_ = 1;
};

}  // namespace

std::unique_ptr<CostModel> scale_cost_model(std::unique_ptr<CostModel> inner,
                                            std::optional<double> unmerged_ratio,
                                            std::optional<double> switch_iterations,
                                            SwitchMethod method) {
  return std::make_unique<ScaledCostModel>(std::move(inner), unmerged_ratio, switch_iterations,
                                           method);
}

}  // namespace lorasched
