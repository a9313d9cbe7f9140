// Test plugin (threshold `hard-faulty`): fixed thresholds (alpha 1, beta 0.5), and on its
// `after`-th call of the function its `fault` parameter names, it throws:
//   current     current() (called by the engine before and after every iteration)
//   observe     observe() (after every iteration)
//   period-end  on_period_end() (called by the dlora scheduler when a mode period ends)
//   nan         current() returns alpha = NaN instead of throwing
#include <limits>
#include <stdexcept>
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Faulty : public Threshold {
 public:
  explicit Faulty(const CreateArgs& a)
      : fault_(a.params.string("fault")), after_(a.params.integer("after")) {}

  Thresholds current() const override {
    if (fault_ == "current" && ++current_ >= after_)
      throw std::runtime_error("current exploded on purpose");
    if (fault_ == "nan" && ++current_ >= after_)
      return {std::numeric_limits<double>::quiet_NaN(), 0.5};
    return {1.0, 0.5};
  }
  Thresholds on_period_end(const PeriodStats&) override {
    if (fault_ == "period-end" && ++periods_ >= after_)
      throw std::runtime_error("on_period_end exploded on purpose");
    return {1.0, 0.5};
  }
  void observe(const IterationOutcome&) override {
    if (fault_ == "observe" && ++observed_ >= after_)
      throw std::runtime_error("observe exploded on purpose");
  }

 private:
  std::string fault_;
  int64_t after_;
  mutable int64_t current_ = 0;
  int64_t periods_ = 0, observed_ = 0;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::threshold,
          "hard-faulty",
          "test fixture: a threshold plugin that throws mid-run",
          {param_choice("fault", "current", {"current", "observe", "period-end", "nan"},
                        "which function throws"),
           param_int("after", 5, "the call that throws", 1, 1000000)}};
}

}  // namespace

LORASCHED_PLUGIN(Faulty, info)
