// Migration `greedy`: the simple heuristic of docs/cluster.md (measured against dLoRA's ILP
// there, "Decision time and quality"). When dLoRA's trigger fires, it repeatedly moves the
// single request from the most loaded replica that lowers the larger of the two replicas'
// loads the most, to a replica that hosts its adapter, has a free adapter slot, or hosts an
// adapter without requests there (which the moved request's adapter replaces); it stops
// when no single move helps. Load = dLoRA's objective: sum of the per-adapter execution
// times of a replica's requests + per_move_cost per request moved in + KV overflow / link.
#include <algorithm>
#include <chrono>
#include <string>
#include <unordered_map>
#include <vector>

#include "dlora_common.hpp"
#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;
namespace dl = lorasched::dlora;

class Greedy : public Migration {
 public:
  explicit Greedy(const CreateArgs& a)
      : common_(a.params),
        max_moves_(a.params.integer("max_moves")),
        always_(a.params.string("trigger") == "always"),
        pair_(a.params.string("scope") == "pair") {}

  MigrationPlan plan(const ClusterView& v) override {
    const auto t0 = std::chrono::steady_clock::now();
    MigrationPlan plan;
    const dl::Trigger trig = dl::dlora_trigger(v, common_.trigger);
    if (trig.kind.empty() && !always_) return plan;
    plan.trigger = trig.kind.empty() ? "always" : trig.kind;
    const size_t R = v.replicas.size();
    std::vector<uint8_t> active(R, 1);
    if (pair_ && !trig.pair.empty())
      for (size_t j = 0; j < R; ++j)
        active[j] = v.replicas[j].replica == trig.pair[0] || v.replicas[j].replica == trig.pair[1];
    for (size_t j = 0; j < R; ++j)
      if (active[j]) plan.replicas_considered.push_back(v.replicas[j].replica);

    const std::vector<double> cost = dl::adapter_costs(v, common_.default_exec);
    dl::GreedyPlan g = dl::rebalance_greedily(v, active, cost, common_.per_move, max_moves_);
    plan.moves = std::move(g.moves);
    plan.placements = std::move(g.placements);
    int32_t n_active = 0;
    for (uint8_t a : active) n_active += a;
    plan.has_report = true;
    plan.report.status = "heuristic";
    plan.report.objective = g.makespan;
    // A lower bound of the makespan: the work spread evenly, moves and overflow free.
    double work0 = 0;
    for (size_t j = 0; j < R; ++j)
      if (active[j])
        for (const auto& r : v.replicas[j].requests) work0 += cost[static_cast<size_t>(r.adapter)];
    plan.report.bound = n_active > 0 ? work0 / n_active : 0.0;
    plan.report.variables = g.requests;
    plan.report.constraints = 0;
    plan.report.solve_time =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

 private:
  dl::CommonParams common_;
  int64_t max_moves_;
  bool always_, pair_;
};

PluginInfo info() {
  return {
      kApiVersion, PluginKind::migration, "greedy",
      "dLoRA's trigger and objective, one request at a time from the most loaded replica",
      dl::concat(
          dl::common_params(),
          {param_int("max_moves", 100000, "most requests moved per decision", 0),
           param_choice("scope", "cluster", {"cluster", "pair"},
                        "cluster: every replica; pair: only the two the trigger picks"),
           param_choice(
               "trigger", "dlora", {"dlora", "always"},
               "dlora: only when dLoRA's memory or load trigger fires; always: every period")})};
}

}  // namespace

LORASCHED_PLUGIN(Greedy, info)
