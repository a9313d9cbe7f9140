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
      : per_move_(a.params.real("per_move_cost_s")),
        default_exec_(a.params.real("default_exec_time_s")),
        max_moves_(a.params.integer("max_moves")),
        always_(a.params.string("trigger") == "always"),
        pair_(a.params.string("scope") == "pair") {
    trig_.mem_threshold = a.params.real("mem_threshold");
    trig_.load_threshold = a.params.real("load_threshold");
  }

  MigrationPlan plan(const ClusterView& v) override {
    const auto t0 = std::chrono::steady_clock::now();
    MigrationPlan plan;
    const dl::Trigger trig = dl::dlora_trigger(v, trig_);
    if (trig.kind.empty() && !always_) return plan;
    plan.trigger = trig.kind.empty() ? "always" : trig.kind;
    const size_t R = v.replicas.size();
    std::vector<uint8_t> active(R, 1);
    if (pair_ && !trig.pair.empty())
      for (size_t j = 0; j < R; ++j)
        active[j] = v.replicas[j].replica == trig.pair[0] || v.replicas[j].replica == trig.pair[1];
    for (size_t j = 0; j < R; ++j)
      if (active[j]) plan.replicas_considered.push_back(v.replicas[j].replica);

    const std::vector<double> cost = dl::adapter_costs(v, default_exec_);
    const double bw = dl::blocks_per_second(v);
    struct Req {
      const RequestView* r;
      size_t orig, at;
      double e, b;
    };
    std::vector<Req> reqs;
    std::vector<double> work(R, 0.0), blocks(R, 0.0), mem(R, 0.0);
    std::vector<std::vector<uint8_t>> hosts(
        R, std::vector<uint8_t>(static_cast<size_t>(v.num_adapters), 0));
    std::vector<std::vector<int32_t>> cnt(
        R, std::vector<int32_t>(static_cast<size_t>(v.num_adapters), 0));
    std::vector<int32_t> hosted_n(R, 0), slots(R, 0);
    std::vector<std::vector<size_t>> on(R);
    for (size_t j = 0; j < R; ++j) {
      const auto& s = v.replicas[j];
      mem[j] = static_cast<double>(s.kv_blocks_total);
      for (AdapterId a : s.hosted) hosts[j][static_cast<size_t>(a)] = 1;
      for (const auto& r : s.requests) {
        hosts[j][static_cast<size_t>(r.adapter)] = 1;
        ++cnt[j][static_cast<size_t>(r.adapter)];
        const double e = cost[static_cast<size_t>(r.adapter)];
        const double b = static_cast<double>(dl::logical_blocks(r, v.limits.block_size));
        work[j] += e;
        blocks[j] += b;
        if (r.state != RequestState::running) on[j].push_back(reqs.size());
        reqs.push_back({&r, j, j, e, b});
      }
      for (uint8_t h : hosts[j]) hosted_n[j] += h;
      slots[j] = std::max(s.adapter_slots, hosted_n[j]);
    }
    // A replica takes an adapter it does not host into a free slot, or in place of a hosted
    // adapter without requests there (the lowest such id), as the ILP's y may.
    auto idle_adapter = [&](size_t d) -> int32_t {
      for (size_t a = 0; a < hosts[d].size(); ++a)
        if (hosts[d][a] && cnt[d][a] == 0) return static_cast<int32_t>(a);
      return -1;
    };
    std::vector<int32_t> idle(R);
    for (size_t j = 0; j < R; ++j) idle[j] = idle_adapter(j);
    auto overflow = [&](size_t j, double b) { return std::max(0.0, b - mem[j]) / bw; };
    auto load = [&](size_t j) { return work[j] + overflow(j, blocks[j]); };
    std::vector<uint8_t> changed(R, 0);
    int64_t moves = 0;
    while (moves < max_moves_) {
      size_t s = R;
      for (size_t j = 0; j < R; ++j)
        if (active[j] && (s == R || load(j) > load(s))) s = j;
      if (s == R) break;
      const double ls = load(s);
      double best = ls - 1e-9;
      size_t best_i = reqs.size(), best_d = R, best_pos = 0;
      for (size_t pos = 0; pos < on[s].size(); ++pos) {
        const Req& q = reqs[on[s][pos]];
        const size_t k = static_cast<size_t>(q.r->adapter);
        const double ls_after =
            work[s] - q.e - (q.orig != s ? per_move_ : 0.0) + overflow(s, blocks[s] - q.b);
        if (ls_after >= best) continue;
        for (size_t d = 0; d < R; ++d) {
          if (d == s || !active[d]) continue;
          if (!hosts[d][k] && hosted_n[d] >= slots[d] && idle[d] < 0) continue;
          const double ld_after =
              work[d] + q.e + (q.orig != d ? per_move_ : 0.0) + overflow(d, blocks[d] + q.b);
          const double m = std::max(ls_after, ld_after);
          if (m < best) {
            best = m;
            best_i = on[s][pos];
            best_d = d;
            best_pos = pos;
          }
        }
      }
      if (best_i == reqs.size()) break;
      Req& q = reqs[best_i];
      work[s] -= q.e + (q.orig != s ? per_move_ : 0.0);
      blocks[s] -= q.b;
      work[best_d] += q.e + (q.orig != best_d ? per_move_ : 0.0);
      blocks[best_d] += q.b;
      const size_t k = static_cast<size_t>(q.r->adapter);
      if (!hosts[best_d][k]) {
        if (hosted_n[best_d] >= slots[best_d]) {
          hosts[best_d][static_cast<size_t>(idle[best_d])] = 0;  // replaced
          --hosted_n[best_d];
        }
        hosts[best_d][k] = 1;
        ++hosted_n[best_d];
        changed[best_d] = 1;
      }
      --cnt[s][k];
      ++cnt[best_d][k];
      idle[s] = idle_adapter(s);
      idle[best_d] = idle_adapter(best_d);
      on[s].erase(on[s].begin() + static_cast<std::ptrdiff_t>(best_pos));
      on[best_d].push_back(best_i);
      q.at = best_d;
      ++moves;
    }
    for (const Req& q : reqs)
      if (q.at != q.orig)
        plan.moves.push_back({q.r->id, v.replicas[q.orig].replica, v.replicas[q.at].replica});
    for (size_t j = 0; j < R; ++j) {
      if (!changed[j]) continue;
      Placement p;
      p.replica = v.replicas[j].replica;
      for (size_t a = 0; a < hosts[j].size(); ++a)
        if (hosts[j][a]) p.adapters.push_back(static_cast<AdapterId>(a));
      plan.placements.push_back(std::move(p));
    }
    double worst = 0;
    int32_t n_active = 0;
    for (size_t j = 0; j < R; ++j)
      if (active[j]) {
        worst = std::max(worst, load(j));
        ++n_active;
      }
    plan.has_report = true;
    plan.report.status = "heuristic";
    plan.report.objective = worst;
    // A lower bound of the makespan: the work spread evenly, moves and overflow free.
    double work0 = 0;
    for (const Req& q : reqs)
      if (active[q.orig]) work0 += q.e;
    plan.report.bound = n_active > 0 ? work0 / n_active : 0.0;
    plan.report.variables = static_cast<int64_t>(reqs.size());
    plan.report.constraints = 0;
    plan.report.solve_time =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

 private:
  double per_move_, default_exec_;
  int64_t max_moves_;
  bool always_, pair_;
  dl::TriggerParams trig_;
};

PluginInfo info() {
  return {
      kApiVersion,
      PluginKind::migration,
      "greedy",
      "dLoRA's trigger and objective, one request at a time from the most loaded replica",
      {param_real("mem_threshold", 0.9,
                  "trigger 1: a replica's requests hold >= this share of its KV blocks", 0.0, 1.0),
       param_real("load_threshold", 16.0,
                  "trigger 2: max - mean request count that starts a migration", 0.0),
       param_real("per_move_cost_s", 0.05, "cost of moving one request, seconds", 0.0),
       param_real("default_exec_time_s", 5.0,
                  "per-request cost of an adapter with no finished request yet, seconds", 0.0),
       param_int("max_moves", 100000, "most requests moved per decision", 0),
       param_choice("scope", "cluster", {"cluster", "pair"},
                    "cluster: every replica; pair: only the two the trigger picks"),
       param_choice(
           "trigger", "dlora", {"dlora", "always"},
           "dlora: only when dLoRA's memory or load trigger fires; always: every period")}};
}

}  // namespace

LORASCHED_PLUGIN(Greedy, info)
