// dLoRA's per-iteration decision on hand-built queue states, against the rules of its
// artifact (vllm/core/scheduler.py _credit_schedule; docs/dlora-artifact.md#decision,
// #credits, #thresholds). Each expected outcome below is derived by hand from those rules.
#include <gtest/gtest.h>

#include "policy_util.hpp"

namespace lorasched {
namespace {

using api::Mode;
using test::load;
using test::plan;

api::ReplicaLimits limits(int B, int cap) {
  api::ReplicaLimits l;
  l.max_batch_size = B;
  l.max_adapters_per_batch = cap;
  return l;
}

struct Dlora {
  PluginInstance<api::Threshold> threshold;
  PluginInstance<api::Scheduler> scheduler;
  Dlora(int N, int B, const std::string& thr = "fixed",
        std::map<std::string, api::ParamValue> thr_params = {},
        std::map<std::string, api::ParamValue> params = {}) {
    threshold = load<api::Threshold>(thr, thr_params, nullptr, N, limits(B, N));
    scheduler = load<api::Scheduler>("dlora", params, threshold.get(), N, limits(B, N));
  }
  api::IterationPlan operator()(const api::ReplicaView& v) { return plan(*scheduler, v); }
};

TEST(Dlora, LoneRequestMerges) {
  // |Q| = 1: n_max = 1 >= alpha (1.0) x |fcfs| (1), so A2 merges it
  // (docs/dlora-artifact.md#decision).
  Dlora d(4, 16);
  testkit::ReplicaBuilder b(4);
  b.add(3, 0.0);
  auto p = d(b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 3);
  EXPECT_EQ(testkit::candidates(b.view(), p), std::vector<api::RequestId>{0});
}

TEST(Dlora, NoAdapterDominatesRunsUnmergedFcfs) {
  // 7 of adapter 1 and 3 of adapter 2: n_max = 7 < 1.0 x 10 -> A3, the FCFS batch.
  Dlora d(4, 16);
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 10; ++i) b.add(i % 10 < 7 ? 1 : 2, 0.01 * i);
  auto p = d(b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 10u);
  EXPECT_EQ(testkit::candidates(b.view(), p).front(), 0);
}

TEST(Dlora, LowerAlphaMergesTheLargestQueue) {
  Dlora d(4, 16, "fixed", {{"alpha", 0.5}, {"beta", 0.3}});
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 10; ++i) b.add(i < 7 ? 1 : 2, 0.01 * i);
  auto p = d(b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 7u);
}

TEST(Dlora, TieGoesToTheLowerAdapterId) {
  // Adapters 2 and 1 both hold 2 requests (adapter 2's are older); alpha 0.5 x 4 = 2.
  Dlora d(4, 16, "fixed", {{"alpha", 0.5}, {"beta", 0.3}});
  testkit::ReplicaBuilder b(4);
  b.add(2, 0.0).add(2, 0.1).add(1, 0.2).add(1, 0.3);
  auto p = d(b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
}

TEST(Dlora, StaysMergedWhileQueueAboveBetaThenUnmerges) {
  Dlora d(4, 16);
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 16, 0.0).add_many(2, 4, 1.0);  // 16 >= 1.0 x |fcfs| 16: A2 merges adapter 1
  auto p = d(b.view());
  ASSERT_EQ(p.mode, Mode::merged);
  ASSERT_EQ(p.merged_adapter, 1);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 16u);  // cut to B
  // 9 of adapter 1 among 16 queued: 9 >= beta (0.5556) x 16 = 8.9: A1 stays merged.
  for (api::RequestId id = 0; id < 7; ++id) b.remove(id);
  b.add_many(3, 3, 2.0);
  p = d(b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 9u);
  // 8 of adapter 1 among 16: 8 < 8.9, and no queue reaches alpha x 16: unmerged FCFS.
  b.remove(7);
  b.add(2, 3.0);
  p = d(b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  EXPECT_EQ(p.merged_adapter, api::kNoAdapter);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 16u);
}

TEST(Dlora, StayMergedTakesTheWholeQueueNotCutToB) {
  Dlora d(2, 4);
  testkit::ReplicaBuilder b(2, 4);
  b.add_many(0, 10, 0.0);
  auto p = d(b.view());  // A2: cut to B
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 4u);
  p = d(b.view());  // A1: all 10 (admission stops at B)
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(testkit::candidates(b.view(), p).size(), 10u);
}

TEST(Dlora, CreditPriorityOverridesMergedBatching) {
  // credit_unit 1: adapters start at 1, enter credit priority at 2. Two old requests of
  // adapter 1 wait behind 20 of adapter 0 (B = 4). Call 0: A2 merges adapter 0 (the
  // positional transfer nets 0). Calls 1-3: A1 with a batch of 20 != |fcfs| 4, so each of
  // the 2 skipped requests moves batch_credit_cost/2 = 1/(0.5556 x 4)/2 to adapter 1:
  // credit 1 -> 1.45 -> 1.9 -> 2.35. Call 4: 2.35 >= 2, adapter 1's requests go first, then
  // FCFS fills the batch, unmerged (case C).
  Dlora d(2, 4, "fixed", {}, {{"credit_unit", 1.0}});
  testkit::ReplicaBuilder b(2, 4);
  b.add(1, 0.0).add(1, 0.001).add_many(0, 20, 0.01);
  for (int call = 0; call < 4; ++call) {
    auto p = d(b.view());
    EXPECT_EQ(p.mode, Mode::merged) << "call " << call;
    EXPECT_EQ(p.merged_adapter, 0) << "call " << call;
  }
  auto p = d(b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  ASSERT_EQ(testkit::candidates(b.view(), p).size(), 4u);
  EXPECT_EQ(testkit::candidates(b.view(), p)[0], 0);
  EXPECT_EQ(testkit::candidates(b.view(), p)[1], 1);
  EXPECT_EQ(testkit::candidates(b.view(), p)[2],
            2);  // the FCFS batch's adapter-0 requests fill the rest
  EXPECT_EQ(testkit::candidates(b.view(), p)[3], 3);
}

TEST(Dlora, UnmergedBatchRespectsTheAdapterCapacity) {
  api::ReplicaLimits l = limits(16, 2);
  auto thr = load<api::Threshold>("fixed", {}, nullptr, 4, l);
  auto s = load<api::Scheduler>("dlora", {}, thr.get(), 4, l);
  testkit::ReplicaBuilder b(4);
  b.limits(l);
  // 3 adapters interleaved, none dominant: the requests of the third adapter are skipped.
  for (int i = 0; i < 9; ++i) b.add(i % 3, 0.01 * i);
  auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  EXPECT_EQ(testkit::candidates(b.view(), p), (std::vector<api::RequestId>{0, 1, 3, 4, 6, 7}));
}

TEST(Dlora, AdaptiveThresholdsMoveAtModeSwitches) {
  // estimate = constants: the artifact's 15/27/20 ms. An unmerged period of 3 iterations
  // whose largest queue never changed adapter (v = 1) ends with a merge:
  //   t_merge = 0.015 x 3 + 0.02 x 1, t_unmerge = 0.027 x 3 + 0.02;
  //   Cm = 3 x 4 (adapter 1's 4 requests), Cu = 3 x 10
  //   tput_merge = 12 / 0.065 = 184.6 < tput_unmerge = 30 / 0.101 = 297: the unmerged
  //   period won, so beta += 0.05 (it stays below alpha).
  Dlora d(4, 16, "dlora-adaptive", {{"estimate", std::string("constants")}});
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 10; ++i) b.add(i < 4 ? 1 : (i % 2 ? 2 : 3), 0.01 * i);
  for (int call = 0; call < 3; ++call) ASSERT_EQ(d(b.view()).mode, Mode::unmerged);
  const double beta0 = d.threshold->current().beta;
  EXPECT_DOUBLE_EQ(beta0, 0.015 / 0.027);
  // Adapter 1 now holds 24 of 30 queued: 24 >= 1.0 x 16, A2 merges and ends the period.
  b.add_many(1, 20, 1.0);
  auto p = d(b.view());
  ASSERT_EQ(p.mode, Mode::merged);
  EXPECT_DOUBLE_EQ(d.threshold->current().beta, beta0 + 0.05);
  EXPECT_DOUBLE_EQ(d.threshold->current().alpha, 1.0);
}

TEST(Dlora, IdleQueueChangesNothing) {
  Dlora d(4, 16);
  testkit::ReplicaBuilder b(4);
  auto p = d(b.view());
  EXPECT_TRUE(testkit::candidates(b.view(), p).empty());
}

TEST(Dlora, NeedsTwoAdapterSlotsWithSeveralAdapters) {
  api::ReplicaLimits l = limits(16, 1);
  auto thr = load<api::Threshold>("fixed", {}, nullptr, 4, l);
  EXPECT_THROW(load<api::Scheduler>("dlora", {}, thr.get(), 4, l), PluginArgumentError);
}

// ---- the baselines -------------------------------------------------------------------------

TEST(UnmergedFcfs, OldestFirstAndStopsAtTheAdapterLimit) {
  api::ReplicaLimits l = limits(16, 2);
  auto s = load<api::Scheduler>("unmerged-fcfs", {}, nullptr, 4, l);
  testkit::ReplicaBuilder b(4);
  b.limits(l);
  b.add(0, 0.3).add(1, 0.1).add(2, 0.2).add(1, 0.4);
  auto p = test::plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  // FCFS: 1 (a1), 2 (a2), 0 (a0): the third adapter stops the walk (break, not skip).
  EXPECT_EQ(testkit::candidates(b.view(), p), (std::vector<api::RequestId>{1, 2}));
}

TEST(UnmergedFcfs, OneAdapterLimitIsFigure9sStrictPrefix) {
  // The artifact's execution types 1 and 2 schedule with _strict_fcfs_schedule(1)
  // (scheduler.py 198-216, 1143-1144): the FCFS queue up to the first request of a second
  // adapter. unmerged-fcfs with max_adapters_per_batch = 1 is that rule. Queue by age:
  // 1 (a1, 0.1), 2 (a1, 0.2), 0 (a0, 0.3), 3 (a1, 0.4): requests 1 and 2; request 0 stops the
  // walk, so request 3 of the same adapter is not taken either.
  api::ReplicaLimits l = limits(16, 1);
  auto s = load<api::Scheduler>("unmerged-fcfs", {}, nullptr, 4, l);
  testkit::ReplicaBuilder b(4);
  b.limits(l);
  b.add(0, 0.3).add(1, 0.1).add(1, 0.2).add(1, 0.4);
  auto p = test::plan(*s, b.view());
  EXPECT_EQ(testkit::candidates(b.view(), p), (std::vector<api::RequestId>{1, 2}));
}

TEST(MergedOnly, MergesTheOldestRequestsAdapter) {
  auto s = load<api::Scheduler>("merged-only");
  testkit::ReplicaBuilder b(4);
  b.add(2, 0.5).add(3, 0.1).add(3, 0.7).add(2, 0.2);
  auto p = test::plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 3);
  EXPECT_EQ(testkit::candidates(b.view(), p), (std::vector<api::RequestId>{1, 2}));
}

TEST(MergedOnly, DrainKeepsTheMergedAdapter) {
  auto s = load<api::Scheduler>("merged-only", {{"switch_rule", std::string("drain")}});
  testkit::ReplicaBuilder b(4);
  b.merged(2).add(3, 0.1).add(2, 0.5);
  auto p = test::plan(*s, b.view());
  EXPECT_EQ(p.merged_adapter, 2);
  EXPECT_EQ(testkit::candidates(b.view(), p), (std::vector<api::RequestId>{1}));
}

TEST(FixedThreshold, RefusesBetaAtOrAboveAlpha) {
  EXPECT_THROW(load<api::Threshold>("fixed", {{"alpha", 0.5}, {"beta", 0.5}}), PluginArgumentError);
}

}  // namespace
}  // namespace lorasched

namespace lorasched {
namespace {

TEST(DloraAdaptive, MergedPeriodThatLostRaisesAlpha) {
  // A merged period of 2 iterations with 2 requests each while FCFS would have run 16:
  // t_merge = 0.015 x 2 + 0.02, t_unmerge = 0.027 x 2: Cm/t_merge = 4/0.05 = 80 <
  // Cu/t_unmerge = 32/0.054 = 593, so alpha *= 1.1.
  auto t = test::load<api::Threshold>("dlora-adaptive", {{"estimate", std::string("constants")}});
  api::PeriodStats s;
  s.merged = true;
  s.num_iters = 2;
  s.merge_batch_cnt = 4;
  s.unmerge_batch_cnt = 32;
  auto r = t->checked_on_period_end(s);
  ASSERT_TRUE(r.is_ok());
  EXPECT_DOUBLE_EQ(r.value().alpha, 1.1);
  // A merged period that won lowers alpha by 0.05, but never to or below beta.
  s.merge_batch_cnt = 64;
  r = t->checked_on_period_end(s);
  EXPECT_DOUBLE_EQ(r.value().alpha, 1.1 - 0.05);
  s.num_iters = 0;  // nothing to evaluate: unchanged
  r = t->checked_on_period_end(s);
  EXPECT_DOUBLE_EQ(r.value().alpha, 1.1 - 0.05);
}

TEST(DloraAdaptive, MeasuredEstimatesFollowTheIterations) {
  // With estimate = measured the EWMA replaces the constants: after many 10 ms merged
  // iterations with no unmerged ones, a merged period scores merged at 10 ms.
  auto t = test::load<api::Threshold>("dlora-adaptive", {{"ewma", 1.0}});
  api::IterationOutcome o;
  o.mode = api::Mode::merged;
  o.merged_adapter = 0;
  o.batch_size = 4;
  o.duration = 0.010;
  o.switch_time = 0.002;
  ASSERT_TRUE(t->checked_observe(o).is_ok());
  api::PeriodStats s;
  s.merged = true;
  s.num_iters = 1;
  s.merge_batch_cnt = 4;
  s.unmerge_batch_cnt = 4;
  // merged: 4 / (0.010 + 0.002) = 333 > unmerged: 4 / 0.027 = 148 -> alpha -= 0.05
  auto r = t->checked_on_period_end(s);
  EXPECT_DOUBLE_EQ(r.value().alpha, 0.95);
}

}  // namespace
}  // namespace lorasched
