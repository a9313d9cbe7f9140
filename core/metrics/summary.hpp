// Headline figures of a run, computed from its records (docs/results-format.md, "summary").
#pragma once

#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "core/metrics/records.hpp"

namespace lorasched {

// dLoRA's service-level objective: 0.5 s of request latency per output token (its SLO
// attainment figures).
inline constexpr double kDloraSloPerToken = 0.5;

// What `summarize` measures over ([metrics] of the experiment file, docs/user-guide.md).
// The measurement window is [warmup_s, last arrival - cooldown_s] in virtual seconds: the
// headline figures count only requests arriving in it, so warm-up (an empty system filling
// up) and drain (the backlog served after the last arrival) do not weigh on them.
struct SummaryOptions {
  double warmup_s = 0;
  double cooldown_s = 0;
  // A second SLO beside dLoRA's. 0.2 s per output token is about reading speed (5 tokens/s):
  // a stricter, interactive objective.
  double slo_per_token_s = 0.2;
  // The engine's batch limit ([engine] max_batch_size), for empty_slot_time; 0: unknown
  // (empty_slot_time NaN).
  int32_t max_batch_size = 0;
};

// Computes every Summary field but wall_seconds (the caller measures it). Latency, TTFT,
// queueing and SLO figures are over the requests arriving in the measurement window;
// latencies over the completed ones (status finished or length_capped, finite arrival and
// finish), TTFT and queueing delay over every one that got that far. throughput_* and
// makespan are over the whole run, window_throughput_* over the window (definitions in
// docs/results-format.md). A figure with no sample is NaN, counts are 0; never throws on
// empty or odd input (NaN times are skipped).
Summary summarize(const RunRecords& records, const SummaryOptions& options = {});

// The q-quantile (q in [0, 1]) of `values` by linear interpolation between the closest ranks,
// exactly as numpy.percentile(values, 100 * q) with its default method. NaN when empty.
// Sorts its argument.
double quantile(std::vector<double> values, double q);

// Mean of `values`; NaN when empty.
double mean(std::span<const double> values);

// Every Summary field by name, in declaration order (LORASCHED_SUMMARY_FIELDS in records.hpp):
// the HDF5 `summary` attributes, the docs. clock = wall: a host measurement, not
// deterministic.
struct SummaryField {
  const char* name;
  std::variant<int64_t Summary::*, double Summary::*> member;
  const char* unit;
  FieldClock clock;
};
std::span<const SummaryField> summary_fields();

}  // namespace lorasched
