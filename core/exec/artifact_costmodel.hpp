// Cost model "dlora-artifact": the timing dLoRA's artifact assumes when it tunes alpha/beta
// (docs/costmodel.md). For equivalence checks against the artifact, not a hardware model.
#pragma once

#include <memory>

#include "core/exec/costmodel.hpp"

namespace lorasched {

std::unique_ptr<CostModel> make_artifact_cost_model(const ModelShape& shape);

}  // namespace lorasched
