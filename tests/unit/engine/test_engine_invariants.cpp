// Engine invariants over small experiments, for every built-in scheduler: the costmodel
// executor (dlora-artifact timing: fast and deterministic) over several workloads, KV
// pressure with recompute and swap preemption, determinism, and one short run of the real
// cpu executor.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/config/experiment.hpp"
#include "core/plugin/loader.hpp"
#include "engine_invariants.hpp"

namespace lorasched::test {
namespace {

struct SchedulerCase {
  std::string name;
  std::string toml;
};

const std::vector<SchedulerCase> kSchedulers = {
    {"unmerged_fcfs", "[scheduler]\nplugin = \"unmerged-fcfs\"\n"},
    {"merged_only", "[scheduler]\nplugin = \"merged-only\"\n"},
    {"dlora_fixed", "[scheduler]\nplugin = \"dlora\"\n[threshold]\nplugin = \"fixed\"\n"},
    {"dlora_adaptive",
     "[scheduler]\nplugin = \"dlora\"\n[threshold]\nplugin = \"dlora-adaptive\"\n"},
};

struct Workload {
  std::string name;
  std::string toml;
  bool preemption = false;
};

void PrintTo(const SchedulerCase& s, std::ostream* os) { *os << s.name; }
void PrintTo(const Workload& w, std::ostream* os) { *os << w.name; }

// KV pressure: 60 requests of 32-64 + 32-64 tokens at 200 req/s into a pool of a few dozen
// KV blocks (16 tokens each) with batches of 16: admission has to preempt.
std::string kv_pressure(int kv_blocks, const char* preemption, bool unified) {
  return std::string(R"([adapters]
count = 4
ranks = [8]
[workload]
rate = 200.0
num_requests = 60
prompt = { kind = "uniform", min = 32, max = 64 }
output = { kind = "uniform", min = 32, max = 64 }
[engine]
max_batch_size = 16
kv_blocks = )") +
         std::to_string(kv_blocks) + "\npreemption = \"" + preemption +
         "\"\nunified_pool = " + (unified ? "true" : "false") + "\n";
}

const std::vector<Workload> kWorkloads = {
    {"light", R"([adapters]
count = 4
ranks = [8, 16]
[workload]
rate = 20.0
num_requests = 60
prompt = { kind = "uniform", min = 8, max = 64 }
output = { kind = "uniform", min = 2, max = 24 }
[engine]
max_batch_size = 8
)"},
    {"skewed_bursty", R"([adapters]
count = 8
ranks = [8, 16, 32, 64]
[workload]
arrival = "gamma"
cv = 2.0
rate = 60.0
num_requests = 80
popularity = { kind = "zipf", s = 1.2 }
prompt = { kind = "lognormal", median = 32, sigma = 0.8, min = 4, max = 256 }
output = { kind = "uniform", min = 1, max = 40 }
[engine]
max_batch_size = 16
max_batched_tokens = 512
)"},
    {"two_adapters_per_batch", R"([adapters]
count = 6
ranks = [8]
[workload]
rate = 80.0
num_requests = 60
prompt = 24
output = { kind = "uniform", min = 4, max = 16 }
[engine]
max_batch_size = 8
max_adapters_per_batch = 2
)"},
    {"two_replicas", R"([adapters]
count = 4
ranks = [8, 16]
[workload]
rate = 60.0
num_requests = 60
prompt = { kind = "uniform", min = 8, max = 48 }
output = { kind = "uniform", min = 2, max = 16 }
[engine]
max_batch_size = 8
[cluster]
replicas = 2
)"},
    // Pools without adapters (unified_pool = false): pure KV pressure.
    {"kv_recompute", kv_pressure(40, "recompute", false), true},
    {"kv_swap", kv_pressure(40, "swap", false), true},
    // The default unified pool: adapters and KV blocks share the pool (S-LoRA).
    {"kv_unified_recompute", kv_pressure(80, "recompute", true), true},
    {"kv_unified_swap", kv_pressure(80, "swap", true), true},
};

// The experiment text: the workload's tables, the costmodel executor, the scheduler, batch
// logging. A workload's own [cluster] table is merged with the executor keys.
std::string experiment(const Workload& w, const SchedulerCase& s, uint64_t seed = 17) {
  std::string text = "[run]\nname = \"engine\"\nseed = " + std::to_string(seed) + "\n" + w.toml;
  const std::string executor = "executor = \"costmodel\"\ncostmodel = \"dlora-artifact\"\n";
  const size_t cluster = text.find("[cluster]\n");
  if (cluster == std::string::npos)
    text += "[cluster]\n" + executor;
  else
    text.insert(cluster + 10, executor);
  return text + s.toml + "[metrics]\nlog_batches = true\n";
}

PluginRegistry& registry() {
  static PluginRegistry r(plugin_search_path());
  return r;
}

struct Ran {
  RunResult result;
  int64_t pool_blocks = 0;
};

// Runs the (single) experiment in `text`; a failure of the run is a test failure with its text.
std::optional<Ran> run_text(const std::string& text, const Experiment*& out_e,
                            std::vector<Experiment>& storage) {
  storage = parse_experiments(text, "test.toml");
  EXPECT_EQ(storage.size(), 1u);
  out_e = &storage.front();
  try {
    Simulation sim(storage.front(), registry());
    Ran r;
    r.pool_blocks = sim.pool_blocks();
    r.result = sim.run();
    return r;
  } catch (const Error& err) {
    ADD_FAILURE() << "the run failed (exit code " << static_cast<int>(err.code())
                  << "): " << err.what();
  }
  return std::nullopt;
}

using Param = std::tuple<SchedulerCase, Workload>;

class EngineInvariants : public testing::TestWithParam<Param> {};

TEST_P(EngineInvariants, Hold) {
  const auto& [s, w] = GetParam();
  std::vector<Experiment> storage;
  const Experiment* e = nullptr;
  const auto ran = run_text(experiment(w, s), e, storage);
  if (!ran) return;
  Expect expect;
  expect.costmodel_artifact = true;
  expect.preemption = w.preemption;
  check_invariants(*e, ran->result, ran->pool_blocks, expect);
  for (const auto& it : ran->result.records.iterations) {
    if (s.name == "unmerged_fcfs") {
      EXPECT_EQ(it.mode, 0);
    }
    if (s.name == "merged_only") {
      EXPECT_EQ(it.mode, 1);
    }
  }
  if (s.name == "dlora_fixed")
    for (const auto& it : ran->result.records.iterations) {
      EXPECT_DOUBLE_EQ(it.alpha, 1.0);
      EXPECT_DOUBLE_EQ(it.beta, 0.015 / 0.027);
    }
}

INSTANTIATE_TEST_SUITE_P(Costmodel, EngineInvariants,
                         testing::Combine(testing::ValuesIn(kSchedulers),
                                          testing::ValuesIn(kWorkloads)),
                         [](const testing::TestParamInfo<Param>& p) {
                           return std::get<0>(p.param).name + "__" + std::get<1>(p.param).name;
                         });

// dLoRA actually switches modes on a skewed workload (else the merged-batch checks above
// check nothing), and with the adaptive threshold alpha/beta move and are recorded.
TEST(EngineBehaviour, DloraSwitchesAndAdapts) {
  std::vector<Experiment> storage;
  const Experiment* e = nullptr;
  const auto ran = run_text(experiment(kWorkloads[1], kSchedulers[3]), e, storage);
  ASSERT_TRUE(ran);
  const auto& R = ran->result.records;
  int64_t merged = 0, unmerged = 0;
  for (const auto& it : R.iterations) (it.mode == 1 ? merged : unmerged)++;
  EXPECT_GT(merged, 0);
  EXPECT_GT(unmerged, 0);
  EXPECT_GT(count_events(R, EventKind::merge), 0);
  const int64_t changes = count_events(R, EventKind::threshold_change);
  EXPECT_GT(changes, 0);
  for (const auto& ev : R.events)
    if (ev.kind == static_cast<int8_t>(EventKind::threshold_change)) {
      EXPECT_TRUE(std::isfinite(ev.value) && std::isfinite(ev.value2));
      EXPECT_LT(ev.value2, ev.value) << "beta must stay below alpha";
    }
}

class Determinism : public testing::TestWithParam<SchedulerCase> {};

TEST_P(Determinism, SameExperimentTwiceGivesIdenticalRecords) {
  const std::string text = experiment(kWorkloads[1], GetParam());
  std::vector<Experiment> s1, s2;
  const Experiment *e1 = nullptr, *e2 = nullptr;
  const auto a = run_text(text, e1, s1);
  const auto b = run_text(text, e2, s2);
  ASSERT_TRUE(a && b);
  expect_identical(a->result.records, b->result.records);
  EXPECT_EQ(a->result.plugins, b->result.plugins);
  EXPECT_EQ(a->result.device, b->result.device);
  // And another seed gives another run.
  std::vector<Experiment> s3;
  const Experiment* e3 = nullptr;
  const auto c = run_text(experiment(kWorkloads[1], GetParam(), 18), e3, s3);
  ASSERT_TRUE(c);
  bool differs = c->result.records.requests.size() != a->result.records.requests.size();
  for (size_t i = 0; !differs && i < a->result.records.requests.size(); ++i)
    differs = a->result.records.requests[i].arrival != c->result.records.requests[i].arrival;
  EXPECT_TRUE(differs) << "seed has no effect";
}

INSTANTIATE_TEST_SUITE_P(Costmodel, Determinism, testing::ValuesIn(kSchedulers),
                         [](const testing::TestParamInfo<SchedulerCase>& p) {
                           return p.param.name;
                         });

// The real cpu executor (tiny model, synthetic weights): measured times, same invariants.
TEST(CpuExecutor, InvariantsHoldOnARealRun) {
  const std::string text = R"([run]
name = "cpu"
seed = 5
[adapters]
count = 4
ranks = [4, 8]
[workload]
rate = 60.0
num_requests = 30
popularity = { kind = "zipf", s = 1.0 }
prompt = { kind = "uniform", min = 8, max = 32 }
output = { kind = "uniform", min = 2, max = 10 }
[engine]
max_batch_size = 8
kv_blocks = 256
[cluster]
executor = "cpu"
threads = 1
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[metrics]
log_batches = true
)";
  std::vector<Experiment> storage;
  const Experiment* e = nullptr;
  const auto ran = run_text(text, e, storage);
  ASSERT_TRUE(ran);
  EXPECT_EQ(ran->result.executor, "cpu");
  check_invariants(*e, ran->result, ran->pool_blocks, Expect{});
}

}  // namespace
}  // namespace lorasched::test
