// dLoRA's evaluation workload generator, after the description of the artifact's
// vllm/workload_generator/trace.py (Trace.replay_to_workload). docs/workloads.md gives the
// algorithm step by step and where it had to choose.
#include "core/workload/artifact.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/workload/checks.hpp"
#include "core/workload/numpy_legacy.hpp"

namespace lorasched {

namespace {

constexpr uint64_t kArtifactArrivalStream = 1;  // same id as the other arrival kinds
constexpr uint64_t kFunctionCountStream = 6;
// numpy-reseed holds each adapter's batch of gaps as the artifact does; refuse sizes that
// would not fit in memory.
constexpr double kMaxReseedDraws = 1e7;

using workload_detail::bad;
using workload_detail::require_non_negative;
using workload_detail::require_positive;

// Bins per interval; interval_minutes must be a whole multiple of bin_minutes.
int64_t bins_per_interval(const ArtifactSpec& a) {
  const double ratio = a.interval_minutes / a.bin_minutes;
  const double whole = std::round(ratio);
  if (whole < 1 || std::abs(ratio - whole) > 1e-9 * ratio)
    bad(
        fmt::format("artifact.interval_minutes ({}) must be a whole multiple of "
                    "artifact.bin_minutes ({})",
                    a.interval_minutes, a.bin_minutes));
  return static_cast<int64_t>(whole);
}

}  // namespace

FunctionCounts generate_function_counts(const ArtifactSpec& a, uint64_t seed) {
  workload_detail::validate_artifact(a);
  Rng rng(seed, kFunctionCountStream);
  const auto nf = static_cast<size_t>(a.num_functions);
  const auto nb = static_cast<size_t>(a.num_bins);
  std::vector<double> mean(nf);
  for (size_t f = 0; f < nf; ++f)
    mean[f] = a.function_popularity == "zipf"
                  ? std::pow(static_cast<double>(f) + 1.0, -a.function_zipf_s)
                  : rng.lognormal(0.0, a.function_sigma);
  // Mean-one lognormal factor per (function, bin): popularity shifts between functions over time.
  const double s = a.intensity_sigma;
  FunctionCounts counts(nf, std::vector<double>(nb));
  for (size_t f = 0; f < nf; ++f)
    for (size_t b = 0; b < nb; ++b) counts[f][b] = mean[f] * rng.lognormal(-0.5 * s * s, s);
  return counts;
}

std::vector<int32_t> functions_by_popularity(const FunctionCounts& counts) {
  std::vector<double> total(counts.size());
  for (size_t f = 0; f < counts.size(); ++f)
    total[f] = std::accumulate(counts[f].begin(), counts[f].end(), 0.0);
  std::vector<int32_t> order(counts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
    return total[static_cast<size_t>(x)] > total[static_cast<size_t>(y)];
  });
  return order;
}

std::vector<int32_t> map_functions_to_adapters(const FunctionCounts& counts, int32_t num_adapters,
                                               int32_t map_stride) {
  if (num_adapters < 1) bad(fmt::format("num_adapters must be >= 1 (got {})", num_adapters));
  if (map_stride < 1) bad(fmt::format("artifact.map_stride must be >= 1 (got {})", map_stride));
  const auto order = functions_by_popularity(counts);
  std::vector<int32_t> adapter(counts.size());
  int32_t model = 0, given = 0;  // the artifact's walk: stride functions, then (model+1) % N
  for (const int32_t f : order) {
    adapter[static_cast<size_t>(f)] = model;
    if (++given == map_stride) {
      given = 0;
      model = (model + 1) % num_adapters;
    }
  }
  return adapter;
}

namespace workload_detail {

void validate_artifact(const ArtifactSpec& a) {
  if (a.map_stride < 1) bad(fmt::format("artifact.map_stride must be >= 1 (got {})", a.map_stride));
  if (a.rate_share != "interval" && a.rate_share != "window")
    bad(fmt::format("unknown artifact.rate_share '{}' (valid: interval, window)", a.rate_share));
  if (a.quota != "even" && a.quota != "invocations")
    bad(fmt::format("unknown artifact.quota '{}' (valid: even, invocations)", a.quota));
  if (a.gaps != "independent" && a.gaps != "numpy-reseed")
    bad(fmt::format("unknown artifact.gaps '{}' (valid: independent, numpy-reseed)", a.gaps));
  require_positive(a.bin_minutes, "artifact.bin_minutes");
  require_positive(a.interval_minutes, "artifact.interval_minutes");
  bins_per_interval(a);
  if (!a.function_counts.empty()) return;
  if (a.function_popularity != "lognormal" && a.function_popularity != "zipf")
    bad(fmt::format("unknown artifact.function_popularity '{}' (valid: lognormal, zipf)",
                    a.function_popularity));
  if (a.num_functions < 1)
    bad(fmt::format("artifact.num_functions must be >= 1 (got {})", a.num_functions));
  if (a.num_bins < 1) bad(fmt::format("artifact.num_bins must be >= 1 (got {})", a.num_bins));
  require_non_negative(a.function_sigma, "artifact.function_sigma");
  require_non_negative(a.function_zipf_s, "artifact.function_zipf_s");
  require_non_negative(a.intensity_sigma, "artifact.intensity_sigma");
}

std::vector<int64_t> apportion(int64_t total, const std::vector<double>& weights) {
  const double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<int64_t> parts(weights.size(), 0);
  if (!(sum > 0) || total <= 0) return parts;
  std::vector<std::pair<double, size_t>> rem;  // (fractional part, index), positive weights only
  int64_t given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!(weights[i] > 0)) continue;
    const double quota = static_cast<double>(total) * (weights[i] / sum);
    parts[i] = std::min(static_cast<int64_t>(std::floor(quota)), total - given);
    given += parts[i];
    rem.emplace_back(quota - std::floor(quota), i);
  }
  std::stable_sort(rem.begin(), rem.end(),
                   [](const auto& x, const auto& y) { return x.first > y.first; });
  for (size_t k = 0; given < total; k = (k + 1) % rem.size(), ++given) ++parts[rem[k].second];
  return parts;
}

std::vector<int64_t> even_split(int64_t total, size_t parts) {
  std::vector<int64_t> out(parts, 0);
  if (parts == 0 || total <= 0) return out;
  const auto k = static_cast<int64_t>(parts);
  for (size_t i = 0; i < parts; ++i)
    out[i] = total / k + (static_cast<int64_t>(i) < total % k ? 1 : 0);
  return out;
}

std::vector<RequestSpec> artifact_arrivals(const WorkloadSpec& spec, int32_t num_adapters,
                                           uint64_t seed) {
  const ArtifactSpec& a = spec.artifact;
  const FunctionCounts counts = a.function_counts.empty() ? generate_function_counts(a, seed)
                                                          : read_function_counts(a.function_counts);
  const auto adapter_of = map_functions_to_adapters(counts, num_adapters, a.map_stride);
  const size_t num_bins = counts.front().size();
  const auto bpi = static_cast<size_t>(bins_per_interval(a));
  const size_t num_intervals = (num_bins + bpi - 1) / bpi;
  const auto na = static_cast<size_t>(num_adapters);

  // inv[k][m]: invocations of adapter m's functions in interval k.
  std::vector<std::vector<double>> inv(num_intervals, std::vector<double>(na, 0.0));
  for (size_t f = 0; f < counts.size(); ++f)
    for (size_t b = 0; b < num_bins; ++b)
      inv[b / bpi][static_cast<size_t>(adapter_of[f])] += counts[f][b];
  std::vector<double> interval_total(num_intervals);
  for (size_t k = 0; k < num_intervals; ++k)
    interval_total[k] = std::accumulate(inv[k].begin(), inv[k].end(), 0.0);
  const double window_total = std::accumulate(interval_total.begin(), interval_total.end(), 0.0);
  if (!(window_total > 0)) bad("artifact: the function counts have no invocations");

  const auto quota = a.quota == "even" ? even_split(*spec.num_requests, num_intervals)
                                       : apportion(*spec.num_requests, interval_total);
  const double shape = 1.0 / (spec.cv * spec.cv);
  const double cv2 = spec.cv * spec.cv;
  const bool reseed = a.gaps == "numpy-reseed";
  Rng rng(seed, kArtifactArrivalStream);
  // numpy-reseed: NumPy's global generator as the artifact's GammaProcess.get_iterator
  // (workload.py 52-68) uses it: seed(0) when an adapter's process starts, then a batch of
  // int(rate * interval * 1.2) gaps at once; an adapter that used up its batch draws the next
  // one from wherever the global generator is then. (`interval` is in minutes there, though
  // used as if in seconds: it only sizes the batches.)
  NumpyLegacyRandom global;
  std::vector<std::vector<double>> batch(na);
  std::vector<size_t> used(na, 0);
  std::vector<double> rate(na, 0.0);
  auto draw_batch = [&](size_t m) {
    for (double& g : batch[m]) g = global.gamma(shape, cv2 / rate[m]);
    used[m] = 0;
  };
  auto next_gap = [&](size_t m) {
    if (!reseed) return rng.gamma(shape, cv2 / rate[m]);
    if (++used[m] >= batch[m].size()) draw_batch(m);
    return batch[m][used[m]];
  };
  std::vector<RequestSpec> reqs;
  reqs.reserve(static_cast<size_t>(*spec.num_requests));
  double start = 0;  // the interval's start: the last arrival of the previous one
  using Next = std::pair<double, int32_t>;  // (arrival, adapter)
  for (size_t k = 0; k < num_intervals; ++k) {
    if (quota[k] == 0) continue;
    if (!(interval_total[k] > 0))
      bad(fmt::format(
          "artifact: interval {} (minutes {} to {} of the window) has no invocations but gets {} "
          "requests under artifact.quota = \"{}\" (the artifact fails here too); choose a window "
          "without empty intervals or quota = \"invocations\"",
          k, static_cast<double>(k) * a.interval_minutes,
          static_cast<double>(k + 1) * a.interval_minutes, quota[k], a.quota));
    const double denom = a.rate_share == "interval" ? interval_total[k] : window_total;
    std::priority_queue<Next, std::vector<Next>, std::greater<>> next;
    if (reseed && spec.rate * a.interval_minutes * 1.2 > kMaxReseedDraws)
      bad(fmt::format(
          "artifact.gaps = \"numpy-reseed\" draws rate x interval_minutes x 1.2 = {:.3g} gaps "
          "per interval at once, more than {:.0e}; lower rate or interval_minutes",
          spec.rate * a.interval_minutes * 1.2, kMaxReseedDraws));
    for (size_t m = 0; m < na; ++m) {
      rate[m] = inv[k][m] / denom * spec.rate;
      if (!(rate[m] > 0)) continue;
      double gap;
      if (reseed) {
        const auto size =
            std::max<int64_t>(static_cast<int64_t>(rate[m] * a.interval_minutes * 1.2), 1);
        batch[m].assign(static_cast<size_t>(size), 0.0);
        global.seed(0);
        draw_batch(m);
        gap = batch[m][0];
      } else {
        gap = rng.gamma(shape, cv2 / rate[m]);
      }
      next.emplace(start + gap, static_cast<int32_t>(m));
    }
    for (int64_t i = 0; i < quota[k]; ++i) {
      const auto [t, m] = next.top();
      next.pop();
      if (spec.duration_s && t >= *spec.duration_s) return reqs;
      RequestSpec r;
      r.arrival = t;
      r.adapter = m;
      reqs.push_back(r);
      next.emplace(t + next_gap(static_cast<size_t>(m)), m);
    }
    start = reqs.back().arrival;
  }
  return reqs;
}

}  // namespace workload_detail
}  // namespace lorasched
