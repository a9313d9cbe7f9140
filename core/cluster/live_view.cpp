#include "core/cluster/live_view.hpp"

#include <algorithm>
#include <limits>

namespace lorasched {

using api::AdapterId;

namespace {

// Inserts v into a sorted vector unless present; returns whether it did.
template <class T>
bool insert_sorted(std::vector<T>& v, T x) {
  auto it = std::lower_bound(v.begin(), v.end(), x);
  if (it != v.end() && *it == x) return false;
  v.insert(it, x);
  return true;
}

template <class T>
bool erase_sorted(std::vector<T>& v, T x) {
  auto it = std::lower_bound(v.begin(), v.end(), x);
  if (it == v.end() || *it != x) return false;
  v.erase(it);
  return true;
}

}  // namespace

LiveView::LiveView(int32_t replicas, int32_t adapters, const api::ReplicaLimits& limits,
                   std::span<const int64_t> adapter_bytes, int64_t kv_block_bytes,
                   double link_bandwidth)
    : R_(replicas),
      N_(adapters),
      states_(static_cast<size_t>(replicas)),
      hosted_(static_cast<size_t>(replicas)),
      counts_(static_cast<size_t>(replicas),
              std::vector<int32_t>(static_cast<size_t>(adapters), 0)),
      active_(static_cast<size_t>(replicas)),
      adapter_hosts_(static_cast<size_t>(adapters)),
      adapter_hosts_spans_(static_cast<size_t>(adapters)),
      engine_used_(static_cast<size_t>(replicas), 0),
      held_blocks_(static_cast<size_t>(replicas), 0),
      held_(static_cast<size_t>(replicas)),
      held_gen_(static_cast<size_t>(replicas), 0),
      mean_exec_(static_cast<size_t>(adapters), std::numeric_limits<double>::quiet_NaN()) {
  for (int32_t r = 0; r < R_; ++r) {
    api::ReplicaState& s = states_[static_cast<size_t>(r)];
    s.replica = r;
    s.unfinished_per_adapter = counts_[static_cast<size_t>(r)];
    by_load_.insert({0, r});
  }
  view_.num_adapters = N_;
  view_.limits = limits;
  view_.replicas = states_;
  view_.adapter_bytes = adapter_bytes;
  view_.adapter_mean_exec_time = mean_exec_;
  view_.kv_block_bytes = kv_block_bytes;
  view_.link_bandwidth = link_bandwidth;
  view_.adapter_hosts = adapter_hosts_spans_;
  view_.least_loaded = R_ > 0 ? 0 : -1;
}

// ---- placement ------------------------------------------------------------------------------

void LiveView::refresh_hosts_span(AdapterId a) {
  adapter_hosts_spans_[static_cast<size_t>(a)] = adapter_hosts_[static_cast<size_t>(a)];
}

void LiveView::set_hosted(int32_t r, std::vector<AdapterId> sorted) {
  auto& h = hosted_[static_cast<size_t>(r)];
  for (AdapterId a : h)
    if (!std::binary_search(sorted.begin(), sorted.end(), a)) {
      erase_sorted(adapter_hosts_[static_cast<size_t>(a)], r);
      refresh_hosts_span(a);
    }
  for (AdapterId a : sorted)
    if (!std::binary_search(h.begin(), h.end(), a)) {
      insert_sorted(adapter_hosts_[static_cast<size_t>(a)], r);
      refresh_hosts_span(a);
    }
  h = std::move(sorted);
  states_[static_cast<size_t>(r)].hosted = h;
}

bool LiveView::hosts(int32_t r, AdapterId a) const {
  const auto& h = hosted_[static_cast<size_t>(r)];
  return std::binary_search(h.begin(), h.end(), a);
}

void LiveView::host(int32_t r, AdapterId a) {
  auto& h = hosted_[static_cast<size_t>(r)];
  if (!insert_sorted(h, a)) return;
  states_[static_cast<size_t>(r)].hosted = h;
  insert_sorted(adapter_hosts_[static_cast<size_t>(a)], r);
  refresh_hosts_span(a);
}

void LiveView::unhost(int32_t r, AdapterId a) {
  auto& h = hosted_[static_cast<size_t>(r)];
  if (!erase_sorted(h, a)) return;
  states_[static_cast<size_t>(r)].hosted = h;
  erase_sorted(adapter_hosts_[static_cast<size_t>(a)], r);
  refresh_hosts_span(a);
}

// ---- requests -------------------------------------------------------------------------------

void LiveView::set_unfinished(size_t r, int32_t value) {
  api::ReplicaState& s = states_[r];
  if (s.unfinished == value) return;
  by_load_.erase({s.unfinished, static_cast<int32_t>(r)});
  s.unfinished = value;
  by_load_.insert({value, static_cast<int32_t>(r)});
}

void LiveView::count(int32_t r, AdapterId a, int32_t delta) {
  const auto ur = static_cast<size_t>(r);
  int32_t& c = counts_[ur][static_cast<size_t>(a)];
  const bool was = c > 0;
  c += delta;
  if (was != (c > 0)) {
    if (c > 0)
      insert_sorted(active_[ur], a);
    else
      erase_sorted(active_[ur], a);
    states_[ur].active_adapters = active_[ur];
  }
  set_unfinished(ur, states_[ur].unfinished + delta);
}

void LiveView::set_kv(int32_t r, int64_t total, int64_t used) {
  const auto ur = static_cast<size_t>(r);
  engine_used_[ur] = used;
  states_[ur].kv_blocks_total = total;
  states_[ur].kv_blocks_used = used + held_blocks_[ur];
}

void LiveView::hold(int32_t r, double end,
                    std::span<const std::pair<AdapterId, int64_t>> finished) {
  release(r);
  if (finished.empty()) return;
  const auto ur = static_cast<size_t>(r);
  for (const auto& [a, blocks] : finished) held_blocks_[ur] += blocks;
  states_[ur].kv_blocks_used = engine_used_[ur] + held_blocks_[ur];
  held_[ur].end = end;
  held_[ur].finished.assign(finished.begin(), finished.end());
  ends_.push({end, {r, ++held_gen_[ur]}});
}

void LiveView::release(int32_t r) {
  const auto ur = static_cast<size_t>(r);
  Held& h = held_[ur];
  if (h.finished.empty()) return;
  for (const auto& [a, blocks] : h.finished) count(r, a, -1);
  h.finished.clear();
  held_blocks_[ur] = 0;
  states_[ur].kv_blocks_used = engine_used_[ur];
  ++held_gen_[ur];  // its queue entry is stale now
}

void LiveView::release_until(double now) {
  while (!ends_.empty() && ends_.top().first <= now) {
    const auto [r, gen] = ends_.top().second;
    ends_.pop();
    if (held_gen_[static_cast<size_t>(r)] == gen) release(r);
  }
}

void LiveView::resync(int32_t r, const std::vector<int32_t>& engine_counts) {
  const auto ur = static_cast<size_t>(r);
  auto& c = counts_[ur];
  c = engine_counts;
  for (const auto& [a, blocks] : held_[ur].finished) ++c[static_cast<size_t>(a)];
  active_[ur].clear();
  int32_t total = 0;
  for (size_t a = 0; a < c.size(); ++a)
    if (c[a] > 0) {
      active_[ur].push_back(static_cast<AdapterId>(a));
      total += c[a];
    }
  states_[ur].active_adapters = active_[ur];
  set_unfinished(ur, total);
}

api::ClusterView& LiveView::at(double now) {
  release_until(now);
  view_.now = now;
  view_.least_loaded = by_load_.empty() ? -1 : by_load_.begin()->second;
  return view_;
}

int64_t LiveView::bytes() const {
  int64_t b = static_cast<int64_t>(states_.size() * sizeof(api::ReplicaState));
  for (size_t r = 0; r < counts_.size(); ++r)
    b += static_cast<int64_t>(counts_[r].capacity() * sizeof(int32_t) +
                              active_[r].capacity() * sizeof(AdapterId) +
                              hosted_[r].capacity() * sizeof(AdapterId));
  for (const auto& h : adapter_hosts_) b += static_cast<int64_t>(h.capacity() * sizeof(int32_t));
  b += static_cast<int64_t>(adapter_hosts_spans_.size() * sizeof(std::span<const int32_t>) +
                            mean_exec_.size() * sizeof(double));
  return b;
}

}  // namespace lorasched
