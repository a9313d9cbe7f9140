#include "core/metrics/summary.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/metrics/fields.hpp"

namespace lorasched {

double quantile(std::vector<double> values, double q) {
  if (values.empty() || std::isnan(q)) return kNoTime;
  std::sort(values.begin(), values.end());
  q = std::clamp(q, 0.0, 1.0);
  // numpy "linear": virtual index (n - 1) * q, then its _lerp (exact at both ends).
  const double index = static_cast<double>(values.size() - 1) * q;
  const double lo_index = std::floor(index);
  const auto lo = static_cast<size_t>(lo_index);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double t = index - lo_index;
  const double a = values[lo], b = values[hi];
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

double mean(std::span<const double> values) {
  if (values.empty()) return kNoTime;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

namespace {

bool completed(const RequestRecord& r) {
  return (r.status == static_cast<int8_t>(RequestStatus::finished) ||
          r.status == static_cast<int8_t>(RequestStatus::length_capped)) &&
         std::isfinite(r.arrival) && std::isfinite(r.finish);
}

}  // namespace

Summary summarize(const RunRecords& records) {
  Summary s;
  s.requests = static_cast<int64_t>(records.requests.size());

  std::vector<double> latency, per_token, ttft, queueing;
  double first_arrival = INFINITY, last_finish = -INFINITY;
  double output_tokens = 0;
  for (const auto& r : records.requests) {
    switch (static_cast<RequestStatus>(r.status)) {
      case RequestStatus::finished:
      case RequestStatus::length_capped:
        ++s.finished;
        break;
      case RequestStatus::ignored:
        ++s.ignored;
        break;
      case RequestStatus::unfinished:
        ++s.unfinished;
        break;
    }
    if (std::isfinite(r.arrival)) first_arrival = std::min(first_arrival, r.arrival);
    if (std::isfinite(r.arrival) && std::isfinite(r.first_token))
      ttft.push_back(r.first_token - r.arrival);
    if (std::isfinite(r.queueing_delay)) queueing.push_back(r.queueing_delay);
    if (!completed(r)) continue;
    const double l = r.finish - r.arrival;
    latency.push_back(l);
    if (r.output_tokens > 0) per_token.push_back(l / r.output_tokens);
    output_tokens += r.output_tokens;
    last_finish = std::max(last_finish, r.finish);
  }

  if (!latency.empty() && std::isfinite(first_arrival)) {
    s.makespan = std::max(0.0, last_finish - first_arrival);
    if (s.makespan > 0) {
      s.throughput_rps = static_cast<double>(latency.size()) / s.makespan;
      s.throughput_tokens = output_tokens / s.makespan;
    }
  }
  s.latency_mean = mean(latency);
  s.latency_p50 = quantile(latency, 0.50);
  s.latency_p90 = quantile(latency, 0.90);
  s.latency_p99 = quantile(latency, 0.99);
  s.per_token_latency_mean = mean(per_token);
  s.per_token_latency_p90 = quantile(per_token, 0.90);
  s.ttft_mean = mean(ttft);
  s.ttft_p90 = quantile(ttft, 0.90);
  s.queueing_mean = mean(queueing);
  s.queueing_p90 = quantile(std::move(queueing), 0.90);

  s.iterations = static_cast<int64_t>(records.iterations.size());
  for (const auto& it : records.iterations) {
    if (it.mode == 1) ++s.merged_iterations;
    if (std::isfinite(it.switch_time)) s.switch_time_total += it.switch_time;
  }

  for (const auto& e : records.events) {
    switch (static_cast<EventKind>(e.kind)) {
      case EventKind::merge:
        ++s.merges;
        break;
      case EventKind::unmerge:
        ++s.unmerges;
        break;
      case EventKind::adapter_load:
        ++s.adapter_loads;
        break;
      case EventKind::adapter_evict:
        ++s.adapter_evictions;
        break;
      case EventKind::preempt_swap:
      case EventKind::preempt_recompute:
        ++s.preemptions;
        break;
      case EventKind::migrate_request:
        ++s.migrations;
        break;
      case EventKind::threshold_change:
        ++s.threshold_changes;
        break;
      default:
        break;
    }
  }
  return s;
}

std::span<const SummaryField> summary_fields() {
  static const std::vector<SummaryField> fields = [] {
    std::vector<SummaryField> v;
    RecordTable<Summary>::for_each([&](const FieldInfo& f, auto member) {
      v.push_back({f.name, member, f.unit, f.clock});
    });
    return v;
  }();
  return fields;
}

}  // namespace lorasched
