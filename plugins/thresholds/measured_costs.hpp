// Running estimates of what a threshold policy weighs against each other: the merged and the
// unmerged iteration time and the stall of one weight switch, each an EWMA of this run's
// measurements, starting from a prior. Shared by `dlora-adaptive` (estimate = "measured") and
// `cost-aware`.
#pragma once

#include "lorasched/plugin/api.hpp"

namespace lorasched::thresholds {

class MeasuredCosts {
 public:
  // The priors, and the EWMA weight of the newest measurement.
  MeasuredCosts(double merged_prior, double unmerged_prior, double switch_prior, double ewma)
      : merged(merged_prior), unmerged(unmerged_prior), switch_cost(switch_prior), weight(ewma) {}

  double merged;       // seconds per merged iteration
  double unmerged;     // seconds per unmerged iteration
  double switch_cost;  // seconds one iteration stalls for a weight switch
  double weight;

  // An iteration that changed the mode or the merged adapter carries the switch's stall; an
  // iteration that ran a merged or an unmerged batch measures the speed of its mode. A mixed
  // iteration (merged weights plus a LoRA pass for the other adapters' rows) measures neither.
  void observe(const api::IterationOutcome& o) {
    const bool switched = o.mode != last_mode_ || o.merged_adapter != last_adapter_;
    last_mode_ = o.mode;
    last_adapter_ = o.merged_adapter;
    if (switched && o.switch_time > 0) switch_cost += weight * (o.switch_time - switch_cost);
    if (o.batch_size == 0) return;
    if (o.mode == api::Mode::merged) merged += weight * (o.duration - merged);
    if (o.mode == api::Mode::unmerged) unmerged += weight * (o.duration - unmerged);
  }

 private:
  api::Mode last_mode_ = api::Mode::unmerged;
  api::AdapterId last_adapter_ = api::kNoAdapter;
};

}  // namespace lorasched::thresholds
