// The cost model fitted to a profile: an additive component model of piecewise-linear tables
// (docs/costmodel.md, "The profile model").
#pragma once

#include <memory>
#include <string>

#include "core/exec/costmodel.hpp"
#include "core/exec/profile.hpp"

namespace lorasched {

// The cost model of a profile (docs/costmodel.md, "Profiles"). Throws InputError naming
// `source` when the profile was taken on another model shape than `shape`, or lacks a point
// the model needs.
std::unique_ptr<CostModel> profile_cost_model(const Profile& p, const std::string& source,
                                              const ModelShape& shape);

}  // namespace lorasched
