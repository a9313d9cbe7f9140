// [cluster] costmodel_scale: a cost model moved to another hardware regime, for sweeps over the
// regime (docs/costmodel.md, "Scaling to a regime"). At dLoRA's reference batch
// (costmodel.hpp: 16 decodes at context 512; unmerged, 16 distinct rank-16 adapters):
//   unmerged_ratio     the unmerged iteration takes this many merged iterations: every
//                      iteration's LoRA part is multiplied by one factor k_u, fixed there;
//   switch_iterations  a switch from one reference adapter to another, done as the experiment
//                      does it ([engine] switch), stalls this many merged iterations: every
//                      switch step (merges, unmerges, fused switches) is multiplied by one
//                      factor k_s, fixed there.
// Everything else (base iterations, loads, swaps, memory) is the inner model's.
#pragma once

#include <memory>
#include <optional>

#include "core/exec/costmodel.hpp"

namespace lorasched {

// Throws InputError when the inner model has no LoRA cost or no switch cost at the reference
// point to scale, or when the ratio asked for is below what the unmerged batch's base part
// already costs.
std::unique_ptr<CostModel> scale_cost_model(std::unique_ptr<CostModel> inner,
                                            std::optional<double> unmerged_ratio,
                                            std::optional<double> switch_iterations,
                                            SwitchMethod method);

}  // namespace lorasched
