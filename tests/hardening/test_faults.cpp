// Plugin faults mid-run that tests/unit/plugin does not cover (docs/hardening.md): plans with
// an impossible mode or merged adapter, a scheduler throwing from observe / on_arrival, and
// threshold, dispatcher and migration plugins failing in the middle of a run. Each must stop
// `lorasched run` with exit code 3 and a message naming the plugin and the fault, mark the
// .partial results file failed (root status "failed", error = the message), leave no final
// file, and never crash.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hardening/hardening_util.hpp"

namespace lorasched::test {
namespace {

const fs::path kDir = LORASCHED_HARDENING_PLUGIN_DIR;

struct FaultCase {
  std::string name;
  int replicas;
  std::string tables;  // plugin tables of the experiment
  std::vector<std::string> message;
};

void PrintTo(const FaultCase& c, std::ostream* os) { *os << c.name; }

std::vector<FaultCase> fault_cases() {
  const std::string sched = "[scheduler]\nplugin = \"hard-faulty\"\n";
  return {
      {"mode_value",
       1,
       sched + "fault = \"mode-value\"\n",
       {"scheduler 'hard-faulty'", "returned an invalid plan", "mode 7"}},
      {"mode_value_adapter",
       1,
       sched + "fault = \"mode-value-adapter\"\n",
       {"scheduler 'hard-faulty'", "returned an invalid plan", "mode 7"}},
      {"merged_no_adapter",
       1,
       sched + "fault = \"merged-no-adapter\"\n",
       {"scheduler 'hard-faulty'", "returned an invalid plan", "merged plan names adapter -1"}},
      {"merged_unknown_adapter",
       1,
       sched + "fault = \"merged-unknown-adapter\"\n",
       {"scheduler 'hard-faulty'", "returned an invalid plan", "merged plan names adapter 1000"}},
      {"unmerged_with_adapter",
       1,
       sched + "fault = \"unmerged-with-adapter\"\n",
       {"scheduler 'hard-faulty'", "returned an invalid plan",
        "unmerged plan names merged adapter 0"}},
      {"scheduler_observe_throws",
       1,
       sched + "fault = \"observe-throws\"\n",
       {"scheduler 'hard-faulty'", "failed in observe", "observe exploded on purpose"}},
      {"scheduler_on_arrival_throws",
       1,
       sched + "fault = \"arrival-throws\"\n",
       {"scheduler 'hard-faulty'", "failed in on_arrival", "on_arrival exploded on purpose"}},
      {"threshold_current_throws",
       1,
       "[threshold]\nplugin = \"hard-faulty\"\nfault = \"current\"\nafter = 20\n",
       {"threshold 'hard-faulty'", "failed", "current exploded on purpose"}},
      {"threshold_observe_throws",
       1,
       "[threshold]\nplugin = \"hard-faulty\"\nfault = \"observe\"\n",
       {"threshold 'hard-faulty'", "failed in observe", "observe exploded on purpose"}},
      {"threshold_period_end_throws",
       1,
       "[scheduler]\nplugin = \"dlora\"\n[threshold]\nplugin = \"hard-faulty\"\n"
       "fault = \"period-end\"\nafter = 1\n",
       {"scheduler 'dlora'", "threshold plugin failed", "on_period_end exploded on purpose"}},
      {"threshold_returns_nan",
       1,
       "[scheduler]\nplugin = \"dlora\"\n[threshold]\nplugin = \"hard-faulty\"\nfault = \"nan\"\n",
       {"threshold 'hard-faulty'", "alpha = nan"}},
      {"dispatcher_throws",
       2,
       "[dispatcher]\nplugin = \"hard-faulty\"\nafter = 10\n",
       {"dispatcher 'hard-faulty'", "failed", "dispatch exploded on purpose"}},
      {"dispatcher_bad_replica",
       2,
       "[dispatcher]\nplugin = \"hard-faulty\"\nfault = \"bad-replica\"\nafter = 10\n",
       {"dispatcher 'hard-faulty'", "to replica 1000"}},
      {"migration_throws",
       2,
       "[migration]\nplugin = \"hard-faulty\"\n",
       {"migration 'hard-faulty'", "failed to plan", "migration plan exploded on purpose"}},
  };
}

std::string experiment(const FaultCase& c) {
  return "[plugins]\npaths = [\"" + kDir.string() + R"("]
[run]
name = "faulty"
seed = 5
output = "out/faulty.h5"
[adapters]
count = 4
[workload]
rate = 40.0
num_requests = 200
popularity = { kind = "zipf", s = 2.0 }
prompt = 16
output = 8
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
replicas = )" +
         std::to_string(c.replicas) + "\nmigration_interval_s = 0.5\n" + c.tables;
}

class PluginFaultMidRun : public testing::TestWithParam<FaultCase> {};

TEST_P(PluginFaultMidRun, ExitsThreeNamesThePluginAndMarksTheResultsFailed) {
  const FaultCase& c = GetParam();
  ScratchDir dir;
  write_text(dir / "exp.toml", experiment(c));
  // The fixtures are valid plugins: validation passes, the fault shows during the run.
  const ProcessResult v = run_lorasched({"validate", "exp.toml"}, dir.path(),
                                        {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  ASSERT_EQ(v.exit_code, 0) << v.describe();

  const ProcessResult r =
      run_lorasched({"run", "exp.toml"}, dir.path(), {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  ASSERT_EQ(r.signal, 0) << r.describe();
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  for (const auto& part : c.message)
    EXPECT_TRUE(contains(r.err, part)) << "lacks \"" << part << "\"\n" << r.describe();
  EXPECT_FALSE(contains(r.err, "internal error")) << r.describe();
  EXPECT_FALSE(contains(r.err, "check failed")) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "out/faulty.h5")) << "final results file after a failed run";
  const fs::path partial = dir / "out/faulty.h5.partial";
  ASSERT_TRUE(fs::exists(partial)) << "the fault should happen during the run";
  EXPECT_EQ(root_string_attr(partial, "status"), "failed");
  const auto error = root_string_attr(partial, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_TRUE(contains(r.err, *error)) << "stored error: " << *error << "\n" << r.describe();
  const ProcessResult rep = run_lorasched({"report", "out/faulty.h5.partial"}, dir.path());
  EXPECT_EQ(rep.exit_code, 2) << rep.describe();
  EXPECT_TRUE(contains(rep.err, "status failed")) << rep.describe();
}

INSTANTIATE_TEST_SUITE_P(Faults, PluginFaultMidRun, testing::ValuesIn(fault_cases()),
                         [](const testing::TestParamInfo<FaultCase>& p) { return p.param.name; });

}  // namespace
}  // namespace lorasched::test
