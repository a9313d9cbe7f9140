// Migration decision time and quality on synthetic cluster snapshots (Google Benchmark 1.7),
// through the plugin ABI: dLoRA's ILP over the trigger's pair (the artifact), the
// full-cluster ILP (binary request assignment, with a time limit) and the greedy heuristic.
//
// Snapshots: core/cluster/synthetic_snapshot.hpp, R replicas in {4, 8, 16, 32, 64} x K
// adapters in {32, 128, 512}.
//
// Counters: requests, moves, ratio (cluster objective after the plan / before it, the
// artifact's objective: max over replicas of work + 0.05 s per moved-in request + KV
// overflow / link; lower is better), status (0 optimal, 1 feasible, 2 time limit,
// 3 infeasible, 4 heuristic, 5 other, -1 no decision), gap (objective - bound) / objective
// of the solver, vars, rows.
//
// Cluster-scope time limit: LORASCHED_BENCH_ILP_LIMIT seconds (default 10).
// Example: build/h-cluster/bench/bench_migration --benchmark_filter='ilp_pair'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cluster/synthetic_snapshot.hpp"
#include "core/plugin/loader.hpp"
#include "lorasched/plugin/testkit.hpp"
#include "plugins/migration/dlora_common.hpp"

namespace {

using namespace lorasched;
using cluster::make_snapshot;

PluginRegistry& registry() {
  static PluginRegistry r(plugin_search_path());
  return r;
}

PluginInstance<api::Migration> load(const std::string& name,
                                    const std::map<std::string, api::ParamValue>& p, int32_t K) {
  auto lib = registry().find(api::PluginKind::migration, name);
  api::CreateArgs args;
  args.params = testkit::params_for(lib->info, p);
  args.seed = 1;
  args.num_adapters = K;
  return instantiate<api::Migration>(lib, args);
}

double status_code(const api::MigrationPlan& p) {
  if (!p.has_report) return -1;
  const std::string& s = p.report.status;
  if (s == "optimal") return 0;
  if (s == "feasible") return 1;
  if (s == "time limit") return 2;
  if (s == "infeasible") return 3;
  if (s == "heuristic") return 4;
  return 5;
}

void run(benchmark::State& state, const std::string& plugin,
         std::map<std::string, api::ParamValue> params) {
  const int32_t R = static_cast<int32_t>(state.range(0));
  const int32_t K = static_cast<int32_t>(state.range(1));
  auto snap = make_snapshot(R, K, 42);
  auto m = load(plugin, params, K);
  api::MigrationPlan plan;
  for (auto _ : state) {
    auto out = m->checked_plan(snap->view);
    if (!out) {
      state.SkipWithError(out.error().c_str());
      return;
    }
    plan = std::move(out.value());
    benchmark::DoNotOptimize(plan);
  }
  const std::vector<double> cost = dlora::adapter_costs(snap->view, 5.0);
  std::unordered_map<api::RequestId, int32_t> dest;
  for (const auto& mv : plan.moves) dest[mv.request] = mv.to;
  const double before = dlora::cluster_objective(snap->view, cost, {}, 0.05);
  const double after = dlora::cluster_objective(snap->view, cost, dest, 0.05);
  int64_t n = 0;
  for (const auto& r : snap->requests) n += static_cast<int64_t>(r.size());
  state.counters["requests"] = static_cast<double>(n);
  state.counters["moves"] = static_cast<double>(plan.moves.size());
  state.counters["ratio"] = before > 0 ? after / before : 1.0;
  state.counters["status"] = status_code(plan);
  state.counters["gap"] = plan.has_report && plan.report.objective > 0
                              ? (plan.report.objective - plan.report.bound) / plan.report.objective
                              : 0.0;
  state.counters["vars"] = plan.has_report ? static_cast<double>(plan.report.variables) : 0.0;
  state.counters["rows"] = plan.has_report ? static_cast<double>(plan.report.constraints) : 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("LORASCHED_BENCH_ILP_LIMIT");
  const double limit = env ? std::atof(env) : 10.0;
  const std::vector<int64_t> Rs{4, 8, 16, 32, 64}, Ks{32, 128, 512};
  auto reg = [&](const std::string& name, const std::string& plugin,
                 std::map<std::string, api::ParamValue> params, int iterations) {
    for (int64_t K : Ks)
      for (int64_t R : Rs) {
        auto* b = benchmark::RegisterBenchmark(
            name.c_str(), [plugin, params](benchmark::State& s) { run(s, plugin, params); });
        b->Args({R, K})->ArgNames({"R", "K"})->Unit(benchmark::kMillisecond)->UseRealTime();
        if (iterations > 0) b->Iterations(iterations);
      }
  };
  reg("ilp_pair", "dlora-ilp", {}, 0);
  reg("greedy", "greedy", {}, 0);
  reg("greedy_pair", "greedy", {{"scope", std::string("pair")}}, 0);
  reg("ilp_cluster", "dlora-ilp", {{"scope", std::string("cluster")}, {"time_limit_s", limit}}, 1);
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("cluster_ilp_time_limit_s", std::to_string(limit));
  benchmark::AddCustomContext("cbc_threads", "1 (CBC C API default)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
