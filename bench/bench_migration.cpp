// Migration decision time and quality on synthetic cluster snapshots (Google Benchmark 1.7),
// through the plugin ABI: dLoRA's ILP over the trigger's pair (the artifact), the
// full-cluster ILP (binary request assignment, with a time limit) and the greedy heuristic.
//
// Snapshots (seeded, deterministic): R replicas in {4, 8, 16, 32, 64} x K adapters in
// {32, 128, 512}; adapters placed by dLoRA's greedy (core/cluster/placement.hpp); a quarter
// of the replicas overloaded (about 200 requests against 45); each request's adapter drawn
// from its replica's adapters with Zipf(1) popularity; contexts lognormal (median 600
// tokens) in 16-token KV blocks; 7,000 KV blocks of 8 MiB per replica (Llama-2-7B on an
// A100-80GB), 32 GB/s links; per-adapter execution times 2..8 s; 5% of the requests running,
// 20% waiting, 5% swapped, the rest ready.
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

#include "core/cluster/placement.hpp"
#include "core/common/rng.hpp"
#include "core/plugin/loader.hpp"
#include "lorasched/plugin/testkit.hpp"
#include "plugins/migration/dlora_common.hpp"

namespace {

using namespace lorasched;

struct Snapshot {
  std::vector<std::vector<api::AdapterId>> hosted;
  std::vector<std::vector<int32_t>> counts;
  std::vector<std::vector<api::RequestView>> requests;
  std::vector<api::ReplicaState> states;
  std::vector<int64_t> bytes;
  std::vector<double> exec;
  api::ClusterView view;
};

std::unique_ptr<Snapshot> make_snapshot(int32_t R, int32_t K, uint64_t seed) {
  auto s = std::make_unique<Snapshot>();
  Rng rng(seed, static_cast<uint64_t>(R) * 1000 + static_cast<uint64_t>(K));
  s->bytes.assign(static_cast<size_t>(K), 100925440);  // Llama-2-7B, rank 16
  const double memory = 7000.0 * 8.0 * (1 << 20);
  auto placement = cluster::initial_placement(R, s->bytes, memory, cluster::TopUp::one_adapter, 0);
  s->hosted = placement.lists;
  for (auto& h : s->hosted) std::sort(h.begin(), h.end());
  s->exec.resize(static_cast<size_t>(K));
  for (auto& e : s->exec) e = rng.uniform(2.0, 8.0);
  s->counts.assign(static_cast<size_t>(R), std::vector<int32_t>(static_cast<size_t>(K), 0));
  s->requests.resize(static_cast<size_t>(R));
  api::RequestId next = 0;
  const int32_t overloaded = std::max(1, R / 4);
  for (int32_t r = 0; r < R; ++r) {
    const bool hot = r % 4 == 0 && r / 4 < overloaded;
    const int n = hot ? static_cast<int>(rng.uniform_int(170, 230))
                      : static_cast<int>(rng.uniform_int(30, 60));
    const auto& h = s->hosted[static_cast<size_t>(r)];
    std::vector<double> w;
    double total = 0;
    for (api::AdapterId a : h) {
      w.push_back(1.0 / (a + 1.0));
      total += w.back();
    }
    for (int i = 0; i < n; ++i) {
      double u = rng.uniform() * total;
      size_t pick = 0;
      while (pick + 1 < w.size() && u >= w[pick]) u -= w[pick++];
      api::RequestView v;
      v.id = next++;
      v.adapter = h[pick];
      v.arrival = rng.uniform(0, 100);
      const int32_t len =
          std::clamp(static_cast<int32_t>(600 * std::exp(0.8 * rng.normal())), 16, 4000);
      v.generated = static_cast<int32_t>(rng.uniform_int(0, len / 4));
      v.prompt_tokens = len - v.generated;
      v.output_tokens = v.generated + 100;
      const double st = rng.uniform();
      v.state = st < 0.05   ? api::RequestState::running
                : st < 0.25 ? api::RequestState::waiting
                : st < 0.30 ? api::RequestState::swapped
                            : api::RequestState::ready;
      v.kv_blocks = v.state == api::RequestState::waiting ? 0 : (len + 15) / 16;
      s->requests[static_cast<size_t>(r)].push_back(v);
      ++s->counts[static_cast<size_t>(r)][static_cast<size_t>(v.adapter)];
    }
  }
  for (int32_t r = 0; r < R; ++r) {
    api::ReplicaState st;
    st.replica = r;
    st.kv_blocks_total = 7000;
    st.adapter_slots = static_cast<int32_t>(s->hosted[static_cast<size_t>(r)].size());
    st.hosted = s->hosted[static_cast<size_t>(r)];
    st.unfinished_per_adapter = s->counts[static_cast<size_t>(r)];
    st.requests = s->requests[static_cast<size_t>(r)];
    st.unfinished = static_cast<int32_t>(st.requests.size());
    for (const auto& q : st.requests) st.kv_blocks_used += q.kv_blocks;
    s->states.push_back(st);
  }
  s->view.now = 100;
  s->view.num_adapters = K;
  s->view.replicas = s->states;
  s->view.adapter_bytes = s->bytes;
  s->view.adapter_mean_exec_time = s->exec;
  s->view.kv_block_bytes = 8 << 20;
  s->view.link_bandwidth = 32e9;
  return s;
}

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
