// The exact worker-level optimum (core/bound/worker.hpp) against an independently written
// exhaustive search and against cases solved by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "core/bound/search.hpp"
#include "core/bound/worker.hpp"

namespace lorasched::bound {
namespace {

// Exhaustive search over every sequence of iterations: each step picks the weight state, fast
// or slow, and any non-empty subset of the unfinished requests that the state allows, and
// starts as soon as the previous iteration ended and the chosen requests arrived (starting
// later never helps). Two partial schedules with the same tokens left and the same weights:
// the one that is both earlier and cheaper so far dominates (what is left costs no more from
// an earlier time). Written apart from the MILP, from the rules of docs/bounds.md.
class Exhaustive {
 public:
  Exhaustive(const SmallInstance& inst, Objective o) : inst_(inst), o_(o) {
    t_min_ = std::min(inst.timing.merged, inst.timing.unmerged);
    if (inst.allow_mixed) t_min_ = std::min(t_min_, inst.timing.mixed);
  }
  double solve() {
    std::vector<int> left;
    for (const auto& r : inst_.requests) left.push_back(r.tokens);
    search(left, -1, 0.0, 0.0);
    return best_;
  }

 private:
  double w(size_t i) const {
    return o_ == Objective::per_token ? 1.0 / inst_.requests[i].tokens : 1.0;
  }
  void search(std::vector<int>& left, int weights, double t, double cost) {
    const size_t n = left.size();
    double optimistic = cost;
    bool all_done = true;
    for (size_t i = 0; i < n; ++i) {
      if (left[i] == 0) continue;
      all_done = false;
      const double a = inst_.requests[i].arrival;
      optimistic += w(i) * (std::max(t, a) + left[i] * t_min_ - a);
    }
    if (all_done) {
      best_ = std::min(best_, cost);
      return;
    }
    if (optimistic >= best_ - 1e-12) return;
    auto& seen = seen_[{left, weights}];
    for (const auto& [t2, c2] : seen)
      if (t2 <= t + 1e-12 && c2 <= cost + 1e-12) return;
    seen.emplace_back(t, cost);
    for (int next = -1; next < inst_.num_adapters; ++next) {
      for (int fast = 0; fast < 2; ++fast) {
        if (fast && next < 0) continue;
        if (!fast && next >= 0 && !inst_.allow_mixed) continue;
        const double run =
            fast ? inst_.timing.merged : (next < 0 ? inst_.timing.unmerged : inst_.timing.mixed);
        const double sw = next != weights ? inst_.timing.switch_cost : 0.0;
        for (unsigned mask = 1; mask < (1u << n); ++mask) {
          int size = 0;
          bool ok = true;
          double start = t;
          for (size_t i = 0; i < n && ok; ++i) {
            if (!(mask & (1u << i))) continue;
            ++size;
            ok = left[i] > 0 && (!fast || inst_.requests[i].adapter == next);
            start = std::max(start, inst_.requests[i].arrival);
          }
          if (!ok || size > inst_.max_batch) continue;
          const double end = start + sw + run;
          double c = cost;
          for (size_t i = 0; i < n; ++i)
            if ((mask & (1u << i)) && --left[i] == 0) c += w(i) * (end - inst_.requests[i].arrival);
          search(left, next, end, c);
          for (size_t i = 0; i < n; ++i)
            if (mask & (1u << i)) ++left[i];
        }
      }
    }
  }

  const SmallInstance& inst_;
  Objective o_;
  double t_min_;
  double best_ = INFINITY;
  std::map<std::pair<std::vector<int>, int>, std::vector<std::pair<double, double>>> seen_;
};

SmallInstance random_instance(std::mt19937_64& rng, const Timing& timing, bool mixed, int max_n) {
  SmallInstance inst;
  inst.timing = timing;
  inst.allow_mixed = mixed;
  inst.num_adapters = std::uniform_int_distribution<int>(1, 3)(rng);
  inst.max_batch = std::uniform_int_distribution<int>(1, 3)(rng);
  const int n = std::uniform_int_distribution<int>(2, max_n)(rng);
  for (int i = 0; i < n; ++i) {
    SmallRequest r;
    r.arrival = std::uniform_int_distribution<int>(0, 80)(rng) * 1e-3;
    r.adapter = std::uniform_int_distribution<int>(0, inst.num_adapters - 1)(rng);
    r.tokens = std::uniform_int_distribution<int>(1, 3)(rng);
    inst.requests.push_back(r);
  }
  return inst;
}

const Timing kTimings[] = {
    {0.015, 0.027, 0.027, 0.020},  // the artifact's
    {0.015, 0.027, 0.021, 0.020},  // mixed cheaper than unmerged
    {0.015, 0.018, 0.018, 0.060},  // switches dear, unmerged nearly as fast
};

// The MILP (CBC) is slow beyond a few requests: it is checked on the smallest instances.
TEST(WorkerMilp, MatchesExhaustiveSearchOnTinyInstances) {
  std::mt19937_64 rng(20240518);
  for (int k = 0; k < 6; ++k) {
    const SmallInstance inst = random_instance(rng, kTimings[k % 3], /*mixed=*/k % 4 != 3, 3);
    for (Objective o : {Objective::per_token, Objective::request}) {
      const double exact = Exhaustive(inst, o).solve();
      const MilpResult r = solve_milp(inst, o);
      ASSERT_EQ(r.status, "optimal") << "instance " << k;
      EXPECT_NEAR(r.objective, exact, 1e-9) << "instance " << k << " " << to_string(o);
      EXPECT_LE(r.bound, r.objective + 1e-12);
      EXPECT_NEAR(r.bound, exact, 1e-6) << "instance " << k;
      const Evaluation ev = evaluate(inst, r.schedule, o);
      ASSERT_TRUE(ev.feasible) << ev.problem;
      EXPECT_DOUBLE_EQ(ev.objective, r.objective);
    }
  }
}

TEST(WorkerSearch, MatchesExhaustiveSearch) {
  std::mt19937_64 rng(99);
  int compared = 0;
  for (int k = 0; k < 60; ++k) {
    const SmallInstance inst = random_instance(rng, kTimings[k % 3], /*mixed=*/k % 4 != 3, 6);
    for (Objective o : {Objective::per_token, Objective::request}) {
      const double exact = Exhaustive(inst, o).solve();
      const SearchResult r = solve_search(inst, o);
      ASSERT_TRUE(r.proven) << "instance " << k;
      EXPECT_NEAR(r.objective, exact, 1e-9) << "instance " << k << " " << to_string(o);
      EXPECT_DOUBLE_EQ(r.bound, r.objective);
      const Evaluation ev = evaluate(inst, r.schedule, o);
      ASSERT_TRUE(ev.feasible) << ev.problem;
      EXPECT_DOUBLE_EQ(ev.objective, r.objective);
      ++compared;
    }
  }
  EXPECT_EQ(compared, 120);
}

TEST(WorkerMilp, OneRequestMergesWhenItPays) {
  // 3 tokens: merged = 20 ms switch + 3 x 15 ms = 65 ms; unmerged = 3 x 27 = 81 ms.
  SmallInstance inst;
  inst.requests = {{0.010, 0, 3}};
  const MilpResult req = solve_milp(inst, Objective::request);
  EXPECT_EQ(req.status, "optimal");
  EXPECT_NEAR(req.objective, 0.065, 1e-12);
  const MilpResult tok = solve_milp(inst, Objective::per_token);
  EXPECT_NEAR(tok.objective, 0.065 / 3, 1e-12);
  ASSERT_EQ(req.schedule.slots.size(), 3u);
  for (const Slot& s : req.schedule.slots) {
    EXPECT_TRUE(s.fast);
    EXPECT_EQ(s.state, 0);
  }
  // One token: 20 + 15 = 35 ms merged against 27 unmerged.
  inst.requests = {{0, 0, 1}};
  EXPECT_NEAR(solve_milp(inst, Objective::request).objective, 0.027, 1e-12);
}

TEST(WorkerMilp, TwoAdaptersShareAnUnmergedIteration) {
  // Adapters 0 and 1, one token each, both at t = 0, batch 2: one unmerged iteration (27 ms
  // each, 54 ms) beats merging one then the other (35 + 70 = 105 ms).
  SmallInstance inst;
  inst.num_adapters = 2;
  inst.max_batch = 2;
  inst.requests = {{0, 0, 1}, {0, 1, 1}};
  const MilpResult r = solve_milp(inst, Objective::request);
  EXPECT_NEAR(r.objective, 0.054, 1e-12);
  // Same adapter, two tokens each: merged 20 + 15 + 15 = 50 ms each (100) against 54 each.
  inst.requests = {{0, 1, 2}, {0, 1, 2}};
  EXPECT_NEAR(solve_milp(inst, Objective::request).objective, 0.100, 1e-12);
  // Batch limit 1: merged, one after the other: 35 + 50 ms for one token each (85), against
  // unmerged 27 + 54 (81).
  inst.max_batch = 1;
  inst.requests = {{0, 1, 1}, {0, 1, 1}};
  EXPECT_NEAR(solve_milp(inst, Objective::request).objective, 0.081, 1e-12);
}

TEST(WorkerMilp, WaitsForAnArrivalWhenThatPays) {
  // Request 0 (adapter 0, 3 tokens) at t = 0 and request 1 (adapter 0, 3 tokens) at t = 1 ms:
  // waiting 1 ms and running both merged finishes both at 1 + 20 + 45 = 66 ms (132 ms in all);
  // starting at once (merged) puts request 1 in only after the first iteration.
  SmallInstance inst;
  inst.requests = {{0, 0, 3}, {0.001, 0, 3}};
  const MilpResult r = solve_milp(inst, Objective::request);
  EXPECT_NEAR(r.objective, 0.066 + 0.065, 1e-12);
  ASSERT_FALSE(r.schedule.slots.empty());
  EXPECT_EQ(r.schedule.slots[0].batch.size(), 2u);
}

TEST(WorkerMilp, EvaluateRejectsWhatTheEngineCannotRun) {
  SmallInstance inst;
  inst.num_adapters = 2;
  inst.max_batch = 2;
  inst.allow_mixed = false;
  inst.requests = {{0, 0, 1}, {0, 1, 1}};
  auto problem = [&](Schedule s) { return evaluate(inst, s, Objective::request); };
  EXPECT_FALSE(problem({{{0, true, {0, 1}}}}).feasible);        // merged batch of two adapters
  EXPECT_FALSE(problem({{{kClean, true, {0, 1}}}}).feasible);   // merged with nothing merged
  EXPECT_FALSE(problem({{{0, false, {0, 1}}}}).feasible);       // mixed, not allowed here
  EXPECT_FALSE(problem({{{kClean, false, {0}}}}).feasible);     // request 1 never runs
  EXPECT_FALSE(problem({{{kClean, false, {0, 0}}}}).feasible);  // listed twice
  inst.max_batch = 1;
  EXPECT_FALSE(problem({{{kClean, false, {0, 1}}}}).feasible);  // over the batch limit
  inst.max_batch = 2;
  const Evaluation ok = problem({{{kClean, false, {0, 1}}}});
  ASSERT_TRUE(ok.feasible) << ok.problem;
  EXPECT_NEAR(ok.objective, 0.054, 1e-12);
  // A switch into merged and back: 20 + 15, then 20 + 27.
  const Evaluation two = problem({{{0, true, {0}}, {kClean, false, {1}}}});
  ASSERT_TRUE(two.feasible) << two.problem;
  EXPECT_NEAR(two.finish[0], 0.035, 1e-12);
  EXPECT_NEAR(two.finish[1], 0.082, 1e-12);
}

}  // namespace
}  // namespace lorasched::bound
