#include "core/cluster/simulation.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/adapters/synthetic.hpp"
#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/peft_adapter.hpp"
#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/config/plugin_params.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/exec/cpu_executor.hpp"
#include "core/exec/cuda_factory.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"

namespace fs = std::filesystem;

namespace lorasched {

using api::AdapterId;
using api::RequestId;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Default pool of the cpu executor when the experiment sets none: 256 MiB.
constexpr double kCpuDefaultPoolGiB = 0.25;
// The cpu executor allocates its pool for real; refuse sizes that cannot be meant.
constexpr double kCpuMaxPoolGiB = 16.0;

// Creates a plugin; a factory refusing its parameters is bad input at the plugin's table.
template <class T>
PluginInstance<T> create(const std::shared_ptr<const PluginLibrary>& lib,
                         const api::CreateArgs& args, const PluginConfig& pc) {
  try {
    return instantiate<T>(lib, args);
  } catch (const PluginArgumentError& e) {
    throw InputError(
        fmt::format("{}: [{}] plugin '{}': {}", pc.pos.str(), pc.table, lib->info.name, e.what()));
  }
}

// The cuda executor's pool when the experiment sets none: as the cost model's, the device's
// memory x gpu_memory_utilization (less what other processes hold), shared by the replicas
// (one device), less each executor's weights, residuals and workspaces and the device memory
// its resident adapters take beside the pool (all adapters when they are outside the pool;
// with unified paging at most the pool's size, so at most half of what is left).
double cuda_default_pool_bytes(const Experiment& e, const ModelShape& shape,
                               const std::vector<AdapterInfo>& adapters) {
  const CudaDeviceInfo dev = cuda_device_info();
  if (!dev.available)
    throw Error(ExitCode::runtime,
                fmt::format("executor cuda: no CUDA device ({}); the pool is sized from the "
                            "device's memory: set [engine] kv_blocks or pool_gib to validate "
                            "without one",
                            dev.reason));
  const double usable =
      dev.total_bytes * e.engine.gpu_memory_utilization - (dev.total_bytes - dev.free_bytes);
  const double fixed =
      cuda_executor_fixed_bytes(shape, e.engine.max_batched_tokens, e.engine.max_batch_size);
  const double avail = usable / e.cluster.replicas - fixed;
  double all_adapters = 0;
  for (const auto& a : adapters) all_adapters += static_cast<double>(a.bytes);
  const double pool =
      avail - (e.engine.unified_pool ? std::min(all_adapters, avail / 2) : all_adapters);
  if (pool <= 0)
    throw InputError(fmt::format(
        "{}: executor cuda: {} ({:.1f} GiB, {:.1f} GiB free) x {} leaves no pool for {} "
        "replica(s) of model {} ({:.1f} GiB of weights, residuals and workspaces each) and {:.1f} "
        "GiB of adapters; set [engine] kv_blocks / pool_gib or lower the replicas",
        e.path.string(), dev.name, dev.total_bytes / kGiB, dev.free_bytes / kGiB,
        e.engine.gpu_memory_utilization, e.cluster.replicas, shape.name, fixed / kGiB,
        all_adapters / kGiB));
  return pool;
}

std::string plugin_text(const PluginLibrary& lib) {
  return fmt::format("{} api={} path={}", lib.info.name, lib.info.api_version, lib.path.string());
}

}  // namespace

Simulation::~Simulation() = default;

Simulation::Simulation(const Experiment& e, PluginRegistry& registry, bool dry_run) : e_(e) {
  const int32_t N = e.adapters.count;
  const bool cuda = e.cluster.executor == "cuda";
  const bool real = e.cluster.executor == "cpu" || cuda;  // real forward passes and weights
  if (cuda && !cuda_executor_built())
    throw InputError(
        fmt::format("{}: executor \"cuda\" is not available in this build "
                    "(built without a CUDA device backend); use \"cpu\" or \"costmodel\"",
                    e.path.string()));
  // KV transfer on migration copies the cpu executor's cache (cluster.cpp); the cuda
  // executor's would arrive empty, so refuse rather than compute on wrong keys and values.
  if (cuda && e.cluster.migration_kv == "transfer" && e.cluster.replicas > 1 &&
      e.migration.name != "none")
    throw InputError(
        fmt::format("{}: executor \"cuda\" does not move KV caches between replicas "
                    "yet; use [cluster] migration_kv = \"recompute\"",
                    e.path.string()));
  // Without a device a run stops here, before any work ("executor cuda: no CUDA device (...)",
  // exit 1); a dry run (validate) goes on unless the pool is sized from the device's memory.
  if (cuda && !dry_run) require_cuda_device();
  shape_ = e.model.path.empty() ? model_preset(e.model.preset)
                                : read_hf_config(e.model.path / "config.json");

  std::shared_ptr<const CostModel> cost_model;
  if (!real) cost_model = make_cost_model(e.cluster.costmodel, shape_);
  const int elem = cuda ? kCudaElementBytes : real ? 4 : cost_model->bytes_per_element();
  executor_name_ = e.cluster.executor;

  // Adapters: sizes for everyone, weights for the real executor.
  const bool materialise = real && !dry_run;
  std::shared_ptr<std::vector<LoraAdapterWeights>> weights;
  if (materialise) weights = std::make_shared<std::vector<LoraAdapterWeights>>();
  for (int32_t i = 0; i < N; ++i) {
    AdapterInfo info;
    info.id = i;
    if (e.adapters.source == "peft") {
      // PEFT directories: real ranks (rank_pattern included) and sizes.
      LoraAdapterWeights a = load_peft_adapter(e.adapters.paths[static_cast<size_t>(i)], shape_);
      info.name = e.adapters.paths[static_cast<size_t>(i)].filename().string();
      info.rank = a.rank;
      info.num_parameters = static_cast<int64_t>(a.num_parameters());
      if (materialise) weights->push_back(std::move(a));
    } else {
      const int rank = e.adapters.ranks[static_cast<size_t>(i) % e.adapters.ranks.size()];
      const double alpha = e.adapters.lora_alpha > 0 ? e.adapters.lora_alpha : rank;
      info.name = fmt::format("adapter-{}", i);
      info.rank = rank;
      info.num_parameters = lora_parameters(shape_, rank);
      if (materialise)
        weights->push_back(synthetic_adapter(shape_, rank, alpha, e.adapters.use_rslora,
                                             e.run.seed * 1000003ULL + static_cast<uint64_t>(i),
                                             info.name));
    }
    info.bytes = info.num_parameters * elem;
    adapters_.push_back(info);
  }

  // The pool: KV blocks (and adapters, with unified paging).
  block_bytes_ = static_cast<int64_t>(shape_.kv_bytes_per_token(static_cast<size_t>(elem))) *
                 e.engine.block_size;
  const double weight_bytes = static_cast<double>(shape_.num_parameters()) * elem;
  // Bytes -> whole blocks, saturating (a profile may give any finite memory size; the range
  // check below reports it).
  auto blocks_of = [&](double bytes) -> int64_t {
    const double b = bytes / static_cast<double>(block_bytes_);
    return b < 4.6e18 ? static_cast<int64_t>(b) : (int64_t(1) << 62);
  };
  if (e.engine.kv_blocks) {
    pool_blocks_ = *e.engine.kv_blocks;
  } else if (e.engine.pool_gib) {
    pool_blocks_ = blocks_of(*e.engine.pool_gib * kGiB);
  } else if (cuda) {
    pool_blocks_ = blocks_of(cuda_default_pool_bytes(e, shape_, adapters_));
  } else if (real) {
    pool_blocks_ = blocks_of(kCpuDefaultPoolGiB * kGiB);
  } else if (cost_model->default_pool_bytes() > 0) {  // a profile: its executor's default
    pool_blocks_ = blocks_of(cost_model->default_pool_bytes());
  } else {
    const double avail =
        cost_model->device_memory_bytes() * e.engine.gpu_memory_utilization - weight_bytes;
    if (avail <= 0)
      throw InputError(fmt::format(
          "{}: model {} ({:.1f} GiB of weights) does not fit in {:.1f} GiB x {} of device memory",
          e.path.string(), shape_.name, weight_bytes / kGiB,
          cost_model->device_memory_bytes() / kGiB, e.engine.gpu_memory_utilization));
    pool_blocks_ = blocks_of(avail);
  }
  if (pool_blocks_ < 1 || pool_blocks_ >= (int64_t(1) << 31))
    throw InputError(fmt::format(
        "{}: [engine] the pool would hold {} KV blocks of {} bytes; it needs 1 to 2^31-1",
        e.path.string(), pool_blocks_, block_bytes_));
  if (real && !cuda &&
      static_cast<double>(pool_blocks_) * static_cast<double>(block_bytes_) > kCpuMaxPoolGiB * kGiB)
    throw InputError(fmt::format(
        "{}: [engine] a pool of {:.1f} GiB is over the cpu executor's limit of {} GiB",
        e.path.string(), static_cast<double>(pool_blocks_ * block_bytes_) / kGiB, kCpuMaxPoolGiB));
  if (e.engine.unified_pool) {
    int64_t largest = 0;
    for (const auto& a : adapters_) largest = std::max(largest, a.bytes);
    const int64_t need = (largest + block_bytes_ - 1) / block_bytes_ + 1;
    if (need > pool_blocks_)
      throw InputError(fmt::format(
          "{}: [engine] the pool ({} blocks of {} bytes) cannot hold the largest adapter ({} bytes "
          "= "
          "{} blocks) plus one KV block: raise kv_blocks / pool_gib or lower [adapters] ranks",
          e.path.string(), pool_blocks_, block_bytes_, largest, need - 1));
  }

  // Plugins: libraries, parameters (checked at their lines), then one scheduler and
  // threshold per replica.
  auto find = [&](api::PluginKind kind, const PluginConfig& pc) {
    try {
      return registry.find(kind, pc.name);
    } catch (const PluginError& err) {
      throw PluginError(pc.pos.line > 0 ? fmt::format("{}: {}", pc.pos.str(), err.what())
                                        : err.what());
    }
  };
  auto sched_lib = find(api::PluginKind::scheduler, e.scheduler);
  auto thr_lib = find(api::PluginKind::threshold, e.threshold);
  auto disp_lib = find(api::PluginKind::dispatcher, e.dispatcher);
  auto mig_lib = find(api::PluginKind::migration, e.migration);
  const api::Params sched_params = resolve_params(e.scheduler, sched_lib->info);
  const api::Params thr_params = resolve_params(e.threshold, thr_lib->info);
  const api::Params disp_params = resolve_params(e.dispatcher, disp_lib->info);
  const api::Params mig_params = resolve_params(e.migration, mig_lib->info);
  plugin_names_ = {{"scheduler", plugin_text(*sched_lib)},
                   {"threshold", plugin_text(*thr_lib)},
                   {"dispatcher", plugin_text(*disp_lib)},
                   {"migration", plugin_text(*mig_lib)}};

  api::ReplicaLimits limits;
  limits.max_batch_size = e.engine.max_batch_size;
  limits.max_batched_tokens = e.engine.max_batched_tokens;
  limits.block_size = e.engine.block_size;
  limits.max_adapters_per_batch =
      e.engine.max_adapters_per_batch > 0 ? e.engine.max_adapters_per_batch : N;
  // vLLM takes max_model_len from the model's config; the experiment may lower it.
  const int32_t max_model_len = std::min(e.engine.max_model_len, shape_.max_position);
  limits.prompt_limit = std::min(max_model_len, e.engine.max_batched_tokens);

  // Workload.
  const auto specs = generate_workload(e.workload, N, e.run.seed);
  requests_.resize(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    Request& r = requests_[i];
    r.spec = specs[i];
    LORASCHED_CHECK(r.spec.id == static_cast<int64_t>(i), "workload ids out of order");
    r.record.id = r.spec.id;
    r.record.adapter = r.spec.adapter;
    r.record.arrival = r.spec.arrival;
    r.record.prompt_tokens = r.spec.prompt_tokens;
    if (materialise) {
      Rng rng(e.run.seed, 0x70726f6d7074ULL + static_cast<uint64_t>(i));
      r.tokens.resize(static_cast<size_t>(r.spec.prompt_tokens));
      for (auto& t : r.tokens) t = static_cast<int32_t>(rng.uniform_int(0, shape_.vocab_size - 1));
    }
  }

  if (dry_run) {
    // Create each plugin once so a factory failure shows before any work.
    api::CreateArgs targs{thr_params, e.run.seed, 0, N, limits, nullptr};
    auto thr = create<api::Threshold>(thr_lib, targs, e.threshold);
    api::CreateArgs sargs{sched_params, e.run.seed, 0, N, limits, thr.get()};
    (void)create<api::Scheduler>(sched_lib, sargs, e.scheduler);
    (void)create<api::Dispatcher>(disp_lib, {disp_params, e.run.seed, -1, N, limits, nullptr},
                                  e.dispatcher);
    (void)create<api::Migration>(mig_lib, {mig_params, e.run.seed, -1, N, limits, nullptr},
                                 e.migration);
    return;
  }

  // Replicas.
  std::shared_ptr<ModelWeights> base;
  if (real) {
    set_cpu_threads(e.cluster.threads);
    base = std::make_shared<ModelWeights>(
        e.model.path.empty()
            ? synthetic_model(shape_, e.model.seed ? e.model.seed : e.run.seed * 7919ULL + 17ULL)
            : load_hf_model(e.model.path));
  }
  link_bandwidth_ = e.cluster.link_gbps * 1e9;
  // dLoRA's placement decides each replica's adapter slots (cluster.cpp).
  std::vector<std::vector<AdapterId>> hosted = place_adapters();
  for (int32_t r = 0; r < e.cluster.replicas; ++r) {
    const api::ReplicaLimits rlimits = replica_limits(limits, r);
    std::unique_ptr<Executor> exec;
    if (cuda) {
      exec = make_cuda_executor(*base, weights, pool_blocks_, e.engine.block_size);
    } else if (real) {
      exec = std::make_unique<CpuExecutor>(*base, weights, pool_blocks_, e.engine.block_size);
    } else {
      auto cm = std::make_unique<CostModelExecutor>(cost_model, adapters_);
      cm->set_block_bytes(block_bytes_);
      exec = std::move(cm);
    }
    if (r == 0) device_ = exec->device();
    api::CreateArgs targs{thr_params, e.run.seed, r, N, rlimits, nullptr};
    auto thr = create<api::Threshold>(thr_lib, targs, e.threshold);
    api::CreateArgs sargs{sched_params, e.run.seed, r, N, rlimits, thr.get()};
    auto sched = create<api::Scheduler>(sched_lib, sargs, e.scheduler);
    ReplicaConfig rc;
    rc.id = r;
    rc.limits = rlimits;
    rc.max_model_len = max_model_len;
    rc.watermark = e.engine.watermark;
    rc.swap_preemption = e.engine.preemption == "swap";
    rc.pool_blocks = pool_blocks_;
    rc.block_bytes = block_bytes_;
    rc.host_blocks = e.engine.swap_blocks;
    rc.unified_pool = e.engine.unified_pool;
    rc.log_batches = e.metrics.log_batches;
    replicas_.push_back(std::make_unique<Replica>(rc, adapters_, std::move(exec), std::move(sched),
                                                  std::move(thr), requests_, records_));
  }
  api::CreateArgs cargs{disp_params, e.run.seed, -1, N, limits, nullptr};
  dispatcher_ = create<api::Dispatcher>(disp_lib, cargs, e.dispatcher);
  api::CreateArgs margs{mig_params, e.run.seed, -1, N, limits, nullptr};
  migration_ = create<api::Migration>(mig_lib, margs, e.migration);
  migration_enabled_ = mig_lib->info.name != "none" && e.cluster.replicas > 1;

  // Placement (place_adapters above, dLoRA's greedy): each replica preloads the adapters
  // placed on it, in id order, while they take at most half of the pool (the rest load on
  // demand). Migration state: docs/cluster.md.
  for (auto& rep : replicas_) {
    int64_t used = 0;
    for (AdapterId a : hosted[static_cast<size_t>(rep->id())]) {
      const int64_t blocks =
          e.engine.unified_pool
              ? (adapters_[static_cast<size_t>(a)].bytes + block_bytes_ - 1) / block_bytes_
              : 0;
      if (used + blocks > pool_blocks_ / 2) break;
      if (!rep->preload(a)) break;
      used += blocks;
    }
  }
  ready_at_.assign(replicas_.size(), 0.0);
  kv_transfer_ = e.cluster.migration_kv == "transfer";

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
  for (auto& r : requests_) out.records.requests.push_back(r.record);
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
