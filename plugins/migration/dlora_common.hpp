// What dLoRA's migration policies share (artifact vllm/engine/engine_manager.py
// migration_schedule and vllm/engine/migration_ilp.py; docs/cluster.md): the trigger that
// picks the replicas to balance, the per-request cost and the makespan objective. Header
// only, used by the migration plugins and by bench/bench_migration.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace lorasched::dlora {

using api::AdapterId;
using api::ClusterView;
using api::RequestView;

struct TriggerParams {
  double mem_threshold = 0.9;  // share of a replica's KV blocks (trigger 1)
  double load_threshold = 16;  // requests above the mean (trigger 2, migration_req_thres)
};

// What every dLoRA-style migration policy reads from its parameters: the trigger and the
// objective's constants (specs: common_params()).
struct CommonParams {
  TriggerParams trigger;
  double per_move = 0.05;     // per_move_cost_s
  double default_exec = 5.0;  // default_exec_time_s
  explicit CommonParams(const api::Params& p)
      : per_move(p.real("per_move_cost_s")), default_exec(p.real("default_exec_time_s")) {
    trigger.mem_threshold = p.real("mem_threshold");
    trigger.load_threshold = p.real("load_threshold");
  }
};

// Their specs, in the order the plugins list them.
inline std::vector<api::ParamSpec> common_params() {
  return {
      api::param_real("mem_threshold", 0.9,
                      "trigger 1: a replica's requests hold >= this share of its KV blocks", 0.0,
                      1.0),
      api::param_real("load_threshold", 16.0,
                      "trigger 2: max - mean request count that starts a migration", 0.0),
      api::param_real("per_move_cost_s", 0.05, "cost of moving one request, seconds", 0.0),
      api::param_real("default_exec_time_s", 5.0,
                      "per-request cost of an adapter with no finished request yet, seconds", 0.0)};
}

// `a` then `b`: a plugin's parameter table from its own specs and the common ones.
inline std::vector<api::ParamSpec> concat(std::vector<api::ParamSpec> a,
                                          const std::vector<api::ParamSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Trigger {
  std::string kind;           // "memory", "load", "" (no migration)
  std::vector<int32_t> pair;  // replica ids, ascending
};

// KV blocks of a request as the artifact counts them: its logical blocks,
// ceil((prompt + generated) / block_size), whatever its state (waiting requests too).
inline int64_t logical_blocks(const RequestView& r, int32_t block_size) {
  const int64_t len = r.context_tokens();
  return (len + block_size - 1) / block_size;
}

// Trigger 1 (memory): replicas sorted by the blocks of their requests, ascending (stable);
// if the last uses >= mem_threshold of its blocks and the first < mem_threshold of its
// blocks, balance those two. Else trigger 2 (load): the artifact's loop over replicas
// sorted by request count, which fires iff max - mean >= load_threshold and then pairs
// the most loaded (highest id on ties) with the least loaded (lowest id on ties).
inline Trigger dlora_trigger(const ClusterView& v, const TriggerParams& p) {
  Trigger t;
  const size_t R = v.replicas.size();
  if (R < 2) return t;
  std::vector<std::pair<int32_t, int64_t>> blocks;
  for (const auto& s : v.replicas) {
    int64_t b = 0;
    for (const auto& r : s.requests) b += logical_blocks(r, v.limits.block_size);
    blocks.push_back({s.replica, b});
  }
  std::vector<size_t> order(R);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return blocks[a].second < blocks[b].second; });
  const size_t most = order.back(), least = order.front();
  if (static_cast<double>(blocks[most].second) >=
          p.mem_threshold * static_cast<double>(v.replicas[most].kv_blocks_total) &&
      static_cast<double>(blocks[least].second) <
          p.mem_threshold * static_cast<double>(v.replicas[least].kv_blocks_total)) {
    t.kind = "memory";
    t.pair = {std::min(blocks[most].first, blocks[least].first),
              std::max(blocks[most].first, blocks[least].first)};
    return t;
  }
  std::vector<std::pair<int32_t, double>> cnt;  // (replica, requests), sorted ascending
  double num_reqs = 0;
  for (const auto& s : v.replicas) {
    cnt.push_back({s.replica, static_cast<double>(s.requests.size())});
    num_reqs += static_cast<double>(s.requests.size());
  }
  std::stable_sort(cnt.begin(), cnt.end(),
                   [](const auto& a, const auto& b) { return a.second < b.second; });
  while (!cnt.empty()) {
    const double avg = num_reqs / static_cast<double>(cnt.size());
    const auto [most_id, most_cnt] = cnt.back();
    cnt.pop_back();
    num_reqs -= most_cnt;
    double delta = most_cnt - avg;
    if (delta < p.load_threshold) return t;
    int32_t matched = -1;
    for (const auto& [id, c] : cnt) {
      if (delta <= 0 || matched >= 0) break;
      const double to_fill = avg - c;
      if (to_fill <= 0) break;
      matched = id;
      delta -= std::min(to_fill, delta);
    }
    if (matched >= 0) {
      t.kind = "load";
      t.pair = {std::min(most_id, matched), std::max(most_id, matched)};
      return t;
    }
  }
  return t;
}

// Per-adapter cost of a request: the mean execution time of the adapter's finished
// requests, `default_exec_time` when none finished yet.
inline std::vector<double> adapter_costs(const ClusterView& v, double default_exec_time) {
  std::vector<double> e(static_cast<size_t>(v.num_adapters), default_exec_time);
  for (size_t a = 0; a < e.size() && a < v.adapter_mean_exec_time.size(); ++a)
    if (std::isfinite(v.adapter_mean_exec_time[a])) e[a] = v.adapter_mean_exec_time[a];
  return e;
}

// KV blocks per second over the link (the artifact: PCIe 32 GiB/s / KV block bytes).
inline double blocks_per_second(const ClusterView& v) {
  if (v.kv_block_bytes <= 0 || v.link_bandwidth <= 0) return 1e30;
  return v.link_bandwidth / static_cast<double>(v.kv_block_bytes);
}

// The artifact's objective for an assignment of the requests of the view: for every
// replica, sum of its requests' costs + per_move_cost per request moved in + KV overflow
// (blocks - replica blocks) / blocks_per_second; the maximum over replicas. `dest` maps a
// request id to its replica after the moves (absent: it stays).
inline double cluster_objective(const ClusterView& v, const std::vector<double>& cost,
                                const std::unordered_map<api::RequestId, int32_t>& dest,
                                double per_move_cost) {
  const size_t R = v.replicas.size();
  std::vector<double> t(R, 0.0), blocks(R, 0.0);
  std::unordered_map<int32_t, size_t> index;
  for (size_t j = 0; j < R; ++j) index[v.replicas[j].replica] = j;
  const double bw = blocks_per_second(v);
  for (size_t j = 0; j < R; ++j)
    for (const auto& r : v.replicas[j].requests) {
      size_t to = j;
      if (auto it = dest.find(r.id); it != dest.end()) to = index.at(it->second);
      t[to] += cost[static_cast<size_t>(r.adapter)] + (to != j ? per_move_cost : 0.0);
      blocks[to] += static_cast<double>(logical_blocks(r, v.limits.block_size));
    }
  double worst = 0;
  for (size_t j = 0; j < R; ++j)
    worst = std::max(
        worst,
        t[j] + std::max(0.0, blocks[j] - static_cast<double>(v.replicas[j].kv_blocks_total)) / bw);
  return worst;
}

// The result of `rebalance_greedily`.
struct GreedyPlan {
  std::vector<api::RequestMove> moves;
  std::vector<api::Placement> placements;  // replicas whose adapter list changed
  double makespan = 0;                     // the objective over the active replicas after it
  int64_t requests = 0;                    // requests of the view
};

// The greedy of docs/cluster.md over the replicas with active[j] (index in v.replicas):
// repeatedly take the most loaded active replica and apply the one move of one of its
// non-running requests to another active replica that hosts the request's adapter, has a
// free adapter slot, or hosts an adapter without requests there (which the moved request's
// adapter replaces), that lowers the larger of the two loads the most; stop when no single
// move helps or after max_moves. Used by `greedy` and as `dlora-ilp`'s plan when its solver
// runs out of time.
inline GreedyPlan rebalance_greedily(const ClusterView& v, const std::vector<uint8_t>& active,
                                     const std::vector<double>& cost, double per_move,
                                     int64_t max_moves) {
  using api::Placement;
  using api::RequestState;
  GreedyPlan out;
  const size_t R = v.replicas.size();
  const double bw = blocks_per_second(v);
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
      const double b = static_cast<double>(logical_blocks(r, v.limits.block_size));
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
  while (moves < max_moves) {
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
          work[s] - q.e - (q.orig != s ? per_move : 0.0) + overflow(s, blocks[s] - q.b);
      if (ls_after >= best) continue;
      for (size_t d = 0; d < R; ++d) {
        if (d == s || !active[d]) continue;
        if (!hosts[d][k] && hosted_n[d] >= slots[d] && idle[d] < 0) continue;
        const double ld_after =
            work[d] + q.e + (q.orig != d ? per_move : 0.0) + overflow(d, blocks[d] + q.b);
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
    work[s] -= q.e + (q.orig != s ? per_move : 0.0);
    blocks[s] -= q.b;
    work[best_d] += q.e + (q.orig != best_d ? per_move : 0.0);
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
      out.moves.push_back({q.r->id, v.replicas[q.orig].replica, v.replicas[q.at].replica});
  for (size_t j = 0; j < R; ++j) {
    if (!changed[j]) continue;
    Placement p;
    p.replica = v.replicas[j].replica;
    for (size_t a = 0; a < hosts[j].size(); ++a)
      if (hosts[j][a]) p.adapters.push_back(static_cast<AdapterId>(a));
    out.placements.push_back(std::move(p));
  }
  for (size_t j = 0; j < R; ++j)
    if (active[j]) out.makespan = std::max(out.makespan, load(j));
  out.requests = static_cast<int64_t>(reqs.size());
  return out;
}

}  // namespace lorasched::dlora
