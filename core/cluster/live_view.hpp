// The cluster as dispatchers and migration policies see it (api::ClusterView), kept up to
// date as replicas change instead of being rebuilt for every decision: each change costs
// O(log R) (O(adapters of the replica) for a placement change), so a dispatch does not
// depend on the size of the cluster.
//
// What a view shows at time `now` (docs/cluster.md, "Views"): an iteration in flight counts
// as running, so the requests it finished (the engine finishes them when the iteration
// starts) stay unfinished in the view, with their KV blocks, until it ends. Those are
// "held" here and released when a view is taken at or after the iteration's end.
#pragma once

#include <cstdint>
#include <queue>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "lorasched/plugin/views.hpp"

namespace lorasched {

class LiveView {
 public:
  LiveView() = default;
  LiveView(int32_t replicas, int32_t adapters, const api::ReplicaLimits& limits,
           std::span<const int64_t> adapter_bytes, int64_t kv_block_bytes, double link_bandwidth);

  // ---- placement (the adapters each replica hosts, ascending) ----
  void set_hosted(int32_t r, std::vector<api::AdapterId> sorted);
  const std::vector<api::AdapterId>& hosted(int32_t r) const {
    return hosted_[static_cast<size_t>(r)];
  }
  const std::vector<std::vector<api::AdapterId>>& placement() const { return hosted_; }
  bool hosts(int32_t r, api::AdapterId a) const;
  void host(int32_t r, api::AdapterId a);
  void unhost(int32_t r, api::AdapterId a);
  void set_slots(int32_t r, int32_t slots) {
    states_[static_cast<size_t>(r)].adapter_slots = slots;
  }

  // ---- requests ----
  // A request of adapter `a` joined (+1) or left (-1) replica r.
  void count(int32_t r, api::AdapterId a, int32_t delta);
  // The replica's pool after an engine operation (KV blocks in use, adapters included).
  void set_kv(int32_t r, int64_t total, int64_t used);
  // Requests replica r finished at the start of an iteration ending at `end`: they stay in
  // the view (adapter, KV blocks) until a view is taken at or after `end`.
  void hold(int32_t r, double end, std::span<const std::pair<api::AdapterId, int64_t>> finished);
  // Releases replica r's held requests now (it starts its next iteration).
  void release(int32_t r);
  // Starts fetching what release(r) reads first (the event loop, for the replica due next).
  void prefetch(int32_t r) const { __builtin_prefetch(&held_[static_cast<size_t>(r)]); }
  // Sets replica r's counts from the engine's (plus what it holds): for changes the calls
  // above did not see (requests the engine finished without running them). O(adapters).
  void resync(int32_t r, const std::vector<int32_t>& engine_counts);

  const std::vector<int32_t>& counts(int32_t r) const { return counts_[static_cast<size_t>(r)]; }
  // Unfinished requests replica r's view shows.
  int32_t unfinished(int32_t r) const { return states_[static_cast<size_t>(r)].unfinished; }

  // The view at `now` (releases what iterations ended by then held).
  api::ClusterView& at(double now);
  // Per replica, for the requests of migration views (empty in dispatch views).
  api::ReplicaState& state(int32_t r) { return states_[static_cast<size_t>(r)]; }
  // Adapters' mean execution times (the owner updates them each migration period).
  std::vector<double>& mean_exec_time() { return mean_exec_; }

  // Bytes this view keeps per replica and per adapter (counts, indexes), for reports.
  int64_t bytes() const;

 private:
  void release_until(double now);
  void set_unfinished(size_t r, int32_t value);
  void refresh_hosts_span(api::AdapterId a);

  int32_t R_ = 0, N_ = 0;
  api::ClusterView view_;
  std::vector<api::ReplicaState> states_;
  std::vector<std::vector<api::AdapterId>> hosted_;
  std::vector<std::vector<int32_t>> counts_;         // replica -> adapter -> requests
  std::vector<std::vector<api::AdapterId>> active_;  // replica -> adapters counted, asc.
  std::vector<std::vector<int32_t>> adapter_hosts_;  // adapter -> replicas hosting, asc.
  std::vector<std::span<const int32_t>> adapter_hosts_spans_;
  std::set<std::pair<int32_t, int32_t>> by_load_;  // (unfinished, replica)
  std::vector<int64_t> engine_used_, held_blocks_;
  struct Held {
    double end = 0;
    std::vector<std::pair<api::AdapterId, int64_t>> finished;
  };
  std::vector<Held> held_;
  std::vector<uint64_t> held_gen_;
  // (end, replica, generation): holds to release; stale entries (generation moved on) skipped.
  using HeldKey = std::pair<double, std::pair<int32_t, uint64_t>>;
  std::priority_queue<HeldKey, std::vector<HeldKey>, std::greater<>> ends_;
  std::vector<double> mean_exec_;
};

}  // namespace lorasched
