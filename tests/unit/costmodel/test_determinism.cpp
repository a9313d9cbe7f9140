// Determinism: with the costmodel executor, the same experiment and seed give bit-identical
// records (every field of every request, iteration, event and batch row, but the wall-clock
// fields of the field tables: iterations.decision_wall_us), in memory and read back from the
// results file.
#include <gtest/gtest.h>

#include "core/cluster/simulation.hpp"
#include "core/config/experiment.hpp"
#include "core/metrics/h5.hpp"
#include "core/metrics/summary.hpp"
#include "costmodel_util.hpp"
#include "tests/common/record_compare.hpp"

namespace lorasched::test {
namespace {

// dLoRA (adaptive thresholds) on the 7B A100 preset, 3 replicas, 64 adapters, skewed
// popularity, swaps, every batch logged.
const char* const kExperiment = R"([run]
name = "determinism"
seed = 17
[model]
preset = "llama2-7b"
[adapters]
count = 64
ranks = [8, 16, 32, 64]
[workload]
arrival = "gamma"
cv = 2.0
rate = 60.0
num_requests = 1500
popularity = { kind = "zipf", s = 1.2 }
prompt = { kind = "lognormal", median = 200, sigma = 0.8, min = 8, max = 2000 }
output = { kind = "lognormal", median = 150, sigma = 0.8, min = 4, max = 1000 }
[engine]
max_batch_size = 16
preemption = "swap"
[cluster]
replicas = 3
executor = "costmodel"
costmodel = "llama2-7b@a100-80gb"
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[metrics]
log_batches = true
)";

RunResult run_once(const Experiment& e) {
  PluginRegistry registry(plugin_search_path());
  Simulation sim(e, registry);
  return sim.run();
}

TEST(Determinism, SameExperimentSameSeedSameRecords) {
  const auto exps = parse_experiments(kExperiment, "determinism.toml");
  const RunResult a = run_once(exps.at(0));
  const RunResult b = run_once(exps.at(0));
  ASSERT_GT(a.records.iterations.size(), 1000u);
  ASSERT_FALSE(a.records.batches.empty());
  expect_same_records(a.records, b.records);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.plugins, b.plugins);

  // Through the results file, as `lorasched run` writes it.
  TempDir dir;
  for (const auto* r : {&a, &b}) {
    ResultsWriter w(dir / (r == &a ? "a.h5" : "b.h5"));
    RunAttributes attrs;
    attrs.experiment_toml = kExperiment;
    attrs.seed = exps[0].run.seed;
    attrs.executor = r->executor;
    attrs.device = r->device;
    attrs.plugins = r->plugins;
    Summary s = summarize(r->records);
    s.wall_seconds = r->wall_seconds;
    w.write_run("000", attrs, r->records, s, /*log_batches=*/true);
    w.commit();
  }
  const auto ra = read_results(dir / "a.h5");
  const auto rb = read_results(dir / "b.h5");
  ASSERT_EQ(ra.size(), 1u);
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(ra[0].attrs, rb[0].attrs);
  expect_same_records(ra[0].records, rb[0].records);
  expect_same_records(ra[0].records, a.records);
  expect_same_summary(ra[0].summary, rb[0].summary);
}

TEST(Determinism, ProfileCostModelRunsAreIdentical) {
  TempDir dir;
  write_profile(synthetic_profile(), dir / "p.json");
  std::string text = kExperiment;
  auto replace = [&](const std::string& from, const std::string& to) {
    text.replace(text.find(from), from.size(), to);
  };
  replace("preset = \"llama2-7b\"", "preset = \"tiny\"");
  replace("costmodel = \"llama2-7b@a100-80gb\"",
          "costmodel = \"" + (dir / "p.json").string() + "\"");
  replace("num_requests = 1500", "num_requests = 400");
  replace("max = 2000", "max = 300");
  replace("max = 1000", "max = 200");
  const auto exps = parse_experiments(text, "determinism-profile.toml");
  const RunResult a = run_once(exps.at(0));
  const RunResult b = run_once(exps.at(0));
  ASSERT_GT(a.records.iterations.size(), 100u);
  expect_same_records(a.records, b.records);
  EXPECT_NE(a.device.find("p.json"), std::string::npos) << a.device;
}

}  // namespace
}  // namespace lorasched::test

namespace lorasched::test {
namespace {

// dLoRA with fixed thresholds on the artifact's timing, 8 adapters, bursty: many switches.
std::string switch_experiment(const std::string& engine, const std::string& cluster) {
  return R"([run]
name = "switches"
seed = 5
[model]
preset = "llama2-7b"
[adapters]
count = 8
ranks = [16]
[workload]
arrival = "gamma"
cv = 3.0
rate = 40.0
num_requests = 400
popularity = { kind = "zipf", s = 1.5 }
prompt = { kind = "uniform", min = 16, max = 64 }
output = { kind = "uniform", min = 4, max = 32 }
[engine]
max_batch_size = 16
)" + engine +
         R"(
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
)" + cluster +
         R"(
[scheduler]
plugin = "dlora"
[threshold]
plugin = "fixed"
)";
}

// [engine] switch reaches the executor: fused, a switch between adapters is one
// `adapter_switch` event naming the adapter it replaced; unmerge-merge, an unmerge and a merge.
// Under the artifact's timing both cost 20 ms, so the iterations are the same.
TEST(SwitchMethod, FusedIsOneEventNamingTheOldAdapter) {
  const RunResult fused =
      run_once(parse_experiments(switch_experiment("switch = \"fused\"", ""), "f.toml").at(0));
  const RunResult plain = run_once(
      parse_experiments(switch_experiment("switch = \"unmerge-merge\"", ""), "p.toml").at(0));
  int64_t switches = 0;
  int32_t merged = -1;
  for (const EventRecord& e : fused.records.events) {
    const auto kind = static_cast<EventKind>(e.kind);
    if (kind == EventKind::adapter_switch) {
      ++switches;
      EXPECT_EQ(e.value, static_cast<double>(merged));
      EXPECT_NE(e.adapter, merged);
      EXPECT_EQ(e.duration, 0.020);
      merged = e.adapter;
    } else if (kind == EventKind::merge) {
      EXPECT_EQ(merged, -1);
      merged = e.adapter;
    } else if (kind == EventKind::unmerge) {
      EXPECT_EQ(e.adapter, merged);
      merged = -1;
    }
  }
  EXPECT_GT(switches, 5);
  int64_t plain_switches = 0;
  for (const EventRecord& e : plain.records.events)
    plain_switches += e.kind == static_cast<int8_t>(EventKind::adapter_switch);
  EXPECT_EQ(plain_switches, 0);
  EXPECT_EQ(summarize(fused.records).merges, summarize(plain.records).merges);
  EXPECT_EQ(summarize(fused.records).unmerges, summarize(plain.records).unmerges);
  ASSERT_EQ(fused.records.iterations.size(), plain.records.iterations.size());
  for (size_t i = 0; i < fused.records.iterations.size(); ++i) {
    EXPECT_EQ(fused.records.iterations[i].start, plain.records.iterations[i].start) << i;
    EXPECT_EQ(fused.records.iterations[i].switch_time, plain.records.iterations[i].switch_time)
        << i;
  }
}

// [cluster] costmodel_scale reaches the cost model: unmerged iterations take 1.2 merged ones,
// a switch 2 merged iterations.
TEST(CostModelScale, ReachesTheRun) {
  const RunResult r =
      run_once(parse_experiments(
                   switch_experiment(
                       "", "costmodel_scale = { unmerged_ratio = 1.2, switch_iterations = 2 }"),
                   "s.toml")
                   .at(0));
  int64_t unmerged = 0, merged = 0;
  for (const IterationRecord& it : r.records.iterations) {
    if (it.mode == 0) {
      EXPECT_NEAR(it.duration, 0.018, 1e-12);
      ++unmerged;
    } else {
      EXPECT_NEAR(it.duration, 0.015, 1e-12);
      ++merged;
    }
  }
  EXPECT_GT(unmerged, 0);
  EXPECT_GT(merged, 0);
  int64_t switches = 0;
  for (const EventRecord& e : r.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::adapter_switch)) {
      EXPECT_NEAR(e.duration, 0.030, 1e-12);
      ++switches;
    }
  EXPECT_GT(switches, 0);
}

}  // namespace
}  // namespace lorasched::test
