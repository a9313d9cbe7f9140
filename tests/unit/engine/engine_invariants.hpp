// Invariants every run must satisfy, whatever the scheduler, checked on its records:
// requests finish once with the requested length, times are ordered, iterations of a
// replica do not overlap and respect the batch limits, merged batches hold one adapter,
// token counts add up, switches and preemptions are recorded consistently.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/cluster/simulation.hpp"
#include "core/config/experiment.hpp"
#include "core/metrics/records.hpp"
#include "core/plugin/loader.hpp"
#include "core/workload/workload.hpp"

namespace lorasched::test {

inline constexpr double kEps = 1e-9;

struct Expect {
  bool costmodel_artifact = false;  // durations are the dlora-artifact model's 15 / 27 ms
  bool preemption = false;          // the run must preempt at least once
};

inline int64_t count_events(const RunRecords& r, EventKind kind, int32_t replica = -2) {
  return std::count_if(r.events.begin(), r.events.end(), [&](const EventRecord& e) {
    return e.kind == static_cast<int8_t>(kind) && (replica == -2 || e.replica == replica);
  });
}

inline void check_invariants(const Experiment& e, const RunResult& res, int64_t pool_blocks,
                             const Expect& expect) {
  const RunRecords& R = res.records;
  const auto specs = generate_workload(e.workload, e.adapters.count, e.run.seed);
  const int32_t B = e.engine.max_batch_size;
  const int32_t cap =
      e.engine.max_adapters_per_batch > 0 ? e.engine.max_adapters_per_batch : e.adapters.count;

  // ---- requests: each finished once, with what it asked for, times in order ----------------
  ASSERT_EQ(R.requests.size(), specs.size());
  int64_t sum_prompt = 0, sum_output = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord& q = R.requests[i];
    const RequestSpec& s = specs[i];
    SCOPED_TRACE("request " + std::to_string(i));
    EXPECT_EQ(q.id, s.id);
    EXPECT_EQ(q.adapter, s.adapter);
    EXPECT_EQ(q.prompt_tokens, s.prompt_tokens);
    EXPECT_DOUBLE_EQ(q.arrival, s.arrival);
    EXPECT_EQ(q.status, static_cast<int8_t>(RequestStatus::finished));
    EXPECT_EQ(q.output_tokens, s.output_tokens);
    EXPECT_GE(q.replica, 0);
    EXPECT_LT(q.replica, e.cluster.replicas);
    EXPECT_TRUE(std::isfinite(q.first_scheduled) && std::isfinite(q.first_token) &&
                std::isfinite(q.finish));
    EXPECT_LE(q.arrival, q.first_scheduled);
    EXPECT_LT(q.first_scheduled, q.first_token);
    EXPECT_LE(q.first_token, q.finish);
    EXPECT_NEAR(q.queueing_delay, q.first_scheduled - q.arrival, kEps);
    EXPECT_GT(q.exec_time, 0);
    EXPECT_LE(q.exec_time, q.finish - q.first_scheduled + kEps);
    sum_prompt += s.prompt_tokens;
    sum_output += s.output_tokens;
  }

  // ---- iterations: per replica, numbered 0.., no overlap, limits -----------------------------
  std::map<int32_t, std::vector<const IterationRecord*>> by_replica;
  for (const auto& it : R.iterations) by_replica[it.replica].push_back(&it);
  for (auto& [rep, its] : by_replica) {
    std::sort(its.begin(), its.end(), [](auto* a, auto* b) { return a->iteration < b->iteration; });
    for (size_t k = 0; k < its.size(); ++k) {
      const IterationRecord& it = *its[k];
      SCOPED_TRACE("replica " + std::to_string(rep) + " iteration " + std::to_string(it.iteration));
      EXPECT_EQ(it.iteration, static_cast<int64_t>(k));
      EXPECT_GE(it.start, 0);
      EXPECT_GE(it.switch_time, 0);
      EXPECT_GT(it.duration, 0);
      if (k + 1 < its.size()) {
        EXPECT_LE(it.start + it.switch_time + it.duration, its[k + 1]->start + kEps)
            << "iterations overlap";
      }
      EXPECT_GE(it.batch_size, 1);
      EXPECT_LE(it.batch_size, B);
      EXPECT_LE(it.prefill_tokens, e.engine.max_batched_tokens);
      EXPECT_LE(it.decode_tokens, it.batch_size);
      EXPECT_LE(it.kv_blocks_used, pool_blocks);
      EXPECT_GE(it.distinct_adapters, 1);
      // mode: 0 unmerged, 1 merged, 2 mixed (one adapter merged, others beside it).
      EXPECT_TRUE(it.mode >= 0 && it.mode <= 2) << "mode " << int(it.mode);
      if (it.mode == 1) {
        EXPECT_GE(it.merged_adapter, 0);
        EXPECT_EQ(it.distinct_adapters, 1);
      } else if (it.mode == 2) {
        EXPECT_GE(it.merged_adapter, 0);
        EXPECT_LE(it.distinct_adapters, cap + 1);
      } else {
        EXPECT_EQ(it.merged_adapter, -1);
        EXPECT_LE(it.distinct_adapters, cap);
      }
      if (expect.costmodel_artifact && it.mode != 2) {
        EXPECT_DOUBLE_EQ(it.duration, it.mode == 1 ? 0.015 : 0.027);
      }
    }
  }

  // ---- batches: who ran where ----------------------------------------------------------------
  ASSERT_FALSE(R.batches.empty()) << "the experiment must set [metrics] log_batches = true";
  std::map<std::pair<int32_t, int64_t>, const IterationRecord*> iter_of;
  for (const auto& it : R.iterations) iter_of[{it.replica, it.iteration}] = &it;
  std::map<std::pair<int32_t, int64_t>, std::vector<const BatchLogRecord*>> rows;
  for (const auto& b : R.batches) rows[{b.replica, b.iteration}].push_back(&b);
  EXPECT_EQ(rows.size(), R.iterations.size())
      << "an iteration without batch rows, or rows without one";
  std::vector<int64_t> appearances(specs.size(), 0);
  std::vector<double> first_start(specs.size(), INFINITY), first_end(specs.size(), INFINITY),
      last_end(specs.size(), -INFINITY);
  for (const auto& [key, list] : rows) {
    auto found = iter_of.find(key);
    ASSERT_NE(found, iter_of.end()) << "batch rows of a missing iteration";
    const IterationRecord& it = *found->second;
    SCOPED_TRACE("replica " + std::to_string(key.first) + " iteration " +
                 std::to_string(key.second));
    EXPECT_EQ(static_cast<int32_t>(list.size()), it.batch_size);
    std::set<int64_t> ids;
    std::set<int32_t> adapters;
    std::vector<int32_t> positions;
    const double end = it.start + it.switch_time + it.duration;
    for (const BatchLogRecord* b : list) {
      ASSERT_GE(b->request, 0);
      ASSERT_LT(b->request, static_cast<int64_t>(specs.size()));
      EXPECT_TRUE(ids.insert(b->request).second) << "request " << b->request << " twice in a batch";
      positions.push_back(b->position);
      const RequestRecord& q = R.requests[static_cast<size_t>(b->request)];
      adapters.insert(q.adapter);
      if (it.mode == 1) {
        EXPECT_EQ(q.adapter, it.merged_adapter) << "merged batch holds another adapter";
      }
      EXPECT_LE(q.arrival, it.start + kEps) << "request " << b->request << " ran before it arrived";
      EXPECT_GE(q.finish, end - kEps) << "request " << b->request << " ran after it finished";
      const size_t id = static_cast<size_t>(b->request);
      ++appearances[id];
      first_start[id] = std::min(first_start[id], it.start);
      first_end[id] = std::min(first_end[id], end);
      last_end[id] = std::max(last_end[id], end);
    }
    std::sort(positions.begin(), positions.end());
    for (size_t p = 0; p < positions.size(); ++p) EXPECT_EQ(positions[p], static_cast<int32_t>(p));
    EXPECT_EQ(static_cast<int32_t>(adapters.size()), it.distinct_adapters);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord& q = R.requests[i];
    SCOPED_TRACE("request " + std::to_string(i));
    EXPECT_EQ(appearances[i], q.output_tokens) << "one token per iteration it is in";
    EXPECT_DOUBLE_EQ(first_start[i], q.first_scheduled);
    EXPECT_DOUBLE_EQ(first_end[i], q.first_token);
    EXPECT_DOUBLE_EQ(last_end[i], q.finish);
  }

  // ---- token accounting ----------------------------------------------------------------------
  int64_t sum_prefill_tokens = 0, sum_decode = 0, sum_batch = 0;
  for (const auto& it : R.iterations) {
    sum_prefill_tokens += it.prefill_tokens;
    sum_decode += it.decode_tokens;
    sum_batch += it.batch_size;
  }
  const int64_t recomputes = count_events(R, EventKind::preempt_recompute);
  const int64_t swaps = count_events(R, EventKind::preempt_swap);
  const int64_t swap_ins = count_events(R, EventKind::swap_in);
  const int64_t prefill_entries = sum_batch - sum_decode;
  EXPECT_EQ(sum_batch, sum_output);
  EXPECT_EQ(prefill_entries, static_cast<int64_t>(specs.size()) + recomputes)
      << "one prefill per request plus one per recompute preemption";
  EXPECT_EQ(sum_decode, sum_output - prefill_entries);
  if (recomputes == 0) {
    EXPECT_EQ(sum_prefill_tokens, sum_prompt);
    EXPECT_EQ(sum_decode, sum_output - static_cast<int64_t>(specs.size()));
  } else {
    EXPECT_GT(sum_prefill_tokens, sum_prompt);
  }

  // ---- preemption ----------------------------------------------------------------------------
  int64_t request_preemptions = 0;
  for (const auto& q : R.requests) request_preemptions += q.preemptions;
  EXPECT_EQ(request_preemptions, recomputes + swaps);
  EXPECT_EQ(swap_ins, swaps) << "every swapped-out request came back";
  if (expect.preemption) {
    EXPECT_GT(recomputes + swaps, 0) << "the KV pool was meant to force preemption";
    if (e.engine.preemption == Preemption::swap) {
      EXPECT_GT(swaps, 0);
    } else {
      EXPECT_EQ(swaps, 0);
    }
  }

  // ---- switches: one merge per iteration entering an adapter, one unmerge per leaving --------
  for (const auto& [rep, its] : by_replica) {
    int32_t prev = -1;
    int64_t merges = 0, unmerges = 0;
    for (const IterationRecord* it : its) {
      if (it->merged_adapter != prev) {
        if (prev != -1) ++unmerges;
        if (it->merged_adapter != -1) ++merges;
      }
      prev = it->merged_adapter;
    }
    // A fused switch (one adapter_switch event) is both an unmerge and a merge.
    const int64_t fused = count_events(R, EventKind::adapter_switch, rep);
    EXPECT_EQ(count_events(R, EventKind::merge, rep) + fused, merges) << "replica " << rep;
    EXPECT_EQ(count_events(R, EventKind::unmerge, rep) + fused, unmerges) << "replica " << rep;
    // What an iteration paid before its batch is the sum of the costs recorded in that window.
    for (const IterationRecord* it : its) {
      double paid = 0;
      for (const auto& ev : R.events)
        if (ev.replica == rep && ev.duration > 0 && ev.time >= it->start - kEps &&
            ev.time < it->start + it->switch_time - kEps)
          paid += ev.duration;
      EXPECT_NEAR(paid, it->switch_time, 1e-9)
          << "replica " << rep << " iteration " << it->iteration;
    }
  }
  for (const auto& ev : R.events) {
    EXPECT_TRUE(std::isfinite(ev.time));
    EXPECT_GE(ev.time, 0);
    EXPECT_GE(ev.kind, 0);
    EXPECT_LT(ev.kind, kNumEventKinds);
  }
}

// Every field of two runs' records, NaN equal to NaN; decision_wall_us (wall clock) excluded.
inline bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

#define LORASCHED_SAME(field)                                                         \
  EXPECT_TRUE(same(static_cast<double>(a[i].field), static_cast<double>(b[i].field))) \
      << what << " row " << i << " field " #field ": " << +a[i].field << " vs " << +b[i].field

inline void expect_identical(const RunRecords& ra, const RunRecords& rb) {
  {
    const auto& a = ra.requests;
    const auto& b = rb.requests;
    const char* what = "requests";
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      LORASCHED_SAME(id);
      LORASCHED_SAME(adapter);
      LORASCHED_SAME(replica);
      LORASCHED_SAME(arrival);
      LORASCHED_SAME(first_scheduled);
      LORASCHED_SAME(first_token);
      LORASCHED_SAME(finish);
      LORASCHED_SAME(prompt_tokens);
      LORASCHED_SAME(output_tokens);
      LORASCHED_SAME(queueing_delay);
      LORASCHED_SAME(exec_time);
      LORASCHED_SAME(migrations);
      LORASCHED_SAME(preemptions);
      LORASCHED_SAME(status);
    }
  }
  {
    const auto& a = ra.iterations;
    const auto& b = rb.iterations;
    const char* what = "iterations";
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      LORASCHED_SAME(replica);
      LORASCHED_SAME(iteration);
      LORASCHED_SAME(start);
      LORASCHED_SAME(switch_time);
      LORASCHED_SAME(duration);
      LORASCHED_SAME(mode);
      LORASCHED_SAME(merged_adapter);
      LORASCHED_SAME(batch_size);
      LORASCHED_SAME(prefill_tokens);
      LORASCHED_SAME(decode_tokens);
      LORASCHED_SAME(distinct_adapters);
      LORASCHED_SAME(queued);
      LORASCHED_SAME(kv_blocks_used);
      LORASCHED_SAME(alpha);
      LORASCHED_SAME(beta);
    }
  }
  {
    const auto& a = ra.events;
    const auto& b = rb.events;
    const char* what = "events";
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      LORASCHED_SAME(time);
      LORASCHED_SAME(replica);
      LORASCHED_SAME(kind);
      LORASCHED_SAME(adapter);
      LORASCHED_SAME(request);
      LORASCHED_SAME(duration);
      LORASCHED_SAME(bytes);
      LORASCHED_SAME(other_replica);
      LORASCHED_SAME(value);
      LORASCHED_SAME(value2);
    }
  }
  {
    const auto& a = ra.batches;
    const auto& b = rb.batches;
    const char* what = "batches";
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      LORASCHED_SAME(iteration);
      LORASCHED_SAME(replica);
      LORASCHED_SAME(request);
      LORASCHED_SAME(position);
    }
  }
}

#undef LORASCHED_SAME

}  // namespace lorasched::test
