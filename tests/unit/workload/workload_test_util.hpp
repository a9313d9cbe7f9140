// Helpers shared by the workload tests.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

#include "core/workload/workload.hpp"

namespace lorasched::test {

inline std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(LORASCHED_SOURCE_DIR) / "tests/fixtures/traces" / name;
}

// A per-process scratch folder (ctest may run tests of this binary in parallel).
inline std::filesystem::path scratch_dir() {
  const auto dir = std::filesystem::path(testing::TempDir()) /
                   ("lorasched_workload_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::filesystem::path write_file(const std::string& name, const std::string& text) {
  const auto path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct GapStats {
  double mean = 0;
  double cv = 0;
};

// Mean and coefficient of variation of the inter-arrival times (the first gap from 0).
inline GapStats gap_stats(const std::vector<RequestSpec>& reqs) {
  std::vector<double> gaps;
  double prev = 0;
  for (const auto& r : reqs) {
    gaps.push_back(r.arrival - prev);
    prev = r.arrival;
  }
  const double n = static_cast<double>(gaps.size());
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / n;
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= n - 1;
  return {mean, std::sqrt(var) / mean};
}

// Fraction of requests per adapter.
inline std::vector<double> adapter_shares(const std::vector<RequestSpec>& reqs, int32_t n) {
  std::vector<double> share(static_cast<size_t>(n), 0.0);
  for (const auto& r : reqs) share[static_cast<size_t>(r.adapter)] += 1.0;
  for (auto& s : share) s /= static_cast<double>(reqs.size());
  return share;
}

// |observed - expected| share within `sigmas` binomial standard deviations.
inline void expect_share_near(double observed, double expected, size_t n, double sigmas,
                              const std::string& what) {
  const double sd = std::sqrt(expected * (1 - expected) / static_cast<double>(n));
  EXPECT_NEAR(observed, expected, sigmas * sd + 1e-12) << what;
}

}  // namespace lorasched::test
