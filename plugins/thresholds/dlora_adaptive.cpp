// Threshold `dlora-adaptive`: dLoRA's adaptive alpha/beta (artifact
// vllm/core/scheduler.py _adjust_merge_threshold, L255-287). At each mode switch the
// period that ended is scored: requests per second the actual mode served vs. what the
// other mode would have served (counterfactual batch sizes counted by the scheduler),
//   t_merge   = merge_time x n   + (switch if the period was merged else switch x v)
//   t_unmerge = unmerge_time x n + (0 if merged else switch)
// then, after a merged period: alpha -= add if merging won (and alpha - add > beta),
// alpha *= mul if it lost; after an unmerged period: beta += add if unmerged won (and
// beta + add < alpha), beta /= mul if it lost. So beta < alpha holds forever.
//
// estimate = "measured" (default): merge_time, unmerge_time and the switch cost are
// running estimates (EWMA, measured_costs.hpp) of the measured merged / unmerged iteration
// times and of the stall of iterations that switched mode, starting from the artifact's
// constants.
// estimate = "constants": the artifact's fixed 15 / 27 / 20 ms (its Llama-7B A100
// profile, used there for every model). Under the `dlora-artifact` cost model both give
// the same numbers, bit for bit.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "lorasched/plugin/api.hpp"
#include "measured_costs.hpp"

namespace {

using namespace lorasched::api;

class DloraAdaptive : public Threshold {
 public:
  explicit DloraAdaptive(const CreateArgs& args)
      : measured_(args.params.string("estimate") == "measured"),
        costs_(args.params.real("merge_time"), args.params.real("unmerge_time"),
               args.params.real("switch_cost"), args.params.real("ewma")),
        add_(args.params.real("aimd_add")),
        mul_(args.params.real("aimd_mul")) {
    t_.alpha = args.params.real("alpha");
    t_.beta =
        args.params.real("beta") >= 0 ? args.params.real("beta") : costs_.merged / costs_.unmerged;
    if (!(t_.beta < t_.alpha))
      throw std::invalid_argument("initial beta (" + std::to_string(t_.beta) +
                                  ") must be below alpha (" + std::to_string(t_.alpha) + ")");
  }

  Thresholds current() const override { return t_; }

  void observe(const IterationOutcome& o) override {
    if (measured_) costs_.observe(o);
  }

  Thresholds on_period_end(const PeriodStats& s) override {
    if (s.num_iters == 0) return t_;
    const double n = static_cast<double>(s.num_iters);
    double t_merge = costs_.merged * n;
    double t_unmerge = costs_.unmerged * n;
    if (s.merged) {
      t_merge += costs_.switch_cost;
    } else {
      t_unmerge += costs_.switch_cost;
      t_merge += costs_.switch_cost * static_cast<double>(s.virtual_switch_cnt);
    }
    const double tput_merge = s.merge_batch_cnt / t_merge;
    const double tput_unmerge = s.unmerge_batch_cnt / t_unmerge;
    if (s.merged) {
      if (tput_merge > tput_unmerge && t_.alpha - add_ > t_.beta)
        t_.alpha -= add_;
      else if (tput_merge < tput_unmerge)
        t_.alpha *= mul_;
    } else {
      if (tput_unmerge > tput_merge && t_.beta + add_ < t_.alpha)
        t_.beta += add_;
      else if (tput_unmerge < tput_merge)
        t_.beta /= mul_;
    }
    return t_;
  }

 private:
  bool measured_;
  lorasched::thresholds::MeasuredCosts costs_;
  double add_, mul_;
  Thresholds t_;
};

PluginInfo info() {
  return {
      kApiVersion,
      PluginKind::threshold,
      "dlora-adaptive",
      "dLoRA's adaptive alpha/beta: AIMD steps at each mode switch from merged vs. unmerged "
      "throughput estimates",
      {param_choice("estimate", "measured", {"measured", "constants"},
                    "measured: iteration and switch times from this run (EWMA); constants: the "
                    "artifact's 15/27/20 ms"),
       param_real("merge_time", 0.015,
                  "merged iteration time (s): the constant, or the EWMA's start", 1e-6, 100),
       param_real("unmerge_time", 0.027,
                  "unmerged iteration time (s): the constant, or the EWMA's start", 1e-6, 100),
       param_real("switch_cost", 0.020, "time of one switch (s): the constant, or the EWMA's start",
                  0, 100),
       param_real("aimd_add", 0.05, "additive step towards the other threshold", 0, 10),
       param_real("aimd_mul", 1.1, "multiplicative step away from the other threshold", 1, 10),
       param_real("ewma", 0.2, "weight of the newest measurement in the running estimates", 0, 1),
       param_real("alpha", 1.0, "initial alpha (enter merged mode)", 0, 100),
       param_real("beta", -1.0, "initial beta (stay merged); -1: merge_time / unmerge_time", -1,
                  100)}};
}

}  // namespace

LORASCHED_PLUGIN(DloraAdaptive, info)
