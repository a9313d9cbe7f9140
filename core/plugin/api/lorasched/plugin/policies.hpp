// The four policy kinds a plugin can provide, and the plans they return.
//
// Authors derive from Scheduler, Threshold, Migration or Dispatcher and implement the
// plain virtual functions (plan, observe, ...); they may throw. The engine never calls
// those directly: it calls the checked_* functions, which the export macro
// (lorasched/plugin/export.hpp) implements inside the plugin's own code, catching every
// exception there. So no exception crosses the library boundary; errors come back as values.
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "lorasched/plugin/types.hpp"
#include "lorasched/plugin/views.hpp"

namespace lorasched::api {

class Threshold;

// Everything a plugin gets at creation.
struct CreateArgs {
  Params params;         // checked against the plugin's specs, defaults filled in
  uint64_t seed = 0;     // the run's seed, for randomised policies
  int32_t replica = -1;  // the replica it serves (-1 for cluster-level plugins)
  int32_t num_adapters = 0;
  ReplicaLimits limits;
  Threshold* threshold = nullptr;  // schedulers only: the replica's threshold plugin (may be null)
};

// ---- scheduler: which requests run next, merged or unmerged ----------------------------------

// How a plan's candidate list goes on after the requests it lists (IterationPlan::tail).
// The tail is every queued request not listed in `requests`, oldest first (the view's FCFS
// order), of one adapter or of all:
enum class Tail : uint8_t {
  none = 0,     // no tail: the candidates are `requests`
  adapter = 1,  // tail_adapter's queued requests (`queued_of(tail_adapter)`)
  // All queued requests; in unmerged and mixed mode a request whose adapter would take the
  // plan past limits.max_adapters_per_batch distinct adapters (counting those of `requests`,
  // and in mixed mode not the merged one) is skipped.
  fcfs = 2,
  // The same, but the tail ends at the first such request (dLoRA artifact's strict FCFS).
  fcfs_until_limit = 3,
};

// The decision for one iteration: an ordered list of candidates, `requests` then the tail
// (queued requests the plan names without listing them, at no cost however long the queue).
// The engine admits the candidates in this order under its limits (batch size, token budget,
// KV blocks: dLoRA's _prepare_scheduleroutputs) and looks at the tail only as far as that
// takes it, so a plan may name more candidates than fit. In merged mode every candidate must
// belong to merged_adapter (a tail only as Tail::adapter of it); in unmerged mode the
// candidates may hold at most limits.max_adapters_per_batch distinct adapters (a
// Tail::adapter counts as one). validate_plan (validate.hpp) has the exact rules.
struct IterationPlan {
  Mode mode = Mode::unmerged;
  AdapterId merged_adapter = kNoAdapter;
  std::vector<RequestId> requests;
  Tail tail = Tail::none;
  AdapterId tail_adapter = kNoAdapter;  // Tail::adapter only
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual IterationPlan plan(const ReplicaView& view) = 0;
  virtual void observe(const IterationOutcome& /*outcome*/) {}
  // Called when a request joins this replica (arrival, dispatch or migration).
  virtual void on_arrival(const RequestView& /*request*/, double /*now*/) {}

  // Host side (implemented by the export macro in the plugin's code).
  virtual Result<IterationPlan> checked_plan(const ReplicaView& view) noexcept = 0;
  virtual Status checked_observe(const IterationOutcome& outcome) noexcept = 0;
  virtual Status checked_on_arrival(const RequestView& request, double now) noexcept = 0;
};

// ---- threshold: the switching rule's parameters ---------------------------------------------

// dLoRA's two thresholds: enter (or switch) merged mode when the largest adapter queue
// holds >= alpha * |FCFS batch| requests; stay merged while the merged adapter's queue
// holds >= beta * |FCFS batch| (the artifact's merge_right / merge_left thresholds).
struct Thresholds {
  double alpha = 1.0;
  double beta = 0.015 / 0.027;
};

// Counters of the period that just ended (a run of iterations in one mode), as dLoRA's
// scheduler keeps them: the actual vs. counterfactual batch sizes and switches.
struct PeriodStats {
  bool merged = false;             // the period ran merged
  int64_t num_iters = 0;           // iterations in the period
  double merge_batch_cnt = 0;      // requests a merged batch held / would have held
  double unmerge_batch_cnt = 0;    // requests an unmerged (FCFS) batch held / would have held
  int64_t virtual_switch_cnt = 0;  // changes of the largest adapter while unmerged
  double now = 0;
};

class Threshold {
 public:
  virtual ~Threshold() = default;
  virtual Thresholds current() const = 0;
  // A period ended (mode switch); returns the thresholds to use from now on.
  virtual Thresholds on_period_end(const PeriodStats& stats) = 0;
  virtual void observe(const IterationOutcome& /*outcome*/) {}

  virtual Result<Thresholds> checked_current() const noexcept = 0;
  virtual Result<Thresholds> checked_on_period_end(const PeriodStats& stats) noexcept = 0;
  virtual Status checked_observe(const IterationOutcome& outcome) noexcept = 0;
};

// ---- migration: moves of requests and adapters between replicas -------------------------------

struct RequestMove {
  RequestId request = 0;
  int32_t from = 0;
  int32_t to = 0;
};

// The complete adapter list a replica hosts after the migration.
struct Placement {
  int32_t replica = 0;
  std::vector<AdapterId> adapters;
};

struct SolverReport {
  std::string status;     // "optimal", "feasible", "infeasible", "time limit", "heuristic"
  double solve_time = 0;  // seconds of wall time spent deciding
  double objective = 0;   // the policy's objective (e.g. makespan, seconds)
  double bound = 0;       // best bound when known (== objective when optimal)
  int64_t variables = 0;
  int64_t constraints = 0;
};

struct MigrationPlan {
  std::vector<RequestMove> moves;
  std::vector<Placement> placements;
  std::vector<int32_t> replicas_considered;
  std::string trigger;  // why it ran ("memory", "load", "" when nothing to do)
  bool has_report = false;
  SolverReport report;
};

class Migration {
 public:
  virtual ~Migration() = default;
  virtual MigrationPlan plan(const ClusterView& view) = 0;
  virtual Result<MigrationPlan> checked_plan(const ClusterView& view) noexcept = 0;
};

// ---- dispatcher: which replica a new request joins ------------------------------------------

struct DispatchRequest {
  RequestId id = 0;
  AdapterId adapter = 0;
  double arrival = 0;
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;
};

struct DispatchDecision {
  int32_t replica = 0;
  // Place the request's adapter on the replica if it does not host it yet, replacing
  // `evict` there when evict != kNoAdapter (dLoRA's adapter substitution).
  AdapterId evict = kNoAdapter;
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual DispatchDecision dispatch(const ClusterView& view, const DispatchRequest& request) = 0;
  virtual Result<DispatchDecision> checked_dispatch(const ClusterView& view,
                                                    const DispatchRequest& request) noexcept = 0;
};

// ---- the guards that implement checked_* inside the plugin ----------------------------------

namespace detail {
template <class F>
auto guarded(F&& f) noexcept -> Result<decltype(f())> {
  try {
    return f();
  } catch (const std::exception& e) {
    return Status::error(std::string("threw: ") + e.what());
  } catch (...) {
    return Status::error("threw a non-standard exception");
  }
}
template <class F>
Status guarded_void(F&& f) noexcept {
  try {
    f();
    return Status::ok();
  } catch (const std::exception& e) {
    return Status::error(std::string("threw: ") + e.what());
  } catch (...) {
    return Status::error("threw a non-standard exception");
  }
}
}  // namespace detail

template <class Impl>
class GuardedScheduler final : public Impl {
 public:
  using Impl::Impl;
  Result<IterationPlan> checked_plan(const ReplicaView& v) noexcept override {
    return detail::guarded([&] { return this->plan(v); });
  }
  Status checked_observe(const IterationOutcome& o) noexcept override {
    return detail::guarded_void([&] { this->observe(o); });
  }
  Status checked_on_arrival(const RequestView& r, double now) noexcept override {
    return detail::guarded_void([&] { this->on_arrival(r, now); });
  }
};

template <class Impl>
class GuardedThreshold final : public Impl {
 public:
  using Impl::Impl;
  Result<Thresholds> checked_current() const noexcept override {
    return detail::guarded([&] { return this->current(); });
  }
  Result<Thresholds> checked_on_period_end(const PeriodStats& s) noexcept override {
    return detail::guarded([&] { return this->on_period_end(s); });
  }
  Status checked_observe(const IterationOutcome& o) noexcept override {
    return detail::guarded_void([&] { this->observe(o); });
  }
};

template <class Impl>
class GuardedMigration final : public Impl {
 public:
  using Impl::Impl;
  Result<MigrationPlan> checked_plan(const ClusterView& v) noexcept override {
    return detail::guarded([&] { return this->plan(v); });
  }
};

template <class Impl>
class GuardedDispatcher final : public Impl {
 public:
  using Impl::Impl;
  Result<DispatchDecision> checked_dispatch(const ClusterView& v,
                                            const DispatchRequest& r) noexcept override {
    return detail::guarded([&] { return this->dispatch(v, r); });
  }
};

// The guarded, concrete type of a policy class, chosen by its base.
template <class Impl>
using Guarded = std::conditional_t<
    std::is_base_of_v<Scheduler, Impl>, GuardedScheduler<Impl>,
    std::conditional_t<std::is_base_of_v<Threshold, Impl>, GuardedThreshold<Impl>,
                       std::conditional_t<std::is_base_of_v<Migration, Impl>,
                                          GuardedMigration<Impl>, GuardedDispatcher<Impl>>>>;

template <class Impl>
constexpr PluginKind kind_of() {
  if constexpr (std::is_base_of_v<Scheduler, Impl>)
    return PluginKind::scheduler;
  else if constexpr (std::is_base_of_v<Threshold, Impl>)
    return PluginKind::threshold;
  else if constexpr (std::is_base_of_v<Migration, Impl>)
    return PluginKind::migration;
  else
    return PluginKind::dispatcher;
}

}  // namespace lorasched::api
