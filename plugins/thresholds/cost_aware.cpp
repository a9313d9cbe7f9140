// Threshold `cost-aware`: alpha and beta derived from this run's measured costs instead of
// dLoRA's fixed 15 / 27 / 20 ms (the artifact tunes alpha/beta from those constants; see
// docs/dlora-artifact.md#thresholds), so a merge happens only when it pays for
// itself over the run of merged iterations it is expected to start.
//
// With t_m, t_u the measured mean merged and unmerged iteration times, s the measured
// stall of an iteration that switched weights, and K the mean length (iterations) of the
// merged periods seen so far: merging adapter m, whose queue holds n_m requests, serves
// n_m requests per iteration for K iterations in K t_m + 2 s (switch in and out), while
// unmerged FCFS serves |fcfs| per iteration in K t_u. Merging wins exactly when
//     n_m >= |fcfs| (t_m + 2 s / K) / t_u  =: alpha |fcfs|,
// and, once merged (the switch in is paid), staying wins while
//     n_m >= |fcfs| t_m / t_u              =: beta |fcfs|.
// The hysteresis alpha - beta = 2 s / (K t_u) is the measured switch cost, not a constant.
// Until a cost has been measured, its prior (the parameters) stands in.
#include <algorithm>
#include <stdexcept>

#include "lorasched/plugin/api.hpp"
#include "measured_costs.hpp"

namespace {

using namespace lorasched::api;

class CostAware : public Threshold {
 public:
  explicit CostAware(const CreateArgs& args)
      : costs_(args.params.real("merge_time"), args.params.real("unmerge_time"),
               args.params.real("switch_cost"), args.params.real("ewma")),
        k_(args.params.real("horizon_iters")),
        floor_(args.params.real("min_alpha")) {
    recompute();
  }

  Thresholds current() const override { return t_; }

  void observe(const IterationOutcome& o) override {
    costs_.observe(o);
    recompute();
  }

  Thresholds on_period_end(const PeriodStats& s) override {
    if (s.merged && s.num_iters > 0) k_ += costs_.weight * (static_cast<double>(s.num_iters) - k_);
    recompute();
    return t_;
  }

 private:
  void recompute() {
    const double k = std::max(k_, 1.0);
    const double t_m = costs_.merged, t_u = costs_.unmerged, s = costs_.switch_cost;
    t_.beta = std::max(floor_ / 2, t_m / t_u);
    t_.alpha = std::max(floor_, (t_m + 2 * s / k) / t_u);
    if (t_.alpha <= t_.beta) t_.alpha = t_.beta * 1.000001 + 1e-12;
  }

  lorasched::thresholds::MeasuredCosts costs_;
  double k_, floor_;
  Thresholds t_;
};

PluginInfo info() {
  return {
      kApiVersion,
      PluginKind::threshold,
      "cost-aware",
      "alpha/beta from measured merged/unmerged iteration times and switch cost: merge only "
      "when it pays for its switches",
      {param_real("merge_time", 0.015, "prior of the merged iteration time (s), until measured",
                  1e-6, 100),
       param_real("unmerge_time", 0.027, "prior of the unmerged iteration time (s), until measured",
                  1e-6, 100),
       param_real("switch_cost", 0.020, "prior of one switch's stall (s), until measured", 0, 100),
       param_real("horizon_iters", 8.0,
                  "prior of the merged period length (iterations), then measured", 1, 1e6),
       param_real("ewma", 0.2, "weight of the newest measurement", 0, 1),
       param_real("min_alpha", 0.0, "lower bound of alpha (and alpha/2 of beta)", 0, 100)}};
}

}  // namespace

LORASCHED_PLUGIN(CostAware, info)
