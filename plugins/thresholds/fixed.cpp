// Threshold `fixed`: dLoRA's switching thresholds held constant (alpha: enter merged mode
// when the largest queue >= alpha x |FCFS batch|; beta: stay merged while the merged
// adapter's queue >= beta x |FCFS batch|). Defaults are the artifact's initial values.
#include <stdexcept>
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Fixed : public Threshold {
 public:
  explicit Fixed(const CreateArgs& args) : t_{args.params.real("alpha"), args.params.real("beta")} {
    if (!(t_.beta < t_.alpha))
      throw std::invalid_argument("beta (" + std::to_string(t_.beta) + ") must be below alpha (" +
                                  std::to_string(t_.alpha) +
                                  "): stay-merged must be easier than enter-merged");
  }
  Thresholds current() const override { return t_; }
  Thresholds on_period_end(const PeriodStats&) override { return t_; }

 private:
  Thresholds t_;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::threshold,
          "fixed",
          "dLoRA's alpha/beta switching thresholds, held constant",
          {param_real("alpha", 1.0,
                      "enter merged mode when the largest adapter queue >= alpha x |FCFS batch|",
                      0.0, 100.0),
           param_real("beta", 0.015 / 0.027,
                      "stay merged while the merged adapter's queue >= beta x |FCFS batch|", 0.0,
                      100.0)}};
}

}  // namespace

LORASCHED_PLUGIN(Fixed, info)
