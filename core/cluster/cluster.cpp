// The cluster level of a Simulation: dLoRA's adapter placement, the cluster views handed to
// dispatchers and migration policies, and the checking and application of migration plans
// (request-adapter co-migration). docs/cluster.md describes the rules.
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "core/cluster/placement.hpp"
#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/exec/executor.hpp"

namespace lorasched {

using api::AdapterId;
using api::RequestId;
using api::RequestState;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Stream of the run's seed that picks the adapter the initial placement replicates
// (the artifact draws it with an unseeded random.randint).
constexpr uint64_t kReplicatedAdapterStream = 0x706c6163656d656eULL;
// Warning codes (events.value of kind `warning`) raised here.
constexpr double kWarnMigrationFailed = 3.0;    // no usable plan: nothing moved
constexpr double kWarnMigrationFallback = 4.0;  // time limit: the policy's fallback plan applied

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Statuses a migration policy reports when its solver produced no usable plan.
bool failed_status(const std::string& s) {
  return s == "infeasible" || s == "time limit" || s == "error" || s == "abandoned" ||
         s == "unbounded";
}

}  // namespace

// ---- placement ------------------------------------------------------------------------------

std::vector<std::vector<AdapterId>> Simulation::place_adapters() {
  const int32_t R = e_.cluster.replicas;
  const int32_t N = static_cast<int32_t>(adapters_.size());
  Rng rng(e_.run.seed, kReplicatedAdapterStream);
  const AdapterId replicated = static_cast<AdapterId>(rng.uniform_int(0, std::max(0, N - 1)));
  const double memory = static_cast<double>(pool_blocks_) * static_cast<double>(block_bytes_);
  cluster::PlacementState s = cluster::initial_placement(R, adapter_bytes_, memory,
                                                         cluster::TopUp::one_adapter, replicated);
  std::vector<std::vector<AdapterId>> hosted = std::move(s.lists);
  for (auto& h : hosted) std::sort(h.begin(), h.end());
  placement_avail_ = s.avail_mem;
  adapter_slots_.resize(static_cast<size_t>(R));
  for (int32_t r = 0; r < R; ++r)
    adapter_slots_[static_cast<size_t>(r)] =
        std::max<int32_t>(1, static_cast<int32_t>(hosted[static_cast<size_t>(r)].size()));
  expected_.assign(adapters_.size(), (1.0 + 1e-7) / std::max(1, N));
  return hosted;
}

api::ReplicaLimits Simulation::replica_limits(const api::ReplicaLimits& base,
                                              int32_t replica) const {
  api::ReplicaLimits l = base;
  // The artifact's gpu_capacity: the number of adapters placed on the replica initially,
  // unless the experiment sets [engine] max_adapters_per_batch.
  if (e_.engine.max_adapters_per_batch <= 0)
    l.max_adapters_per_batch = adapter_slots_[static_cast<size_t>(replica)];
  return l;
}

// The artifact's step 2 of applying a migration: free adapter slots (engine_lora_capacity
// minus the adapters listed) are filled by the placement greedy with the arrival counts as
// the expected distribution. Routing only: the adapters load on demand.
void Simulation::refill_placement() {
  cluster::PlacementState s;
  s.lists = live_.placement();
  s.avail_mem = placement_avail_;
  std::vector<int32_t> current(adapters_.size(), 0);
  for (const auto& l : s.lists)
    for (AdapterId a : l) ++current[static_cast<size_t>(a)];
  cluster::find_best_lora_weight_schedule(s, false, expected_, current, &adapter_slots_,
                                          adapter_bytes_);
  for (size_t r = 0; r < s.lists.size(); ++r) {
    auto& h = s.lists[r];
    std::sort(h.begin(), h.end());
    if (h != live_.hosted(static_cast<int32_t>(r)))
      live_.set_hosted(static_cast<int32_t>(r), std::move(h));
  }
  placement_avail_ = std::move(s.avail_mem);
}

// ---- views ----------------------------------------------------------------------------------

// The cluster as it is at `now` (LiveView keeps it). Iterations in flight count as running:
// their requests are unfinished (even those the engine already finished when the iteration
// started) and show the tokens they had when it started. With requests (migration views):
// every replica's unfinished requests in the artifact's order (get_reqs_metadata): waiting,
// running, swapped, ready.
const api::ClusterView& Simulation::cluster_view(double now, bool with_requests) {
  api::ClusterView& view = live_.at(now);
  if (check_views_) verify_view(view, now);
  if (!with_requests) return view;
  const size_t R = replicas_.size();
  state_requests_.resize(R);
  for (size_t r = 0; r < R; ++r) {
    const Replica& rep = *replicas_[r];
    const auto inflight = rep.in_flight(now);
    const int64_t bs = rep.config().limits.block_size;
    auto& reqs = state_requests_[r];
    reqs.clear();
    auto view_of = [&](const Request& q) {
      api::RequestView v{q.spec.id,
                         q.spec.adapter,
                         q.spec.arrival,
                         q.spec.prompt_tokens,
                         q.spec.output_tokens,
                         q.generated,
                         q.state,
                         static_cast<int32_t>(q.block_table.size()) + q.host_blocks};
      return v;
    };
    auto running = [&](RequestId id) {
      return std::find(inflight.begin(), inflight.end(), id) != inflight.end();
    };
    const std::vector<RequestId> ids = rep.unfinished_requests();  // waiting, ready, swapped
    for (RequestId id : ids)
      if (requests_[static_cast<size_t>(id)].state == RequestState::waiting)
        reqs.push_back(view_of(requests_[static_cast<size_t>(id)]));
    for (RequestId id : inflight) {
      const Request& q = requests_[static_cast<size_t>(id)];
      api::RequestView v = view_of(q);
      v.state = RequestState::running;
      v.generated = q.generated - 1;
      if (q.done())
        v.kv_blocks = static_cast<int32_t>(ceil_div(q.spec.prompt_tokens + v.generated, bs));
      reqs.push_back(v);
    }
    for (RequestId id : ids)
      if (requests_[static_cast<size_t>(id)].state == RequestState::swapped)
        reqs.push_back(view_of(requests_[static_cast<size_t>(id)]));
    for (RequestId id : ids)
      if (requests_[static_cast<size_t>(id)].state == RequestState::ready && !running(id))
        reqs.push_back(view_of(requests_[static_cast<size_t>(id)]));
    live_.state(static_cast<int32_t>(r)).requests = reqs;
  }
  return view;
}

// The view as the simulation once rebuilt it for every dispatch, from the replicas, compared
// with the kept one.
void Simulation::verify_view(const api::ClusterView& view, double now) const {
  auto fail = [&](size_t r, const std::string& what) {
    throw InternalError(
        fmt::format("the cluster view at t={} differs for replica {}: {}", now, r, what));
  };
  const size_t R = replicas_.size(), N = adapters_.size();
  std::vector<std::vector<int32_t>> hosts(N);
  int32_t least = -1;
  for (size_t r = 0; r < R; ++r) {
    const Replica& rep = *replicas_[r];
    const api::ReplicaState& s = view.replicas[r];
    std::vector<int32_t> counts = rep.unfinished_per_adapter();
    int32_t unfinished = rep.unfinished();
    int64_t used = rep.pool().used();
    const int64_t bs = rep.config().limits.block_size;
    for (RequestId id : rep.in_flight(now)) {
      const Request& q = requests_[static_cast<size_t>(id)];
      if (!q.done()) continue;
      ++counts[static_cast<size_t>(q.spec.adapter)];
      ++unfinished;
      used += ceil_div(q.spec.prompt_tokens + q.generated - 1, bs);
    }
    if (s.replica != static_cast<int32_t>(r)) fail(r, "replica id");
    if (s.unfinished != unfinished)
      fail(r, fmt::format("unfinished {} != {}", s.unfinished, unfinished));
    if (s.kv_blocks_used != used) fail(r, fmt::format("kv used {} != {}", s.kv_blocks_used, used));
    if (s.kv_blocks_total != rep.pool().total()) fail(r, "kv total");
    if (s.adapter_slots != adapter_slots_[r]) fail(r, "adapter slots");
    if (!std::equal(counts.begin(), counts.end(), s.unfinished_per_adapter.begin(),
                    s.unfinished_per_adapter.end()))
      fail(r, "unfinished per adapter");
    std::vector<AdapterId> active;
    for (size_t a = 0; a < N; ++a)
      if (counts[a] > 0) active.push_back(static_cast<AdapterId>(a));
    if (!std::equal(active.begin(), active.end(), s.active_adapters.begin(),
                    s.active_adapters.end()))
      fail(r, "active adapters");
    if (!std::is_sorted(s.hosted.begin(), s.hosted.end()) ||
        std::adjacent_find(s.hosted.begin(), s.hosted.end()) != s.hosted.end())
      fail(r, "hosted not ascending");
    for (AdapterId a : s.hosted) hosts[static_cast<size_t>(a)].push_back(static_cast<int32_t>(r));
    if (least < 0 || unfinished < view.replicas[static_cast<size_t>(least)].unfinished)
      least = static_cast<int32_t>(r);
  }
  if (view.least_loaded != least)
    fail(static_cast<size_t>(least),
         fmt::format("least loaded {} != {}", view.least_loaded, least));
  for (size_t a = 0; a < N; ++a)
    if (!std::equal(hosts[a].begin(), hosts[a].end(), view.adapter_hosts[a].begin(),
                    view.adapter_hosts[a].end()))
      fail(0, fmt::format("replicas hosting adapter {}", a));
  // Mean execution times, as of the last period: the sums over every replica.
  if (exec_time_dirty_.empty())
    for (size_t a = 0; a < N; ++a) {
      std::pair<int64_t, double> sum{0, 0.0};
      for (const auto& rep : replicas_) {
        sum.first += rep->finished_exec_time()[a].first;
        sum.second += rep->finished_exec_time()[a].second;
      }
      const double mean = sum.first > 0 ? sum.second / static_cast<double>(sum.first) : kNaN;
      const double kept = view.adapter_mean_exec_time[a];
      if (!(mean == kept || (std::isnan(mean) && std::isnan(kept))))
        fail(0, fmt::format("mean execution time of adapter {}: {} != {}", a, kept, mean));
    }
}

void Simulation::drop_requests_from_view() {
  for (size_t r = 0; r < replicas_.size(); ++r) live_.state(static_cast<int32_t>(r)).requests = {};
}

// ---- keeping the view in step with the replicas ---------------------------------------------

void Simulation::joined(int32_t r, RequestId id) {
  live_.count(r, requests_[static_cast<size_t>(id)].spec.adapter, +1);
  pool_changed(r);
  note_unfinished(r);
}

void Simulation::left(int32_t r, RequestId id) {
  live_.count(r, requests_[static_cast<size_t>(id)].spec.adapter, -1);
  pool_changed(r);
  note_unfinished(r);
}

void Simulation::pool_changed(int32_t r) {
  const BlockPool& pool = replicas_[static_cast<size_t>(r)]->pool();
  live_.set_kv(r, pool.total(), pool.used());
}

void Simulation::note_unfinished(int32_t r) {
  const int32_t now_unfinished = replicas_[static_cast<size_t>(r)]->unfinished();
  engine_unfinished_ += now_unfinished - engine_unfinished_of_[static_cast<size_t>(r)];
  engine_unfinished_of_[static_cast<size_t>(r)] = now_unfinished;
}

// Replica r ran step(t): the requests its new iteration finished stay in the view until the
// iteration ends; their adapters' mean execution times change.
void Simulation::stepped(int32_t r, double t, std::optional<double> end,
                         int32_t unfinished_before) {
  const Replica& rep = *replicas_[static_cast<size_t>(r)];
  const int64_t bs = rep.config().limits.block_size;
  auto& held = held_buffer_;
  held.clear();
  for (RequestId id : rep.in_flight(t)) {
    const Request& q = requests_[static_cast<size_t>(id)];
    if (!q.done()) continue;
    held.push_back({q.spec.adapter, ceil_div(q.spec.prompt_tokens + q.generated - 1, bs)});
    exec_time_changed(q.spec.adapter, r);
  }
  const bool all_seen = unfinished_before - rep.unfinished() == static_cast<int32_t>(held.size());
  live_.hold(r, end.value_or(t), held);
  if (!all_seen) {
    // It finished requests it did not run (prompts too long to ever run) or an iteration
    // that is already over: take its counts as they are (rare; O(adapters)).
    live_.resync(r, rep.unfinished_per_adapter());
    const auto& et = rep.finished_exec_time();
    for (size_t a = 0; a < et.size(); ++a)
      if (et[a].first > 0) exec_time_changed(static_cast<AdapterId>(a), r);
  }
  pool_changed(r);
  note_unfinished(r);
}

void Simulation::exec_time_changed(AdapterId a, int32_t r) {
  auto& who = exec_time_replicas_[static_cast<size_t>(a)];
  auto it = std::lower_bound(who.begin(), who.end(), r);
  if (it == who.end() || *it != r) who.insert(it, r);
  if (!exec_time_dirty_flag_[static_cast<size_t>(a)]) {
    exec_time_dirty_flag_[static_cast<size_t>(a)] = 1;
    exec_time_dirty_.push_back(a);
  }
}

// ---- dispatch -------------------------------------------------------------------------------

void Simulation::dispatch(RequestId id, double now) {
  const Request& r = requests_[static_cast<size_t>(id)];
  const AdapterId adapter = r.spec.adapter;
  expected_[static_cast<size_t>(adapter)] += 1;  // dLoRA's expected_lora_distribution
  int32_t to = 0;
  if (replicas_.size() > 1) {
    const api::ClusterView& view = cluster_view(now, false);
    api::DispatchRequest dr{id, adapter, r.spec.arrival, r.spec.prompt_tokens,
                            r.spec.output_tokens};
    auto d = dispatcher_->checked_dispatch(view, dr);
    if (!d) throw PluginError(dispatcher_.describe() + " failed: " + d.error());
    to = d.value().replica;
    if (to < 0 || to >= static_cast<int32_t>(replicas_.size()))
      throw PluginError(fmt::format("{} sent request {} to replica {}, but replicas are 0..{}",
                                    dispatcher_.describe(), id, to, replicas_.size() - 1));
    if (!live_.hosts(to, adapter)) {
      const AdapterId evict = d.value().evict;
      if (evict != api::kNoAdapter) {
        if (evict < 0 || evict >= static_cast<AdapterId>(adapters_.size()) ||
            !live_.hosts(to, evict))
          throw PluginError(
              fmt::format("{} evicts adapter {} from replica {}, which does not host it",
                          dispatcher_.describe(), evict, to));
        live_.unhost(to, evict);
      }
      live_.host(to, adapter);
    }
  }
  replicas_[static_cast<size_t>(to)]->add(id, now);
  joined(to, id);
}

// ---- migration ------------------------------------------------------------------------------

void Simulation::migrate(double now) {
  // Mean execution time of the finished requests of each adapter, over the cluster: the
  // sums over the replicas where requests of the adapter finished, in replica order (the
  // others add zeros), for the adapters whose requests finished since the last period.
  std::vector<double>& mean = live_.mean_exec_time();
  for (AdapterId a : exec_time_dirty_) {
    std::pair<int64_t, double> sum{0, 0.0};
    for (int32_t r : exec_time_replicas_[static_cast<size_t>(a)]) {
      const auto& et =
          replicas_[static_cast<size_t>(r)]->finished_exec_time()[static_cast<size_t>(a)];
      sum.first += et.first;
      sum.second += et.second;
    }
    mean[static_cast<size_t>(a)] =
        sum.first > 0 ? sum.second / static_cast<double>(sum.first) : kNaN;
    exec_time_dirty_flag_[static_cast<size_t>(a)] = 0;
  }
  exec_time_dirty_.clear();

  const api::ClusterView& view = cluster_view(now, true);
  // The solve takes wall time only: the virtual clock does not move (docs/cluster.md).
  const auto t0 = std::chrono::steady_clock::now();
  auto planned = migration_->checked_plan(view);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  drop_requests_from_view();
  if (!planned) throw PluginError(migration_.describe() + " failed to plan: " + planned.error());
  const api::MigrationPlan& plan = planned.value();

  EventRecord d;
  d.time = now;
  d.replica = plan.replicas_considered.empty() ? -1 : plan.replicas_considered[0];
  d.other_replica = plan.replicas_considered.size() < 2 ? -1 : plan.replicas_considered[1];
  d.kind = static_cast<int8_t>(EventKind::migration_decision);
  d.request = static_cast<int64_t>(plan.moves.size());
  d.duration = plan.has_report ? plan.report.solve_time : wall;
  d.value = plan.has_report ? plan.report.objective : kNaN;
  d.value2 = plan.has_report ? plan.report.bound : kNaN;
  records_.events.push_back(d);
  // A failed solve that moves nothing, or a solve stopped at its time limit whose policy
  // fell back to another plan: a warning, so a run shows where its decisions are not the
  // solver's.
  const bool failed = plan.has_report && failed_status(plan.report.status);
  if (failed && (plan.moves.empty() || plan.report.status == "time limit")) {
    EventRecord w;
    w.time = now;
    w.kind = static_cast<int8_t>(EventKind::warning);
    w.value = plan.moves.empty() ? kWarnMigrationFailed : kWarnMigrationFallback;
    w.value2 = d.duration;
    records_.events.push_back(w);
  }
  validate_migration(plan, now);
  apply_migration(plan, now);
}

void Simulation::validate_migration(const api::MigrationPlan& plan, double now) const {
  const int32_t R = static_cast<int32_t>(replicas_.size());
  const std::string who = migration_.describe();
  auto fail = [&](const std::string& what) {
    throw PluginError(fmt::format("{} returned an invalid migration plan: {}", who, what));
  };
  std::unordered_set<RequestId> seen;
  std::vector<int64_t> incoming(static_cast<size_t>(R), 0), leaving(static_cast<size_t>(R), 0);
  for (const api::RequestMove& m : plan.moves) {
    if (m.from < 0 || m.from >= R || m.to < 0 || m.to >= R)
      fail(fmt::format("it moves request {} from replica {} to replica {}, but replicas are 0..{}",
                       m.request, m.from, m.to, R - 1));
    if (m.from == m.to)
      fail(fmt::format("it moves request {} from replica {} to the same replica", m.request,
                       m.from));
    if (m.request < 0 || m.request >= static_cast<RequestId>(requests_.size()))
      fail(fmt::format("it moves unknown request {} (requests are 0..{})", m.request,
                       requests_.size() - 1));
    const Request& q = requests_[static_cast<size_t>(m.request)];
    const auto inflight =
        replicas_[static_cast<size_t>(q.record.replica < 0 ? 0 : q.record.replica)]->in_flight(now);
    const bool running = q.record.replica >= 0 &&
                         std::find(inflight.begin(), inflight.end(), m.request) != inflight.end();
    if (q.record.replica < 0 || (q.done() && !running))
      fail(
          fmt::format("it moves request {}, which is not an unfinished request of the cluster "
                      "(not arrived yet or finished)",
                      m.request));
    if (q.record.replica != m.from)
      fail(fmt::format("it moves request {} from replica {}, but the request is on replica {}",
                       m.request, m.from, q.record.replica));
    if (running)
      fail(
          fmt::format("it moves request {}, which is running on replica {} (in the iteration in "
                      "flight) and cannot move",
                      m.request, m.from));
    if (!seen.insert(m.request).second) fail(fmt::format("it moves request {} twice", m.request));
    if (kv_transfer_ && q.state == RequestState::ready) {
      const auto blocks = static_cast<int64_t>(q.block_table.size());
      incoming[static_cast<size_t>(m.to)] += blocks;
      leaving[static_cast<size_t>(m.from)] += blocks;
    }
  }
  if (kv_transfer_)
    for (int32_t r = 0; r < R; ++r) {
      const int64_t avail = replicas_[static_cast<size_t>(r)]->kv_blocks_available() +
                            leaving[static_cast<size_t>(r)];
      if (incoming[static_cast<size_t>(r)] > avail)
        fail(
            fmt::format("replica {} has no memory for the KV cache moved to it (migration_kv = "
                        "\"transfer\"): it needs {} KV blocks and has {} free",
                        r, incoming[static_cast<size_t>(r)], avail));
    }
  std::unordered_set<int32_t> placed;
  for (const api::Placement& p : plan.placements) {
    if (p.replica < 0 || p.replica >= R)
      fail(fmt::format("it places adapters on replica {}, but replicas are 0..{}", p.replica,
                       R - 1));
    if (!placed.insert(p.replica).second)
      fail(fmt::format("it lists the adapters of replica {} twice", p.replica));
    std::unordered_set<AdapterId> ads;
    for (AdapterId a : p.adapters) {
      if (a < 0 || a >= static_cast<AdapterId>(adapters_.size()))
        fail(fmt::format("it places adapter {} on replica {}, but adapters are 0..{}", a, p.replica,
                         adapters_.size() - 1));
      if (!ads.insert(a).second)
        fail(fmt::format("it places adapter {} on replica {} twice", a, p.replica));
    }
    const size_t cap =
        std::max<size_t>(static_cast<size_t>(adapter_slots_[static_cast<size_t>(p.replica)]),
                         live_.hosted(p.replica).size());
    if (p.adapters.size() > cap)
      fail(fmt::format("it places {} adapters on replica {}, which has {} adapter slots",
                       p.adapters.size(), p.replica, cap));
  }
}

void Simulation::apply_migration(const api::MigrationPlan& plan, double now) {
  if (plan.moves.empty() && plan.placements.empty()) return;
  const size_t R = replicas_.size();
  std::vector<double> link(R, 0.0);  // copy time into each replica (serialised on its link)
  const double bw = link_bandwidth_ > 0 ? link_bandwidth_ : std::numeric_limits<double>::infinity();

  struct Pending {
    api::RequestMove move;
    bool with_kv = false;
    int64_t blocks = 0;
    KvData kv;  // its KV cache (transfer mode), read from the source's executor
  };
  std::vector<Pending> pending;
  pending.reserve(plan.moves.size());
  // 1. Every moved request leaves its source (its KV is read first when it travels).
  for (const api::RequestMove& m : plan.moves) {
    Request& q = requests_[static_cast<size_t>(m.request)];
    Replica& src = *replicas_[static_cast<size_t>(m.from)];
    Pending p;
    p.move = m;
    p.with_kv = kv_transfer_ && q.state == RequestState::ready;
    if (p.with_kv) {
      p.blocks = static_cast<int64_t>(q.block_table.size());
      p.kv = src.executor().export_kv(q.block_table);
    }
    src.remove(m.request);
    left(m.from, m.request);
    pending.push_back(std::move(p));
  }
  // 2. ... and joins its destination: waiting (recompute: prompt + generated tokens are
  // prefilled again, arrival time kept) or ready with its KV (transfer).
  for (Pending& p : pending) {
    Request& q = requests_[static_cast<size_t>(p.move.request)];
    Replica& dst = *replicas_[static_cast<size_t>(p.move.to)];
    EventRecord ev;
    ev.time = now;
    ev.replica = p.move.from;
    ev.other_replica = p.move.to;
    ev.kind = static_cast<int8_t>(EventKind::migrate_request);
    ev.adapter = q.spec.adapter;
    ev.request = p.move.request;
    if (p.with_kv) {
      dst.executor().import_kv(dst.insert_with_kv(p.move.request, p.blocks, now), p.kv);
      ev.bytes = p.blocks * block_bytes_;
      ev.duration = static_cast<double>(ev.bytes) / bw;
      link[static_cast<size_t>(p.move.to)] += ev.duration;
    } else {
      dst.add(p.move.request, now);
      ev.value = q.context_tokens();  // tokens to prefill again (0 if it never ran)
    }
    joined(p.move.to, p.move.request);
    ++q.record.migrations;
    records_.events.push_back(ev);
  }
  // 3. Placement: the plan's adapter lists, plus every adapter with unfinished requests on
  // the replica (a request's replica always lists its adapter).
  for (const api::Placement& p : plan.placements) {
    std::vector<AdapterId> h = p.adapters;
    std::sort(h.begin(), h.end());
    const size_t listed = h.size();
    // The engine's adapters with requests are among those the view counts.
    const auto& counts = replicas_[static_cast<size_t>(p.replica)]->unfinished_per_adapter();
    for (AdapterId a : live_.state(p.replica).active_adapters)
      if (counts[static_cast<size_t>(a)] > 0 &&
          !std::binary_search(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(listed), a))
        h.push_back(a);
    std::sort(h.begin(), h.end());
    live_.set_hosted(p.replica, std::move(h));
  }
  // 4. Co-migration: a moved request's adapter is copied to its destination over the link
  // unless resident there; it becomes resident if the pool has room (else it loads on
  // demand later, with the executor's load cost).
  for (const Pending& p : pending) {
    const AdapterId a = requests_[static_cast<size_t>(p.move.request)].spec.adapter;
    live_.host(p.move.to, a);
    Replica& dst = *replicas_[static_cast<size_t>(p.move.to)];
    if (dst.resident(a) || !dst.preload(a)) continue;
    pool_changed(p.move.to);
    EventRecord ev;
    ev.time = now;
    ev.replica = p.move.from;
    ev.other_replica = p.move.to;
    ev.kind = static_cast<int8_t>(EventKind::migrate_adapter);
    ev.adapter = a;
    ev.bytes = adapters_[static_cast<size_t>(a)].bytes;
    ev.duration = static_cast<double>(ev.bytes) / bw;
    link[static_cast<size_t>(p.move.to)] += ev.duration;
    records_.events.push_back(ev);
  }
  if (!plan.placements.empty()) refill_placement();
  // Copies run beside an iteration in flight; the destination starts no iteration before
  // they are done.
  for (size_t r = 0; r < R; ++r)
    if (link[r] > 0) ready_at_[r] = std::max(ready_at_[r], now + link[r]);
}

}  // namespace lorasched
