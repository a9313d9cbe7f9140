// The reference scheduler `clairvoyant` on hand-built states.
//
// Priorities by hand: p = 1 / (L r), L = output tokens, r = L - generated. Until it has
// observed an iteration it prices batches with the prior of test_throughput.cpp (dLoRA's
// profile): a merged iteration 15 ms, an unmerged one 15 ms + 0.75 ms per distinct adapter, a
// mixed one 15 ms + 0.75 ms per other adapter + 0.75 ms for the subtracted pass; a switch
// 20 ms spread over 16 iterations (1.25 ms); a batch of n requests does 15 n / B ms of work.
// The default score is work per second; `select = "smith"` scores Σ p / time.
#include <gtest/gtest.h>

#include <algorithm>

#include "policy_util.hpp"

namespace lorasched {
namespace {

using api::Mode;
using api::RequestState;
using test::load;
using test::plan;

api::ReplicaLimits batch_limit(int32_t b) {
  api::ReplicaLimits l;
  l.max_batch_size = b;
  return l;
}

TEST(Clairvoyant, ShorterRemainingGoesFirst) {
  // Batch limit 1, one adapter. Request 0 (older): L 100, 10 generated, r 90, p = 1/9000.
  // Request 1: L 100, 60 generated, r 40, p = 1/4000. Unmerged keeps the weights: 15 / 15.75
  // = 0.952 against merged's 15 / 16.25 = 0.923. Request 1 runs, although FCFS says 0.
  auto s = load<api::Scheduler>("clairvoyant", {}, nullptr, 4, batch_limit(1));
  testkit::ReplicaBuilder b(4, 1);
  b.add(0, 0.0, 32, 100, RequestState::ready, 10).add(0, 0.1, 32, 100, RequestState::ready, 60);
  b.now(0.2);
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::unmerged);
  ASSERT_EQ(p.requests.size(), 2u);  // the batch, then one more of its adapter
  EXPECT_EQ(p.requests[0], 1);
  EXPECT_EQ(p.requests[1], 0);
}

TEST(Clairvoyant, SameRemainingLargerWeightFirst) {
  // Both r = 50. Request 0 (older): L 200, p = 1/10000; request 1: L 60, p = 1/3000: its delay
  // costs the mean more per second (1/60 against 1/200).
  auto s = load<api::Scheduler>("clairvoyant", {}, nullptr, 4, batch_limit(1));
  testkit::ReplicaBuilder b(4, 1);
  b.add(0, 0.0, 32, 200, RequestState::ready, 150).add(0, 0.1, 32, 60, RequestState::ready, 10);
  b.now(0.2);
  const auto p = plan(*s, b.view());
  ASSERT_FALSE(p.requests.empty());
  EXPECT_EQ(p.requests[0], 1);
}

TEST(Clairvoyant, EqualPrioritiesKeepArrivalOrder) {
  auto s = load<api::Scheduler>("clairvoyant", {}, nullptr, 4, batch_limit(1));
  testkit::ReplicaBuilder b(4, 1);
  b.add(0, 0.0, 32, 100, RequestState::ready, 50).add(0, 0.1, 32, 100, RequestState::ready, 50);
  b.now(0.2);
  const auto p = plan(*s, b.view());
  ASSERT_FALSE(p.requests.empty());
  EXPECT_EQ(p.requests[0], 0);
}

// Adapters 0, 2, 3: one request each, L 32 with 30 generated (r 2, p = 1/64), the most urgent.
// Adapter 1: 4 old requests far from done (L 256, r 200) and 16 newer ones near it (L 256,
// r 20, p = 1/5120).
testkit::ReplicaBuilder one_adapter_holds_a_batch() {
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 4; ++i) b.add(1, 0.01 * i, 32, 256, RequestState::ready, 56);
  for (int i = 0; i < 16; ++i) b.add(1, 0.1 + 0.01 * i, 32, 256, RequestState::ready, 236);
  for (api::AdapterId a : {0, 2, 3}) b.add(a, 0.5, 32, 32, RequestState::ready, 30);
  b.now(0.6);
  return b;
}

TEST(Clairvoyant, MergesWhenOneAdapterFillsTheBatchAndMergedIsFaster) {
  // Unmerged: the 16 best are the three urgent ones and 13 of adapter 1's near-done ones, four
  // adapters: 15 / 18 = 0.833. Merged on 1: its 16 near-done ones (ids 4..19, not its oldest),
  // 15 / (15 + 1.25) = 0.923 > 1.05 x 0.833 = 0.875. Mixed on 1: no slot left for riders.
  auto s = load<api::Scheduler>("clairvoyant");
  auto b = one_adapter_holds_a_batch();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 1);
  ASSERT_EQ(p.requests.size(), 20u);  // the batch, then adapter 1's other 4
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(p.requests[i], static_cast<api::RequestId>(4 + i));
}

TEST(Clairvoyant, SmithsRatioPerSecondPrefersASmallFastBatch) {
  // The rule taken literally (select = "smith"): with one request of adapter 0 about to finish
  // (L 8, r 1, p = 1/8) and 15 fresh long ones of adapters 1-3 (L 256, r 256, p = 1/65536):
  // merged on 0, that one request: 0.125 / 16.25 ms = 7.69e-3 per ms; unmerged, all 16, four
  // adapters: (0.125 + 15/65536) / 18 = 6.96e-3; 7.69 > 1.05 x 6.96 = 7.31: merged, one
  // request, 15 slots empty. Work per second (the default) runs all 16 unmerged: 15/18 = 0.833
  // against merged's (15/16) / 16.25 = 0.058.
  testkit::ReplicaBuilder b(4);
  b.add(0, 0.0, 32, 8, RequestState::ready, 7);
  for (int i = 0; i < 15; ++i) b.add(1 + i % 3, 0.1 + 0.01 * i, 32, 256);
  b.now(0.5);
  auto smith = load<api::Scheduler>("clairvoyant", {{"select", std::string("smith")}});
  const auto ps = plan(*smith, b.view());
  EXPECT_EQ(ps.mode, Mode::merged);
  EXPECT_EQ(ps.merged_adapter, 0);
  EXPECT_EQ(ps.requests, std::vector<api::RequestId>{0});
  auto work = load<api::Scheduler>("clairvoyant");
  const auto pw = plan(*work, b.view());
  EXPECT_EQ(pw.mode, Mode::unmerged);
  EXPECT_EQ(pw.requests.size(), 16u);
  EXPECT_EQ(pw.requests[0], 0);
}

// Merged on 1 with 14 of its requests queued; 16 older ones of adapter 2, of which the two
// newest (ids 14, 15) are shorter (L 8: p = 1/64 against 1/256).
testkit::ReplicaBuilder near_tie() {
  testkit::ReplicaBuilder b(4);
  for (int i = 0; i < 16; ++i) b.add(2, 0.01 * i, 32, i >= 14 ? 8 : 16);
  b.add_many(1, 14, 0.2, 0.01);
  b.merged(1).now(0.4);
  return b;
}

TEST(Clairvoyant, HysteresisKeepsTheWeightsOnANearTie) {
  // Keeping adapter 1: merged, 14: 14/16 = 0.875; mixed, 14 + 2 riders of adapter 2:
  // 15 / 16.5 = 0.909. Other weights: merged on 2, 16: 15 / 16.25 = 0.923; unmerged, the 16
  // best (adapter 2's two short ones, then by arrival: 14 more of adapter 2), one adapter:
  // 15 / 17 = 0.882. 0.923 <= 1.05 x 0.909 = 0.955: keep 1, mixed; the riders are adapter 2's
  // two short requests, not its two oldest.
  auto s = load<api::Scheduler>("clairvoyant");
  auto b = near_tie();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::mixed);
  EXPECT_EQ(p.merged_adapter, 1);
  ASSERT_GE(p.requests.size(), 16u);
  std::vector<api::RequestId> batch(p.requests.begin(), p.requests.begin() + 16);
  for (api::RequestId id = 16; id < 30; ++id)
    EXPECT_EQ(std::count(batch.begin(), batch.end(), id), 1) << id;
  EXPECT_EQ(std::count(batch.begin(), batch.end(), 14), 1);
  EXPECT_EQ(std::count(batch.begin(), batch.end(), 15), 1);
}

TEST(Clairvoyant, WithoutHysteresisItSwitches) {
  auto s = load<api::Scheduler>("clairvoyant", {{"margin", 0.0}});
  auto b = near_tie();
  const auto p = plan(*s, b.view());
  EXPECT_EQ(p.mode, Mode::merged);
  EXPECT_EQ(p.merged_adapter, 2);
}

TEST(Clairvoyant, AfterAPlanThatRanNothingItFallsBackToTheLeastMemory) {
  // Merged on 1 with its 16 waiting requests: merged on 1. Planned again for the same iteration
  // with no outcome in between: unmerged, the ready requests first (one KV block each), by
  // priority (id 17: r 4 before id 16: r 12), then the rest.
  testkit::ReplicaBuilder b(4);
  b.add_many(1, 16, 0.0)
      .add(3, 0.5, 32, 16, RequestState::ready, 4)
      .add(2, 0.55, 32, 16, RequestState::ready, 12);
  b.merged(1).now(0.6).iteration(7);
  auto s = load<api::Scheduler>("clairvoyant");
  const auto p1 = plan(*s, b.view());
  EXPECT_EQ(p1.mode, Mode::merged);
  const auto p2 = plan(*s, b.view());
  EXPECT_EQ(p2.mode, Mode::unmerged);
  ASSERT_EQ(p2.requests.size(), 18u);
  EXPECT_EQ(p2.requests[0], 17);
  EXPECT_EQ(p2.requests[1], 16);
  EXPECT_EQ(p2.requests[2], 0);
}

TEST(Clairvoyant, DeclaresNoStarvationGuard) {
  // A reference for the mean: the shared `guard_s` is not among its parameters.
  EXPECT_THROW(load<api::Scheduler>("clairvoyant", {{"guard_s", 0.5}}), std::exception);
}

}  // namespace
}  // namespace lorasched
