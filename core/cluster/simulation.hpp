// One run of an experiment: builds the replicas, executors and plugins it describes,
// replays its workload in virtual time (one discrete-event loop for all replicas:
// arrivals, iterations, migration ticks) and returns everything it recorded.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/cluster/live_view.hpp"
#include "core/cluster/parts.hpp"
#include "core/cluster/run_queue.hpp"
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
  // From parts built (and checked) beforehand (parts.hpp).
  Simulation(const Experiment& experiment, SimulationParts parts);
  ~Simulation();

  RunResult run(const ProgressFn& progress = {});

  // Tests: before every dispatch and migration decision, check the kept view against one
  // computed from the replicas from scratch (throws InternalError on a difference).
  void check_views(bool on) { check_views_ = on; }

  // Adapters placed on each replica, ascending (dLoRA's placement at the start; changed by
  // dispatch and migration), and each replica's adapter slots (the artifact's
  // engine_lora_capacity: the count placed initially).
  const std::vector<std::vector<api::AdapterId>>& placement() const { return live_.placement(); }
  const std::vector<int32_t>& adapter_slots() const { return adapter_slots_; }

  const ModelShape& shape() const { return shape_; }
  const std::vector<AdapterInfo>& adapters() const { return adapters_; }
  int64_t num_requests() const { return static_cast<int64_t>(requests_.size()); }
  int64_t pool_blocks() const { return pool_blocks_; }

 private:
  // Building (simulation.cpp).
  api::ReplicaLimits base_limits() const;
  int32_t max_model_len() const;
  void make_requests(bool with_tokens);
  void make_replicas(const SimulationParts& parts, const api::ReplicaLimits& limits);
  void preload(const std::vector<std::vector<api::AdapterId>>& hosted);

  void dispatch(api::RequestId id, double now);
  void migrate(double now);
  // core/cluster/cluster.cpp: placement, cluster views, migration plans.
  std::vector<std::vector<api::AdapterId>> place_adapters();
  api::ReplicaLimits replica_limits(const api::ReplicaLimits& base, int32_t replica) const;
  const api::ClusterView& cluster_view(double now, bool with_requests);
  void validate_migration(const api::MigrationPlan& plan, double now) const;
  void apply_migration(const api::MigrationPlan& plan, double now);
  void refill_placement();
  [[noreturn]] void deadlock(double now);
  // Keeping the view (live_) in step with the replicas: after a request joined or left
  // replica r, its pool changed, or it ran step(t) (cluster.cpp).
  void joined(int32_t r, api::RequestId id);
  void left(int32_t r, api::RequestId id);
  void pool_changed(int32_t r);
  void note_unfinished(int32_t r);
  void stepped(int32_t r, double t, std::optional<double> end, int32_t unfinished_before);
  void exec_time_changed(api::AdapterId a, int32_t r);
  void drop_requests_from_view();
  void verify_view(const api::ClusterView& view, double now) const;
  // The event loop's queue of replicas that can start an iteration (simulation.cpp).
  void reschedule(size_t r);

  const Experiment& e_;
  ModelShape shape_;
  // The run's adapter table, shared with the executors (one copy: a step's row is one line
  // whether the engine or the cost model reads it).
  std::shared_ptr<const std::vector<AdapterInfo>> adapter_table_;
  const std::vector<AdapterInfo>& adapters_;
  std::vector<Request> requests_;
  RunRecords records_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  PluginInstance<api::Dispatcher> dispatcher_;
  PluginInstance<api::Migration> migration_;
  bool migration_enabled_ = false;
  std::vector<std::pair<std::string, std::string>> plugin_names_;
  std::string executor_name_, device_;
  int64_t pool_blocks_ = 0;
  int64_t block_bytes_ = 0;
  double link_bandwidth_ = 0;
  // The cluster view, kept up to date (live_view.hpp); the requests of migration views.
  LiveView live_;
  std::vector<std::vector<api::RequestView>> state_requests_;
  std::vector<std::pair<api::AdapterId, int64_t>> held_buffer_;  // reused by stepped()
  std::vector<int64_t> adapter_bytes_;
  // Adapters whose requests finished since the last migration period, and per adapter the
  // replicas where any finished (for the mean execution times of migration views).
  std::vector<api::AdapterId> exec_time_dirty_;
  std::vector<uint8_t> exec_time_dirty_flag_;
  std::vector<std::vector<int32_t>> exec_time_replicas_;
  // Unfinished requests per replica as the engines count them, and their sum (progress).
  std::vector<int32_t> engine_unfinished_of_;
  int64_t engine_unfinished_ = 0;
  // The event loop: when each replica may start its next iteration, whether it waits for
  // something to change (nothing could be admitted), and the replicas ready to step,
  // ordered by (time, replica) as the loop takes them.
  std::vector<double> free_at_;
  std::vector<uint8_t> stalled_, queued_;
  int32_t num_queued_ = 0;
  RunQueue runnable_;
  // Per replica, its plugin and executor objects (Replica::plugin_objects()), so that the
  // loop can fetch them two events ahead without reading the replica's fields.
  std::vector<std::array<const void*, 3>> plugin_objects_;
  // cluster state (core/cluster/cluster.cpp)
  std::vector<int32_t> adapter_slots_;   // per replica: adapters placed initially
  std::vector<double> placement_avail_;  // the placement greedy's memory per replica
  std::vector<double> expected_;         // dLoRA's expected_lora_distribution
  std::vector<double> ready_at_;         // per replica: no iteration starts before (copies)
  bool kv_transfer_ = false;             // [cluster] migration_kv = "transfer"
  bool check_views_ = false;
};

}  // namespace lorasched
