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

Summary summarize(const RunRecords& records, const SummaryOptions& options) {
  Summary s;
  s.requests = static_cast<int64_t>(records.requests.size());

  // The window: [warmup, last arrival - cooldown] (NaN end when no request has an arrival).
  double last_arrival = -INFINITY;
  for (const auto& r : records.requests)
    if (std::isfinite(r.arrival)) last_arrival = std::max(last_arrival, r.arrival);
  const double w0 = options.warmup_s;
  const double w1 = std::isfinite(last_arrival) ? last_arrival - options.cooldown_s : kNoTime;
  const double span = w1 - w0;                                    // NaN or <= 0: no rates
  auto in_window = [&](double t) { return t >= w0 && t <= w1; };  // false for NaN
  s.window_start = w0;
  s.window_end = w1;
  s.slo_per_token_s = options.slo_per_token_s;

  std::vector<double> latency, per_token, ttft, queueing;
  double first_arrival = INFINITY, last_finish = -INFINITY;
  double output_tokens = 0;
  int64_t done_total = 0, window_done = 0, slo_dlora = 0, slo = 0;
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
    const bool done = completed(r);
    if (done) {
      ++done_total;
      output_tokens += r.output_tokens;
      last_finish = std::max(last_finish, r.finish);
      if (in_window(r.finish)) ++window_done;
    }
    if (!in_window(r.arrival)) continue;
    ++s.window_requests;
    if (std::isfinite(r.first_token)) ttft.push_back(r.first_token - r.arrival);
    if (std::isfinite(r.queueing_delay)) queueing.push_back(r.queueing_delay);
    if (!done) continue;
    ++s.window_completed;
    const double l = r.finish - r.arrival;
    latency.push_back(l);
    if (r.output_tokens > 0) per_token.push_back(l / r.output_tokens);
    // A request without output tokens is held to the SLO of one token.
    const double l_token = l / std::max(r.output_tokens, 1);
    if (l_token <= kDloraSloPerToken) ++slo_dlora;
    if (l_token <= options.slo_per_token_s) ++slo;
  }

  if (done_total > 0 && std::isfinite(first_arrival)) {
    s.makespan = std::max(0.0, last_finish - first_arrival);
    if (s.makespan > 0) {
      s.throughput_rps = static_cast<double>(done_total) / s.makespan;
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

  if (s.window_requests > 0) {
    const auto n = static_cast<double>(s.window_requests);
    s.slo_attainment_dlora = static_cast<double>(slo_dlora) / n;
    s.slo_attainment = static_cast<double>(slo) / n;
  }
  double window_tokens = 0;
  for (const auto& it : records.iterations) {
    const double end =
        it.start + (std::isfinite(it.switch_time) ? it.switch_time : 0) + it.duration;
    if (in_window(end)) window_tokens += it.batch_size;  // one token per request
  }
  if (span > 0) {
    s.window_offered_rps = static_cast<double>(s.window_requests) / span;
    s.window_throughput_rps = static_cast<double>(window_done) / span;
    s.window_throughput_tokens = window_tokens / span;
  }

  // Where the busy time goes: stalls from the events that stall a replica, execution from
  // the iterations, and within execution what the LoRA pass costs over merged speed and
  // what merged batches leave unused below the batch limit.
  for (const auto& e : records.events) {
    if (!std::isfinite(e.duration)) continue;
    switch (static_cast<EventKind>(e.kind)) {
      case EventKind::merge:
      case EventKind::unmerge:
      case EventKind::adapter_switch:  // the fused switch: one pass instead of the two
        s.switch_stall_time += e.duration;
        break;
      case EventKind::adapter_load:
        s.adapter_load_time += e.duration;
        break;
      case EventKind::preempt_swap:
      case EventKind::swap_in:
        s.swap_time += e.duration;
        break;
      default:
        break;
    }
  }
  double execution = 0;
  bool overhead_known = true;
  double batch_sum[3] = {0, 0, 0};
  int64_t batch_n[3] = {0, 0, 0};
  const double limit = options.max_batch_size;
  for (const auto& it : records.iterations) {
    if (!std::isfinite(it.duration)) continue;
    execution += it.duration;
    const int mode = it.mode;
    if (mode >= 0 && mode < 3) {
      batch_sum[mode] += it.batch_size;
      ++batch_n[mode];
    }
    if (mode != static_cast<int>(IterationMode::merged)) {
      if (std::isfinite(it.merged_duration))
        s.unmerged_overhead_time += it.duration - it.merged_duration;
      else
        overhead_known = false;
    }
    if (mode != static_cast<int>(IterationMode::unmerged) && limit > 0)
      s.empty_slot_time += it.duration * std::max(0.0, (limit - it.batch_size) / limit);
  }
  s.busy_time = execution + s.switch_stall_time + s.adapter_load_time + s.swap_time;
  if (!overhead_known) s.unmerged_overhead_time = kNoTime;
  if (limit <= 0) s.empty_slot_time = kNoTime;
  s.batch_mean_unmerged = batch_n[0] ? batch_sum[0] / static_cast<double>(batch_n[0]) : kNoTime;
  s.batch_mean_merged = batch_n[1] ? batch_sum[1] / static_cast<double>(batch_n[1]) : kNoTime;
  s.batch_mean_mixed = batch_n[2] ? batch_sum[2] / static_cast<double>(batch_n[2]) : kNoTime;

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
      case EventKind::adapter_switch:  // one pass that unmerges one adapter and merges another
        ++s.merges;
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
