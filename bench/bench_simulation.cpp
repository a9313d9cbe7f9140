// Simulation speed on the costmodel executor: simulated requests per wall-second on one
// core, dLoRA's policy (dlora + dlora-adaptive), 128 adapters, Llama-2-7B on the A100
// preset, 1 replica and several (least-loaded dispatch, no migration). The counter
// "requests/s" is what a cluster-scale experiment gets; "iterations/s" the engine loop's
// rate. Building the run (workload generation, plugins) is not timed; see
// docs/costmodel.md, "Speed".
#include <benchmark/benchmark.h>

#include <fmt/format.h>
#include <chrono>
#include <optional>

#include "core/cluster/simulation.hpp"
#include "core/config/experiment.hpp"
#include "core/plugin/loader.hpp"

namespace {

using namespace lorasched;

PluginRegistry& registry() {
  static PluginRegistry r(plugin_search_path());
  return r;
}

// Per replica: 1.5 requests/s of ShareGPT-like lengths (median prompt 160, output 200
// tokens), Gamma arrivals (cv 1), adapters by Zipf(1.0) popularity: most batches are
// unmerged over many adapters on this preset, and this keeps queues bounded (dLoRA's
// merged-mode rule can stall a replica whose pool is full, see docs/costmodel.md).
std::string experiment(int replicas, int requests) {
  return fmt::format(R"([run]
name = "bench"
seed = 1
[model]
preset = "llama2-7b"
[adapters]
count = 128
ranks = [8, 16, 32, 64]
[workload]
arrival = "gamma"
cv = 1.0
rate = {}
num_requests = {}
popularity = {{ kind = "zipf", s = 1.0 }}
prompt = {{ kind = "lognormal", median = 160, sigma = 0.8, min = 4, max = 2048 }}
output = {{ kind = "lognormal", median = 200, sigma = 0.8, min = 4, max = 2048 }}
[engine]
max_batch_size = 16
[cluster]
replicas = {}
executor = "costmodel"
costmodel = "llama2-7b@a100-80gb"
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[dispatcher]
plugin = "least-loaded"
)",
                     1.5 * replicas, requests, replicas);
}

void BM_Simulation(benchmark::State& st) {
  const int replicas = static_cast<int>(st.range(0));
  const int requests = static_cast<int>(st.range(1));
  const auto exps = parse_experiments(experiment(replicas, requests), "bench.toml");
  int64_t simulated = 0, iterations = 0;
  double virtual_seconds = 0, queued = 0;
  for (auto _ : st) {
    st.PauseTiming();
    std::optional<Simulation> sim;
    sim.emplace(exps.at(0), registry());
    st.ResumeTiming();
    RunResult r = sim->run();
    st.PauseTiming();
    simulated += static_cast<int64_t>(r.records.requests.size());
    iterations += static_cast<int64_t>(r.records.iterations.size());
    for (const auto& it : r.records.iterations) queued += it.queued;
    double last = 0;
    for (const auto& q : r.records.requests) last = std::max(last, q.finish);
    virtual_seconds += last;
    sim.reset();
    st.ResumeTiming();
  }
  st.counters["requests/s"] =
      benchmark::Counter(static_cast<double>(simulated), benchmark::Counter::kIsRate);
  st.counters["iterations/s"] =
      benchmark::Counter(static_cast<double>(iterations), benchmark::Counter::kIsRate);
  st.counters["queued/iteration"] =
      benchmark::Counter(queued / static_cast<double>(std::max<int64_t>(1, iterations)));
  st.counters["virtual_s/run"] =
      benchmark::Counter(virtual_seconds / static_cast<double>(st.iterations()));
}

BENCHMARK(BM_Simulation)
    ->ArgNames({"replicas", "requests"})
    ->Args({1, 5000})
    ->Args({8, 40000})
    ->Args({32, 160000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
