// Builds the cost model an experiment names ([cluster] costmodel, costmodel_lora,
// costmodel_scale). The one place that knows every kind of cost model; each kind lives in its
// own file and knows only the interface (core/exec/costmodel.hpp).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/exec/costmodel.hpp"
#include "core/exec/presets.hpp"

namespace lorasched {

struct CostModelOptions {
  LoraKernels lora_kernels = LoraKernels::artifact;  // hardware presets only
  // costmodel_scale (core/exec/costmodel_scale.hpp): unset leaves the model as it is.
  std::optional<double> unmerged_ratio;
  std::optional<double> switch_iterations;
  SwitchMethod switch_method = SwitchMethod::fused;  // the switch switch_iterations prices
};

// "dlora-artifact" (core/exec/artifact_costmodel.hpp), a hardware preset "<model>@<gpu>"
// (core/exec/presets.hpp) or a profile file (core/exec/profile_model.hpp), then rescaled when
// the options ask. Throws InputError for an unknown preset, a bad profile, one taken on another
// model, LoRA kernels other than the artifact's for a model that is not a preset, or a scale the
// model cannot take.
std::unique_ptr<CostModel> make_cost_model(const std::string& spec, const ModelShape& shape,
                                           const CostModelOptions& options = {});
// The names make_cost_model knows besides profile files.
std::vector<std::string> cost_model_presets();

}  // namespace lorasched
