// Dispatcher `adapter-affinity` (dLoRA's select_engine) on hand-built cluster states.
#include <gtest/gtest.h>

#include "cluster_util.hpp"

namespace lorasched::test {
namespace {

api::DispatchDecision dispatch(api::Dispatcher& d, const api::ClusterView& v, api::AdapterId a) {
  api::DispatchRequest r;
  r.id = 0;
  r.adapter = a;
  auto out = d.checked_dispatch(v, r);
  if (!out) throw std::runtime_error(out.error());
  return out.value();
}

TEST(AdapterAffinity, CostFormulaPicksCheapestHostingReplica) {
  // B = 16; cost = sum_m floor(cnt/16) * 0.6 + floor(sum_m (cnt mod 16) / 16).
  ClusterBuilder b(3, 4);
  b.batch(16);
  b.host(0, {0, 1}).host(1, {0, 2}).host(2, {0, 3});
  b.counts(0, {16, 20});       // 0.6 + 0.6 + floor((0 + 4) / 16) = 1.2
  b.counts(1, {15, 0, 15});    // 0 + floor(30 / 16) = 1
  b.counts(2, {32, 0, 0, 1});  // 1.2 + floor(1 / 16) = 1.2
  auto d = load<api::Dispatcher>("adapter-affinity");
  const auto dec = dispatch(*d, b.view(), 0);
  EXPECT_EQ(dec.replica, 1);
  EXPECT_EQ(dec.evict, api::kNoAdapter);
  // Adapter 3 only on replica 2, whatever it costs.
  EXPECT_EQ(dispatch(*d, b.view(), 3).replica, 2);
}

TEST(AdapterAffinity, TiesGoToTheFirstAndFewRequestsCostNothing) {
  ClusterBuilder b(3, 2);
  b.batch(16);
  b.host(0, {0}).host(1, {0}).host(2, {0});
  b.counts(0, {15}).counts(1, {3}).counts(2, {0});  // all < B: every cost is 0
  auto d = load<api::Dispatcher>("adapter-affinity");
  EXPECT_EQ(dispatch(*d, b.view(), 0).replica, 0);
  // 32 -> 2 batches; 16 -> 1 batch each (tie: the first of replicas 1 and 2).
  b.counts(0, {32}).counts(1, {16}).counts(2, {16});
  auto d3 = load<api::Dispatcher>("adapter-affinity", {{"merge_speed_ratio", 0.3}});
  EXPECT_EQ(dispatch(*d3, b.view(), 0).replica, 1);
  // Residues add up across adapters: 10 + 10 requests of two adapters make one batch (1.0),
  // more than one full batch of one adapter (0.6).
  ClusterBuilder c(2, 2);
  c.batch(16);
  c.host(0, {0, 1}).host(1, {0});
  c.counts(0, {10, 10}).counts(1, {16});
  EXPECT_EQ(dispatch(*d, c.view(), 0).replica, 1);
}

TEST(AdapterAffinity, UnplacedAdapterGoesToFewestOutstanding) {
  ClusterBuilder b(3, 3);
  b.host(0, {0}).host(1, {1}).host(2, {1});
  b.counts(0, {5}).counts(1, {0, 2}).counts(2, {0, 2});
  auto d = load<api::Dispatcher>("adapter-affinity");
  EXPECT_EQ(dispatch(*d, b.view(), 2).replica, 1);  // 2 outstanding, first of the ties
}

TEST(AdapterAffinity, SubstitutionSwapsAnIdleReplicatedAdapter) {
  // Replica 0 hosts adapter 0 with 40 requests (cost 2 * 0.6 + floor(8/16) = 1.2); replica 1
  // hosts adapter 1 (also hosted by replica 2) with no request there.
  ClusterBuilder b(3, 3);
  b.batch(16);
  b.host(0, {0}).host(1, {1}).host(2, {1, 2});
  b.counts(0, {40}).counts(1, {0, 0}).counts(2, {0, 20, 20});
  b.link(1e9, 1);
  auto plain = load<api::Dispatcher>("adapter-affinity");
  EXPECT_EQ(dispatch(*plain, b.view(), 0).replica, 0);
  auto sub = load<api::Dispatcher>("adapter-affinity", {{"substitute", true}});
  const auto dec = dispatch(*sub, b.view(), 0);
  EXPECT_EQ(dec.replica, 1);  // cost 0 + 1 MiB / 1 GB/s
  EXPECT_EQ(dec.evict, 1);
}

}  // namespace
}  // namespace lorasched::test
