// Headline figures of a run, computed from its records (docs/results-format.md, "summary").
#pragma once

#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "core/metrics/records.hpp"

namespace lorasched {

// Computes every Summary field but wall_seconds (the caller measures it). Latency figures are
// over completed requests (status finished or length_capped, finite arrival and finish);
// TTFT and queueing delay over every request that got that far. A figure with no sample is
// NaN, counts are 0; never throws on empty or odd input (NaN times are skipped).
Summary summarize(const RunRecords& records);

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
