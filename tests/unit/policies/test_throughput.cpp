// The throughput-aware schedulers (`throughput-aware`, `dlora-mixed`) on hand-built states.
//
// Until they have observed an iteration, both price batches with their prior, dLoRA's
// profile: every merged iteration 15 ms, an unmerged one 15 ms + 0.75 ms per distinct adapter
// (27 ms with 16), a mixed one 15 ms + 0.75 ms per other adapter + 0.75 ms for the merged
// adapter's subtracted pass; a switch 20 ms, spread over 16 iterations (1.25 ms). A batch of n
// requests does 15 n / 16 ms of work (its share of a full merged batch). So, by hand:
//   efficiency(merged, n)           = (15 n / 16) / 15                  = n / 16
//   efficiency(unmerged, n, D)      = (15 n / 16) / (15 + 0.75 D)
//   efficiency(mixed, n, d others)  = (15 n / 16) / (15 + 0.75 (d + 1))
// each with 1.25 ms added to the time when the plan changes the weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "policy_util.hpp"

namespace lorasched {
namespace {

using api::Mode;
using test::load;
using test::plan;

std::vector<api::AdapterId> adapters_of(const testkit::ReplicaBuilder& bconst,
                                        const api::IterationPlan& p) {
  auto& b = const_cast<testkit::ReplicaBuilder&>(bconst);
  std::vector<api::AdapterId> out;
  for (api::RequestId id : p.requests)
    for (const auto& r : b.view().queued)
      if (r.id == id) out.push_back(r.adapter);
  return out;
}

// The first 16 in FCFS order: 12 of adapter 1 and, at every fourth place, adapters 0, 2, 3, 0;
// then 8 more of adapter 1.
testkit::ReplicaBuilder one_adapter_dominates() {
  testkit::ReplicaBuilder b(4);
  const api::AdapterId others[] = {0, 2, 3, 0};
  for (int i = 0; i < 16; ++i) b.add(i % 4 == 3 ? others[i / 4] : 1, 0.01 * i);
  b.add_many(1, 8, 0.2);
  b.now(0.3);
  return b;
}

TEST(ThroughputAware, MergesWhenOneAdapterFillsTheBatch) {
  // Unmerged FCFS: 16 requests, 4 adapters: 15 / 18 = 0.833. Merged on 1: 16 of its 20
  // requests: 15 / (15 + 1.25) = 0.923 > 1.05 x 0.833: merge, its oldest 16 first.
  auto s = load<api::Scheduler>("throughput-aware");
  auto b = one_adapter_dominates();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
  ASSERT_GE(p.requests.size(), 16u);
  const auto a = adapters_of(b, p);
  EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](api::AdapterId x) { return x == 1; }));
  // FCFS within the adapter: ids 0, 1, 2, 4, 5, 6, 8, ...
  EXPECT_EQ(p.requests[0], 0);
  EXPECT_EQ(p.requests[3], 4);
}

TEST(ThroughputAware, StaysUnmergedWhenNoAdapterDominates) {
  // 4 adapters x 4 requests. Unmerged: 15 / 18 = 0.833. Merged on any: 4 / 16 x 15 / 16.25 =
  // 0.23. Mixed on any, all three others riding: 15 / (15 + 3 + 1.25) = 0.779. Unmerged.
  auto s = load<api::Scheduler>("throughput-aware");
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 16; ++i) b.add(i % 4, 0.01 * i);
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  ASSERT_EQ(p.requests.size(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(p.requests[static_cast<size_t>(i)], i);
}

// Merged on 1 with 14 of its requests queued; 16 older ones of adapter 2.
testkit::ReplicaBuilder near_tie() {
  testkit::ReplicaBuilder b(4);
  b.add_many(2, 16, 0.0, 0.01);
  b.add_many(1, 14, 0.2, 0.01);
  b.merged(1).now(0.4);
  return b;
}

TEST(ThroughputAware, HysteresisKeepsTheMergedAdapterOnANearTie) {
  // Keeping adapter 1: merged, 14: 14 / 16 = 0.875; mixed, 14 + 2 riders of adapter 2:
  // 15 / 16.5 = 0.909. Other weights: merged on 2, 16: 15 / (15 + 1.25) = 0.923; unmerged
  // (FCFS: 16 of adapter 2, one adapter): 15 / (15.75 + 1.25) = 0.882. The best, 0.923, is
  // within 1.05 x 0.909 = 0.955: keep adapter 1, mixed.
  auto s = load<api::Scheduler>("throughput-aware");
  auto b = near_tie();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::mixed);
  EXPECT_EQ(p.merged_adapter, 1);
  auto a = adapters_of(b, p);
  ASSERT_GE(a.size(), 16u);
  a.resize(16);  // the batch; then fallbacks of the same adapters
  EXPECT_EQ(std::count(a.begin(), a.end(), 1), 14);
  EXPECT_EQ(std::count(a.begin(), a.end(), 2), 2);
}

TEST(ThroughputAware, WithoutHysteresisItSwitches) {
  auto s = load<api::Scheduler>("throughput-aware", {{"margin", 0.0}});
  auto b = near_tie();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 2);
}

TEST(ThroughputAware, WithoutRidersItComparesMergedAndUnmergedOnly) {
  // max_riders = 0: keep 1 merged (0.875) or merged on 2 (0.923 > 1.05 x 0.875 = 0.919).
  auto s = load<api::Scheduler>("throughput-aware", {{"max_riders", int64_t{0}}});
  auto b = near_tie();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 2);
}

TEST(ThroughputAware, NoFlappingOverAlternatingNearTies) {
  // The near tie, with the roles of adapters 1 and 2 swapped at every iteration: with the
  // margin the weights never move; without it they move each time the other adapter leads.
  for (double margin : {0.05, 0.0}) {
    auto s = load<api::Scheduler>("throughput-aware", {{"margin", margin}});
    api::AdapterId weights = 1;
    int switches = 0;
    for (int it = 0; it < 6; ++it) {
      const api::AdapterId hot = it % 2 == 0 ? 2 : 1, cold = hot == 2 ? 1 : 2;
      testkit::ReplicaBuilder b(4);
      b.add_many(hot, 16, 0.0, 0.01).add_many(cold, 14, 0.2, 0.01);
      b.merged(weights).now(0.4).iteration(it);
      const auto p = plan(*s, b.view());
      if (p.merged_adapter != weights) ++switches;
      weights = p.merged_adapter;
    }
    if (margin > 0)
      EXPECT_EQ(switches, 0);
    else
      EXPECT_GE(switches, 3);
  }
}

TEST(ThroughputAware, GuardPutsAStarvingRequestIntoTheMergedBatch) {
  // Merged on 1 with 20 of its requests; one request of adapter 3, the oldest, has waited 1 s.
  testkit::ReplicaBuilder b(4);
  b.add(3, 0.0).add_many(1, 20, 0.1);
  b.merged(1).now(1.0);
  {
    // Guard at 0.5 s: merged on 1 may not exclude it. Mixed on 1, 15 + it: 15 / 16.5 = 0.909;
    // unmerged, it first: 15 / (16.5 + 1.25) = 0.845. Mixed, with request 0 in the batch.
    auto s = load<api::Scheduler>("throughput-aware");
    const auto p = plan(*s, b.view());
    EXPECT_EQ(p.mode, Mode::mixed);
    EXPECT_EQ(p.merged_adapter, 1);
    const auto first16 = std::vector<api::RequestId>(p.requests.begin(), p.requests.begin() + 16);
    EXPECT_NE(std::find(first16.begin(), first16.end(), 0), first16.end());
  }
  {
    // Without the guard: merged on 1, 16 of its requests: 1.0, and request 0 waits.
    auto s = load<api::Scheduler>("throughput-aware", {{"guard_s", 0.0}});
    const auto p = plan(*s, b.view());
    EXPECT_EQ(p.mode, Mode::merged);
    EXPECT_EQ(std::find(p.requests.begin(), p.requests.end(), 0), p.requests.end());
  }
}

TEST(ThroughputAware, GuardDoesNotPromoteRequestsBehindTheFcfsHead) {
  // The starving request of adapter 3 is 17th in FCFS order: FCFS would not run it either,
  // so the guard leaves it; merged on 1 with its 16 (all also waiting > 0.5 s) wins.
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 16, 0.0).add(3, 0.2);
  b.merged(1).now(1.0);
  auto s = load<api::Scheduler>("throughput-aware");
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
}

TEST(ThroughputAware, RidersPayOnlyWhenTheirSlotsCoverTheExtraPass) {
  // Prior unmerged time 75 ms with 16 adapters: 3.75 ms per adapter on the LoRA path. Merged on
  // 1 with 8 requests: 7.5 / 15 = 0.5. Adapter 2's 5 requests ride: 12.19 / (15 + 7.5) = 0.542
  // (its pass and the subtracted pass of adapter 1). Then adapter 3's single request would give
  // 13.13 / 26.25 = 0.5 < 0.542: it stays out, and no fallback brings it in.
  auto s = load<api::Scheduler>("throughput-aware", {{"unmerge_time", 0.075}});
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 8, 0.0).add(3, 0.1).add_many(2, 5, 0.2);
  b.merged(1).now(0.3);
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::mixed);
  EXPECT_EQ(p.merged_adapter, 1);
  const auto a = adapters_of(b, p);
  EXPECT_EQ(a, (std::vector<api::AdapterId>{1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2}));
}

TEST(ThroughputAware, GroupedUnmergedBatchesHoldFewerAdapters) {
  // 8 single requests of adapters 0-7 (oldest), then 8 of adapter 8 and 8 of adapter 9.
  testkit::ReplicaBuilder b(10);
  for (int a = 0; a < 8; ++a) b.add(a, 0.01 * a);
  b.add_many(8, 8, 0.1).add_many(9, 8, 0.2);
  b.now(0.3);
  {
    // Grouped: adapters 8 and 9 whole: 15 / (15 + 1.5) = 0.909; mixed on 8 with 9 riding:
    // 15 / (16.5 + 1.25) = 0.845; merged on 8: 0.5 x 15 / 16.25. Unmerged, adapters 8 and 9.
    auto s = load<api::Scheduler>("throughput-aware", {{"unmerged_order", std::string("grouped")}},
                                  nullptr, 10);
    const auto p = plan(*s, b.view());
    EXPECT_EQ(p.mode, Mode::unmerged);
    auto a = adapters_of(b, p);
    a.resize(16);
    EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](api::AdapterId x) { return x >= 8; }));
  }
  {
    // FCFS: the 16 oldest hold 9 adapters: 15 / (15 + 6.75) = 0.69; mixed on 8 (or 9) with
    // the other riding, 0.845 > 1.05 x 0.69: mixed does the grouping.
    auto s = load<api::Scheduler>("throughput-aware", {}, nullptr, 10);
    const auto p = plan(*s, b.view());
    EXPECT_EQ(p.mode, Mode::mixed);
    EXPECT_EQ(p.merged_adapter, 8);
  }
}

TEST(ThroughputAware, AfterAPlanThatRanNothingItFallsBackToTheLeastMemory) {
  // Merged on 1 with 16 of its waiting requests: merged on 1. Planned again for the same
  // iteration with no outcome in between (admission took nothing): unmerged, the ready
  // request (one KV block) first, then FCFS.
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 16, 0.0).add(3, 0.5, 32, 16, api::RequestState::ready, 4);
  b.merged(1).now(0.6).iteration(7);
  auto s = load<api::Scheduler>("throughput-aware");
  const auto p1 = plan(*s, b.view());
  EXPECT_EQ(p1.mode, Mode::merged);
  const auto p2 = plan(*s, b.view());
  EXPECT_EQ(p2.mode, Mode::unmerged);
  ASSERT_EQ(p2.requests.size(), 17u);
  EXPECT_EQ(p2.requests[0], 16);
  EXPECT_EQ(p2.requests[1], 0);
  // The next iteration (after an outcome, weights clean) plans normally again: unmerged FCFS,
  // its 16 oldest of one adapter (15 / 15.75 = 0.952 against merging's 0.923), oldest first.
  api::IterationOutcome o;
  o.iteration = 7;
  o.mode = Mode::unmerged;
  o.duration = 0.02;
  ASSERT_TRUE(s->checked_observe(o).is_ok());
  b.merged(api::kNoAdapter).iteration(8);
  const auto p3 = plan(*s, b.view());
  EXPECT_EQ(p3.mode, Mode::unmerged);
  EXPECT_EQ(p3.requests[0], 0);
}

// Feeds `n` iterations whose time follows t = 15 ms + per_adapter x (adapters on the LoRA
// path), over queues of 16 requests spread over 2..16 adapters.
void train(api::Scheduler& s, double per_adapter, int n) {
  for (int it = 0; it < n; ++it) {
    const int k = 2 + it % 15;
    testkit::ReplicaBuilder b(16);
    for (int i = 0; i < 16; ++i) b.add(i % k, 0.01 * i);
    b.now(0.2).iteration(it);
    const auto p = plan(s, b.view());
    api::IterationOutcome o;
    o.iteration = it;
    o.mode = p.mode;
    o.merged_adapter = p.merged_adapter;
    const size_t take = std::min<size_t>(16, p.requests.size());
    std::vector<api::RequestId> batch(p.requests.begin(), p.requests.begin() + take);
    std::vector<api::AdapterId> lora;
    for (api::RequestId id : batch) {
      const api::AdapterId a = static_cast<api::AdapterId>(id % k);
      if (p.mode == Mode::merged || (p.mode == Mode::mixed && a == p.merged_adapter)) continue;
      if (std::find(lora.begin(), lora.end(), a) == lora.end()) lora.push_back(a);
    }
    if (p.mode == Mode::mixed && !lora.empty()) lora.push_back(-1);  // the subtracted pass
    o.batch = batch;
    o.batch_size = static_cast<int32_t>(take);
    o.start = 0.2;
    o.duration = 0.015 + per_adapter * static_cast<double>(lora.size());
    ASSERT_TRUE(s.checked_observe(o).is_ok());
  }
}

TEST(ThroughputAware, LearnsThatTheUnmergedPathIsCheapAndStopsMerging) {
  // The prior merges on this state (first test). After 60 iterations timed at 10 us per
  // adapter (an SGMV-like kernel), unmerged FCFS costs ~15.04 ms: 0.997 against merged's
  // 0.923: unmerged.
  auto s = load<api::Scheduler>("throughput-aware", {}, nullptr, 16);
  train(*s, 1e-5, 60);
  testkit::ReplicaBuilder b(16);
  const api::AdapterId others[] = {0, 2, 3, 0};
  for (int i = 0; i < 16; ++i) b.add(i % 4 == 3 ? others[i / 4] : 1, 0.01 * i);
  b.add_many(1, 8, 0.2);
  b.now(0.3);
  EXPECT_EQ(plan(*s, b.view()).mode, Mode::unmerged);
}

TEST(ThroughputAware, LearnsThatTheUnmergedPathIsDearAndMergesSooner) {
  // 9 of adapter 1 among 16 FCFS requests of 6 adapters (+ none queued beyond). Prior:
  // unmerged 15 / 19.5 = 0.769; merged on 1, 9: 9/16 x 15 / 16.25 = 0.519; mixed on 1 with all
  // others: 15 / (15 + 4.5 + 1.25) = 0.723: unmerged. Learned at 3 ms per adapter: unmerged
  // 15 / 33 = 0.455; merged 0.519 > 1.05 x 0.455: merged on 1.
  testkit::ReplicaBuilder b(16);
  const api::AdapterId others[] = {0, 2, 3, 4, 5, 0, 2};
  int o = 0;
  for (int i = 0; i < 16; ++i) b.add(i % 2 == 1 && o < 7 ? others[o++] : 1, 0.01 * i);
  b.now(0.3);
  auto prior = load<api::Scheduler>("throughput-aware", {}, nullptr, 16);
  EXPECT_EQ(plan(*prior, b.view()).mode, Mode::unmerged);
  auto learned = load<api::Scheduler>("throughput-aware", {}, nullptr, 16);
  train(*learned, 0.003, 60);
  const auto p = plan(*learned, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
}

// ---- dlora-mixed ----------------------------------------------------------------------------

TEST(DloraMixed, RidersFillTheMergedBatchDloraLeavesHalfEmpty) {
  // Iteration 1: 16 of adapter 1: dLoRA merges it (A2). Iteration 2: 10 of adapter 1 left and
  // 2 each of adapters 0, 2, 3: dLoRA stays merged (10 >= 0.556 x 16) on a batch of 10.
  // Riders, by the prior: 9.375 / 15 = 0.625 alone; + adapter 2's pair: 11.25 / 16.5 = 0.68;
  // + adapter 0's: 13.1 / 17.25 = 0.76; + adapter 3's: 15 / 18 = 0.83: all ride.
  for (bool mixed : {false, true}) {
    auto thr = load<api::Threshold>("fixed");
    auto s = mixed ? load<api::Scheduler>("dlora-mixed", {}, thr.get())
                   : load<api::Scheduler>("dlora", {}, thr.get());
    testkit::ReplicaBuilder b(4);
    b.add_many(1, 16, 0.0);
    b.now(0.1);
    const auto p1 = plan(*s, b.view());
    ASSERT_EQ(p1.mode, Mode::merged);
    ASSERT_EQ(p1.merged_adapter, 1);
    for (api::RequestId id = 10; id < 16; ++id) b.remove(id);
    b.add_many(2, 2, 0.2).add_many(0, 2, 0.3).add_many(3, 2, 0.4);
    b.merged(1).now(0.45).iteration(1);
    const auto p2 = plan(*s, b.view());
    if (!mixed) {
      EXPECT_EQ(p2.mode, Mode::merged);
      EXPECT_EQ(testkit::candidates(b.view(), p2).size(), 10u);  // A1: adapter 1's queue
      continue;
    }
    EXPECT_EQ(p2.mode, Mode::mixed);
    EXPECT_EQ(p2.merged_adapter, 1);
    EXPECT_TRUE(testkit::check_plan(b.view(), p2).is_ok());
    EXPECT_EQ(testkit::candidates(b.view(), p2).size(), p2.requests.size());
    EXPECT_EQ(adapters_of(b, p2),
              (std::vector<api::AdapterId>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 0, 0, 3, 3}));
  }
}

TEST(DloraMixed, GuardRidesOrUnmerges) {
  // Merged on 1 (A2 at t = 0.2); at t = 1.0 the request of adapter 3 (t = 0) has waited 1 s.
  for (const std::string action : {"ride", "unmerge"}) {
    auto thr = load<api::Threshold>("fixed");
    auto s = load<api::Scheduler>(
        "dlora-mixed", {{"guard_action", action}, {"max_riders", int64_t{0}}}, thr.get());
    testkit::ReplicaBuilder b(4);
    b.add(3, 0.0).add_many(1, 20, 0.05);
    b.now(0.2);
    const auto p1 = plan(*s, b.view());
    ASSERT_EQ(p1.mode, Mode::merged);
    b.merged(1).now(1.0).iteration(1);
    const auto p2 = plan(*s, b.view());
    if (action == "ride") {
      // It rides in the merged batch (taking a slot of adapter 1), riders otherwise off.
      EXPECT_EQ(p2.mode, Mode::mixed);
      EXPECT_EQ(p2.merged_adapter, 1);
      EXPECT_EQ(p2.requests[15], 0);
      EXPECT_EQ(std::count(p2.requests.begin(), p2.requests.begin() + 16, 0), 1);
    } else {
      // Merged is vetoed: unmerged FCFS, oldest (it) first.
      EXPECT_EQ(p2.mode, Mode::unmerged);
      EXPECT_EQ(p2.requests.front(), 0);
    }
  }
}

TEST(DloraMixed, WithoutRidersAndGuardItIsDlora) {
  // A random walk of queue states: both make the same plan at every step.
  auto t1 = load<api::Threshold>("dlora-adaptive", {{"estimate", std::string("constants")}});
  auto t2 = load<api::Threshold>("dlora-adaptive", {{"estimate", std::string("constants")}});
  auto ref = load<api::Scheduler>("dlora", {}, t1.get(), 6);
  auto s = load<api::Scheduler>("dlora-mixed", {{"max_riders", int64_t{0}}, {"guard_s", 0.0}},
                                t2.get(), 6);
  std::mt19937 rng(7);
  testkit::ReplicaBuilder b(6);
  std::vector<api::RequestId> live;
  api::RequestId next = 0;
  double t = 0;
  api::AdapterId weights = api::kNoAdapter;
  int merged_plans = 0;
  for (int it = 0; it < 200; ++it) {
    const int arrivals = static_cast<int>(rng() % 6);
    for (int i = 0; i < arrivals; ++i) {
      const api::AdapterId a = rng() % 3 == 0 ? static_cast<api::AdapterId>(rng() % 6) : 2;
      b.add(a, t);
      live.push_back(next++);
    }
    b.merged(weights).now(t).iteration(it);
    const auto p = plan(*ref, b.view());
    const auto q = plan(*s, b.view());
    ASSERT_EQ(p.mode, q.mode) << "iteration " << it;
    ASSERT_EQ(p.merged_adapter, q.merged_adapter) << "iteration " << it;
    ASSERT_EQ(p.requests, q.requests) << "iteration " << it;
    merged_plans += p.mode == Mode::merged;
    weights = p.merged_adapter;
    // The first requests of the plan finish at random.
    for (size_t i = 0; i < std::min<size_t>(p.requests.size(), 16); ++i)
      if (rng() % 4 == 0) {
        b.remove(p.requests[i]);
        live.erase(std::find(live.begin(), live.end(), p.requests[i]));
      }
    t += 0.02;
  }
  EXPECT_GT(merged_plans, 10);  // the walk exercised the merged rules
}

}  // namespace
}  // namespace lorasched
