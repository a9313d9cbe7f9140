// Simulation speed on the costmodel executor, one core: dLoRA's policy (dlora +
// dlora-adaptive), Llama-2-7B on the A100 preset, ShareGPT-like lengths, Gamma arrivals at
// 1.5 requests/s per replica, least-loaded dispatch, no migration.
//
// BM_Simulation: 128 adapters, 1, 8 and 32 replicas (docs/costmodel.md, "Speed").
// BM_Scale: 10 adapters per replica, 32 to 1,000 replicas with 40 requests per replica, and
// one replica with 4,000 (issue 21; docs/performance.md, "Simulation speed and cluster scale").
// BM_OneReplica: one replica with BM_Scale's per-replica workload (40 requests), 400 runs.
// BM_Fleet: 1,000 replicas with 10,000, 1,000, 100 and 10 adapters in the fleet (what the
// layout of per-adapter state costs there; dLoRA's placement with each adapter on many
// replicas).
//
// Counters: requests/s and iterations/s of the event loop over wall time (building the run is
// not timed), and over the thread's CPU time: requests/cpu_s, setup_s (CPU seconds building
// the run: workload, dLoRA's placement, replicas, plugins), sim/cpu_s (virtual seconds
// simulated per CPU second of the loop) and sim/cpu_s_total (with the set-up); on a shared
// machine the CPU figures are the ones to compare. queued/iteration, batch/iteration and
// adapters/iteration (mean queue, batch size and distinct adapters per batch: the shape of a
// step's work), iterations/run (iterations simulated per run: scripts/step_cost.py divides a
// profile's counts by it), peak_MiB (the process's peak resident memory during the point,
// /proc/self/status VmHWM after resetting it), bytes/replica-adapter (the peak over replicas x
// adapters).
#include <benchmark/benchmark.h>

#include <fmt/format.h>
#include <malloc.h>
#include <time.h>
#include <fstream>
#include <optional>
#include <string>

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
std::string experiment(int replicas, int adapters, int requests) {
  return fmt::format(R"([run]
name = "bench"
seed = 1
[model]
preset = "llama2-7b"
[adapters]
count = {}
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
                     adapters, 1.5 * replicas, requests, replicas);
}

// Peak resident memory since the last reset, bytes (Linux).
int64_t peak_rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// CPU seconds of this thread (the simulation runs on one): on a shared machine the wall
// clock counts other processes' time too.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// trim: return the heap freed by earlier points to the system first (glibc keeps freed small
// blocks), so that it does not count in this point's peak; the point then starts on a cold
// heap, so compare its rate only with points run the same way.
void run(benchmark::State& st, int replicas, int adapters, int requests, bool trim = false) {
  const auto exps = parse_experiments(experiment(replicas, adapters, requests), "bench.toml");
  int64_t simulated = 0, iterations = 0;
  double virtual_seconds = 0, queued = 0, batch = 0, distinct = 0, setup = 0, loop = 0;
  int64_t peak = 0;
  for (auto _ : st) {
    st.PauseTiming();
    if (trim) malloc_trim(0);
    reset_peak_rss();
    const double c0 = thread_cpu_seconds();
    std::optional<Simulation> sim;
    sim.emplace(exps.at(0), registry());
    const double c1 = thread_cpu_seconds();
    setup += c1 - c0;
    st.ResumeTiming();
    RunResult r = sim->run();
    st.PauseTiming();
    loop += thread_cpu_seconds() - c1;
    peak = std::max(peak, peak_rss());
    simulated += static_cast<int64_t>(r.records.requests.size());
    iterations += static_cast<int64_t>(r.records.iterations.size());
    for (const auto& it : r.records.iterations) {
      queued += it.queued;
      batch += it.batch_size;
      distinct += it.distinct_adapters;
    }
    double last = 0;
    for (const auto& q : r.records.requests) last = std::max(last, q.finish);
    virtual_seconds += last;
    sim.reset();
    st.ResumeTiming();
  }
  const auto n = static_cast<double>(st.iterations());
  st.counters["requests/s"] =
      benchmark::Counter(static_cast<double>(simulated), benchmark::Counter::kIsRate);
  st.counters["iterations/s"] =
      benchmark::Counter(static_cast<double>(iterations), benchmark::Counter::kIsRate);
  st.counters["requests/cpu_s"] = benchmark::Counter(static_cast<double>(simulated) / loop);
  const auto per_iteration = [&](double x) {
    return benchmark::Counter(x / static_cast<double>(std::max<int64_t>(1, iterations)));
  };
  st.counters["queued/iteration"] = per_iteration(queued);
  st.counters["batch/iteration"] = per_iteration(batch);
  st.counters["adapters/iteration"] = per_iteration(distinct);
  st.counters["virtual_s/run"] = benchmark::Counter(virtual_seconds / n);
  st.counters["iterations/run"] = benchmark::Counter(static_cast<double>(iterations) / n);
  st.counters["setup_s"] = benchmark::Counter(setup / n);
  st.counters["sim/cpu_s"] = benchmark::Counter(virtual_seconds / loop);
  st.counters["sim/cpu_s_total"] = benchmark::Counter(virtual_seconds / (loop + setup));
  st.counters["peak_MiB"] = benchmark::Counter(static_cast<double>(peak) / (1 << 20));
  st.counters["bytes/replica-adapter"] =
      benchmark::Counter(static_cast<double>(peak) / (static_cast<double>(replicas) * adapters));
}

void BM_Simulation(benchmark::State& st) {
  run(st, static_cast<int>(st.range(0)), 128, static_cast<int>(st.range(1)));
}

BENCHMARK(BM_Simulation)
    ->ArgNames({"replicas", "requests"})
    ->Args({1, 5000})
    ->Args({8, 40000})
    ->Args({32, 160000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

void BM_Scale(benchmark::State& st) {
  const int replicas = static_cast<int>(st.range(0));
  run(st, replicas, 10 * replicas, static_cast<int>(st.range(1)) * replicas);
}

BENCHMARK(BM_Scale)
    ->ArgNames({"replicas", "requests_per_replica"})
    ->Args({1, 4000})  // the one-replica rate the others are held against
    ->Args({32, 40})
    ->Args({256, 40})
    ->Args({1000, 40})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

// One replica with BM_Scale's per-replica workload (10 adapters, 40 requests), run 400 times
// (each run the same): BM_Scale's one-replica point runs 4,000 requests, a long history whose
// batches are larger (the tables' iterations per request and batch size), so its rate per
// request is not what one replica of a 40-requests-per-replica point costs alone; this is.
void BM_OneReplica(benchmark::State& st) { run(st, 1, 10, static_cast<int>(st.range(0))); }

BENCHMARK(BM_OneReplica)
    ->ArgNames({"requests_per_replica"})
    ->Args({40})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(400);

// BM_Scale's 1,000 replicas with 10,000, 1,000, 100 and 10 adapters in the fleet (40 requests
// per replica), all on a trimmed heap. Each replica still serves a handful of adapters; what
// changes most is where their entries sit in the per-replica arrays indexed by adapter id
// (the engine's, the queue's, the scheduler's). With 1,000 the arrays are 10x shorter but the
// entries a step touches still lie on separate cache lines; with 10 they share a line or two,
// as they would if per-replica state were indexed by the adapters the replica hosts: a bound
// on what packing that state could win (generous: its batches also hold fewer distinct
// adapters, see adapters/iteration). With 100, dLoRA's placement puts each adapter on many
// replicas (its set-up time).
void BM_Fleet(benchmark::State& st) {
  const int replicas = static_cast<int>(st.range(0));
  run(st, replicas, static_cast<int>(st.range(1)), 40 * replicas, /*trim=*/true);
}

BENCHMARK(BM_Fleet)
    ->ArgNames({"replicas", "adapters"})
    ->Args({1000, 10000})
    ->Args({1000, 1000})
    ->Args({1000, 100})
    ->Args({1000, 10})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
