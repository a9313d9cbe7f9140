// Arrival processes, adapter popularity and length models of generated workloads.
#include <algorithm>
#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "core/workload/workload.hpp"
#include "tests/unit/workload/workload_test_util.hpp"

namespace lorasched {
namespace {

using test::adapter_shares;
using test::expect_share_near;
using test::gap_stats;

WorkloadSpec renewal(const std::string& kind, double rate, double cv, int64_t n) {
  WorkloadSpec s;
  s.arrival = kind;
  s.rate = rate;
  s.cv = cv;
  s.num_requests = n;
  return s;
}

void expect_well_formed(const std::vector<RequestSpec>& reqs, int32_t num_adapters) {
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(reqs[i].id, static_cast<int64_t>(i));
    if (i > 0) {
      EXPECT_LE(reqs[i - 1].arrival, reqs[i].arrival);
    }
    EXPECT_GE(reqs[i].adapter, 0);
    EXPECT_LT(reqs[i].adapter, num_adapters);
    EXPECT_GE(reqs[i].prompt_tokens, 1);
    EXPECT_GE(reqs[i].output_tokens, 1);
  }
}

TEST(Arrivals, PoissonMeanRateAndCv) {
  const auto reqs = generate_workload(renewal("poisson", 5.0, 1.0, 20000), 4, 1);
  ASSERT_EQ(reqs.size(), 20000u);
  expect_well_formed(reqs, 4);
  const auto st = gap_stats(reqs);
  EXPECT_NEAR(st.mean, 0.2, 0.2 * 0.035);  // 5 standard errors
  EXPECT_NEAR(st.cv, 1.0, 0.05);
}

TEST(Arrivals, GammaMeanRateAndCv) {
  for (const double cv : {0.5, 2.0}) {
    const auto reqs = generate_workload(renewal("gamma", 10.0, cv, 20000), 4, 7);
    ASSERT_EQ(reqs.size(), 20000u);
    const auto st = gap_stats(reqs);
    // Standard errors: mean cv/sqrt(n); the CV estimate about 0.04 at cv 2 (kurtosis 27).
    EXPECT_NEAR(st.mean, 0.1, 0.1 * 5 * cv / std::sqrt(20000.0)) << "cv " << cv;
    EXPECT_NEAR(st.cv, cv, cv == 2.0 ? 0.2 : 0.03) << "cv " << cv;
  }
}

TEST(Arrivals, DurationStopsAndFirstLimitWins) {
  WorkloadSpec s = renewal("poisson", 50.0, 1.0, 0);
  s.num_requests.reset();
  s.duration_s = 40.0;
  const auto reqs = generate_workload(s, 2, 3);
  EXPECT_LT(reqs.back().arrival, 40.0);
  EXPECT_NEAR(static_cast<double>(reqs.size()), 2000.0, 5 * std::sqrt(2000.0));
  s.num_requests = 100;  // reached long before 40 s
  EXPECT_EQ(generate_workload(s, 2, 3).size(), 100u);
  s.num_requests = 1000000;  // duration reached first
  EXPECT_EQ(generate_workload(s, 2, 3).size(), reqs.size());
}

TEST(Arrivals, DeterministicAndIndependentStreams) {
  WorkloadSpec s = renewal("gamma", 3.0, 1.5, 500);
  s.popularity.kind = "zipf";
  s.prompt = {"uniform", 0, 10, 500, 0, 0, {}};
  const auto a = generate_workload(s, 8, 42);
  const auto b = generate_workload(s, 8, 42);
  const auto c = generate_workload(s, 8, 43);
  ASSERT_EQ(a.size(), b.size());
  bool any_diff = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival, b[i].arrival);
    EXPECT_EQ(a[i].adapter, b[i].adapter);
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
    any_diff |= a[i].arrival != c[i].arrival;
  }
  EXPECT_TRUE(any_diff);

  // Changing the length model leaves arrivals and adapters alone; changing the popularity
  // leaves arrivals and lengths alone.
  WorkloadSpec s2 = s;
  s2.prompt = {"lognormal", 0, 1, 4096, 300, 1.0, {}};
  s2.output = {"uniform", 0, 1, 64, 0, 0, {}};
  const auto d = generate_workload(s2, 8, 42);
  WorkloadSpec s3 = s;
  s3.popularity.kind = "uniform";
  const auto e = generate_workload(s3, 8, 42);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival, d[i].arrival);
    EXPECT_EQ(a[i].adapter, d[i].adapter);
    EXPECT_EQ(a[i].arrival, e[i].arrival);
    EXPECT_EQ(a[i].prompt_tokens, e[i].prompt_tokens);
  }
}

TEST(Popularity, UniformShares) {
  const int32_t n = 8;
  const auto reqs = generate_workload(renewal("poisson", 1.0, 1.0, 20000), n, 5);
  const auto share = adapter_shares(reqs, n);
  for (int32_t i = 0; i < n; ++i)
    expect_share_near(share[static_cast<size_t>(i)], 1.0 / n, reqs.size(), 5,
                      "adapter " + std::to_string(i));
}

TEST(Popularity, ZipfShares) {
  const int32_t n = 8;
  for (const double zs : {0.5, 1.0, 2.0}) {
    WorkloadSpec s = renewal("poisson", 1.0, 1.0, 20000);
    s.popularity.kind = "zipf";
    s.popularity.zipf_s = zs;
    const auto reqs = generate_workload(s, n, 9);
    const auto share = adapter_shares(reqs, n);
    double total = 0;
    for (int32_t i = 0; i < n; ++i) total += std::pow(i + 1.0, -zs);
    for (int32_t i = 0; i < n; ++i)
      expect_share_near(share[static_cast<size_t>(i)], std::pow(i + 1.0, -zs) / total, reqs.size(),
                        5, "s " + std::to_string(zs) + " adapter " + std::to_string(i));
  }
}

TEST(Popularity, DriftingHotSetMovesAtThePeriod) {
  const int32_t n = 8;
  WorkloadSpec s = renewal("poisson", 500.0, 1.0, 0);
  s.num_requests.reset();
  s.duration_s = 40.0;
  s.popularity.kind = "drifting";
  s.popularity.hot_count = 2;
  s.popularity.hot_share = 0.8;
  s.popularity.drift_period_s = 10.0;
  const auto reqs = generate_workload(s, n, 11);
  // Epoch e = floor(t / 10) has hot set {2e, 2e+1}.
  for (int epoch = 0; epoch < 4; ++epoch) {
    std::vector<RequestSpec> in;
    for (const auto& r : reqs)
      if (std::floor(r.arrival / 10.0) == epoch) in.push_back(r);
    ASSERT_GT(in.size(), 4000u);
    const auto share = adapter_shares(in, n);
    for (int32_t a = 0; a < n; ++a) {
      const bool hot = a / 2 == epoch;
      expect_share_near(share[static_cast<size_t>(a)], hot ? 0.4 : 0.2 / 6, in.size(), 5,
                        "epoch " + std::to_string(epoch) + " adapter " + std::to_string(a));
    }
  }
  // Right across the boundary: the last requests before 10 s and the first after it.
  int before_hot = 0, after_hot = 0, before = 0, after = 0;
  for (const auto& r : reqs) {
    if (r.arrival >= 9.0 && r.arrival < 10.0) ++before, before_hot += r.adapter <= 1;
    if (r.arrival >= 10.0 && r.arrival < 11.0)
      ++after, after_hot += r.adapter == 2 || r.adapter == 3;
  }
  EXPECT_GT(before_hot, before * 0.7);
  EXPECT_GT(after_hot, after * 0.7);
}

TEST(Popularity, DriftingWrapsAndAllHot) {
  WorkloadSpec s = renewal("poisson", 10.0, 1.0, 2000);
  s.popularity.kind = "drifting";
  s.popularity.hot_count = 3;  // 3 does not divide 5: the hot set wraps around
  s.popularity.drift_period_s = 5.0;
  s.popularity.hot_share = 1.0;  // only hot adapters
  const auto reqs = generate_workload(s, 5, 2);
  for (const auto& r : reqs) {
    const auto epoch = static_cast<int64_t>(std::floor(r.arrival / 5.0));
    const int64_t offset = ((r.adapter - epoch * 3) % 5 + 5) % 5;  // position from the hot base
    EXPECT_LT(offset, 3) << "t " << r.arrival << " adapter " << r.adapter;
  }
  s.popularity.hot_count = 5;  // everything hot: uniform
  const auto all = generate_workload(s, 5, 2);
  std::set<int32_t> seen;
  for (const auto& r : all) seen.insert(r.adapter);
  EXPECT_EQ(seen.size(), 5u);
}

TEST(Lengths, FixedUniformLognormalAndClipping) {
  WorkloadSpec s = renewal("poisson", 1.0, 1.0, 20000);
  s.prompt = {"uniform", 0, 10, 20, 0, 0, {}};
  s.output = {"lognormal", 0, 2, 5000, 100, 0.5, {}};
  auto reqs = generate_workload(s, 1, 3);
  std::vector<int32_t> outs;
  std::set<int32_t> prompts;
  for (const auto& r : reqs) {
    prompts.insert(r.prompt_tokens);
    outs.push_back(r.output_tokens);
    EXPECT_GE(r.output_tokens, 2);
  }
  EXPECT_EQ(*prompts.begin(), 10);
  EXPECT_EQ(*prompts.rbegin(), 20);
  EXPECT_EQ(prompts.size(), 11u);
  std::nth_element(outs.begin(), outs.begin() + outs.size() / 2, outs.end());
  EXPECT_NEAR(outs[outs.size() / 2], 100, 2);

  s.output = {"lognormal", 0, 50, 150, 100, 2.0, {}};  // wide: clipped to [50, 150]
  s.max_prompt_tokens = 15;
  reqs = generate_workload(s, 1, 3);
  int at_min = 0, at_max = 0;
  for (const auto& r : reqs) {
    EXPECT_LE(r.prompt_tokens, 15);
    EXPECT_GE(r.output_tokens, 50);
    EXPECT_LE(r.output_tokens, 150);
    at_min += r.output_tokens == 50;
    at_max += r.output_tokens == 150;
  }
  EXPECT_GT(at_min, 5000);
  EXPECT_GT(at_max, 5000);

  s.prompt = {"fixed", 77, 1, 1, 0, 0, {}};
  s.output = {"fixed", 9, 1, 1, 0, 0, {}};
  s.max_output_tokens = 5;
  for (const auto& r : generate_workload(s, 1, 3)) {
    EXPECT_EQ(r.prompt_tokens, 15);  // 77 clipped by max_prompt_tokens
    EXPECT_EQ(r.output_tokens, 5);
  }
}

}  // namespace
}  // namespace lorasched
