#include "core/bound/search.hpp"

#include "core/bound/relaxation.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <numeric>
#include <queue>
#include <string>
#include <unordered_map>

namespace lorasched::bound {

namespace {

// Depth-first branch and bound. A node is the state after some iterations: the time the last
// one ended, the weights, the tokens each request still needs and the latency of the requests
// that finished. Children are the next iteration: its weights and mode, when it starts (now,
// or when a request it could run arrives) and its batch. Three facts keep the tree small, each
// proven in docs/bounds.md:
//  - an iteration runs every request it can (all compatible, arrived, unfinished ones, or B of
//    them): moving a request's last token earlier into a slot with room never hurts;
//  - requests of one adapter with the same tokens left and the same weight are interchangeable;
//  - of two nodes with the same tokens left and weights, one that is no later and no costlier
//    dominates (what is left costs no more from an earlier time).
// A lower bound prunes the rest: the relaxation of relaxation.hpp on the tokens still to make.
class Search {
 public:
  Search(const SmallInstance& inst, Objective o, const SearchOptions& opts)
      : inst_(inst), opts_(opts), n_(inst.requests.size()) {
    const Timing& T = inst.timing;
    t_min_ = std::min(T.merged, inst.allow_mixed ? std::min(T.unmerged, T.mixed) : T.unmerged);
    p_ = t_min_ / inst.max_batch;
    for (const auto& r : inst.requests) w_.push_back(weight(r, o));
    order_.resize(n_);
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
      return inst.requests[static_cast<size_t>(a)].arrival <
             inst.requests[static_cast<size_t>(b)].arrival;
    });
    // Slot types: merged on each adapter, unmerged, mixed on each adapter.
    for (int32_t a = 0; a < inst.num_adapters; ++a) types_.push_back({a, true});
    types_.push_back({kClean, false});
    if (inst.allow_mixed)
      for (int32_t a = 0; a < inst.num_adapters; ++a) types_.push_back({a, false});
  }

  SearchResult run(const Schedule* incumbent, Objective o) {
    SearchResult out;
    const auto t0 = std::chrono::steady_clock::now();
    start_ = t0;
    auto consider = [&](const Schedule& s) {
      const Evaluation ev = evaluate(inst_, s, o);
      if (ev.feasible && ev.objective < best_) {
        best_ = ev.objective;
        best_schedule_ = s;
      }
    };
    if (incumbent) consider(*incumbent);
    consider(greedy_schedule(inst_, false));
    consider(greedy_schedule(inst_, true));
    std::vector<uint8_t> rem(n_);
    for (size_t i = 0; i < n_; ++i) rem[i] = static_cast<uint8_t>(inst_.requests[i].tokens);
    const double root_lb = lower_bound(rem, 0.0, kClean, 0.0);
    dfs(rem, kClean, 0.0, 0.0);
    out.proven = !stopped_;
    out.schedule = best_schedule_;
    out.objective = evaluate(inst_, best_schedule_, o).objective;
    out.bound = out.proven ? out.objective : std::min(root_lb, out.objective);
    out.nodes = nodes_;
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

 private:
  struct Type {
    int32_t state;
    bool fast;
  };

  double duration(const Type& ty) const {
    if (ty.fast) return inst_.timing.merged;
    return ty.state == kClean ? inst_.timing.unmerged : inst_.timing.mixed;
  }

  // A lower bound on request i's finish from a node at time t with weights `state`: its own
  // tokens back to back, fast ones only once its adapter is merged (a switch after t unless
  // the weights hold it, or before it arrives, triggered by others).
  double own_finish(size_t i, int rem, double t, int32_t state) const {
    const double a = inst_.requests[i].arrival;
    const double from = std::max(t, a);
    double f = from + rem * t_min_;
    if (state != inst_.requests[i].adapter) {
      const Timing& T = inst_.timing;
      const double slow = inst_.allow_mixed ? std::min(T.unmerged, T.mixed) : T.unmerged;
      f = std::max(f,
                   std::min(from + rem * slow, std::max(from, t + T.switch_cost) + rem * T.merged));
    }
    return f;
  }

  // accrued + sum of own_finish bounds: cheap, for ordering children.
  double quick_bound(const std::vector<uint8_t>& rem, double t, int32_t state,
                     double accrued) const {
    double lb = accrued;
    for (size_t i = 0; i < n_; ++i)
      if (rem[i] > 0) lb += w_[i] * (own_finish(i, rem[i], t, state) - inst_.requests[i].arrival);
    return lb;
  }

  // accrued + a lower bound on sum w_i (C_i - a_i) of the unfinished requests from time t.
  double lower_bound(const std::vector<uint8_t>& rem, double t, int32_t state, double accrued) {
    double simple = 0, chain = 0, arrivals = 0;
    release_.clear();
    weight_.clear();
    proc_.clear();
    // A token's share of its iteration: a merged one on adapter k holds at most
    // min(B, unfinished requests of k) tokens, a slow one at most B.
    const Timing& T = inst_.timing;
    const double slow = inst_.allow_mixed ? std::min(T.unmerged, T.mixed) : T.unmerged;
    per_adapter_.assign(static_cast<size_t>(inst_.num_adapters), 0);
    for (size_t i = 0; i < n_; ++i)
      if (rem[i] > 0) ++per_adapter_[static_cast<size_t>(inst_.requests[i].adapter)];
    for (size_t i = 0; i < n_; ++i) {
      if (rem[i] == 0) continue;
      const double a = inst_.requests[i].arrival;
      const double from = std::max(t, a);
      simple += w_[i] * (own_finish(i, rem[i], t, state) - a);
      chain += w_[i] * (rem[i] - 1) * t_min_ / 2.0;
      arrivals += w_[i] * a;
      const int fill =
          std::min(inst_.max_batch, per_adapter_[static_cast<size_t>(inst_.requests[i].adapter)]);
      const double p = std::min(T.merged / fill, slow / inst_.max_batch);
      for (int k = 0; k < rem[i]; ++k) {
        release_.push_back(from + k * t_min_);
        weight_.push_back(w_[i] / rem[i]);
        proc_.push_back(p);
      }
    }
    if (release_.empty()) return accrued;
    double tokens = min_weighted_mean_busy_time(release_, weight_, proc_);
    for (size_t j = 0; j < weight_.size(); ++j) tokens += weight_[j] * proc_[j] / 2.0;
    return accrued + std::max(simple, tokens + chain - arrivals);
  }

  bool dominated(const std::vector<uint8_t>& rem, int32_t state, double t, double accrued) {
    std::string key(rem.begin(), rem.end());
    key.push_back(static_cast<char>(state + 1));
    auto& front = seen_[key];
    for (const auto& [t2, c2] : front)
      if (t2 <= t + 1e-12 && c2 <= accrued + 1e-12) return true;
    std::erase_if(front, [&](const auto& e) { return e.first >= t && e.second >= accrued; });
    front.emplace_back(t, accrued);
    return false;
  }

  void dfs(std::vector<uint8_t>& rem, int32_t state, double t, double accrued) {
    if (stopped_) return;
    bool done = true;
    for (uint8_t r : rem) done = done && r == 0;
    if (done) {
      if (accrued < best_ - 1e-12) {
        best_ = accrued;
        best_schedule_.slots = path_;
      }
      return;
    }
    if (lower_bound(rem, t, state, accrued) >= best_ - 1e-12) return;
    if (dominated(rem, state, t, accrued)) return;
    if (++nodes_ > opts_.max_nodes ||
        (nodes_ % 4096 == 0 &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() >
             opts_.time_limit_s)) {
      stopped_ = true;
      return;
    }
    struct Child {
      double lb;
      Slot slot;
      double end;
    };
    std::vector<Child> children;
    std::vector<int32_t> compat;
    for (const Type& ty : types_) {
      compat.clear();
      for (int32_t i : order_)
        if (rem[static_cast<size_t>(i)] > 0 &&
            (!ty.fast || inst_.requests[static_cast<size_t>(i)].adapter == ty.state))
          compat.push_back(i);
      if (compat.empty()) continue;
      const double run = duration(ty) + (ty.state != state ? inst_.timing.switch_cost : 0.0);
      // Start now, or when one more compatible request has arrived (later starts that add
      // no request to choose from are dominated by starting earlier).
      size_t arrived = 0;
      double previous = -INFINITY;  // the previous start tried
      while (arrived < compat.size()) {
        double start = std::max(t, inst_.requests[static_cast<size_t>(compat[arrived])].arrival);
        // Waiting longer only costs more: every request's own bound grows with the start.
        if (start > t && quick_bound(rem, start, ty.state, accrued) >= best_ - 1e-12) break;
        while (arrived < compat.size() &&
               inst_.requests[static_cast<size_t>(compat[arrived])].arrival <= start)
          ++arrived;
        const double end = start + run;
        // The children's quick bounds differ only in their batch members' terms.
        const double base = quick_bound(rem, end, ty.state, accrued);
        // Batches: all arrived compatible requests, or B of them (interchangeable ones once);
        // after a wait, only batches with a request that arrived during it (others could
        // have started earlier).
        for_each_batch(compat, arrived, previous, rem, [&](const std::vector<int32_t>& batch) {
          double lb = base;
          for (int32_t i : batch) {
            const auto ii = static_cast<size_t>(i);
            const int r = rem[ii];
            lb -= w_[ii] * own_finish(ii, r, end, ty.state);
            lb += w_[ii] * (r == 1 ? end : own_finish(ii, r - 1, end, ty.state));
          }
          if (lb < best_ - 1e-12) children.push_back({lb, Slot{ty.state, ty.fast, batch}, end});
        });
        previous = start;
      }
    }
    std::stable_sort(children.begin(), children.end(),
                     [](const Child& a, const Child& b) { return a.lb < b.lb; });
    for (const Child& c : children) {
      if (c.lb >= best_ - 1e-12) break;
      double acc = accrued;
      for (int32_t i : c.slot.batch) {
        if (--rem[static_cast<size_t>(i)] == 0)
          acc +=
              w_[static_cast<size_t>(i)] * (c.end - inst_.requests[static_cast<size_t>(i)].arrival);
      }
      path_.push_back(c.slot);
      dfs(rem, c.slot.state, c.end, acc);
      path_.pop_back();
      for (int32_t i : c.slot.batch) ++rem[static_cast<size_t>(i)];
      if (stopped_) return;
    }
  }

  // Calls f with every batch worth trying from the first `arrived` requests of `compat`.
  template <class F>
  void for_each_batch(const std::vector<int32_t>& compat, size_t arrived, double fresh_after,
                      const std::vector<uint8_t>& rem, F&& f) {
    const size_t B = static_cast<size_t>(inst_.max_batch);
    std::vector<int32_t> avail(compat.begin(),
                               compat.begin() + static_cast<std::ptrdiff_t>(arrived));
    if (avail.size() <= B) {
      f(avail);
      return;
    }
    // Groups of interchangeable requests: same adapter, tokens left and weight.
    std::vector<std::vector<int32_t>> groups;
    for (int32_t i : avail) {
      auto same = [&](const std::vector<int32_t>& g) {
        const size_t j = static_cast<size_t>(g.front());
        const size_t ii = static_cast<size_t>(i);
        return inst_.requests[j].adapter == inst_.requests[ii].adapter && rem[j] == rem[ii] &&
               w_[j] == w_[ii];
      };
      auto g = std::find_if(groups.begin(), groups.end(), same);
      if (g == groups.end())
        groups.push_back({i});
      else
        g->push_back(i);
    }
    // Within a group take the latest arrivals first: equivalent from here on, and they are
    // the ones that make a wait worth it.
    for (auto& g : groups) std::reverse(g.begin(), g.end());
    std::vector<int32_t> batch;
    std::function<void(size_t, size_t)> pick = [&](size_t g, size_t left) {
      if (left == 0) {
        const bool fresh = std::any_of(batch.begin(), batch.end(), [&](int32_t i) {
          return inst_.requests[static_cast<size_t>(i)].arrival > fresh_after;
        });
        if (fresh) f(batch);
        return;
      }
      if (g == groups.size()) return;
      size_t rest = 0;
      for (size_t h = g + 1; h < groups.size(); ++h) rest += groups[h].size();
      const size_t most = std::min(left, groups[g].size());
      for (size_t take = most + 1; take-- > 0;) {
        if (left - take > rest) break;
        for (size_t k = 0; k < take; ++k) batch.push_back(groups[g][k]);
        pick(g + 1, left - take);
        batch.resize(batch.size() - take);
      }
    };
    pick(0, B);
  }

  const SmallInstance& inst_;
  SearchOptions opts_;
  size_t n_;
  double t_min_, p_;
  std::vector<double> w_;
  std::vector<int32_t> order_;
  std::vector<Type> types_;
  std::vector<double> release_, weight_, proc_;
  std::vector<int> per_adapter_;
  std::unordered_map<std::string, std::vector<std::pair<double, double>>> seen_;
  std::vector<Slot> path_;
  double best_ = INFINITY;
  Schedule best_schedule_;
  int64_t nodes_ = 0;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

SearchResult solve_search(const SmallInstance& inst, Objective o, const SearchOptions& opts,
                          const Schedule* incumbent) {
  return Search(inst, o, opts).run(incumbent, o);
}

}  // namespace lorasched::bound
