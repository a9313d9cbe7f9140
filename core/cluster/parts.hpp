// The parts a Simulation is composed of, each built once by a small factory keyed by the
// experiment's typed values (as Vidur's registries and gem5's params): the executor backend
// (one per ExecutorKind: its facts, its default pool, its executors), the adapters (one
// loader per AdapterSource), the pool's size, and the plugins (libraries with their checked
// parameters, creating instances per replica). SimulationParts::build checks everything an
// experiment can get wrong before any work, in the order a user meets it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/config/experiment.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/exec/executor.hpp"
#include "core/model/shape.hpp"
#include "core/plugin/loader.hpp"

namespace lorasched {

struct ModelWeights;

// What the simulation needs of one executor kind.
class Backend {
 public:
  virtual ~Backend() = default;
  // Runs real forward passes (weights in memory, token ids for every request).
  virtual bool real() const = 0;
  // Bytes of one weight or KV element on the device.
  virtual int element_bytes() const = 0;
  // The pool in bytes when [engine] sets neither kv_blocks nor pool_gib.
  virtual double default_pool_bytes(const Experiment& e, const ModelShape& shape,
                                    const std::vector<AdapterInfo>& adapters) const = 0;
  // Refuses a pool the executor cannot hold (bytes).
  virtual void check_pool(const Experiment& /*e*/, double /*bytes*/) const {}
  // Loads what the replicas' executors share (base weights), once, before they are made.
  virtual void prepare(const Experiment& e, const ModelShape& shape, const struct AdapterSet& a,
                       const struct PoolSize& pool) = 0;
  // One replica's executor.
  virtual std::unique_ptr<Executor> make_executor() const = 0;
};

// The adapters of a run: their sizes (everyone) and weights (real executors, not dry runs).
struct AdapterSet {
  std::shared_ptr<const std::vector<AdapterInfo>> infos;
  std::shared_ptr<const std::vector<LoraAdapterWeights>> weights;  // null unless materialised
};

// The paged pool of each replica: KV blocks (and adapters, with unified paging).
struct PoolSize {
  int64_t blocks = 0;
  int64_t block_bytes = 0;  // one KV block over all layers, K and V
};

// The four plugin libraries of an experiment with their parameters (checked at their lines);
// creates the instances.
class PluginSet {
 public:
  PluginSet(const Experiment& e, PluginRegistry& registry);
  // kind -> "name api=N path=..." (the results file's attributes).
  const std::vector<std::pair<std::string, std::string>>& names() const { return names_; }
  bool migration_is_none() const;
  PluginInstance<api::Threshold> threshold(int32_t replica, int32_t adapters,
                                           const api::ReplicaLimits& limits) const;
  PluginInstance<api::Scheduler> scheduler(int32_t replica, int32_t adapters,
                                           const api::ReplicaLimits& limits,
                                           api::Threshold* threshold) const;
  PluginInstance<api::Dispatcher> dispatcher(int32_t adapters,
                                             const api::ReplicaLimits& limits) const;
  PluginInstance<api::Migration> migration(int32_t adapters,
                                           const api::ReplicaLimits& limits) const;

 private:
  struct One {
    std::shared_ptr<const PluginLibrary> lib;
    api::Params params;
    const PluginConfig* config = nullptr;
  };
  template <class T>
  PluginInstance<T> create(const One& p, int32_t replica, int32_t adapters,
                           const api::ReplicaLimits& limits, api::Threshold* threshold) const;
  uint64_t seed_;
  One scheduler_, threshold_, dispatcher_, migration_;
  std::vector<std::pair<std::string, std::string>> names_;
};

struct SimulationParts {
  bool dry_run = false;
  ModelShape shape;
  std::unique_ptr<Backend> backend;
  AdapterSet adapters;
  PoolSize pool;
  std::unique_ptr<PluginSet> plugins;

  // Builds and checks every part: throws InputError (bad experiment, files, parameters;
  // exit 2), PluginError (exit 3) or Error (no CUDA device, exit 1). A dry run (validate)
  // loads no weights.
  static SimulationParts build(const Experiment& e, PluginRegistry& registry, bool dry_run);
};

// The registry of executor kinds.
std::unique_ptr<Backend> make_backend(const Experiment& e, const ModelShape& shape, bool dry_run);
// The registry of adapter sources: sizes at `element_bytes` per parameter, weights when
// `materialise`.
AdapterSet load_adapters(const Experiment& e, const ModelShape& shape, int element_bytes,
                         bool materialise);
// The pool: [engine] kv_blocks, else pool_gib, else the backend's default; checked.
PoolSize size_pool(const Experiment& e, const ModelShape& shape, const Backend& backend,
                   const std::vector<AdapterInfo>& adapters);
// [engine] switch as the executors take it.
SwitchMethod switch_method(const Experiment& e);
// The cost model's options from [cluster] costmodel_lora and costmodel_scale (the switch the
// scale prices is the run's).
CostModelOptions cost_model_options(const Experiment& e);

}  // namespace lorasched
