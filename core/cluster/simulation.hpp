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

  // Adapters placed on each replica, ascending (dLoRA's placement at the start; changed by
  // dispatch and migration), and each replica's adapter slots (the artifact's
  // engine_lora_capacity: the count placed initially).
  const std::vector<std::vector<api::AdapterId>>& placement() const { return hosted_; }
  const std::vector<int32_t>& adapter_slots() const { return adapter_slots_; }

  const ModelShape& shape() const { return shape_; }
  const std::vector<AdapterInfo>& adapters() const { return adapters_; }
  int64_t num_requests() const { return static_cast<int64_t>(requests_.size()); }
  int64_t pool_blocks() const { return pool_blocks_; }

 private:
  void dispatch(api::RequestId id, double now);
  void migrate(double now);
  // core/cluster/cluster.cpp: placement, cluster views, migration plans.
  void place_adapters();
  api::ReplicaLimits replica_limits(const api::ReplicaLimits& base, int32_t replica) const;
  const api::ClusterView& cluster_view(double now, bool with_requests);
  void validate_migration(const api::MigrationPlan& plan, double now) const;
  void apply_migration(const api::MigrationPlan& plan, double now);
  void refill_placement();
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
  // cluster state (core/cluster/cluster.cpp)
  std::vector<int32_t> adapter_slots_;   // per replica: adapters placed initially
  std::vector<double> placement_avail_;  // the placement greedy's memory per replica
  std::vector<double> expected_;         // dLoRA's expected_lora_distribution
  std::vector<double> ready_at_;         // per replica: no iteration starts before (copies)
  bool kv_transfer_ = false;             // [cluster] migration_kv = "transfer"
  std::vector<std::vector<int32_t>> state_counts_;  // per replica adapter counts of a view
  api::ClusterView view_;
};

}  // namespace lorasched
