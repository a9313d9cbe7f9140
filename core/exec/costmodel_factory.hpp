// Builds the cost model an experiment names ([cluster] costmodel). The one place that knows
// every kind of cost model; each kind lives in its own file and knows only the interface
// (core/exec/costmodel.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/exec/costmodel.hpp"

namespace lorasched {

// "dlora-artifact" (core/exec/artifact_costmodel.hpp), a hardware preset "<model>@<gpu>"
// (core/exec/presets.hpp) or a profile file (core/exec/profile_model.hpp). Throws InputError
// for an unknown preset, a bad profile, or one taken on another model.
std::unique_ptr<CostModel> make_cost_model(const std::string& spec, const ModelShape& shape);
// The names make_cost_model knows besides profile files.
std::vector<std::string> cost_model_presets();

}  // namespace lorasched
