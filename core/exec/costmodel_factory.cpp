#include "core/exec/costmodel_factory.hpp"

#include <fmt/format.h>
#include <filesystem>
#include <system_error>

#include "core/common/error.hpp"
#include "core/common/strings.hpp"
#include "core/exec/artifact_costmodel.hpp"
#include "core/exec/presets.hpp"
#include "core/exec/profile_json.hpp"
#include "core/exec/profile_model.hpp"

namespace lorasched {

std::vector<std::string> cost_model_presets() {
  std::vector<std::string> out = {"dlora-artifact"};
  for (auto& p : hardware_preset_names()) out.push_back(p);
  return out;
}

std::unique_ptr<CostModel> make_cost_model(const std::string& spec, const ModelShape& shape) {
  if (spec == "dlora-artifact") return make_artifact_cost_model(shape);
  if (auto preset = make_hardware_preset(spec, shape)) return preset;
  std::error_code ec;
  if (spec.ends_with(".json") || std::filesystem::exists(spec, ec))
    return profile_cost_model(read_profile(spec), spec, shape);
  throw InputError(fmt::format("unknown cost model '{}'{} (presets: {}; or a profile file, *.json)",
                               spec, did_you_mean(spec, cost_model_presets()),
                               join(cost_model_presets(), ", ")));
}

}  // namespace lorasched
