// The full-trace relaxation (core/bound/relaxation.hpp): its machine-scheduling core against
// hand-solved cases and enumeration, and the whole bound below the exact small-instance optimum.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/bound/relaxation.hpp"
#include "core/bound/search.hpp"
#include "core/bound/worker.hpp"
#include "core/exec/costmodel.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/model/presets.hpp"

namespace lorasched::bound {
namespace {

TEST(Relaxation, PreemptiveWeightedOrderHandCase) {
  // p = 1. A (weight 1) at 0, B (weight 10) at 0.5: A runs [0, 0.5], B [0.5, 1.5], A [1.5, 2].
  // M_A = 0.5 * 0.25 + 0.5 * 1.75 = 1.0, M_B = 1.0: 1 * 1 + 10 * 1 = 11.
  EXPECT_NEAR(min_weighted_mean_busy_time({0.0, 0.5}, {1.0, 10.0}, 1.0), 11.0, 1e-12);
  // Idle gap: one job at 3 with weight 2: M = 3.5.
  EXPECT_NEAR(min_weighted_mean_busy_time({3.0}, {2.0}, 1.0), 7.0, 1e-12);
}

TEST(Relaxation, NeverAboveAnyNonPreemptiveOrder) {
  // Every non-preemptive order is a preemptive schedule; with all jobs released together the
  // weighted order is optimal, so the minimum equals the best order.
  std::mt19937_64 rng(7);
  for (int k = 0; k < 30; ++k) {
    const int n = std::uniform_int_distribution<int>(1, 6)(rng);
    const bool together = k % 3 == 0;
    std::vector<double> r(n), w(n);
    for (int j = 0; j < n; ++j) {
      r[j] = together ? 0.0 : std::uniform_int_distribution<int>(0, 6)(rng) * 0.5;
      w[j] = std::uniform_int_distribution<int>(1, 9)(rng);
    }
    const double p = 1.0;
    std::vector<int> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    double best = INFINITY;
    do {
      double t = 0, sum = 0;
      for (int j : perm) {
        t = std::max(t, r[j]);
        sum += w[j] * (t + p / 2);
        t += p;
      }
      best = std::min(best, sum);
    } while (std::next_permutation(perm.begin(), perm.end()));
    const double lb = min_weighted_mean_busy_time(r, w, p);
    EXPECT_LE(lb, best + 1e-9) << "case " << k;
    if (together) {
      EXPECT_NEAR(lb, best, 1e-9) << "case " << k;
    }
  }
}

TEST(Relaxation, FloorsOfTheArtifactTiming) {
  const auto model = make_cost_model("dlora-artifact", model_preset("llama2-7b"));
  const TokenTimes t = token_times(*model, 4, {{0, 100, 3}});
  EXPECT_DOUBLE_EQ(t.t_min, 0.015);
  EXPECT_DOUBLE_EQ(t.rate_max, 4 / 0.015);
  EXPECT_DOUBLE_EQ(t.first[0], 0.015);
}

TEST(Relaxation, BelowTheExactOptimumOfSmallInstances) {
  const auto model = make_cost_model("dlora-artifact", model_preset("llama2-7b"));
  std::mt19937_64 rng(11);
  for (int k = 0; k < 12; ++k) {
    SmallInstance inst;
    inst.num_adapters = 2;
    inst.max_batch = std::uniform_int_distribution<int>(1, 3)(rng);
    std::vector<TraceRequest> trace;
    const int n = std::uniform_int_distribution<int>(2, 6)(rng);
    for (int i = 0; i < n; ++i) {
      SmallRequest r;
      r.arrival = std::uniform_int_distribution<int>(0, 60)(rng) * 1e-3;
      r.adapter = i % 2;
      r.tokens = std::uniform_int_distribution<int>(1, 4)(rng);
      inst.requests.push_back(r);
      trace.push_back({r.arrival, 16, r.tokens});
    }
    const TokenTimes t = token_times(*model, inst.max_batch, trace);
    const RelaxationResult lb = token_relaxation(trace, t);
    // The optimum by the branch and bound (test_worker_milp.cpp checks it against exhaustive
    // search; CBC takes minutes on instances this size).
    const SearchResult tok = solve_search(inst, Objective::per_token);
    const SearchResult req = solve_search(inst, Objective::request);
    ASSERT_TRUE(tok.proven && req.proven) << "instance " << k;
    const double opt_tok = tok.objective;
    const double opt_req = req.objective;
    EXPECT_LE(lb.per_token_sum, opt_tok + 1e-12) << "instance " << k;
    EXPECT_LE(lb.request_sum, opt_req + 1e-12) << "instance " << k;
    // Not vacuous: a token-rate relaxation loses switches and the chain of a request's own
    // tokens, but keeps a fair share of the optimum here.
    EXPECT_GT(lb.per_token_sum, 0.3 * opt_tok) << "instance " << k;
  }
}

}  // namespace
}  // namespace lorasched::bound
