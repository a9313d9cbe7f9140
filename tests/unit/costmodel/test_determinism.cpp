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
