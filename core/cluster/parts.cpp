#include "core/cluster/parts.hpp"

#include <fmt/format.h>
#include <algorithm>

#include "core/adapters/synthetic.hpp"
#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/peft_adapter.hpp"
#include "core/common/error.hpp"
#include "core/config/plugin_params.hpp"
#include "core/exec/costmodel.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/exec/cpu_executor.hpp"
#include "core/exec/cuda_factory.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"

namespace lorasched {

SwitchMethod switch_method(const Experiment& e) {
  return e.engine.weight_switch == WeightSwitch::fused ? SwitchMethod::fused
                                                       : SwitchMethod::unmerge_merge;
}

CostModelOptions cost_model_options(const Experiment& e) {
  CostModelOptions o;
  o.lora_kernels =
      e.cluster.costmodel_lora == CostModelLora::sgmv ? LoraKernels::sgmv : LoraKernels::artifact;
  o.unmerged_ratio = e.cluster.costmodel_scale.unmerged_ratio;
  o.switch_iterations = e.cluster.costmodel_scale.switch_iterations;
  o.switch_method = switch_method(e);
  return o;
}

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Default pool of the cpu executor when the experiment sets none: 256 MiB.
constexpr double kCpuDefaultPoolGiB = 0.25;
// The cpu executor allocates its pool for real; refuse sizes that cannot be meant.
constexpr double kCpuMaxPoolGiB = 16.0;

// The base model's weights for a real executor: the HF checkpoint, or synthetic weights
// from the model seed (derived from the run's seed when 0).
std::shared_ptr<const ModelWeights> base_weights(const Experiment& e, const ModelShape& shape) {
  return std::make_shared<const ModelWeights>(
      e.model.path.empty()
          ? synthetic_model(shape, e.model.seed ? e.model.seed : e.run.seed * 7919ULL + 17ULL)
          : load_hf_model(e.model.path));
}

// ---- executor backends ----------------------------------------------------------------------

class CostModelBackend final : public Backend {
 public:
  CostModelBackend(const Experiment& e, const ModelShape& shape)
      : model_(make_cost_model(e.cluster.costmodel, shape, cost_model_options(e))) {}
  bool real() const override { return false; }
  int element_bytes() const override { return model_->bytes_per_element(); }
  // A profile: its executor's default; a preset: the device's memory x
  // gpu_memory_utilization less the weights.
  double default_pool_bytes(const Experiment& e, const ModelShape& shape,
                            const std::vector<AdapterInfo>&) const override {
    if (model_->default_pool_bytes() > 0) return model_->default_pool_bytes();
    const double weights = static_cast<double>(shape.num_parameters()) * element_bytes();
    const double avail = model_->device_memory_bytes() * e.engine.gpu_memory_utilization - weights;
    if (avail <= 0)
      throw InputError(fmt::format(
          "{}: model {} ({:.1f} GiB of weights) does not fit in {:.1f} GiB x {} of device memory",
          e.path.string(), shape.name, weights / kGiB, model_->device_memory_bytes() / kGiB,
          e.engine.gpu_memory_utilization));
    return avail;
  }
  void prepare(const Experiment&, const ModelShape&, const AdapterSet& a,
               const PoolSize& pool) override {
    adapters_ = a.infos;
    block_bytes_ = pool.block_bytes;
  }
  std::unique_ptr<Executor> make_executor() const override {
    auto ex = std::make_unique<CostModelExecutor>(model_, adapters_);
    ex->set_block_bytes(block_bytes_);
    return ex;
  }

 private:
  std::shared_ptr<const CostModel> model_;
  std::shared_ptr<const std::vector<AdapterInfo>> adapters_;
  int64_t block_bytes_ = 0;
};

class CpuBackend final : public Backend {
 public:
  bool real() const override { return true; }
  int element_bytes() const override { return 4; }
  double default_pool_bytes(const Experiment&, const ModelShape&,
                            const std::vector<AdapterInfo>&) const override {
    return kCpuDefaultPoolGiB * kGiB;
  }
  void check_pool(const Experiment& e, double bytes) const override {
    if (bytes > kCpuMaxPoolGiB * kGiB)
      throw InputError(fmt::format(
          "{}: [engine] a pool of {:.1f} GiB is over the cpu executor's limit of {} GiB",
          e.path.string(), bytes / kGiB, kCpuMaxPoolGiB));
  }
  void prepare(const Experiment& e, const ModelShape& shape, const AdapterSet& a,
               const PoolSize& pool) override {
    set_cpu_threads(e.cluster.threads);
    base_ = base_weights(e, shape);
    weights_ = a.weights;
    pool_blocks_ = pool.blocks;
    block_size_ = e.engine.block_size;
  }
  std::unique_ptr<Executor> make_executor() const override {
    return std::make_unique<CpuExecutor>(*base_, weights_, pool_blocks_, block_size_);
  }

 private:
  std::shared_ptr<const ModelWeights> base_;
  std::shared_ptr<const std::vector<LoraAdapterWeights>> weights_;
  int64_t pool_blocks_ = 0;
  int32_t block_size_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const Experiment& e, bool dry_run) {
    if (!cuda_executor_built())
      throw InputError(
          fmt::format("{}: executor \"cuda\" is not available in this build "
                      "(built without a CUDA device backend); use \"cpu\" or \"costmodel\"",
                      e.path.string()));
    // Without a device a run stops here, before any work ("executor cuda: no CUDA device
    // (...)", exit 1); a dry run (validate) goes on unless the pool is sized from the
    // device's memory.
    if (!dry_run) require_cuda_device();
  }
  bool real() const override { return true; }
  int element_bytes() const override { return kCudaElementBytes; }
  // As the cost model's: the device's memory x gpu_memory_utilization (less what other
  // processes hold), shared by the replicas (one device), less each executor's weights,
  // residuals and workspaces and the device memory its resident adapters take beside the
  // pool (all adapters when they are outside the pool; with unified paging at most the
  // pool's size, so at most half of what is left).
  double default_pool_bytes(const Experiment& e, const ModelShape& shape,
                            const std::vector<AdapterInfo>& adapters) const override {
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
          "replica(s) of model {} ({:.1f} GiB of weights, residuals and workspaces each) and "
          "{:.1f} GiB of adapters; set [engine] kv_blocks / pool_gib or lower the replicas",
          e.path.string(), dev.name, dev.total_bytes / kGiB, dev.free_bytes / kGiB,
          e.engine.gpu_memory_utilization, e.cluster.replicas, shape.name, fixed / kGiB,
          all_adapters / kGiB));
    return pool;
  }
  void prepare(const Experiment& e, const ModelShape& shape, const AdapterSet& a,
               const PoolSize& pool) override {
    base_ = base_weights(e, shape);
    weights_ = a.weights;
    pool_blocks_ = pool.blocks;
    block_size_ = e.engine.block_size;
  }
  std::unique_ptr<Executor> make_executor() const override {
    return make_cuda_executor(*base_, weights_, pool_blocks_, block_size_);
  }

 private:
  std::shared_ptr<const ModelWeights> base_;
  std::shared_ptr<const std::vector<LoraAdapterWeights>> weights_;
  int64_t pool_blocks_ = 0;
  int32_t block_size_ = 0;
};

// ---- adapter sources ------------------------------------------------------------------------

// Synthetic adapters: ranks round-robin from [adapters] ranks, seeded weights.
void synthetic_adapters(const Experiment& e, const ModelShape& shape, bool materialise,
                        std::vector<AdapterInfo>& infos, std::vector<LoraAdapterWeights>& weights) {
  for (int32_t i = 0; i < e.adapters.count; ++i) {
    AdapterInfo info;
    info.id = i;
    const int rank = e.adapters.ranks[static_cast<size_t>(i) % e.adapters.ranks.size()];
    const double alpha = e.adapters.lora_alpha > 0 ? e.adapters.lora_alpha : rank;
    info.name = fmt::format("adapter-{}", i);
    info.rank = rank;
    info.num_parameters = lora_parameters(shape, rank);
    if (materialise)
      weights.push_back(synthetic_adapter(shape, rank, alpha, e.adapters.use_rslora,
                                          e.run.seed * 1000003ULL + static_cast<uint64_t>(i),
                                          info.name));
    infos.push_back(std::move(info));
  }
}

// PEFT directories: real ranks (rank_pattern included) and sizes.
void peft_adapters(const Experiment& e, const ModelShape& shape, bool materialise,
                   std::vector<AdapterInfo>& infos, std::vector<LoraAdapterWeights>& weights) {
  for (int32_t i = 0; i < e.adapters.count; ++i) {
    const auto& path = e.adapters.paths[static_cast<size_t>(i)];
    LoraAdapterWeights a = load_peft_adapter(path, shape);
    AdapterInfo info;
    info.id = i;
    info.name = path.filename().string();
    info.rank = a.rank;
    info.num_parameters = static_cast<int64_t>(a.num_parameters());
    if (materialise) weights.push_back(std::move(a));
    infos.push_back(std::move(info));
  }
}

// Creates a plugin; a factory refusing its parameters is bad input at the plugin's table.
template <class T>
PluginInstance<T> create_checked(const std::shared_ptr<const PluginLibrary>& lib,
                                 const api::CreateArgs& args, const PluginConfig& pc) {
  try {
    return instantiate<T>(lib, args);
  } catch (const PluginArgumentError& err) {
    throw InputError(fmt::format("{}: [{}] plugin '{}': {}", pc.pos.str(), pc.table, lib->info.name,
                                 err.what()));
  }
}

std::string plugin_text(const PluginLibrary& lib) {
  return fmt::format("{} api={} path={}", lib.info.name, lib.info.api_version, lib.path.string());
}

}  // namespace

std::unique_ptr<Backend> make_backend(const Experiment& e, const ModelShape& shape, bool dry_run) {
  switch (e.cluster.executor) {
    case ExecutorKind::cpu:
      return std::make_unique<CpuBackend>();
    case ExecutorKind::costmodel:
      return std::make_unique<CostModelBackend>(e, shape);
    case ExecutorKind::cuda:
      return std::make_unique<CudaBackend>(e, dry_run);
  }
  throw InternalError("unknown executor kind");
}

AdapterSet load_adapters(const Experiment& e, const ModelShape& shape, int element_bytes,
                         bool materialise) {
  auto infos = std::make_shared<std::vector<AdapterInfo>>();
  auto weights = std::make_shared<std::vector<LoraAdapterWeights>>();
  switch (e.adapters.source) {
    case AdapterSource::synthetic:
      synthetic_adapters(e, shape, materialise, *infos, *weights);
      break;
    case AdapterSource::peft:
      peft_adapters(e, shape, materialise, *infos, *weights);
      break;
  }
  for (auto& info : *infos) info.bytes = info.num_parameters * element_bytes;
  AdapterSet set;
  set.infos = std::move(infos);
  if (materialise) set.weights = std::move(weights);
  return set;
}

PoolSize size_pool(const Experiment& e, const ModelShape& shape, const Backend& backend,
                   const std::vector<AdapterInfo>& adapters) {
  PoolSize pool;
  pool.block_bytes =
      static_cast<int64_t>(shape.kv_bytes_per_token(static_cast<size_t>(backend.element_bytes()))) *
      e.engine.block_size;
  // Bytes -> whole blocks, saturating (a profile may give any finite memory size; the range
  // check below reports it).
  auto blocks_of = [&](double bytes) -> int64_t {
    const double b = bytes / static_cast<double>(pool.block_bytes);
    return b < 4.6e18 ? static_cast<int64_t>(b) : (int64_t(1) << 62);
  };
  pool.blocks = e.engine.kv_blocks  ? *e.engine.kv_blocks
                : e.engine.pool_gib ? blocks_of(*e.engine.pool_gib * kGiB)
                                    : blocks_of(backend.default_pool_bytes(e, shape, adapters));
  if (pool.blocks < 1 || pool.blocks >= (int64_t(1) << 31))
    throw InputError(fmt::format(
        "{}: [engine] the pool would hold {} KV blocks of {} bytes; it needs 1 to 2^31-1",
        e.path.string(), pool.blocks, pool.block_bytes));
  backend.check_pool(e, static_cast<double>(pool.blocks) * static_cast<double>(pool.block_bytes));
  if (e.engine.unified_pool) {
    int64_t largest = 0;
    for (const auto& a : adapters) largest = std::max(largest, a.bytes);
    const int64_t need = (largest + pool.block_bytes - 1) / pool.block_bytes + 1;
    if (need > pool.blocks)
      throw InputError(fmt::format(
          "{}: [engine] the pool ({} blocks of {} bytes) cannot hold the largest adapter ({} bytes "
          "= {} blocks) plus one KV block: raise kv_blocks / pool_gib or lower [adapters] ranks",
          e.path.string(), pool.blocks, pool.block_bytes, largest, need - 1));
  }
  return pool;
}

// ---- plugins --------------------------------------------------------------------------------

PluginSet::PluginSet(const Experiment& e, PluginRegistry& registry) : seed_(e.run.seed) {
  auto find = [&](api::PluginKind kind, const PluginConfig& pc) {
    try {
      return registry.find(kind, pc.name);
    } catch (const PluginError& err) {
      throw PluginError(pc.pos.line > 0 ? fmt::format("{}: {}", pc.pos.str(), err.what())
                                        : err.what());
    }
  };
  scheduler_ = {find(api::PluginKind::scheduler, e.scheduler), {}, &e.scheduler};
  threshold_ = {find(api::PluginKind::threshold, e.threshold), {}, &e.threshold};
  dispatcher_ = {find(api::PluginKind::dispatcher, e.dispatcher), {}, &e.dispatcher};
  migration_ = {find(api::PluginKind::migration, e.migration), {}, &e.migration};
  for (One* p : {&scheduler_, &threshold_, &dispatcher_, &migration_})
    p->params = resolve_params(*p->config, p->lib->info);
  names_ = {{"scheduler", plugin_text(*scheduler_.lib)},
            {"threshold", plugin_text(*threshold_.lib)},
            {"dispatcher", plugin_text(*dispatcher_.lib)},
            {"migration", plugin_text(*migration_.lib)}};
}

bool PluginSet::migration_is_none() const { return migration_.lib->info.name == "none"; }

template <class T>
PluginInstance<T> PluginSet::create(const One& p, int32_t replica, int32_t adapters,
                                    const api::ReplicaLimits& limits,
                                    api::Threshold* threshold) const {
  api::CreateArgs args{p.params, seed_, replica, adapters, limits, threshold};
  return create_checked<T>(p.lib, args, *p.config);
}

PluginInstance<api::Threshold> PluginSet::threshold(int32_t replica, int32_t adapters,
                                                    const api::ReplicaLimits& limits) const {
  return create<api::Threshold>(threshold_, replica, adapters, limits, nullptr);
}
PluginInstance<api::Scheduler> PluginSet::scheduler(int32_t replica, int32_t adapters,
                                                    const api::ReplicaLimits& limits,
                                                    api::Threshold* threshold) const {
  return create<api::Scheduler>(scheduler_, replica, adapters, limits, threshold);
}
PluginInstance<api::Dispatcher> PluginSet::dispatcher(int32_t adapters,
                                                      const api::ReplicaLimits& limits) const {
  return create<api::Dispatcher>(dispatcher_, -1, adapters, limits, nullptr);
}
PluginInstance<api::Migration> PluginSet::migration(int32_t adapters,
                                                    const api::ReplicaLimits& limits) const {
  return create<api::Migration>(migration_, -1, adapters, limits, nullptr);
}

// ---- all of them ----------------------------------------------------------------------------

SimulationParts SimulationParts::build(const Experiment& e, PluginRegistry& registry,
                                       bool dry_run) {
  SimulationParts parts;
  parts.dry_run = dry_run;
  // The cuda executor's availability comes first (a build without CUDA, no device); the
  // cost model needs the model's shape.
  if (e.cluster.executor == ExecutorKind::cuda) parts.backend = make_backend(e, {}, dry_run);
  parts.shape = e.model.path.empty() ? model_preset(e.model.preset)
                                     : read_hf_config(e.model.path / "config.json");
  if (!parts.backend) parts.backend = make_backend(e, parts.shape, dry_run);
  parts.adapters = load_adapters(e, parts.shape, parts.backend->element_bytes(),
                                 parts.backend->real() && !dry_run);
  parts.pool = size_pool(e, parts.shape, *parts.backend, *parts.adapters.infos);
  parts.plugins = std::make_unique<PluginSet>(e, registry);
  return parts;
}

}  // namespace lorasched
