// Named model shapes: synthetic CPU models (tiny, small) and Llama-2 shapes for the cost model.
#pragma once

#include <string>
#include <vector>

#include "core/model/shape.hpp"

namespace lorasched {

// tiny: hidden 256, 4 layers (runs a few hundred requests in seconds on a CPU);
// small: hidden 1024, 8 layers; llama2-7b / 13b / 70b: the published shapes.
// Throws InputError for an unknown name.
ModelShape model_preset(const std::string& name);
std::vector<std::string> model_preset_names();

}  // namespace lorasched
