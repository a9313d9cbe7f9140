// dLoRA's artifact-style generator: function popularity, map_model, per-interval Gamma
// processes, request quotas, determinism.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/common/error.hpp"
#include "core/workload/artifact.hpp"
#include "core/workload/numpy_legacy.hpp"
#include "core/workload/workload.hpp"
#include "tests/unit/workload/workload_test_util.hpp"

namespace lorasched {
namespace {

using test::adapter_shares;
using test::expect_share_near;
using test::read_file;
using test::write_file;

// Counts with a distinct total per function: function f has total (f + 1), so the most
// popular function is the last one.
FunctionCounts ascending(int32_t num_functions) {
  FunctionCounts c(static_cast<size_t>(num_functions), std::vector<double>(2, 0.0));
  for (int32_t f = 0; f < num_functions; ++f) {
    c[static_cast<size_t>(f)][0] = f + 0.25;
    c[static_cast<size_t>(f)][1] = 0.75;
  }
  return c;
}

TEST(ArtifactMapping, Stride32On8AdaptersPutsTop32OnAdapter0) {
  const FunctionCounts c = ascending(512);
  const auto order = functions_by_popularity(c);
  ASSERT_EQ(order.size(), 512u);
  EXPECT_EQ(order.front(), 511);
  EXPECT_EQ(order.back(), 0);
  const auto adapter = map_functions_to_adapters(c, 8, 32);
  for (size_t rank = 0; rank < 512; ++rank) {
    const int32_t f = order[rank];
    EXPECT_EQ(adapter[static_cast<size_t>(f)], static_cast<int32_t>(rank / 32 % 8)) << rank;
  }
  for (size_t rank = 0; rank < 32; ++rank) EXPECT_EQ(adapter[static_cast<size_t>(order[rank])], 0);
  EXPECT_EQ(adapter[static_cast<size_t>(order[32])], 1);
  EXPECT_EQ(adapter[static_cast<size_t>(order[256])], 0);  // wraps round-robin
}

TEST(ArtifactMapping, Stride1RoundRobinAndTiesByIndex) {
  FunctionCounts c(6, std::vector<double>{1.0});
  c[4][0] = 9.0;  // most popular; the rest tie and keep index order
  EXPECT_EQ(functions_by_popularity(c), (std::vector<int32_t>{4, 0, 1, 2, 3, 5}));
  EXPECT_EQ(map_functions_to_adapters(c, 4, 1), (std::vector<int32_t>{1, 2, 3, 0, 0, 1}));
  EXPECT_EQ(map_functions_to_adapters(c, 4, 2), (std::vector<int32_t>{0, 1, 1, 2, 0, 2}));
}

TEST(ArtifactCounts, GeneratedAreHeavyTailedAndSeeded) {
  ArtifactSpec a;
  a.num_functions = 256;
  a.num_bins = 10;
  a.bin_minutes = 1;
  a.interval_minutes = 5;
  const auto c = generate_function_counts(a, 3);
  ASSERT_EQ(c.size(), 256u);
  ASSERT_EQ(c[0].size(), 10u);
  std::vector<double> total;
  for (const auto& row : c) total.push_back(std::accumulate(row.begin(), row.end(), 0.0));
  const auto [lo, hi] = std::minmax_element(total.begin(), total.end());
  EXPECT_GT(*hi / *lo, 1e6);  // sigma 3: many orders of magnitude
  EXPECT_EQ(generate_function_counts(a, 3), c);
  EXPECT_NE(generate_function_counts(a, 4), c);

  a.function_popularity = "zipf";
  a.intensity_sigma = 0;
  const auto z = generate_function_counts(a, 3);
  EXPECT_DOUBLE_EQ(z[0][0] / z[9][0], 10.0);  // 1/(f+1)^1
}

TEST(ArtifactCounts, ApportionSumsExactly) {
  using workload_detail::apportion;
  EXPECT_EQ(apportion(10, {1, 1, 1}), (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(apportion(7, {0, 2, 0, 5}), (std::vector<int64_t>{0, 2, 0, 5}));
  EXPECT_EQ(apportion(1, {0, 0.1, 0.2}), (std::vector<int64_t>{0, 0, 1}));
  const auto p = apportion(400, {3.3, 0, 1e-9, 7.1, 2.2});
  EXPECT_EQ(std::accumulate(p.begin(), p.end(), int64_t{0}), 400);
  EXPECT_EQ(p[1], 0);
}

WorkloadSpec artifact_spec(int64_t n, int32_t stride) {
  WorkloadSpec s;
  s.arrival = "artifact";
  s.rate = 4.0;
  s.cv = 1.0;
  s.num_requests = n;
  s.artifact.num_functions = 64;
  s.artifact.num_bins = 60;
  s.artifact.function_sigma = 1.0;
  s.artifact.map_stride = stride;
  return s;
}

TEST(Artifact, AdapterSharesFollowTheMappedPopularity) {
  const int32_t n = 8;
  for (const int32_t stride : {1, 4}) {
    const WorkloadSpec s = artifact_spec(20000, stride);
    const auto reqs = generate_workload(s, n, 21);
    ASSERT_EQ(reqs.size(), 20000u);
    // One interval (60 one-minute bins): expected share = the adapter's invocations / all.
    const auto c = generate_function_counts(s.artifact, 21);
    const auto map = map_functions_to_adapters(c, n, stride);
    std::vector<double> inv(n, 0.0);
    for (size_t f = 0; f < c.size(); ++f)
      inv[static_cast<size_t>(map[f])] += std::accumulate(c[f].begin(), c[f].end(), 0.0);
    const double total = std::accumulate(inv.begin(), inv.end(), 0.0);
    const auto share = adapter_shares(reqs, n);
    for (int32_t a = 0; a < n; ++a)
      expect_share_near(share[static_cast<size_t>(a)], inv[static_cast<size_t>(a)] / total,
                        reqs.size(), 5, fmt::format("stride {} adapter {}", stride, a));
    // The total rate is `rate`.
    EXPECT_NEAR(static_cast<double>(reqs.size()) / reqs.back().arrival, 4.0, 4.0 * 0.04);
  }
}

TEST(Artifact, IntervalsQuotasAndTimeAdvance) {
  // Two 2-bin intervals. f1 (6 invocations) ranks before f0 (2), so with stride 1 f1 goes to
  // adapter 0 and f0 to adapter 1. Interval 0 holds only f0, interval 1 only f1 (3x as many).
  const auto path = write_file("counts.csv",
                               "function,bin0,bin1,bin2,bin3\n"
                               "f0,1,1,0,0\n"
                               "f1,0,0,3,3\n");
  WorkloadSpec s;
  s.arrival = "artifact";
  s.rate = 2.0;
  s.num_requests = 4000;
  s.artifact.function_counts = path;
  s.artifact.bin_minutes = 1;
  s.artifact.interval_minutes = 2;
  s.artifact.quota = "invocations";
  const auto reqs = generate_workload(s, 2, 5);
  ASSERT_EQ(reqs.size(), 4000u);
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(reqs[i].adapter, 1) << i;  // 1/4 of 4000
  for (size_t i = 1000; i < 4000; ++i) ASSERT_EQ(reqs[i].adapter, 0) << i;
  // Each interval runs at the total rate 2/s: ~500 s, then ~1500 s.
  EXPECT_NEAR(reqs[999].arrival, 500.0, 500.0 * 0.15);
  EXPECT_NEAR(reqs[3999].arrival - reqs[999].arrival, 1500.0, 1500.0 * 0.1);

  // rate_share "window": interval 0's adapter rate is 2 * 2/8 = 0.5/s, interval 1's 1.5/s.
  s.artifact.rate_share = "window";
  const auto w = generate_workload(s, 2, 5);
  EXPECT_NEAR(w[999].arrival, 2000.0, 2000.0 * 0.15);
  EXPECT_NEAR(w[3999].arrival - w[999].arrival, 2000.0, 2000.0 * 0.1);

  s.duration_s = 100.0;  // cuts the first interval
  s.artifact.rate_share = "interval";
  const auto cut = generate_workload(s, 2, 5);
  EXPECT_LT(cut.back().arrival, 100.0);
  EXPECT_NEAR(static_cast<double>(cut.size()), 200.0, 5 * std::sqrt(200.0));
}

TEST(ArtifactCounts, EvenSplitIsTheArtifacts) {
  // trace.py 181, 191-193: num_reqs // intervals each, +1 for the first num_reqs % intervals.
  using workload_detail::even_split;
  EXPECT_EQ(even_split(400, 6), (std::vector<int64_t>{67, 67, 67, 67, 66, 66}));
  EXPECT_EQ(even_split(20, 3), (std::vector<int64_t>{7, 7, 6}));
  EXPECT_EQ(even_split(2, 4), (std::vector<int64_t>{1, 1, 0, 0}));
  EXPECT_EQ(even_split(9, 1), (std::vector<int64_t>{9}));
}

TEST(Artifact, EvenQuotaIgnoresTheIntervalsInvocations) {
  // The counts of IntervalsQuotasAndTimeAdvance, under the artifact's default even split:
  // 2000 requests in each interval although interval 1 has 3x the invocations; at the total
  // rate 2/s both intervals then last about 1000 s.
  const auto path = write_file("counts-even.csv",
                               "function,bin0,bin1,bin2,bin3\n"
                               "f0,1,1,0,0\n"
                               "f1,0,0,3,3\n");
  WorkloadSpec s;
  s.arrival = "artifact";
  s.rate = 2.0;
  s.num_requests = 4000;
  s.artifact.function_counts = path;
  s.artifact.bin_minutes = 1;
  s.artifact.interval_minutes = 2;
  const auto reqs = generate_workload(s, 2, 5);
  ASSERT_EQ(reqs.size(), 4000u);
  for (size_t i = 0; i < 2000; ++i) ASSERT_EQ(reqs[i].adapter, 1) << i;
  for (size_t i = 2000; i < 4000; ++i) ASSERT_EQ(reqs[i].adapter, 0) << i;
  EXPECT_NEAR(reqs[1999].arrival, 1000.0, 1000.0 * 0.1);
  EXPECT_NEAR(reqs[3999].arrival - reqs[1999].arrival, 1000.0, 1000.0 * 0.1);

  // An interval without invocations that the even split gives requests: the artifact's
  // generator fails (an empty heap); lorasched refuses with the reason.
  const auto gap = write_file("counts-gap.csv",
                              "function,bin0,bin1,bin2,bin3\n"
                              "f0,1,1,0,0\n");
  s.artifact.function_counts = gap;
  try {
    (void)generate_workload(s, 2, 5);
    ADD_FAILURE() << "an empty interval with a quota was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("interval 1 (minutes 2 to 4 of the window) has no "
                                         "invocations but gets 2000 requests"),
              std::string::npos)
        << e.what();
  }
  s.artifact.quota = "invocations";  // gives that interval nothing
  EXPECT_EQ(generate_workload(s, 2, 5).size(), 4000u);
}

TEST(NumpyLegacy, MatchesNumpysGlobalGenerator) {
  // Expected values: /usr/bin/python3 (numpy 1.24.2), for each line
  //   np.random.seed(0); np.random.gamma(shape, 1.0, size=5)
  // and np.random.seed(0); np.random.random_sample(3) / np.random.standard_normal(3).
  const std::vector<std::pair<double, std::vector<double>>> gamma = {
      {1.0,
       {0.79587450816311, 1.2559307629658378, 0.9232231458040688, 0.7872011523172707,
        0.5510484910954992}},
      {0.25,
       {0.09071918829878774, 0.13200410192278483, 0.032214286927961876, 0.03666557364132632,
        2.3049452121728047}},
      {4.0,
       {8.188041391473265, 4.487523993451098, 8.531345056954045, 2.0956261279672685,
        3.4725477198165065}}};
  NumpyLegacyRandom r;
  for (const auto& [shape, want] : gamma) {
    r.seed(0);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(r.gamma(shape, 1.0), want[i]) << shape << i;
  }
  r.seed(0);
  for (double u : {0.5488135039273248, 0.7151893663724195, 0.6027633760716439})
    EXPECT_EQ(r.random_double(), u);
  r.seed(0);
  for (double z : {1.764052345967664, 0.4001572083672233, 0.9787379841057392})
    EXPECT_EQ(r.gauss(), z);
}

// Expected arrivals computed by the artifact's own generator (Trace.replay_to_workload at
// 75f1c43) on tests/fixtures/artifact-workload/counts.csv: make_expected.py there.
struct ExactCase {
  const char* name;
  int32_t adapters;
  int64_t requests;
  double cv;
  int32_t stride;
};

std::vector<std::pair<double, int32_t>> read_expected(const std::filesystem::path& path) {
  std::istringstream in(read_file(path));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "arrival_s,adapter");
  std::vector<std::pair<double, int32_t>> out;
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    out.emplace_back(std::strtod(line.substr(0, comma).c_str(), nullptr),
                     std::stoi(line.substr(comma + 1)));
  }
  return out;
}

TEST(ArtifactExact, ReseededGapsReproduceTheArtifactsArrivals) {
  const auto dir = std::filesystem::path(LORASCHED_SOURCE_DIR) / "tests/fixtures/artifact-workload";
  for (const ExactCase& c : {ExactCase{"cv1", 3, 20, 1.0, 2}, ExactCase{"cv2", 3, 25, 2.0, 1},
                             ExactCase{"cv05", 2, 31, 0.5, 3}}) {
    const auto want = read_expected(dir / fmt::format("expected-{}.csv", c.name));
    ASSERT_EQ(want.size(), static_cast<size_t>(c.requests)) << c.name;
    WorkloadSpec s;
    s.arrival = "artifact";
    s.rate = 4.0;
    s.cv = c.cv;
    s.num_requests = c.requests;
    s.artifact.function_counts = dir / "counts.csv";
    s.artifact.bin_minutes = 1;
    s.artifact.interval_minutes = 2;
    s.artifact.map_stride = c.stride;
    s.artifact.gaps = "numpy-reseed";
    for (const uint64_t seed : {1u, 2u}) {  // the artifact's arrivals ignore the seed
      const auto got = generate_workload(s, c.adapters, seed);
      ASSERT_EQ(got.size(), want.size()) << c.name;
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got[i].arrival, want[i].first) << c.name << " request " << i;
        EXPECT_EQ(got[i].adapter, want[i].second) << c.name << " request " << i;
      }
    }
  }
}

TEST(Artifact, ReseededGapsAreSharedDrawsScaledByRate) {
  // The structure behind the exact case: in one interval every adapter restarts NumPy's
  // generator at seed 0, so within its first batch adapter m's k-th gap is the k-th
  // standard-exponential draw (cv 1) divided by its rate. Two adapters, one interval,
  // invocations 3:1 at total rate 4/s: rates 3 and 1, batches int(3 * 60 * 1.2) = 216 and
  // int(1 * 60 * 1.2) = 72 gaps.
  const auto path = write_file("counts-31.csv",
                               "function,bin0\n"
                               "f0,3\n"
                               "f1,1\n");
  WorkloadSpec s;
  s.arrival = "artifact";
  s.rate = 4.0;
  s.num_requests = 60;
  s.artifact.function_counts = path;
  s.artifact.gaps = "numpy-reseed";
  const auto reqs = generate_workload(s, 2, 9);
  std::vector<std::vector<double>> arrivals(2);
  for (const auto& r : reqs) arrivals[static_cast<size_t>(r.adapter)].push_back(r.arrival);
  ASSERT_GE(arrivals[1].size(), 5u);
  NumpyLegacyRandom np;
  np.seed(0);
  double t0 = 0, t1 = 0;
  for (size_t k = 0; k < arrivals[1].size(); ++k) {
    const double e = np.standard_exponential();
    t0 += (1.0 / 3.0) * e;  // numpy: scale * draw, scale = cv^2 / rate
    t1 += 1.0 * e;
    EXPECT_EQ(arrivals[1][k], t1) << k;
    if (k < arrivals[0].size()) {
      EXPECT_EQ(arrivals[0][k], t0) << k;
    }
  }
}

TEST(Artifact, SameSeedSameCsvDifferentSeedDifferent) {
  WorkloadSpec s = artifact_spec(400, 8);
  s.cv = 2.0;
  s.artifact.interval_minutes = 10;  // 6 intervals
  s.prompt = {"trace", 0, 1, 1, 0, 0, test::fixture("azure_conv_300.csv")};
  s.output = {"trace", 0, 1, 1, 0, 0, test::fixture("azure_conv_300.csv")};
  const auto dir = test::scratch_dir();
  write_adapter_trace(dir / "a.csv", generate_workload(s, 8, 1));
  write_adapter_trace(dir / "b.csv", generate_workload(s, 8, 1));
  write_adapter_trace(dir / "c.csv", generate_workload(s, 8, 2));
  const std::string a = read_file(dir / "a.csv");
  EXPECT_GT(a.size(), 400u * 10);
  EXPECT_EQ(a, read_file(dir / "b.csv"));
  EXPECT_NE(a, read_file(dir / "c.csv"));
}

}  // namespace
}  // namespace lorasched
