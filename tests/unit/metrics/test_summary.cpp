#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "core/metrics/summary.hpp"

namespace lorasched {
namespace {

RequestRecord request(int64_t id, double arrival, double first_token, double finish, int out,
                      RequestStatus status = RequestStatus::finished) {
  RequestRecord r;
  r.id = id;
  r.arrival = arrival;
  r.first_scheduled = arrival + 0.1 * double(id);
  r.queueing_delay = 0.1 * double(id);
  r.first_token = first_token;
  r.finish = finish;
  r.output_tokens = out;
  r.status = static_cast<int8_t>(status);
  return r;
}

EventRecord event(EventKind kind) {
  EventRecord e;
  e.kind = static_cast<int8_t>(kind);
  return e;
}

TEST(Quantile, MatchesNumpyLinear) {
  // numpy.percentile([1, 2, 3, 4], [0, 50, 90, 99, 100]) = 1, 2.5, 3.7, 3.97, 4
  std::vector<double> v{4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(quantile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(quantile(v, 0.9), 3.7);
  EXPECT_DOUBLE_EQ(quantile(v, 0.99), 3.97);
  EXPECT_DOUBLE_EQ(quantile(v, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(quantile({5.0}, 0.9), 5.0);
  EXPECT_TRUE(std::isnan(quantile({}, 0.5)));
  // numpy.percentile(range(11), 95) = 9.5
  std::vector<double> r;
  for (int i = 0; i <= 10; ++i) r.push_back(i);
  EXPECT_DOUBLE_EQ(quantile(r, 0.95), 9.5);
  EXPECT_TRUE(std::isnan(mean(std::vector<double>{})));
}

TEST(Summarize, KnownFigures) {
  RunRecords rec;
  // Latencies 1, 2, 3, 4 (finished / length-capped), outputs 10, 20, 30, 40 tokens:
  // per-token latency 0.1 each.
  rec.requests.push_back(request(0, 0.0, 0.5, 1.0, 10));
  rec.requests.push_back(request(1, 1.0, 1.5, 3.0, 20));
  rec.requests.push_back(request(2, 2.0, 2.5, 5.0, 30, RequestStatus::length_capped));
  rec.requests.push_back(request(3, 3.0, 3.5, 7.0, 40));
  // Not finished: counted, no latency; it got a first token (TTFT 1.0) and was scheduled.
  rec.requests.push_back(request(4, 4.0, 5.0, kNoTime, 3, RequestStatus::unfinished));
  // Ignored: never scheduled.
  RequestRecord ign = request(5, 4.5, kNoTime, kNoTime, 0, RequestStatus::ignored);
  ign.queueing_delay = kNoTime;
  rec.requests.push_back(ign);

  IterationRecord it;
  it.switch_time = 0.25;
  rec.iterations.push_back(it);
  it.mode = 1;
  rec.iterations.push_back(it);
  it.switch_time = kNoTime;  // skipped by the sum
  rec.iterations.push_back(it);

  for (auto k : {EventKind::merge, EventKind::merge, EventKind::unmerge, EventKind::adapter_load,
                 EventKind::adapter_load, EventKind::adapter_load, EventKind::adapter_evict,
                 EventKind::preempt_swap, EventKind::preempt_recompute, EventKind::swap_in,
                 EventKind::migrate_request, EventKind::migrate_adapter,
                 EventKind::threshold_change, EventKind::warning})
    rec.events.push_back(event(k));

  const Summary s = summarize(rec);
  EXPECT_EQ(s.requests, 6);
  EXPECT_EQ(s.finished, 4);
  EXPECT_EQ(s.ignored, 1);
  EXPECT_EQ(s.unfinished, 1);
  EXPECT_DOUBLE_EQ(s.makespan, 7.0);
  EXPECT_DOUBLE_EQ(s.throughput_rps, 4.0 / 7.0);
  EXPECT_DOUBLE_EQ(s.throughput_tokens, 100.0 / 7.0);
  EXPECT_DOUBLE_EQ(s.latency_mean, 2.5);
  EXPECT_DOUBLE_EQ(s.latency_p50, 2.5);
  EXPECT_DOUBLE_EQ(s.latency_p90, 3.7);
  EXPECT_DOUBLE_EQ(s.latency_p99, 3.97);
  EXPECT_DOUBLE_EQ(s.per_token_latency_mean, 0.1);
  EXPECT_DOUBLE_EQ(s.per_token_latency_p90, 0.1);
  // TTFT 0.5 x4 and 1.0: mean 0.6, p90 = 0.5 + 0.6 * 0.5 = 0.8
  EXPECT_DOUBLE_EQ(s.ttft_mean, 0.6);
  EXPECT_DOUBLE_EQ(s.ttft_p90, 0.8);
  // queueing 0, .1, .2, .3, .4
  EXPECT_DOUBLE_EQ(s.queueing_mean, 0.2);
  EXPECT_NEAR(s.queueing_p90, 0.36, 1e-15);
  EXPECT_EQ(s.iterations, 3);
  EXPECT_EQ(s.merged_iterations, 2);
  EXPECT_DOUBLE_EQ(s.switch_time_total, 0.5);
  EXPECT_EQ(s.merges, 2);
  EXPECT_EQ(s.unmerges, 1);
  EXPECT_EQ(s.adapter_loads, 3);
  EXPECT_EQ(s.adapter_evictions, 1);
  EXPECT_EQ(s.preemptions, 2);
  EXPECT_EQ(s.migrations, 1);
  EXPECT_EQ(s.threshold_changes, 1);
  EXPECT_EQ(s.wall_seconds, 0.0);
  // The default window [0, last arrival 4.5] holds every request: the figures above are over
  // all of them. Per-token latency 0.1 meets both SLOs (0.5 and the default 0.2 s/token);
  // the unfinished and the ignored request miss them: 4 of 6.
  EXPECT_EQ(s.window_start, 0.0);
  EXPECT_EQ(s.window_end, 4.5);
  EXPECT_EQ(s.window_requests, 6);
  EXPECT_EQ(s.window_completed, 4);
  EXPECT_DOUBLE_EQ(s.slo_attainment_dlora, 4.0 / 6.0);
  EXPECT_EQ(s.slo_per_token_s, 0.2);
  EXPECT_DOUBLE_EQ(s.slo_attainment, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(s.window_offered_rps, 6.0 / 4.5);
  // Completions at 1 and 3 fall in [0, 4.5] (5 and 7 are drain).
  EXPECT_DOUBLE_EQ(s.window_throughput_rps, 2.0 / 4.5);
}

// [metrics] warmup_s = 1, cooldown_s = 1, slo_per_token_s = 0.22 on six requests whose last
// arrival is 6: the window is [1, 5]. Every expected value below is worked out by hand.
TEST(Summarize, MeasurementWindow) {
  RunRecords rec;
  rec.requests.push_back(request(0, 0.5, 0.7, 0.9, 1));  // warm-up: only its completion counts
  rec.requests.push_back(request(1, 1.0, 1.2, 2.0, 4));  // latency 1, 0.25 s/token
  rec.requests.push_back(request(2, 2.0, 2.5, 5.0, 5));  // latency 3, 0.6 s/token: misses both
  rec.requests.push_back(request(3, 3.0, 3.1, 3.4, 2));  // latency 0.4, 0.2 s/token
  rec.requests.push_back(request(4, 4.0, 4.5, kNoTime, 3, RequestStatus::unfinished));
  rec.requests.push_back(request(5, 6.0, 6.2, 6.5, 1));  // cool-down: left out

  // Iterations end at start + switch_time + duration: 0.9 (out), 2.0, 5.0 (in, the window is
  // closed), 5.5 (out); one output token per request in the batch.
  auto iteration = [](double start, double sw, double duration, int batch) {
    IterationRecord it;
    it.start = start;
    it.switch_time = sw;
    it.duration = duration;
    it.batch_size = batch;
    return it;
  };
  rec.iterations = {iteration(0.0, 0.5, 0.4, 2), iteration(1.0, kNoTime, 1.0, 3),
                    iteration(4.5, 0.25, 0.25, 1), iteration(5.0, 0.0, 0.5, 4)};

  SummaryOptions opt;
  opt.warmup_s = 1.0;
  opt.cooldown_s = 1.0;
  opt.slo_per_token_s = 0.22;
  const Summary s = summarize(rec, opt);
  EXPECT_EQ(s.requests, 6);  // the counts stay over the whole run
  EXPECT_EQ(s.finished, 5);
  EXPECT_EQ(s.window_start, 1.0);
  EXPECT_EQ(s.window_end, 5.0);
  EXPECT_EQ(s.window_requests, 4);  // requests 1-4
  EXPECT_EQ(s.window_completed, 3);
  // Latencies 1, 3, 0.4 -> sorted 0.4, 1, 3: P50 1, P90 1 + 0.8 * 2, P99 1 + 0.98 * 2.
  EXPECT_DOUBLE_EQ(s.latency_mean, 4.4 / 3.0);
  EXPECT_DOUBLE_EQ(s.latency_p50, 1.0);
  EXPECT_DOUBLE_EQ(s.latency_p90, 2.6);
  EXPECT_DOUBLE_EQ(s.latency_p99, 2.96);
  // Per token 0.25, 0.6, 0.2 -> mean 0.35, P90 0.25 + 0.8 * 0.35.
  EXPECT_DOUBLE_EQ(s.per_token_latency_mean, 0.35);
  EXPECT_DOUBLE_EQ(s.per_token_latency_p90, 0.53);
  // TTFT 0.2, 0.5, 0.1, 0.5 (the unfinished one had its first token).
  EXPECT_DOUBLE_EQ(s.ttft_mean, 0.325);
  // dLoRA's 0.5 s/token: requests 1 and 3 of 4; 0.22 s/token: request 3 only.
  EXPECT_DOUBLE_EQ(s.slo_attainment_dlora, 0.5);
  EXPECT_EQ(s.slo_per_token_s, 0.22);
  EXPECT_DOUBLE_EQ(s.slo_attainment, 0.25);
  // Over the 4 s window: 4 arrivals, completions at 2, 3.4 and 5 (0.9 and 6.5 are outside),
  // 3 + 1 tokens.
  EXPECT_DOUBLE_EQ(s.window_offered_rps, 1.0);
  EXPECT_DOUBLE_EQ(s.window_throughput_rps, 0.75);
  EXPECT_DOUBLE_EQ(s.window_throughput_tokens, 1.0);
  // The whole-run throughput is unchanged by the window: 5 completions over 0.5 .. 6.5.
  EXPECT_DOUBLE_EQ(s.makespan, 6.0);
  EXPECT_DOUBLE_EQ(s.throughput_rps, 5.0 / 6.0);
}

// Busy time split by hand: events (stalls) and iterations (execution) of a made-up run with
// a batch limit of 16.
TEST(Summarize, BusyTimeDecomposition) {
  RunRecords rec;
  auto ev = [](EventKind k, double d) {
    EventRecord e;
    e.kind = static_cast<int8_t>(k);
    e.duration = d;
    return e;
  };
  rec.events = {ev(EventKind::merge, 0.012),
                ev(EventKind::adapter_switch, 0.008),
                ev(EventKind::unmerge, 0.01),
                ev(EventKind::adapter_load, 0.005),
                ev(EventKind::preempt_swap, 0.003),
                ev(EventKind::swap_in, 0.002),
                ev(EventKind::migrate_request, 1.0),
                ev(EventKind::migration_decision, 2.0)};  // the last two do not stall
  auto it = [](IterationMode m, double d, double merged, int batch) {
    IterationRecord r;
    r.mode = static_cast<int8_t>(m);
    r.duration = d;
    r.merged_duration = merged;
    r.batch_size = batch;
    return r;
  };
  rec.iterations = {
      it(IterationMode::unmerged, 0.027, 0.015, 4), it(IterationMode::unmerged, 0.030, 0.020, 6),
      it(IterationMode::merged, 0.015, 0.015, 12), it(IterationMode::mixed, 0.020, 0.016, 16)};
  SummaryOptions opt;
  opt.max_batch_size = 16;
  const Summary s = summarize(rec, opt);
  EXPECT_NEAR(s.switch_stall_time, 0.03, 1e-15);
  EXPECT_NEAR(s.adapter_load_time, 0.005, 1e-15);
  EXPECT_NEAR(s.swap_time, 0.005, 1e-15);
  // Execution 0.027 + 0.030 + 0.015 + 0.020 = 0.092, plus 0.04 of stalls.
  EXPECT_NEAR(s.busy_time, 0.132, 1e-15);
  // Over merged speed: 0.012 + 0.010 (unmerged) + 0.004 (mixed's second pass).
  EXPECT_NEAR(s.unmerged_overhead_time, 0.026, 1e-15);
  // The merged batch leaves 4 of 16 slots for its 0.015 s; the mixed one is full.
  EXPECT_NEAR(s.empty_slot_time, 0.00375, 1e-15);
  EXPECT_DOUBLE_EQ(s.batch_mean_unmerged, 5.0);
  EXPECT_DOUBLE_EQ(s.batch_mean_merged, 12.0);
  EXPECT_DOUBLE_EQ(s.batch_mean_mixed, 16.0);

  // Without the batch limit, or an executor's merged-speed estimate (cpu): NaN, not 0.
  rec.iterations[1].merged_duration = kNoTime;
  const Summary u = summarize(rec);
  EXPECT_TRUE(std::isnan(u.empty_slot_time));
  EXPECT_TRUE(std::isnan(u.unmerged_overhead_time));
  EXPECT_NEAR(u.busy_time, 0.132, 1e-15);
  // No iteration of a mode: its mean batch is NaN.
  rec.iterations.pop_back();
  EXPECT_TRUE(std::isnan(summarize(rec).batch_mean_mixed));
}

TEST(Summarize, EmptyWindowGivesNaN) {
  RunRecords rec;
  rec.requests.push_back(request(0, 0.0, 0.5, 1.0, 2));
  rec.requests.push_back(request(1, 2.0, 2.5, 3.0, 2));
  SummaryOptions opt;
  opt.warmup_s = 1.5;
  opt.cooldown_s = 1.0;  // window [1.5, 1]: empty
  const Summary s = summarize(rec, opt);
  EXPECT_EQ(s.window_requests, 0);
  EXPECT_TRUE(std::isnan(s.latency_mean));
  EXPECT_TRUE(std::isnan(s.slo_attainment_dlora));
  EXPECT_TRUE(std::isnan(s.window_throughput_rps));
  EXPECT_DOUBLE_EQ(s.throughput_rps, 2.0 / 3.0);  // the whole run still counts
}

TEST(Summarize, EmptyGivesZerosAndNaN) {
  const Summary s = summarize(RunRecords{});
  EXPECT_EQ(s.requests, 0);
  EXPECT_EQ(s.finished, 0);
  EXPECT_EQ(s.makespan, 0.0);
  EXPECT_EQ(s.throughput_rps, 0.0);
  EXPECT_EQ(s.throughput_tokens, 0.0);
  EXPECT_TRUE(std::isnan(s.latency_mean));
  EXPECT_TRUE(std::isnan(s.latency_p99));
  EXPECT_TRUE(std::isnan(s.per_token_latency_mean));
  EXPECT_TRUE(std::isnan(s.ttft_mean));
  EXPECT_TRUE(std::isnan(s.queueing_p90));
  EXPECT_EQ(s.iterations, 0);
  EXPECT_EQ(s.switch_time_total, 0.0);
}

TEST(Summarize, OddInputDoesNotCrash) {
  RunRecords rec;
  // Finished with zero output tokens, NaN arrival, a status and event kind out of range.
  rec.requests.push_back(request(0, 1.0, 1.0, 1.0, 0));
  rec.requests.push_back(request(1, kNoTime, 2.0, 3.0, 5));
  RequestRecord bad = request(2, 0.0, 1.0, 2.0, 1);
  bad.status = 42;
  rec.requests.push_back(bad);
  EventRecord e;
  e.kind = 99;
  rec.events.push_back(e);
  const Summary s = summarize(rec);
  EXPECT_EQ(s.requests, 3);
  EXPECT_EQ(s.finished, 2);
  EXPECT_DOUBLE_EQ(s.latency_mean, 0.0);  // only request 0 has a latency
  EXPECT_TRUE(std::isnan(s.per_token_latency_mean));
  // First arrival 0 (request 2 counts as arrived), last finish 1: one request in one second.
  EXPECT_DOUBLE_EQ(s.makespan, 1.0);
  EXPECT_DOUBLE_EQ(s.throughput_rps, 1.0);
}

TEST(SummaryFields, CoverEveryField) {
  // Distinct values through the field table, read back by member: a field missing from the
  // table keeps its default and fails here.
  Summary s;
  int i = 1;
  for (const auto& f : summary_fields())
    std::visit([&](auto m) { s.*m = static_cast<std::remove_reference_t<decltype(s.*m)>>(i++); },
               f.member);
  EXPECT_EQ(i - 1, 47);
  EXPECT_EQ(s.requests, 1);
  EXPECT_EQ(s.wall_seconds, 47.0);
  EXPECT_EQ(s.switch_time_total, 37.0);
}

}  // namespace
}  // namespace lorasched
