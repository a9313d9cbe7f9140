#include "core/cluster/placement.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <list>
#include <map>
#include <set>

namespace lorasched::cluster {

using api::AdapterId;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The artifact's min() skips NaN (`min(min_bt, x)` keeps min_bt when x is NaN).
double skip_nan(double x) { return std::isnan(x) ? kInf : x; }

// Minimum over a fixed number of slots, one slot changed at a time (a segment tree).
class MinTree {
 public:
  explicit MinTree(size_t n) : n_(std::max<size_t>(1, n)), v_(2 * n_, kInf) {}
  void set(size_t i, double x) {
    i += n_;
    v_[i] = x;
    for (i /= 2; i >= 1; i /= 2) v_[i] = std::min(v_[2 * i], v_[2 * i + 1]);
  }
  double min() const { return v_[1]; }

 private:
  size_t n_;
  std::vector<double> v_;
};

// The greedy's state with the burst tolerance (calc_min_bt) kept up to date as adapter
// replicas are added and taken back, so each tentative step costs O(log) instead of a pass
// over every adapter and replica. Exactly the artifact's value, bit for bit:
// - an adapter hosted on one replica e has the burst tolerance avail[e] / expected[t] (the
//   artifact's sum of one term). For expected[t] > 0 the quotient is monotone in
//   expected[t], so the smallest over the adapters hosted only on e is avail[e] divided by
//   their largest expected value (smallest when avail[e] < 0): one value per replica, from a
//   multiset of those adapters' expected values ("lazy" adapters);
// - every other adapter (unplaced, hosted on several replicas, or expected <= 0 or not
//   finite) keeps its own value from the sum of its replicas' memory ("explicit" adapters).
//   When every memory value is a whole number of bytes and no sum can reach 2^53, each sum is
//   exact whatever the order, so it is kept as a running total, changed by what each replica
//   gains or loses (an adapter on hundreds of replicas costs one addition per change, not a
//   pass over its replicas). Otherwise it is recomputed over its replicas in ascending order
//   as the artifact adds them, whenever one of them changes.
class Tolerance {
 public:
  Tolerance(PlacementState& s, const std::vector<double>& expected,
            const std::vector<int64_t>& adapter_bytes)
      : s_(s),
        expected_(expected),
        bytes_(adapter_bytes),
        hosts_(expected.size()),
        single_(s.lists.size()),
        explicit_on_(s.lists.size()),
        total_(expected.size(), 0.0),
        adapters_(expected.size()),
        replicas_(s.lists.size()) {
    // Exact sums: whole bytes everywhere, and a replica's memory never moves further from 0
    // than its start plus every adapter's bytes (it hosts each adapter at most once).
    double largest = 0, bytes = 0;
    for (double a : s_.avail_mem) {
      exact_ = exact_ && std::isfinite(a) && a == std::trunc(a);
      largest = std::max(largest, std::fabs(a));
    }
    for (int64_t b : bytes_) bytes += std::fabs(static_cast<double>(b));
    exact_ = exact_ && (largest + bytes) * static_cast<double>(s_.lists.size() + 1) < 0x1p53;
    for (size_t e = 0; e < s_.lists.size(); ++e)
      for (AdapterId a : s_.lists[e]) {
        if (a < 0 || static_cast<size_t>(a) >= expected_.size()) continue;
        auto& h = hosts_[static_cast<size_t>(a)];
        if (!std::binary_search(h.begin(), h.end(), static_cast<int32_t>(e)))
          h.insert(std::upper_bound(h.begin(), h.end(), static_cast<int32_t>(e)),
                   static_cast<int32_t>(e));
      }
    for (size_t t = 0; t < expected_.size(); ++t) attach(static_cast<AdapterId>(t));
    for (size_t e = 0; e < s_.lists.size(); ++e) refresh_replica(e);
  }

  bool hosts(int32_t e, AdapterId t) const {
    const auto& h = hosts_[static_cast<size_t>(t)];
    return std::binary_search(h.begin(), h.end(), e);
  }
  bool placed(AdapterId t) const { return !hosts_[static_cast<size_t>(t)].empty(); }

  // The artifact's calc_min_bt of the current state.
  double min_bt() const { return std::min(adapters_.min(), replicas_.min()); }

  // list.push_back(t); avail_mem[e] -= size (the artifact's tentative step).
  void add(int32_t e, AdapterId t) {
    const auto ue = static_cast<size_t>(e);
    auto& h = hosts_[static_cast<size_t>(t)];
    // An explicit adapter stays explicit with one host more: only e's set gains it (a detach
    // and attach would take it out of every host's set and put it back).
    const bool stays = !lazy_kind(t) && !h.empty();
    if (!stays) detach(t);
    s_.lists[ue].push_back(t);
    h.insert(std::upper_bound(h.begin(), h.end(), e), e);
    if (stays) {
      // t's total gains e (as it is now), then e's change reaches it with the others'.
      total_[static_cast<size_t>(t)] += s_.avail_mem[ue];
      explicit_on_[ue].insert(t);  // replica_changed(ue) below refreshes its value
    }
    change_memory(ue, -static_cast<double>(bytes_[static_cast<size_t>(t)]));
    if (!stays) attach(t);
    replica_changed(ue);
  }
  // list.pop_back(); avail_mem[e] += size (its undo).
  void undo_add(int32_t e, AdapterId t) {
    const auto ue = static_cast<size_t>(e);
    auto& h = hosts_[static_cast<size_t>(t)];
    // Likewise when it keeps at least two hosts (so it stays explicit).
    const bool stays = !lazy_kind(t) && h.size() > 2;
    if (!stays) detach(t);
    s_.lists[ue].pop_back();
    change_memory(ue, static_cast<double>(bytes_[static_cast<size_t>(t)]));
    h.erase(std::lower_bound(h.begin(), h.end(), e));
    if (stays) {
      explicit_on_[ue].erase(t);
      total_[static_cast<size_t>(t)] -= s_.avail_mem[ue];  // what add() gave it
      refresh_adapter(t);
    } else {
      attach(t);
    }
    replica_changed(ue);
  }
  // Adds without keeping the burst tolerance (the initial top-up, after the greedy; min_bt()
  // is not read after it).
  void add_untracked(int32_t e, AdapterId t) {
    const auto ue = static_cast<size_t>(e);
    s_.lists[ue].push_back(t);
    s_.avail_mem[ue] -= static_cast<double>(bytes_[static_cast<size_t>(t)]);
    auto& h = hosts_[static_cast<size_t>(t)];
    h.insert(std::upper_bound(h.begin(), h.end(), e), e);
  }

 private:
  bool lazy_kind(AdapterId t) const {
    const double x = expected_[static_cast<size_t>(t)];
    return hosts_[static_cast<size_t>(t)].size() == 1 && std::isfinite(x) && x > 0;
  }
  // Puts adapter t into the structures according to its replicas.
  void attach(AdapterId t) {
    const auto ut = static_cast<size_t>(t);
    if (lazy_kind(t)) {
      const auto e = static_cast<size_t>(hosts_[ut].front());
      single_[e].insert(expected_[ut]);
      adapters_.set(ut, kInf);
      refresh_replica(e);
      return;
    }
    for (int32_t e : hosts_[ut]) explicit_on_[static_cast<size_t>(e)].insert(t);
    total_[ut] = sum_of_hosts(ut);
    refresh_adapter(t);
  }
  // Takes adapter t out of them (before its replicas change).
  void detach(AdapterId t) {
    const auto ut = static_cast<size_t>(t);
    if (lazy_kind(t)) {
      const auto e = static_cast<size_t>(hosts_[ut].front());
      single_[e].erase(single_[e].find(expected_[ut]));
      refresh_replica(e);
      return;
    }
    for (int32_t e : hosts_[ut]) explicit_on_[static_cast<size_t>(e)].erase(t);
    adapters_.set(ut, kInf);
  }
  // The artifact's sum: over t's replicas in ascending order.
  double sum_of_hosts(size_t t) const {
    double total = 0;
    for (int32_t e : hosts_[t]) total += s_.avail_mem[static_cast<size_t>(e)];
    return total;
  }
  // avail_mem[e] += delta, and the running totals of the explicit adapters e hosts with it.
  void change_memory(size_t e, double delta) {
    s_.avail_mem[e] += delta;
    if (exact_)
      for (AdapterId a : explicit_on_[e]) total_[static_cast<size_t>(a)] += delta;
  }
  void refresh_adapter(AdapterId t) {
    const auto ut = static_cast<size_t>(t);
    if (!exact_) total_[ut] = sum_of_hosts(ut);
    adapters_.set(ut, skip_nan(total_[ut] / expected_[ut]));
  }
  void refresh_replica(size_t e) {
    const auto& m = single_[e];
    if (m.empty()) {
      replicas_.set(e, kInf);
      return;
    }
    const double total = 0.0 + s_.avail_mem[e];
    replicas_.set(e, skip_nan(total / (total >= 0 ? *m.rbegin() : *m.begin())));
  }
  void replica_changed(size_t e) {
    refresh_replica(e);
    for (AdapterId a : explicit_on_[e]) refresh_adapter(a);
  }

  PlacementState& s_;
  const std::vector<double>& expected_;
  const std::vector<int64_t>& bytes_;
  std::vector<std::vector<int32_t>> hosts_;       // adapter -> replicas hosting it, ascending
  std::vector<std::multiset<double>> single_;     // replica -> expected of its lazy adapters
  std::vector<std::set<AdapterId>> explicit_on_;  // replica -> explicit adapters it hosts
  bool exact_ = true;                             // sums kept as running totals
  std::vector<double> total_;                     // explicit adapter -> its replicas' memory
  MinTree adapters_;                              // explicit adapters' values
  MinTree replicas_;                              // per replica: its lazy adapters' minimum
};

// The artifact's engine order: a stable re-sort of the previous order at every round, by
// number of adapters ascending (initial call) or by free slots descending, only engines with
// a free slot (refill). Between rounds only the engine that accepted an adapter changes its
// key, by one step towards the back, and a stable sort puts it first among the engines with
// its new key (it preceded all of them). So the order is kept as lists per key.
class EngineOrder {
 public:
  EngineOrder(const PlacementState& s, const std::vector<int32_t>* capacity)
      : capacity_(capacity), where_(s.lists.size()) {
    for (size_t e = 0; e < s.lists.size(); ++e) {
      const int64_t k = key(s, e);
      auto& l = buckets_[k];
      where_[e] = l.insert(l.end(), static_cast<int32_t>(e));
    }
  }
  // Engines in order (refill: those with a free slot).
  template <class F>
  bool for_each_until(F&& f) const {
    if (capacity_ == nullptr) {
      for (const auto& [k, l] : buckets_)
        for (int32_t e : l)
          if (f(e)) return true;
    } else {
      for (auto it = buckets_.rbegin(); it != buckets_.rend() && it->first > 0; ++it)
        for (int32_t e : it->second)
          if (f(e)) return true;
    }
    return false;
  }
  // Engine e accepted an adapter (its list grew by one).
  void grew(const PlacementState& s, int32_t e) {
    const auto ue = static_cast<size_t>(e);
    const int64_t old_key = capacity_ == nullptr ? key(s, ue) - 1 : key(s, ue) + 1;
    auto it = buckets_.find(old_key);
    it->second.erase(where_[ue]);
    if (it->second.empty()) buckets_.erase(it);
    auto& l = buckets_[key(s, ue)];
    where_[ue] = l.insert(l.begin(), e);
  }

 private:
  int64_t key(const PlacementState& s, size_t e) const {
    const auto size = static_cast<int64_t>(s.lists[e].size());
    return capacity_ == nullptr ? size : (*capacity_)[e] - size;
  }
  const std::vector<int32_t>* capacity_;
  std::map<int64_t, std::list<int32_t>> buckets_;
  std::vector<std::list<int32_t>::iterator> where_;
};

// The artifact's choice of the next adapter:
//   next = 0; for i: if score(i) < score(next): next = i;
//                    if not_allocated and next not in it: next = not_allocated[0]
// with score(i) = current[i] / (replicas added + 1e-7) - expected[i]. When every expected
// value is the same and exactly the unplaced adapters have current == 0 (the initial call),
// score orders adapters as current does (distinct counts give distinct scores: the gaps are
// far above rounding), so the choice is the first unplaced adapter while there is one, then
// the first adapter with the fewest replicas, kept in an ordered set. Otherwise (refill:
// arrival counts as expected) the artifact's scan, with O(1) membership.
class NextAdapter {
 public:
  NextAdapter(const std::vector<double>& expected, const std::vector<int32_t>& current,
              const Tolerance& tol)
      : expected_(expected), current_(current), unplaced_(expected.size(), 0) {
    const size_t N = expected.size();
    // The order argument needs the gaps between scores above their rounding: expected values
    // at most 2 (the initial call's are (1 + 1e-7) / N).
    uniform_ = N > 0 && expected[0] > 0 && expected[0] <= 2;
    for (size_t i = 0; i < N; ++i) {
      unplaced_[i] = tol.placed(static_cast<AdapterId>(i)) ? 0 : 1;
      num_unplaced_ += unplaced_[i];
      uniform_ = uniform_ && expected[i] == expected[0] &&
                 (unplaced_[i] ? current[i] == 0 : current[i] >= 1);
    }
  }

  AdapterId choose(int64_t num_replicas) {
    const auto N = static_cast<AdapterId>(expected_.size());
    if (uniform_) {
      if (num_unplaced_ > 0) return front();
      if (by_count_.empty())
        for (AdapterId i = 0; i < N; ++i) by_count_.insert({current_[static_cast<size_t>(i)], i});
      return by_count_.begin()->second;
    }
    const double c = static_cast<double>(num_replicas) + 1e-7;
    auto score = [&](AdapterId i) {
      return current_[static_cast<size_t>(i)] / c - expected_[static_cast<size_t>(i)];
    };
    AdapterId next = 0;
    double next_score = score(0);
    for (AdapterId i = 0; i < N; ++i) {
      const double si = score(i);
      if (si < next_score) {
        next = i;
        next_score = si;
      }
      if (num_unplaced_ > 0 && !unplaced_[static_cast<size_t>(next)]) {
        next = front();
        next_score = score(next);
      }
    }
    return next;
  }

  // `t` got a replica; current[t] is about to grow by one.
  void placing(AdapterId t) {
    const auto ut = static_cast<size_t>(t);
    if (!by_count_.empty()) {
      by_count_.erase({current_[ut], t});
      by_count_.insert({current_[ut] + 1, t});
    }
    if (unplaced_[ut]) {
      unplaced_[ut] = 0;
      --num_unplaced_;
    }
  }
  bool any_unplaced() const { return num_unplaced_ > 0; }

 private:
  AdapterId front() {
    while (!unplaced_[first_unplaced_]) ++first_unplaced_;
    return static_cast<AdapterId>(first_unplaced_);
  }
  const std::vector<double>& expected_;
  const std::vector<int32_t>& current_;
  std::vector<uint8_t> unplaced_;
  int64_t num_unplaced_ = 0;
  size_t first_unplaced_ = 0;
  bool uniform_ = false;
  std::set<std::pair<int32_t, AdapterId>> by_count_;
};

}  // namespace

double calc_min_bt(const PlacementState& s, const std::vector<double>& expected) {
  // Each adapter's sum over the replicas hosting it, in ascending replica order (as the
  // artifact adds them), counting a replica once.
  std::vector<double> total(expected.size(), 0.0);
  std::vector<size_t> seen(expected.size(), SIZE_MAX);
  for (size_t e = 0; e < s.lists.size(); ++e)
    for (AdapterId a : s.lists[e]) {
      const auto ua = static_cast<size_t>(a);
      if (ua >= total.size() || seen[ua] == e) continue;
      seen[ua] = e;
      total[ua] += s.avail_mem[e];
    }
  double min_bt = kInf;
  for (size_t t = 0; t < expected.size(); ++t) min_bt = std::min(min_bt, total[t] / expected[t]);
  return min_bt;
}

int64_t find_best_lora_weight_schedule(PlacementState& s, bool is_init,
                                       const std::vector<double>& expected,
                                       std::vector<int32_t>& current,
                                       const std::vector<int32_t>* capacity,
                                       const std::vector<int64_t>& adapter_bytes, TopUp top_up,
                                       AdapterId replicated) {
  const int32_t N = static_cast<int32_t>(expected.size());
  const int32_t G = static_cast<int32_t>(s.lists.size());
  if (N == 0 || G == 0) return 0;
  int64_t num_lora_replicas = 0;
  double best_bt = 0;
  bool update = true;

  Tolerance tol(s, expected, adapter_bytes);
  NextAdapter chooser(expected, current, tol);
  EngineOrder order(s, capacity);

  while (update) {
    update = false;
    const AdapterId next = chooser.choose(num_lora_replicas);
    int32_t accepted = -1;
    order.for_each_until([&](int32_t e) {
      if (tol.hosts(e, next)) return false;
      tol.add(e, next);
      const double new_bt = tol.min_bt();
      if (new_bt >= best_bt) {
        chooser.placing(next);
        current[static_cast<size_t>(next)] += 1;
        ++num_lora_replicas;
        best_bt = new_bt;
        update = true;
        accepted = e;
        return true;
      }
      tol.undo_add(e, next);
      if (chooser.any_unplaced()) update = true;
      return false;
    });
    // The artifact loops again with an unchanged state here (and so forever); stop.
    if (accepted < 0) {
      update = false;
    } else {
      order.grew(s, accepted);
    }
  }

  if (is_init) {
    const int64_t min_replicas = static_cast<int64_t>(G) + N - 1;
    int32_t e = 0;
    auto size_of = [&](int32_t r) {
      return static_cast<int32_t>(s.lists[static_cast<size_t>(r)].size());
    };
    if (top_up == TopUp::one_adapter) {
      const AdapterId t = std::clamp<AdapterId>(replicated, 0, N - 1);
      while (num_lora_replicas < min_replicas) {
        int32_t tries = 0;
        while (size_of(e) >= N || tol.hosts(e, t)) {
          e = (e + 1) % G;
          if (++tries > G) break;
        }
        if (tries > G) break;  // every replica hosts it (the artifact would spin)
        tol.add_untracked(e, t);
        e = (e + 1) % G;
        current[static_cast<size_t>(t)] += 1;
        ++num_lora_replicas;
      }
    } else {
      AdapterId t = 0;
      while (num_lora_replicas < min_replicas) {
        int32_t tries = 0;
        while (size_of(e) >= N) {
          e = (e + 1) % G;
          if (++tries > G) break;
        }
        if (tries > G) break;
        while (tol.hosts(e, t)) t = (t + 1) % N;
        tol.add_untracked(e, t);
        e = (e + 1) % G;
        t = (t + 1) % N;
        current[static_cast<size_t>(t)] += 1;  // sic: the artifact counts the next adapter
        ++num_lora_replicas;
      }
    }
  }
  return num_lora_replicas;
}

PlacementState initial_placement(int32_t replicas, const std::vector<int64_t>& adapter_bytes,
                                 double memory_bytes, TopUp top_up, AdapterId replicated) {
  PlacementState s;
  s.lists.assign(static_cast<size_t>(replicas), {});
  s.avail_mem.assign(static_cast<size_t>(replicas), memory_bytes);
  const size_t N = adapter_bytes.size();
  // The artifact: dist = [1] * N; expected = (1 + 1e-7) / N for every adapter.
  std::vector<double> expected(N, (1.0 + 1e-7) / static_cast<double>(N));
  std::vector<int32_t> current(N, 0);
  find_best_lora_weight_schedule(s, true, expected, current, nullptr, adapter_bytes, top_up,
                                 replicated);
  return s;
}

}  // namespace lorasched::cluster
