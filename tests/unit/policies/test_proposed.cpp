// The proposed policies on hand-built states (docs/study.md): the predictive scheduler
// switches ahead of a scripted burst that dLoRA only reacts to; the cost-aware threshold
// never merges when the measured gain is below the measured switch cost; mixed batches
// keep the hot adapter merged without excluding anyone.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "policy_util.hpp"

namespace lorasched {
namespace {

using api::Mode;
using test::load;
using test::plan;

// A background of 12 queued requests over adapters 0, 2, 3, and the first 4 requests of a
// burst of adapter 1 (100 req/s from t = 1.0), all told to the scheduler as arrivals.
testkit::ReplicaBuilder burst_state(api::Scheduler& s) {
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 12; ++i) {
    const double t = 0.08 * i;  // 0 .. 0.88 s
    b.add(i % 3 == 0 ? 0 : (i % 3 == 1 ? 2 : 3), t);
  }
  for (int i = 0; i < 4; ++i) b.add(1, 1.0 + 0.01 * i);
  b.now(1.04);
  for (const auto& r : b.view().queued) EXPECT_TRUE(s.checked_on_arrival(r, r.arrival).is_ok());
  return b;
}

TEST(DloraPredictive, MergesAheadOfABurstThatDloraWaitsFor) {
  auto thr = load<api::Threshold>("fixed");
  auto dlora = load<api::Scheduler>("dlora", {}, thr.get());
  auto b1 = burst_state(*dlora);
  // dLoRA: adapter 1 holds 4 of 16 queued: 4 < 1.0 x 16, unmerged.
  EXPECT_EQ(plan(*dlora, b1.view()).mode, Mode::unmerged);

  auto thr2 = load<api::Threshold>("fixed");
  auto pred = load<api::Scheduler>("dlora-predictive",
                                   {{"tau_fast", 0.05}, {"horizon_iters", 16.0}}, thr2.get());
  auto b2 = burst_state(*pred);
  // The fast rate of adapter 1 (~70 req/s over the last 40 ms) is a burst against its slow
  // rate: 4 + ~70 x 16 x 0.02 s = ~26 >= 16 -> merge adapter 1 now.
  const auto p = plan(*pred, b2.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
}

TEST(DloraPredictive, WithoutArrivalsItIsDlora) {
  // No burst, steady background: the forecast adds little and decisions match dLoRA's.
  auto thr = load<api::Threshold>("fixed");
  auto thr2 = load<api::Threshold>("fixed");
  auto dlora = load<api::Scheduler>("dlora", {}, thr.get());
  auto pred = load<api::Scheduler>("dlora-predictive", {{"horizon_iters", 0.0}}, thr2.get());
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 10; ++i) b.add(i < 7 ? 1 : 2, 0.01 * i);
  EXPECT_EQ(plan(*dlora, b.view()).mode, plan(*pred, b.view()).mode);
  b.add_many(1, 9, 1.0);
  const auto a = plan(*dlora, b.view()), c = plan(*pred, b.view());
  EXPECT_EQ(a.mode, c.mode);
  EXPECT_EQ(a.merged_adapter, c.merged_adapter);
  EXPECT_EQ(a.requests, c.requests);
  EXPECT_EQ(a.tail, c.tail);
  EXPECT_EQ(a.tail_adapter, c.tail_adapter);
}

TEST(DloraPredictive, OracleReadsTheFuture) {
  const auto dir = std::filesystem::temp_directory_path() / "lorasched-oracle-test";
  std::filesystem::create_directories(dir);
  const auto trace = (dir / "trace.csv").string();
  {
    std::ofstream f(trace);
    f << "arrival_s,adapter,prompt_tokens,output_tokens\n";
    for (int i = 0; i < 40; ++i) f << 1.05 + 0.001 * i << ",1,8,8\n";  // 40 arrivals just ahead
  }
  auto thr = load<api::Threshold>("fixed");
  auto pred = load<api::Scheduler>(
      "dlora-predictive", {{"forecast", std::string("oracle")}, {"trace", trace}}, thr.get());
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 16; ++i) b.add(i % 4, 0.05 * i);
  b.now(1.0);
  const auto p = plan(*pred, b.view());  // 4 + 40 arrivals within 8 x 20 ms -> merge adapter 1
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
}

api::IterationOutcome outcome(Mode mode, api::AdapterId merged, double duration,
                              double switch_time) {
  api::IterationOutcome o;
  o.mode = mode;
  o.merged_adapter = merged;
  o.duration = duration;
  o.switch_time = switch_time;
  o.batch_size = 8;
  return o;
}

TEST(CostAware, NeverMergesWhenTheGainIsBelowTheSwitchCost) {
  // Measured: merged 10 ms, unmerged 12 ms, switches 200 ms; merged periods ~8 iterations:
  // alpha = (0.010 + 2 x 0.2 / 8) / 0.012 = 5: even a queue of only adapter 1 (16 >= 16)
  // does not pay for its switches.
  auto thr = load<api::Threshold>("cost-aware", {{"ewma", 1.0}});
  ASSERT_TRUE(thr->checked_observe(outcome(Mode::unmerged, api::kNoAdapter, 0.012, 0)).is_ok());
  ASSERT_TRUE(thr->checked_observe(outcome(Mode::merged, 1, 0.010, 0.200)).is_ok());
  ASSERT_TRUE(thr->checked_observe(outcome(Mode::merged, 1, 0.010, 0)).is_ok());
  EXPECT_NEAR(thr->current().alpha, 5.0, 1e-9);
  EXPECT_NEAR(thr->current().beta, 0.010 / 0.012, 1e-9);
  auto s = load<api::Scheduler>("dlora", {}, thr.get());
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 16, 0.0);
  EXPECT_EQ(plan(*s, b.view()).mode, Mode::unmerged);
}

TEST(CostAware, MergesWhenSwitchesAreCheap) {
  // Switches of 1 ms: alpha = (0.010 + 0.002 / 8) / 0.012 = 0.854: 14 of 16 queued is enough.
  auto thr = load<api::Threshold>("cost-aware", {{"ewma", 1.0}});
  ASSERT_TRUE(thr->checked_observe(outcome(Mode::unmerged, api::kNoAdapter, 0.012, 0)).is_ok());
  ASSERT_TRUE(thr->checked_observe(outcome(Mode::merged, 1, 0.010, 0.001)).is_ok());
  auto s = load<api::Scheduler>("dlora", {}, thr.get());
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 14, 0.0).add_many(2, 2, 0.5);
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
  EXPECT_LT(thr->current().beta, thr->current().alpha);
}

TEST(Mixed, KeepsTheHotAdapterMergedWithOthersBeside) {
  auto s = load<api::Scheduler>("mixed");
  testkit::ReplicaBuilder b(4);
  // 10 of adapter 2, 3 of adapter 0, 3 of adapter 3, all rank 16: unmerged work 16 x 16 =
  // 256; mixed on adapter 2: 6 x 32 = 192 < 0.8 x 256: mixed on 2, nobody excluded.
  for (int i = 0; i < 16; ++i) b.add(i < 10 ? 2 : (i < 13 ? 0 : 3), 0.01 * i);
  auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::mixed);
  EXPECT_EQ(p.merged_adapter, 2);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 16u);
  EXPECT_TRUE(testkit::check_plan(b.view(), p).is_ok());
}

TEST(Mixed, StaysUnmergedWhenNoAdapterDominates) {
  auto s = load<api::Scheduler>("mixed");
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 16; ++i) b.add(i % 4, 0.01 * i);  // 4 each: mixed 12 x 32 > 16 x 16
  EXPECT_EQ(plan(*s, b.view()).mode, Mode::unmerged);
}

TEST(Mixed, HysteresisKeepsTheMergedAdapter) {
  auto s = load<api::Scheduler>("mixed");
  testkit::ReplicaBuilder b(4);
  // Merged on 1 already; adapter 1 has 7 of 16 and adapter 3 has 7: mixed on 1 costs 9 x 32 =
  // 288 vs unmerged 256: within the 20% margin, so it stays rather than pay a switch.
  b.merged(1);
  for (int i = 0; i < 16; ++i) b.add(i < 7 ? 1 : (i < 14 ? 3 : 0), 0.01 * i);
  auto p = plan(*s, b.view());
  EXPECT_EQ(p.merged_adapter, 1);
  EXPECT_EQ(p.mode, Mode::mixed);
}

TEST(Mixed, SingleAdapterBatchIsPlainMerged) {
  auto s = load<api::Scheduler>("mixed");
  testkit::ReplicaBuilder b(4);
  b.add_many(3, 5, 0.0);
  auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 3);
}

}  // namespace
}  // namespace lorasched
