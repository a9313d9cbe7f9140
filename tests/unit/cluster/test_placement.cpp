// dLoRA's adapter placement greedy (core/cluster/placement.hpp) against the artifact's
// documented outcome (docs/dlora-artifact.md#placement, rule P5).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/cluster/placement.hpp"

namespace lorasched::cluster {
namespace {

std::set<api::AdapterId> as_set(const std::vector<api::AdapterId>& v) {
  return {v.begin(), v.end()};
}

TEST(Placement, SnakeOrderPlusCopiesOfOneAdapter) {
  // G = 8 engines, N = 32 equal adapters, small against memory: one replica per adapter in
  // a snake order (engine 0 = {0, 15, 16, 31}), then G - 1 copies of one adapter.
  const std::vector<int64_t> bytes(32, 100);
  const api::AdapterId replicated = 5;
  PlacementState s = initial_placement(8, bytes, 1e9, TopUp::one_adapter, replicated);
  ASSERT_EQ(s.lists.size(), 8u);
  // The greedy part, in the artifact's insertion order.
  EXPECT_EQ(std::vector<api::AdapterId>(s.lists[0].begin(), s.lists[0].begin() + 4),
            (std::vector<api::AdapterId>{0, 15, 16, 31}));
  for (int32_t e = 0; e < 8; ++e) {
    std::set<api::AdapterId> want{e, 15 - e, 16 + e, 31 - e};
    if (!want.count(replicated)) want.insert(replicated);
    EXPECT_EQ(as_set(s.lists[static_cast<size_t>(e)]), want) << "engine " << e;
  }
  // Engine 5 hosts adapter 5 already: 4 adapters; every other engine 5.
  EXPECT_EQ(s.lists[5].size(), 4u);
  EXPECT_EQ(s.lists[0].size(), 5u);
  int64_t total = 0;
  for (const auto& l : s.lists) total += static_cast<int64_t>(l.size());
  EXPECT_EQ(total, 8 + 32 - 1);  // G + N - 1 adapter replicas
  // Memory accounting: every engine lost the size of what it hosts.
  EXPECT_DOUBLE_EQ(s.avail_mem[0], 1e9 - 500);
}

TEST(Placement, RoundRobinTopUp) {
  const std::vector<int64_t> bytes(8, 100);
  PlacementState s = initial_placement(4, bytes, 1e9, TopUp::round_robin, 0);
  int64_t total = 0;
  for (const auto& l : s.lists) total += static_cast<int64_t>(l.size());
  EXPECT_EQ(total, 4 + 8 - 1);
  for (const auto& l : s.lists) EXPECT_EQ(as_set(l).size(), l.size());  // no duplicates
}

TEST(Placement, OneEngineHostsEverything) {
  const std::vector<int64_t> bytes(6, 100);
  PlacementState s = initial_placement(1, bytes, 1e9, TopUp::one_adapter, 3);
  EXPECT_EQ(as_set(s.lists[0]), (std::set<api::AdapterId>{0, 1, 2, 3, 4, 5}));
}

TEST(Placement, MinBurstTolerance) {
  PlacementState s;
  s.lists = {{0, 1}, {1}};
  s.avail_mem = {10, 30};
  // adapter 0: 10 / 1; adapter 1: (10 + 30) / 8 = 5; adapter 2: unplaced -> 0.
  EXPECT_DOUBLE_EQ(calc_min_bt(s, {1.0, 8.0}), 5.0);
  EXPECT_DOUBLE_EQ(calc_min_bt(s, {1.0, 8.0, 1.0}), 0.0);
}

TEST(Placement, RefillPlacesDroppedAdaptersInFreeSlots) {
  // After a migration dropped adapter 2 (engine 1 lists only {1}), the refill puts the
  // unplaced adapter into the engine with the most free slots.
  PlacementState s;
  s.lists = {{0, 3}, {1}};
  s.avail_mem = {1000, 1000};
  std::vector<double> expected{5, 5, 5, 5};
  std::vector<int32_t> current{1, 1, 0, 1};
  std::vector<int32_t> capacity{2, 2};
  const int64_t added = find_best_lora_weight_schedule(s, false, expected, current, &capacity,
                                                       std::vector<int64_t>(4, 10));
  EXPECT_EQ(added, 1);
  EXPECT_EQ(as_set(s.lists[1]), (std::set<api::AdapterId>{1, 2}));
  EXPECT_EQ(current[2], 1);
  EXPECT_DOUBLE_EQ(s.avail_mem[1], 990);
}

}  // namespace
}  // namespace lorasched::cluster
