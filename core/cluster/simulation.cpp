#include "core/cluster/simulation.hpp"

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/common/error.hpp"
#include "core/common/prefetch.hpp"
#include "core/common/rng.hpp"

namespace lorasched {

using api::AdapterId;
using api::RequestId;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// From this many replicas the event loop warms the state of the replicas due next (run()).
// Below it their state stays in cache between their steps and the warm-up is only extra
// work: without it, 32 x 128 and 32 x 320 ran 3.5% and 4% faster; from 256 replicas on it
// pays: with it, 256 x 2,560 ran 8% faster and 1,000 x 10,000 1.6x (bench_simulation, 6
// alternating rounds each; docs/performance.md).
constexpr size_t kWarmUpReplicas = 64;

}  // namespace

Simulation::~Simulation() = default;

Simulation::Simulation(const Experiment& e, PluginRegistry& registry, bool dry_run)
    : Simulation(e, SimulationParts::build(e, registry, dry_run)) {}

Simulation::Simulation(const Experiment& e, SimulationParts parts)
    : e_(e),
      shape_(parts.shape),
      adapter_table_(parts.adapters.infos),
      adapters_(*adapter_table_),
      pool_blocks_(parts.pool.blocks),
      block_bytes_(parts.pool.block_bytes),
      link_bandwidth_(e.cluster.link_gbps * 1e9),
      kv_transfer_(e.cluster.migration_kv == MigrationKv::transfer) {
  executor_name_ = to_string(e.cluster.executor);
  plugin_names_ = parts.plugins->names();
  for (const auto& a : adapters_) adapter_bytes_.push_back(a.bytes);
  const api::ReplicaLimits limits = base_limits();
  make_requests(parts.backend->real() && !parts.dry_run);
  if (parts.dry_run) {
    // Create each plugin once so a factory failure shows before any work.
    const auto N = static_cast<int32_t>(adapters_.size());
    auto thr = parts.plugins->threshold(0, N, limits);
    (void)parts.plugins->scheduler(0, N, limits, thr.get());
    (void)parts.plugins->dispatcher(N, limits);
    (void)parts.plugins->migration(N, limits);
    return;
  }
  parts.backend->prepare(e, shape_, parts.adapters, parts.pool);
  make_replicas(parts, limits);
}

// Every replica's limits before its adapter slots are known (replica_limits adds them).
api::ReplicaLimits Simulation::base_limits() const {
  api::ReplicaLimits limits;
  limits.max_batch_size = e_.engine.max_batch_size;
  limits.max_batched_tokens = e_.engine.max_batched_tokens;
  limits.block_size = e_.engine.block_size;
  limits.max_adapters_per_batch = e_.engine.max_adapters_per_batch > 0
                                      ? e_.engine.max_adapters_per_batch
                                      : static_cast<int32_t>(adapters_.size());
  limits.prompt_limit = std::min(max_model_len(), e_.engine.max_batched_tokens);
  return limits;
}

// vLLM takes max_model_len from the model's config; the experiment may lower it.
int32_t Simulation::max_model_len() const {
  return std::min(e_.engine.max_model_len, shape_.max_position);
}

// The workload's requests; with real executors, each prompt's token ids (seeded).
void Simulation::make_requests(bool with_tokens) {
  const auto specs =
      generate_workload(e_.workload, static_cast<int32_t>(adapters_.size()), e_.run.seed);
  requests_.resize(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    Request& r = requests_[i];
    r.spec = specs[i];
    LORASCHED_CHECK(r.spec.id == static_cast<int64_t>(i), "workload ids out of order");
    r.record.id = r.spec.id;
    r.record.adapter = r.spec.adapter;
    r.record.arrival = r.spec.arrival;
    r.record.prompt_tokens = r.spec.prompt_tokens;
    if (with_tokens) {
      Rng rng(e_.run.seed, 0x70726f6d7074ULL + static_cast<uint64_t>(i));
      r.tokens.resize(static_cast<size_t>(r.spec.prompt_tokens));
      for (auto& t : r.tokens) t = static_cast<int32_t>(rng.uniform_int(0, shape_.vocab_size - 1));
    }
  }
}

// dLoRA's placement (cluster.cpp) decides each replica's adapter slots; then each replica
// gets its executor, threshold and scheduler, preloads the adapters placed on it, and the
// cluster view starts.
void Simulation::make_replicas(const SimulationParts& parts, const api::ReplicaLimits& limits) {
  const auto N = static_cast<int32_t>(adapters_.size());
  std::vector<std::vector<AdapterId>> hosted = place_adapters();
  for (int32_t r = 0; r < e_.cluster.replicas; ++r) {
    const api::ReplicaLimits rlimits = replica_limits(limits, r);
    std::unique_ptr<Executor> exec = parts.backend->make_executor();
    if (r == 0) device_ = exec->device();
    auto thr = parts.plugins->threshold(r, N, rlimits);
    auto sched = parts.plugins->scheduler(r, N, rlimits, thr.get());
    ReplicaConfig rc;
    rc.id = r;
    rc.limits = rlimits;
    rc.max_model_len = max_model_len();
    rc.watermark = e_.engine.watermark;
    rc.swap_preemption = e_.engine.preemption == Preemption::swap;
    rc.pool_blocks = pool_blocks_;
    rc.block_bytes = block_bytes_;
    rc.host_blocks = e_.engine.swap_blocks;
    rc.unified_pool = e_.engine.unified_pool;
    rc.log_batches = e_.metrics.log_batches;
    rc.switch_method = switch_method(e_);
    replicas_.push_back(std::make_unique<Replica>(rc, adapters_, std::move(exec), std::move(sched),
                                                  std::move(thr), requests_, records_));
  }
  dispatcher_ = parts.plugins->dispatcher(N, limits);
  migration_ = parts.plugins->migration(N, limits);
  migration_enabled_ = !parts.plugins->migration_is_none() && e_.cluster.replicas > 1;
  preload(hosted);
  ready_at_.assign(replicas_.size(), 0.0);
  for (const auto& rep : replicas_) plugin_objects_.push_back(rep->plugin_objects());

  // The cluster view the dispatcher and the migration policy see (live_view.hpp).
  const auto R = static_cast<int32_t>(replicas_.size());
  live_ = LiveView(R, N, replicas_.front()->config().limits, adapter_bytes_, block_bytes_,
                   link_bandwidth_);
  for (int32_t r = 0; r < R; ++r) {
    live_.set_hosted(r, std::move(hosted[static_cast<size_t>(r)]));
    live_.set_slots(r, adapter_slots_[static_cast<size_t>(r)]);
    pool_changed(r);
  }
  exec_time_dirty_flag_.assign(adapters_.size(), 0);
  exec_time_replicas_.assign(adapters_.size(), {});
  engine_unfinished_of_.assign(replicas_.size(), 0);
}

// Each replica preloads the adapters placed on it, in id order, while they take at most half
// of the pool (the rest load on demand). Migration state: docs/cluster.md.
void Simulation::preload(const std::vector<std::vector<AdapterId>>& hosted) {
  for (auto& rep : replicas_) {
    int64_t used = 0;
    for (AdapterId a : hosted[static_cast<size_t>(rep->id())]) {
      const int64_t blocks =
          e_.engine.unified_pool
              ? (adapters_[static_cast<size_t>(a)].bytes + block_bytes_ - 1) / block_bytes_
              : 0;
      if (used + blocks > pool_blocks_ / 2) break;
      if (!rep->preload(a)) break;
      used += blocks;
    }
  }
}

// dispatch() and migrate(): core/cluster/cluster.cpp.

void Simulation::deadlock(double now) {
  for (const auto& rep : replicas_) {
    for (RequestId id : rep->unfinished_requests()) {
      const Request& r = requests_[static_cast<size_t>(id)];
      const int64_t bs = rep->config().limits.block_size;
      const int64_t need = (r.context_tokens() + bs) / bs;
      throw InputError(fmt::format(
          "{}: the run cannot finish: at t={:.3f}s replica {} cannot admit request {} (context {} "
          "tokens = {} KV blocks; the pool has {} blocks, {} free, watermark {}); raise [engine] "
          "kv_blocks / pool_gib or clip lengths with [workload] max_prompt_tokens / "
          "max_output_tokens",
          e_.path.string(), now, rep->id(), id, r.context_tokens(), need, rep->pool().total(),
          rep->pool().free(), rep->pool().watermark()));
    }
  }
  throw InternalError("deadlock without a stuck request");
}

// The replica's place in the event loop's queue: replicas with queued requests that are not
// waiting for a change (stalled), by the time they may start and then by id.
void Simulation::reschedule(size_t r) {
  const bool queued = replicas_[r]->has_queued();
  if (queued != static_cast<bool>(queued_[r])) {
    num_queued_ += queued ? 1 : -1;
    queued_[r] = queued;
  }
  if (queued && !stalled_[r])
    runnable_.set(static_cast<int32_t>(r), free_at_[r]);
  else
    runnable_.erase(static_cast<int32_t>(r));
}

// One discrete-event loop. At each step the earliest of: the next arrival (dispatched first
// when times tie: it joins an iteration starting at the same time), the migration tick, and
// the earliest replica that can start an iteration (lowest id on ties). O(log R) per event.
RunResult Simulation::run(const ProgressFn& progress) {
  const auto wall0 = std::chrono::steady_clock::now();
  const size_t R = replicas_.size();
  const bool warm_up = R >= kWarmUpReplicas;
  free_at_.assign(R, 0.0);
  stalled_.assign(R, 0);
  queued_.assign(R, 0);
  runnable_.reset(R);
  num_queued_ = 0;
  for (size_t r = 0; r < R; ++r) reschedule(r);
  size_t next = 0;  // next request to arrive
  const int64_t total = static_cast<int64_t>(requests_.size());
  int64_t done_reported = -1;
  double next_migration = migration_enabled_ ? e_.cluster.migration_interval_s : kInf;
  double now = 0;

  auto finished_count = [&]() {
    return total - static_cast<int64_t>(requests_.size() - next) - engine_unfinished_;
  };

  while (true) {
    const double t_arrival = next < requests_.size() ? requests_[next].spec.arrival : kInf;
    const double t_replica = runnable_.empty() ? kInf : runnable_.top_time();
    const bool work_left = next < requests_.size() || num_queued_ > 0;
    const double t_mig = work_left ? next_migration : kInf;
    const double t = std::min({t_arrival, t_replica, t_mig});
    if (t == kInf) {
      if (num_queued_ > 0) deadlock(now);
      break;
    }
    now = t;
    if (t_arrival <= t) {
      const RequestId id = requests_[next].spec.id;
      ++next;
      dispatch(id, now);
      const auto rep = static_cast<size_t>(requests_[static_cast<size_t>(id)].record.replica);
      stalled_[rep] = 0;
      free_at_[rep] = std::max(free_at_[rep], now);
      reschedule(rep);
      continue;
    }
    if (t_mig <= t) {
      migrate(now);  // may delay replicas that receive copies (ready_at_)
      for (size_t r = 0; r < R; ++r) {
        stalled_[r] = 0;
        free_at_[r] = std::max({free_at_[r], now, ready_at_[r]});
        reschedule(r);
      }
      next_migration = now + e_.cluster.migration_interval_s;
      continue;
    }
    const auto who = static_cast<size_t>(runnable_.top());
    const auto r = static_cast<int32_t>(who);
    live_.release(r);  // its previous iteration is over
    const int32_t before = replicas_[who]->unfinished();
    // In a large cluster the replica due next warms its state while this one steps (each
    // finds its own evicted by the others' steps since its last), reading its fields for the
    // addresses; the one due after it only fetches those fields and its plugin objects' first
    // lines (from plugin_objects_), one step ahead, so that those reads hit when its turn to
    // warm comes.
    if (const int32_t due = warm_up ? runnable_.second() : -1; due >= 0) {
      replicas_[static_cast<size_t>(due)]->prefetch();
      live_.prefetch(due);
    }
    if (const int32_t later = warm_up ? runnable_.third() : -1; later >= 0) {
      replicas_[static_cast<size_t>(later)]->prefetch_fields();
      for (const void* obj : plugin_objects_[static_cast<size_t>(later)])
        prefetch_bytes(obj, 4 * kCacheLine);
    }
    auto end = replicas_[who]->step(free_at_[who]);
    stepped(r, free_at_[who], end, before);
    if (end) {
      free_at_[who] = *end;
    } else {
      stalled_[who] = 1;
    }
    reschedule(who);
    if (progress) {
      const int64_t done = finished_count();
      if (done != done_reported &&
          (done == total || done % std::max<int64_t>(1, total / 100) == 0)) {
        progress(done, total, now);
        done_reported = done;
      }
    }
  }

  RunResult out;
  out.records.requests.reserve(requests_.size());
  for (const auto& r : requests_) out.records.requests.push_back(r.result());
  out.records.iterations = std::move(records_.iterations);
  out.records.events = std::move(records_.events);
  out.records.batches = std::move(records_.batches);
  out.plugins = plugin_names_;
  out.executor = executor_name_;
  out.device = device_;
  out.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  if (progress) progress(total, total, now);
  return out;
}

}  // namespace lorasched
