#include "core/exec/costmodel_factory.hpp"

#include <fmt/format.h>
#include <filesystem>
#include <system_error>

#include "core/common/error.hpp"
#include "core/common/strings.hpp"
#include "core/exec/artifact_costmodel.hpp"
#include "core/exec/costmodel_scale.hpp"
#include "core/exec/profile_json.hpp"
#include "core/exec/profile_model.hpp"

namespace lorasched {

namespace {

std::unique_ptr<CostModel> make_unscaled(const std::string& spec, const ModelShape& shape,
                                         LoraKernels kernels) {
  const bool preset = spec.find('@') != std::string::npos;
  if (!preset && kernels != LoraKernels::artifact)
    throw InputError(fmt::format(
        "cost model '{}': costmodel_lora = \"sgmv\" prices the hardware presets' unmerged path "
        "(\"<model>@<gpu>\"); a profile measures its executor's own kernels",
        spec));
  if (spec == "dlora-artifact") return make_artifact_cost_model(shape);
  if (auto p = make_hardware_preset(spec, shape, kernels)) return p;
  std::error_code ec;
  if (spec.ends_with(".json") || std::filesystem::exists(spec, ec))
    return profile_cost_model(read_profile(spec), spec, shape);
  throw InputError(fmt::format("unknown cost model '{}'{} (presets: {}; or a profile file, *.json)",
                               spec, did_you_mean(spec, cost_model_presets()),
                               join(cost_model_presets(), ", ")));
}

}  // namespace

std::vector<std::string> cost_model_presets() {
  std::vector<std::string> out = {"dlora-artifact"};
  for (auto& p : hardware_preset_names()) out.push_back(p);
  return out;
}

std::unique_ptr<CostModel> make_cost_model(const std::string& spec, const ModelShape& shape,
                                           const CostModelOptions& options) {
  auto model = make_unscaled(spec, shape, options.lora_kernels);
  if (!options.unmerged_ratio && !options.switch_iterations) return model;
  return scale_cost_model(std::move(model), options.unmerged_ratio, options.switch_iterations,
                          options.switch_method);
}

}  // namespace lorasched
