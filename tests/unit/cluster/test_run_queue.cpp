// RunQueue (core/cluster/run_queue.hpp), the event loop's indexed heap of replicas ready to
// step, against an ordered set of (time, id) as the reference: after every insert, move and
// erase, top(), second() and third() are the set's first three (-1 where it has fewer).
#include <gtest/gtest.h>

#include <iterator>
#include <random>
#include <set>
#include <utility>

#include "core/cluster/run_queue.hpp"

namespace lorasched {
namespace {

TEST(RunQueue, FirstThreeMatchAnOrderedSetThroughRandomMovesAndErases) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    // Up to 40 replicas (six levels of the binary heap) on odd seeds, 300 (nine) on even ones.
    const int32_t R = 1 + static_cast<int32_t>(rng() % (seed % 2 ? 40 : 300));
    RunQueue q;
    q.reset(static_cast<size_t>(R));
    std::set<std::pair<double, int32_t>> ref;
    std::vector<double> at(static_cast<size_t>(R), -1);
    for (int step = 0; step < 2000; ++step) {
      const auto r = static_cast<int32_t>(rng() % static_cast<uint32_t>(R));
      if (rng() % 4 == 0) {
        q.erase(r);
        ref.erase({at[static_cast<size_t>(r)], r});
        at[static_cast<size_t>(r)] = -1;
      } else {
        const double t = static_cast<double>(rng() % 50);  // ties broken by lower id
        ref.erase({at[static_cast<size_t>(r)], r});
        q.set(r, t);
        ref.insert({t, r});
        at[static_cast<size_t>(r)] = t;
      }
      ASSERT_EQ(q.empty(), ref.empty());
      auto it = ref.begin();
      auto nth = [&](size_t k) {
        return ref.size() > k ? std::next(ref.begin(), static_cast<long>(k))->second : -1;
      };
      if (!ref.empty()) {
        ASSERT_EQ(q.top(), it->second) << "seed " << seed << " step " << step;
        ASSERT_EQ(q.top_time(), it->first);
      }
      ASSERT_EQ(q.second(), nth(1)) << "seed " << seed << " step " << step;
      ASSERT_EQ(q.third(), nth(2)) << "seed " << seed << " step " << step;
    }
  }
}

}  // namespace
}  // namespace lorasched
