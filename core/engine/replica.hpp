// One replica: request queues, the paged pool, continuous batching in iterations, merged
// and unmerged modes with real switch costs, preemption. The scheduler plugin decides
// what to run; the engine admits the plan under its limits exactly as dLoRA's artifact
// (vLLM 0.1.4 _prepare_scheduleroutputs) does, applies it and records what happened.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/common/prefetch.hpp"
#include "core/engine/request.hpp"
#include "core/exec/executor.hpp"
#include "core/memory/block_pool.hpp"
#include "core/metrics/records.hpp"
#include "core/plugin/loader.hpp"

namespace lorasched {

struct ReplicaConfig {
  int32_t id = 0;
  api::ReplicaLimits limits;
  int32_t max_model_len = 4096;
  double watermark = 0.01;
  bool swap_preemption = false;  // "swap" (dLoRA artifact) or recompute (vLLM default)
  int64_t pool_blocks = 0;       // device pool, in KV blocks
  int64_t block_bytes = 0;       // bytes of one KV block (all layers, K and V)
  int64_t host_blocks = 0;       // swap space
  bool unified_pool = true;      // adapters occupy pool blocks (S-LoRA)
  bool log_batches = false;
  SwitchMethod switch_method = SwitchMethod::fused;  // [engine] switch
};

class alignas(64) Replica {  // its fields in whole cache lines (prefetch_fields)
 public:
  Replica(ReplicaConfig cfg, const std::vector<AdapterInfo>& adapters,
          std::unique_ptr<Executor> executor, PluginInstance<api::Scheduler> scheduler,
          PluginInstance<api::Threshold> threshold, std::vector<Request>& requests,
          RunRecords& records);

  int32_t id() const { return cfg_.id; }
  const ReplicaConfig& config() const { return cfg_; }
  Executor& executor() { return *executor_; }
  const BlockPool& pool() const { return pool_; }

  // Makes an adapter resident before the run (no cost recorded, like the artifact's
  // initial placement). Returns false when it does not fit.
  bool preload(api::AdapterId adapter);
  bool resident(api::AdapterId adapter) const {
    return adapter >= 0 && static_cast<size_t>(adapter) < slot_.size() &&
           slot_[static_cast<size_t>(adapter)].resident;
  }

  // A request joins the waiting queue (arrival, dispatch or migration) at `now`.
  void add(api::RequestId id, double now);
  // Takes an unfinished request out (migration): frees its KV cache, device or host.
  void remove(api::RequestId id);

  bool has_queued() const { return queue_.size() > 0; }
  int32_t queued_now() const { return queue_.size(); }
  int32_t unfinished() const { return unfinished_; }
  const std::vector<int32_t>& unfinished_per_adapter() const { return unfinished_per_adapter_; }
  // Unfinished requests in the artifact's order: waiting, ready, swapped.
  std::vector<api::RequestId> unfinished_requests() const;
  api::Mode mode() const {
    return merged_ == api::kNoAdapter ? api::Mode::unmerged : api::Mode::merged;
  }
  api::AdapterId merged_adapter() const { return merged_; }

  // Plans, admits and runs one iteration starting at `now`. Returns its end time, or
  // nullopt when nothing could be admitted (the replica idles until something changes).
  // Throws PluginError when a plugin fails or returns an invalid plan.
  std::optional<double> step(double now);

  // ---- cluster level (migration) ----
  // The requests of the iteration in flight at `now` (started at or before `now`, ends
  // after it). The engine applies an iteration's outcome (token, finish) when the iteration
  // starts, so these already show it; at `now` they are running and must not move.
  std::span<const api::RequestId> in_flight(double now) const {
    if (inflight_end_ > now) return inflight_;
    return {};
  }
  // KV blocks a request could get now: free pool blocks plus those of idle adapters.
  int64_t kv_blocks_available() const { return kv_free(); }
  // A migrated request joins `ready` with its KV cache (transfer mode): `blocks` device
  // blocks are allocated here (evicting idle adapters when needed) and returned; the caller
  // copies the KV data into them. The caller checked that they fit.
  std::span<const int32_t> insert_with_kv(api::RequestId id, int64_t blocks, double now);

  // Starts fetching into cache what the next step will most likely read first (the last
  // batch's requests and their queue nodes): the event loop calls it for the replica due
  // after the one it steps, so a cluster's replicas, stepped in turn, find their state warm.
  // Changes nothing.
  void prefetch() const;
  // Its own fields (the object itself), for the replica due after the next.
  void prefetch_fields() const { prefetch_bytes(this, sizeof(Replica)); }
  // Its scheduler, threshold and executor objects, whose first lines the event loop fetches
  // with the fields (from a copy of these addresses: reading them here would miss).
  std::array<const void*, 3> plugin_objects() const {
    return {scheduler_.get(), threshold_.get(), executor_.get()};
  }

  int64_t iterations() const { return iteration_; }
  // Mean (switch + execution) time of the iterations a finished request was in, per
  // adapter: [count, sum] accumulated on this replica.
  const std::vector<std::pair<int64_t, double>>& finished_exec_time() const { return exec_time_; }

 private:
  struct Admitted {
    api::RequestId id;
    bool prefill;
    int32_t new_tokens;
  };
  // One iteration as step() forms it. The phases fill it in turn; report_iteration() writes
  // both the metrics record and the plugins' outcome from it, so the two cannot disagree.
  struct Iteration {
    double start = 0;             // the step's `now`: switches and loads are paid from here
    api::Thresholds thresholds;   // in force when it was planned
    api::IterationPlan plan;      // the scheduler's, valid for this replica
    double decision_us = 0;       // wall time of view + plan + check
    int32_t queued = 0;           // requests in the view it was planned from
    double cost = 0;              // time paid before the batch runs: loads, swaps, switches
    bool swapped_in = false;      // admission swapped a request in ...
    bool swapped_out = false;     // ... or out (then vLLM swaps nothing in)
    bool queues_changed = false;  // a request moved between queues or out of them
    std::vector<Admitted> batch;  // in batch order
    api::AdapterId merged_adapter = api::kNoAdapter;  // the weights the batch ran with
    double duration = 0;                              // the executor's time for the batch
    double merged_duration = kNoTime;  // the same batch at merged speed (NaN: unknown)
    std::vector<int32_t> next_tokens;  // its tokens, one per entry (real executors)
    int32_t prefill_tokens = 0;
    int32_t decode_tokens = 0;
    int32_t distinct_adapters = 0;
    std::vector<api::RequestId> batch_ids;  // batch's requests, for the record and the plugins
    // The plan check's marks, kept all zero between steps (reset() leaves them): by queue slot,
    // the requests the plan lists; by adapter, the plan tail's (api::PlanTail); the adapters
    // plan_valid marked in their AdapterSlot.
    std::vector<uint8_t> listed;
    std::vector<uint8_t> tail_seen;
    std::vector<api::AdapterId> marked_adapters;
    double end() const { return start + cost + duration; }
    // A fresh iteration starting at `start` that keeps its vectors' memory (step() reuses one
    // Iteration: an allocation per vector per iteration was a tenth of a simulation's time).
    void reset(double at);
  };
  Request& req(api::RequestId id) { return requests_[static_cast<size_t>(id)]; }
  const Request& req(api::RequestId id) const { return requests_[static_cast<size_t>(id)]; }

  // The phases of step(), in order (replica.cpp says why each exists and what it may change).
  void plan_iteration(Iteration& it);
  void admit_batch(Iteration& it);
  std::optional<double> idle_until(const Iteration& it) const;
  void switch_weights(Iteration& it);
  void run_batch(Iteration& it);
  void commit_batch(Iteration& it);
  void report_iteration(const Iteration& it);

  api::ReplicaView build_view(double now);
  void check_view(const api::ReplicaView& view) const;  // debug builds: against a rebuild
  // One admission pass over the plan's candidates into it.batch; relieve() may make room for
  // a second.
  void admit(Iteration& it);
  void preempt(api::RequestId id, Iteration& it);
  bool relieve(Iteration& it);
  bool ensure_resident(api::AdapterId adapter, Iteration& it);
  int64_t kv_free() const;
  void make_room(int64_t blocks, double time);
  bool allocate_kv(Request& r, int64_t blocks, double time);
  void release_kv(Request& r);
  // Counts a request that joined this replica (arrival, dispatch, migration) and tells the
  // scheduler.
  void joined(Request& r, double now);
  void finish(Request& r, RequestStatus status, double now);
  void event(double time, EventKind kind, api::AdapterId adapter, api::RequestId request,
             double duration, int64_t bytes, double value = kNoTime, double value2 = kNoTime);

  // The queue (queue_): a request joins it, moves between its state lists (running: out of
  // them, in the iteration being formed) or leaves it; its view is kept current each time.
  void enqueue(Request& r);
  void requeue(Request& r, api::RequestState to,
               api::RequestQueue::End end = api::RequestQueue::End::back);
  void dequeue(Request& r);
  api::RequestId last_ready() const {
    return queue_.node(queue_.last(api::RequestState::ready)).request.id;
  }
  bool any_ready() const { return queue_.count(api::RequestState::ready) > 0; }
  // The plan's candidates in admission order, `requests` then its tail, until `f` (taking a
  // RequestId) returns false.
  template <class F>
  void for_each_candidate(Iteration& it, F&& f);

  ReplicaConfig cfg_;
  const std::vector<AdapterInfo>& adapters_;
  std::unique_ptr<Executor> executor_;
  PluginInstance<api::Scheduler> scheduler_;
  PluginInstance<api::Threshold> threshold_;
  std::vector<Request>& requests_;
  RunRecords& records_;
  BlockPool pool_;

  // waiting, ready and swapped requests in vLLM's three lists and in dLoRA's FCFS order,
  // kept up to date as they change: the scheduler's view walks it directly.
  api::RequestQueue queue_;
  int32_t unfinished_ = 0;
  std::vector<int32_t> unfinished_per_adapter_;
  std::vector<std::pair<int64_t, double>> exec_time_;

  struct Residency {
    std::vector<int32_t> blocks;
    int64_t last_used = -1;  // when it joins; then slot_ keeps it
  };
  // Change resident_, slot_ and merged_ only through add_resident / erase_resident / pin /
  // unpin_all / set_merged: they keep evictable_blocks_ = the blocks of resident adapters
  // that are neither merged nor pinned, which kv_free() adds to the pool's free blocks
  // (it used to walk resident_ on every admission check: the simulator's hot spot).
  std::map<api::AdapterId, Residency> resident_;
  std::vector<api::AdapterId> pinned_list_;
  // What an iteration reads and writes of one adapter, together (by adapter id): with
  // thousands of adapters per replica these arrays are cold, and one slot is one miss.
  struct AdapterSlot {
    int64_t blocks = 0;      // pool blocks while resident (0 when not)
    int64_t last_used = -1;  // iteration that last used it, while resident
    uint8_t resident = 0;    // resident_ as a flag
    uint8_t pinned = 0;      // the batch being formed needs it
    uint8_t mark = 0;        // scratch of plan_valid, zero between uses
  };
  std::vector<AdapterSlot> slot_;
  api::AdapterId merged_ = api::kNoAdapter;
  int64_t evictable_blocks_ = 0;
  void add_resident(api::AdapterId a, Residency res);
  void erase_resident(api::AdapterId a);
  void pin(api::AdapterId a);
  void unpin_all();
  void set_merged(api::AdapterId a);
  bool evictable(api::AdapterId a) const {
    return a != merged_ && !slot_[static_cast<size_t>(a)].pinned;
  }
  int64_t iteration_ = 0;
  // The iteration step() forms and run_batch's batch: scratch, reset at each step and dead
  // after it (the plan check's marks all zero), so one pair per thread serves every replica
  // (replica.cpp says why).
  struct Scratch {
    Iteration it;
    ExecBatch exec_batch;
  };
  static Scratch& scratch();
  std::vector<api::AdapterId> distinct_;  // the last batch's adapters (run_batch)
  std::vector<api::RequestId> inflight_;  // batch of the last iteration
  std::vector<int32_t> inflight_slots_;   // the queue slots of those still queued
  double inflight_end_ = -1;              // its end time

  // api::validate_plan's rules for it.plan in O(plan); marks the listed requests in
  // it.listed (cleared by unlist(), also when it says no).
  bool plan_valid(Iteration& it);
  void unlist(Iteration& it);
  void check_thresholds(const api::Thresholds& t) const;

  std::vector<api::AdapterView> view_adapters_;  // kept current: resident, unfinished
};

}  // namespace lorasched
