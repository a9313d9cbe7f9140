// Capacity (core/cli/capacity.cpp): the largest offered rate a configuration keeps up with.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/config/experiment.hpp"
#include "core/plugin/loader.hpp"

namespace lorasched {

struct CapacityOptions {
  int seeds = 3;            // workload seeds 1..seeds, the same for every configuration
  double tolerance = 0.02;  // keeps up: served within 2% of offered (mean over the seeds)
  double precision = 0.01;  // bisection stops when the bracket is within 1% of its top
};

struct CapacityResult {
  double rate = 0;  // req/s: the largest rate tried that keeps up
  int runs = 0;
  std::vector<std::pair<double, double>> probes;  // (rate, served / offered)
};

// Mean over workload seeds 1..seeds of window_throughput_rps / window_offered_rps at `rate`
// (the measurement window of [metrics]).
double served_fraction(const Experiment& e, PluginRegistry& registry, double rate, int seeds);

// Bisection on workload.rate from its value in `e` (doubling or halving until the capacity is
// bracketed); assumes served / offered falls with the rate. Cost-model executor only.
CapacityResult find_capacity(const Experiment& e, PluginRegistry& registry,
                             const CapacityOptions& opts = {});

// Sets workload.rate = load x capacity for the `points` of `exps` that set workload.load;
// the capacity is that of the point's configuration under the scheduler load_reference (with
// fixed thresholds), so every variant of a point gets the same rate. Memoised per
// configuration, and across a `run -j` parent and its workers through kCapacityMemoEnv.
void resolve_loads(std::vector<Experiment>& exps, PluginRegistry& registry,
                   const std::vector<size_t>& points, bool quiet);
inline constexpr const char* kCapacityMemoEnv = "LORASCHED_CAPACITY_MEMO";
std::string capacity_memo_text();

}  // namespace lorasched
