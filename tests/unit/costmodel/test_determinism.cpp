// Determinism: with the costmodel executor, the same experiment and seed give bit-identical
// records (every field of every request, iteration, event and batch row, but the
// iterations' decision_wall_us), in memory and read back from the results file.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>

#include "core/cluster/simulation.hpp"
#include "core/config/experiment.hpp"
#include "core/metrics/h5.hpp"
#include "core/metrics/summary.hpp"
#include "costmodel_util.hpp"

namespace lorasched::test {
namespace {

// Doubles compared bit for bit (NaN == NaN).
bool same(double a, double b) { return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b); }
template <class T>
bool same(T a, T b) {
  return a == b;
}

#define EXPECT_SAME_FIELD(a, b, f, i) \
  EXPECT_TRUE(same((a).f, (b).f)) << #f << " differs at row " << (i)

void expect_same_records(const RunRecords& a, const RunRecords& b) {
  ASSERT_EQ(a.requests.size(), b.requests.size());
  for (size_t i = 0; i < a.requests.size(); ++i) {
    const auto &x = a.requests[i], &y = b.requests[i];
    EXPECT_SAME_FIELD(x, y, id, i);
    EXPECT_SAME_FIELD(x, y, adapter, i);
    EXPECT_SAME_FIELD(x, y, replica, i);
    EXPECT_SAME_FIELD(x, y, arrival, i);
    EXPECT_SAME_FIELD(x, y, first_scheduled, i);
    EXPECT_SAME_FIELD(x, y, first_token, i);
    EXPECT_SAME_FIELD(x, y, finish, i);
    EXPECT_SAME_FIELD(x, y, prompt_tokens, i);
    EXPECT_SAME_FIELD(x, y, output_tokens, i);
    EXPECT_SAME_FIELD(x, y, queueing_delay, i);
    EXPECT_SAME_FIELD(x, y, exec_time, i);
    EXPECT_SAME_FIELD(x, y, migrations, i);
    EXPECT_SAME_FIELD(x, y, preemptions, i);
    EXPECT_SAME_FIELD(x, y, status, i);
  }
  ASSERT_EQ(a.iterations.size(), b.iterations.size());
  for (size_t i = 0; i < a.iterations.size(); ++i) {
    const auto &x = a.iterations[i], &y = b.iterations[i];
    EXPECT_SAME_FIELD(x, y, replica, i);
    EXPECT_SAME_FIELD(x, y, iteration, i);
    EXPECT_SAME_FIELD(x, y, start, i);
    EXPECT_SAME_FIELD(x, y, switch_time, i);
    EXPECT_SAME_FIELD(x, y, duration, i);
    EXPECT_SAME_FIELD(x, y, mode, i);
    EXPECT_SAME_FIELD(x, y, merged_adapter, i);
    EXPECT_SAME_FIELD(x, y, batch_size, i);
    EXPECT_SAME_FIELD(x, y, prefill_tokens, i);
    EXPECT_SAME_FIELD(x, y, decode_tokens, i);
    EXPECT_SAME_FIELD(x, y, distinct_adapters, i);
    EXPECT_SAME_FIELD(x, y, queued, i);
    EXPECT_SAME_FIELD(x, y, kv_blocks_used, i);
    EXPECT_SAME_FIELD(x, y, alpha, i);
    EXPECT_SAME_FIELD(x, y, beta, i);
    // decision_wall_us is wall-clock time: it may differ.
  }
  ASSERT_EQ(a.events.size(), b.events.size());
  for (size_t i = 0; i < a.events.size(); ++i) {
    const auto &x = a.events[i], &y = b.events[i];
    EXPECT_SAME_FIELD(x, y, time, i);
    EXPECT_SAME_FIELD(x, y, replica, i);
    EXPECT_SAME_FIELD(x, y, kind, i);
    EXPECT_SAME_FIELD(x, y, adapter, i);
    EXPECT_SAME_FIELD(x, y, request, i);
    EXPECT_SAME_FIELD(x, y, duration, i);
    EXPECT_SAME_FIELD(x, y, bytes, i);
    EXPECT_SAME_FIELD(x, y, other_replica, i);
    EXPECT_SAME_FIELD(x, y, value, i);
    EXPECT_SAME_FIELD(x, y, value2, i);
  }
  ASSERT_EQ(a.batches.size(), b.batches.size());
  for (size_t i = 0; i < a.batches.size(); ++i) {
    const auto &x = a.batches[i], &y = b.batches[i];
    EXPECT_SAME_FIELD(x, y, iteration, i);
    EXPECT_SAME_FIELD(x, y, replica, i);
    EXPECT_SAME_FIELD(x, y, request, i);
    EXPECT_SAME_FIELD(x, y, position, i);
  }
}

void expect_same_summary(const Summary& a, const Summary& b) {
  for (const auto& f : summary_fields()) {
    if (std::string(f.name) == "wall_seconds") continue;
    std::visit(
        [&](auto member) {
          EXPECT_TRUE(same(a.*member, b.*member)) << "summary " << f.name << " differs";
        },
        f.member);
  }
}

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
