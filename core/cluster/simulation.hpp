// One run of an experiment: builds the replicas, executors and plugins it describes,
// replays its workload in virtual time (one discrete-event loop for all replicas:
// arrivals, iterations, migration ticks) and returns everything it recorded.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/config/experiment.hpp"
#include "core/engine/replica.hpp"
#include "core/metrics/records.hpp"
#include "core/model/shape.hpp"
#include "core/plugin/loader.hpp"

namespace lorasched {

struct RunResult {
  RunRecords records;
  std::vector<std::pair<std::string, std::string>> plugins;  // kind -> "name api=N path"
  std::string executor;
  std::string device;
  double wall_seconds = 0;
};

// finished requests, total requests, virtual time
using ProgressFn = std::function<void(int64_t, int64_t, double)>;

class Simulation {
 public:
  // Validates and builds everything before any work: throws InputError (bad experiment,
  // files, parameters; exit 2) or PluginError (exit 3).
  // With dry_run, only checks (plugins are created once and dropped, no weights, no pools).
  Simulation(const Experiment& experiment, PluginRegistry& registry, bool dry_run = false);
  ~Simulation();

  RunResult run(const ProgressFn& progress = {});

  const ModelShape& shape() const { return shape_; }
  const std::vector<AdapterInfo>& adapters() const { return adapters_; }
  int64_t num_requests() const { return static_cast<int64_t>(requests_.size()); }
  int64_t pool_blocks() const { return pool_blocks_; }

 private:
  void dispatch(api::RequestId id, double now);
  void migrate(double now);
  [[noreturn]] void deadlock(double now);

  const Experiment& e_;
  ModelShape shape_;
  std::vector<AdapterInfo> adapters_;
  std::vector<Request> requests_;
  RunRecords records_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<std::vector<api::AdapterId>> hosted_;  // adapter placement per replica
  PluginInstance<api::Dispatcher> dispatcher_;
  PluginInstance<api::Migration> migration_;
  bool migration_enabled_ = false;
  std::vector<std::pair<std::string, std::string>> plugin_names_;
  std::string executor_name_, device_;
  int64_t pool_blocks_ = 0;
  int64_t block_bytes_ = 0;
  double link_bandwidth_ = 0;
  // reused for cluster views
  std::vector<api::ReplicaState> states_;
  std::vector<std::vector<api::RequestView>> state_requests_;
  std::vector<int64_t> adapter_bytes_;
  std::vector<double> adapter_exec_time_;
};

}  // namespace lorasched
