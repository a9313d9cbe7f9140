// Test plugin (scheduler `hard-faulty`): plans FCFS unmerged batches, and on its `after`-th
// plan misbehaves as its `fault` parameter says:
//   mode-value              a plan whose mode is no Mode value (7), no merged adapter
//   mode-value-adapter      the same, naming adapter 0
//   merged-no-adapter       merged mode without a merged adapter (-1)
//   merged-unknown-adapter  merged mode on adapter 1000
//   unmerged-with-adapter   unmerged mode naming merged adapter 0
//   observe-throws          observe() throws (the plan is fine)
//   arrival-throws          on_arrival() throws
#include <stdexcept>
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Faulty : public Scheduler {
 public:
  explicit Faulty(const CreateArgs& a)
      : fault_(a.params.string("fault")), after_(a.params.integer("after")) {}

  IterationPlan plan(const ReplicaView& v) override {
    IterationPlan p;
    for (const RequestView& r : v.queued) p.requests.push_back(r.id);
    if (v.queued.empty() || ++plans_ < after_) return p;
    if (fault_ == "mode-value") {
      p.mode = static_cast<Mode>(7);
    } else if (fault_ == "mode-value-adapter") {
      p.mode = static_cast<Mode>(7);
      p.merged_adapter = 0;
    } else if (fault_ == "merged-no-adapter") {
      p.mode = Mode::merged;
      p.merged_adapter = kNoAdapter;
    } else if (fault_ == "merged-unknown-adapter") {
      p.mode = Mode::merged;
      p.merged_adapter = 1000;
    } else if (fault_ == "unmerged-with-adapter") {
      p.merged_adapter = 0;
    }
    return p;
  }
  void observe(const IterationOutcome&) override {
    if (fault_ == "observe-throws" && ++observed_ >= after_)
      throw std::runtime_error("observe exploded on purpose");
  }
  void on_arrival(const RequestView&, double) override {
    if (fault_ == "arrival-throws" && ++arrivals_ >= after_)
      throw std::runtime_error("on_arrival exploded on purpose");
  }

 private:
  std::string fault_;
  int64_t after_;
  int64_t plans_ = 0, observed_ = 0, arrivals_ = 0;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::scheduler,
          "hard-faulty",
          "test fixture: a scheduler that misbehaves mid-run",
          {param_choice(
               "fault", "mode-value",
               {"mode-value", "mode-value-adapter", "merged-no-adapter", "merged-unknown-adapter",
                "unmerged-with-adapter", "observe-throws", "arrival-throws"},
               "what goes wrong"),
           param_int("after", 5, "the call that goes wrong", 1, 1000000)}};
}

}  // namespace

LORASCHED_PLUGIN(Faulty, info)
