// The summary table `lorasched run/sweep/report` print: one row per run.
#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/metrics/records.hpp"

namespace lorasched {

// One row per run (label, summary).
// csv = false: the headline figures as aligned columns with a header, rounded for reading:
// requests, completed, requests in the measurement window, throughput served within the
// window (req/s, output tok/s), latency mean/P50/P90/P99 (s), latency per output token
// mean/P90 (s/token), TTFT mean/P90 (s), SLO attainment (%, dLoRA's 0.5 s/token and
// [metrics] slo_per_token_s), merges, unmerges, adapter loads, preemptions; a figure with no
// sample shows as "-". csv = true: every summary field (the file's `summary` attributes, in
// order) after a `run` column, full precision (shortest round-trip form), NaN as "nan",
// labels quoted when they hold a comma, quote or newline.
void print_summary_table(std::ostream& out,
                         const std::vector<std::pair<std::string, Summary>>& runs, bool csv);

}  // namespace lorasched

namespace lorasched {

// Runs grouped by their sweep coordinates (e.g. policy x workload, over seeds).
// Where each run's busy time went (summary busy_time and its parts, docs/results-format.md):
// busy seconds, then the shares (%) of switch stalls (merge/unmerge), adapter loads, swaps
// and execution, and within execution of the unmerged overhead over merged speed and of
// the slots merged batches left empty; then the mean batch size per mode. "-": no value.
void print_busy_table(std::ostream& out, const std::vector<std::pair<std::string, Summary>>& runs);

struct RunGroup {
  std::string label;
  std::vector<Summary> runs;
};

// Mean and half-width of the 95% confidence interval (Student's t) of a sample; NaN values
// are left out; half-width NaN with fewer than two values.
std::pair<double, double> mean_ci95(const std::vector<double>& values);

// One row per group: runs, then mean ± 95% CI over its runs of window throughput (req/s),
// latency per output token mean and P90 (s/token), latency mean, P90 and P99 (s), TTFT mean,
// dLoRA's SLO attainment (%), merges.
// csv = true: columns <name>_mean and <name>_ci95 at full precision.
void print_group_table(std::ostream& out, const std::vector<RunGroup>& groups, bool csv);

}  // namespace lorasched
