// dLoRA's placement greedy (core/cluster/placement.cpp, incremental) against a literal
// transcription of the artifact's (the reference below, the project's first implementation):
// identical lists, memory, counts and return values on seeded cases of every kind the
// simulation produces (initial placements; refills after migrations with arrival counts as
// the expected distribution, capacities, dropped adapters) and on odd ones (memory too small,
// uneven sizes, skewed or inconsistent inputs).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cluster/placement.hpp"
#include "core/common/rng.hpp"

namespace lorasched::cluster {

// The placement greedy as first written (a literal transcription of the artifact's
// find_best_lora_weight_schedule and calc_min_bt, recomputing the burst tolerance from
// scratch at every step): the reference the incremental implementation must match exactly.
namespace reference {

using api::AdapterId;

bool hosts(const std::vector<AdapterId>& list, AdapterId a) {
  return std::find(list.begin(), list.end(), a) != list.end();
}

double calc_min_bt(const PlacementState& s, const std::vector<double>& expected) {
  double min_bt = std::numeric_limits<double>::infinity();
  for (size_t t = 0; t < expected.size(); ++t) {
    double total = 0;
    for (size_t e = 0; e < s.lists.size(); ++e)
      if (hosts(s.lists[e], static_cast<AdapterId>(t))) total += s.avail_mem[e];
    min_bt = std::min(min_bt, total / expected[t]);
  }
  return min_bt;
}

int64_t find_best_lora_weight_schedule(PlacementState& s, bool is_init,
                                       const std::vector<double>& expected,
                                       std::vector<int32_t>& current,
                                       const std::vector<int32_t>* capacity,
                                       const std::vector<int64_t>& adapter_bytes,
                                       TopUp top_up = TopUp::one_adapter,
                                       AdapterId replicated = 0) {
  const int32_t N = static_cast<int32_t>(expected.size());
  const int32_t G = static_cast<int32_t>(s.lists.size());
  if (N == 0 || G == 0) return 0;
  int64_t num_lora_replicas = 0;
  double best_bt = 0;
  bool update = true;

  std::vector<int32_t> engine_ids(static_cast<size_t>(G));
  for (int32_t e = 0; e < G; ++e) engine_ids[static_cast<size_t>(e)] = e;
  std::vector<AdapterId> not_allocated;
  for (AdapterId a = 0; a < N; ++a) {
    bool placed = false;
    for (const auto& l : s.lists) placed = placed || hosts(l, a);
    if (!placed) not_allocated.push_back(a);
  }
  auto score = [&](int32_t i) {
    return current[static_cast<size_t>(i)] / (static_cast<double>(num_lora_replicas) + 1e-7) -
           expected[static_cast<size_t>(i)];
  };

  while (update) {
    update = false;
    AdapterId next = 0;
    for (AdapterId i = 0; i < N; ++i) {
      if (score(i) < score(next)) next = i;
      if (!not_allocated.empty() && !hosts(not_allocated, next)) next = not_allocated.front();
    }
    // Engine order: stable re-sort of the previous order each round (the artifact's
    // `engine_ids = sorted(engine_ids, ...)`; with capacities the list is also filtered and
    // stays filtered for the rest of the call).
    if (capacity == nullptr) {
      std::stable_sort(engine_ids.begin(), engine_ids.end(), [&](int32_t a, int32_t b) {
        return s.lists[static_cast<size_t>(a)].size() < s.lists[static_cast<size_t>(b)].size();
      });
    } else {
      auto free_slots = [&](int32_t e) {
        return (*capacity)[static_cast<size_t>(e)] -
               static_cast<int64_t>(s.lists[static_cast<size_t>(e)].size());
      };
      std::stable_sort(engine_ids.begin(), engine_ids.end(),
                       [&](int32_t a, int32_t b) { return free_slots(a) > free_slots(b); });
      std::erase_if(engine_ids, [&](int32_t e) { return free_slots(e) <= 0; });
    }
    bool accepted = false;
    for (int32_t e : engine_ids) {
      auto& list = s.lists[static_cast<size_t>(e)];
      if (hosts(list, next)) continue;
      const double size = static_cast<double>(adapter_bytes[static_cast<size_t>(next)]);
      list.push_back(next);
      s.avail_mem[static_cast<size_t>(e)] -= size;
      const double new_bt = reference::calc_min_bt(s, expected);
      if (new_bt >= best_bt) {
        current[static_cast<size_t>(next)] += 1;
        ++num_lora_replicas;
        best_bt = new_bt;
        update = true;
        accepted = true;
        std::erase(not_allocated, next);
        break;
      }
      list.pop_back();
      s.avail_mem[static_cast<size_t>(e)] += size;
      if (!not_allocated.empty()) update = true;
    }
    // The artifact loops again with an unchanged state here (and so forever); stop.
    if (!accepted) update = false;
  }

  if (is_init) {
    const int64_t min_replicas = static_cast<int64_t>(G) + N - 1;
    int32_t e = 0;
    if (top_up == TopUp::one_adapter) {
      const AdapterId t = std::clamp<AdapterId>(replicated, 0, N - 1);
      while (num_lora_replicas < min_replicas) {
        int32_t tries = 0;
        while (static_cast<int32_t>(s.lists[static_cast<size_t>(e)].size()) >= N ||
               hosts(s.lists[static_cast<size_t>(e)], t)) {
          e = (e + 1) % G;
          if (++tries > G) break;
        }
        if (tries > G) break;  // every replica hosts it (the artifact would spin)
        s.lists[static_cast<size_t>(e)].push_back(t);
        s.avail_mem[static_cast<size_t>(e)] -=
            static_cast<double>(adapter_bytes[static_cast<size_t>(t)]);
        e = (e + 1) % G;
        current[static_cast<size_t>(t)] += 1;
        ++num_lora_replicas;
      }
    } else {
      AdapterId t = 0;
      while (num_lora_replicas < min_replicas) {
        int32_t tries = 0;
        while (static_cast<int32_t>(s.lists[static_cast<size_t>(e)].size()) >= N) {
          e = (e + 1) % G;
          if (++tries > G) break;
        }
        if (tries > G) break;
        while (hosts(s.lists[static_cast<size_t>(e)], t)) t = (t + 1) % N;
        s.lists[static_cast<size_t>(e)].push_back(t);
        s.avail_mem[static_cast<size_t>(e)] -=
            static_cast<double>(adapter_bytes[static_cast<size_t>(t)]);
        e = (e + 1) % G;
        t = (t + 1) % N;
        current[static_cast<size_t>(t)] += 1;  // sic: the artifact counts the next adapter
        ++num_lora_replicas;
      }
    }
  }
  return num_lora_replicas;
}

PlacementState initial_placement(int32_t replicas, const std::vector<int64_t>& adapter_bytes,
                                 double memory_bytes, TopUp top_up, AdapterId replicated) {
  PlacementState s;
  s.lists.assign(static_cast<size_t>(replicas), {});
  s.avail_mem.assign(static_cast<size_t>(replicas), memory_bytes);
  const size_t N = adapter_bytes.size();
  std::vector<double> expected(N, (1.0 + 1e-7) / static_cast<double>(N));
  std::vector<int32_t> current(N, 0);
  reference::find_best_lora_weight_schedule(s, true, expected, current, nullptr, adapter_bytes,
                                            top_up, replicated);
  return s;
}

}  // namespace reference

namespace {

struct Case {
  PlacementState s;
  std::vector<double> expected;
  std::vector<int32_t> current;
  std::vector<int32_t> capacity;  // empty: none (initial call)
  std::vector<int64_t> bytes;
  bool is_init = false;
  TopUp top_up = TopUp::one_adapter;
  api::AdapterId replicated = 0;
};

// Runs both implementations on copies of the case and compares everything they change.
void expect_same(const Case& c, const std::string& what) {
  PlacementState a = c.s, b = c.s;
  std::vector<int32_t> ca = c.current, cb = c.current;
  const std::vector<int32_t>* cap = c.capacity.empty() ? nullptr : &c.capacity;
  const int64_t ra = find_best_lora_weight_schedule(a, c.is_init, c.expected, ca, cap, c.bytes,
                                                    c.top_up, c.replicated);
  const int64_t rb = reference::find_best_lora_weight_schedule(b, c.is_init, c.expected, cb, cap,
                                                               c.bytes, c.top_up, c.replicated);
  ASSERT_EQ(ra, rb) << what;
  ASSERT_EQ(a.lists, b.lists) << what;
  ASSERT_EQ(a.avail_mem.size(), b.avail_mem.size()) << what;
  for (size_t e = 0; e < a.avail_mem.size(); ++e)
    ASSERT_EQ(a.avail_mem[e], b.avail_mem[e]) << what << " replica " << e;  // bit for bit
  ASSERT_EQ(ca, cb) << what;
  const double ma = calc_min_bt(a, c.expected), mb = reference::calc_min_bt(a, c.expected);
  ASSERT_TRUE(ma == mb || (std::isnan(ma) && std::isnan(mb))) << what;
}

std::vector<int64_t> random_bytes(Rng& rng, int32_t N) {
  std::vector<int64_t> bytes(static_cast<size_t>(N));
  const int64_t kind = rng.uniform_int(0, 2);
  for (auto& b : bytes)
    b = kind == 0   ? 100
        : kind == 1 ? 25165824 * (int64_t(1) << rng.uniform_int(0, 3))  // 7B ranks 8..64
                    : rng.uniform_int(1, 1000);
  return bytes;
}

// G empty replicas with `memory` each, the artifact's uniform expected distribution.
void empty_cluster(Case& c, int32_t G, double memory) {
  const size_t N = c.bytes.size();
  c.s.lists.assign(static_cast<size_t>(G), {});
  c.s.avail_mem.assign(static_cast<size_t>(G), memory);
  c.expected.assign(N, (1.0 + 1e-7) / static_cast<double>(N));
  c.current.assign(N, 0);
}

// The initial call, with either top-up and a random replicated adapter.
void initial_call(Case& c, Rng& rng) {
  c.is_init = true;
  c.top_up = rng.uniform_int(0, 1) ? TopUp::one_adapter : TopUp::round_robin;
  c.replicated =
      static_cast<api::AdapterId>(rng.uniform_int(0, static_cast<int64_t>(c.bytes.size()) - 1));
}

TEST(PlacementExact, InitialPlacementsMatchTheReference) {
  Rng rng(2024, 1);
  for (int i = 0; i < 400; ++i) {
    Case c;
    const auto G = static_cast<int32_t>(rng.uniform_int(1, 24));
    const auto N = static_cast<int32_t>(rng.uniform_int(1, 80));
    c.bytes = random_bytes(rng, N);
    int64_t largest = *std::max_element(c.bytes.begin(), c.bytes.end());
    // Memory: ample, a few adapters' worth, or less than one (negative burst tolerance).
    const int64_t mk = rng.uniform_int(0, 2);
    const double memory = mk == 0   ? 1e12
                          : mk == 1 ? static_cast<double>(largest * rng.uniform_int(1, 6))
                                    : static_cast<double>(largest / 2);
    empty_cluster(c, G, memory);
    initial_call(c, rng);
    expect_same(c, "initial case " + std::to_string(i));
  }
}

// A placement after an initial one and a migration: some replicas' lists replaced by fewer
// adapters (the ILP's y), arrival counts as the expected distribution (skewed), capacities
// = the initial counts, current = replicas per adapter: the simulation's refill.
TEST(PlacementExact, RefillsAfterMigrationMatchTheReference) {
  Rng rng(7, 2);
  for (int i = 0; i < 400; ++i) {
    const auto G = static_cast<int32_t>(rng.uniform_int(2, 24));
    const auto N = static_cast<int32_t>(rng.uniform_int(2, 80));
    Case c;
    c.bytes = random_bytes(rng, N);
    PlacementState init = reference::initial_placement(G, c.bytes, 1e12, TopUp::one_adapter,
                                                       static_cast<api::AdapterId>(i % N));
    c.capacity.resize(static_cast<size_t>(G));
    for (int32_t e = 0; e < G; ++e)
      c.capacity[static_cast<size_t>(e)] =
          std::max<int32_t>(1, static_cast<int32_t>(init.lists[static_cast<size_t>(e)].size()));
    c.s = init;
    const int64_t changed = rng.uniform_int(1, std::max<int64_t>(1, G / 2));
    for (int64_t k = 0; k < changed; ++k) {
      auto& l = c.s.lists[static_cast<size_t>(rng.uniform_int(0, G - 1))];
      std::vector<api::AdapterId> keep;
      for (api::AdapterId a : l)
        if (rng.uniform() < 0.5) keep.push_back(a);
      if (rng.uniform() < 0.3)
        keep.push_back(static_cast<api::AdapterId>(rng.uniform_int(0, N - 1)));
      std::sort(keep.begin(), keep.end());
      keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
      l = keep;
    }
    for (auto& l : c.s.lists) std::sort(l.begin(), l.end());
    // Zipf-like arrival counts on top of the artifact's (1 + 1e-7) / N.
    const double zs = rng.uniform(0.0, 2.0);
    c.expected.assign(static_cast<size_t>(N), (1.0 + 1e-7) / N);
    for (int64_t r = 0, n = rng.uniform_int(0, 3000); r < n; ++r) {
      double u = rng.uniform() * 3;
      int32_t a = 0;
      while (a + 1 < N && u > std::pow(a + 1.0, -zs)) u -= std::pow(a + 1.0, -zs), ++a;
      c.expected[static_cast<size_t>(a)] += 1;
    }
    c.current.assign(static_cast<size_t>(N), 0);
    for (const auto& l : c.s.lists)
      for (api::AdapterId a : l) ++c.current[static_cast<size_t>(a)];
    if (rng.uniform() < 0.2)  // capacities changed under it (more free slots)
      for (auto& cap : c.capacity) cap += static_cast<int32_t>(rng.uniform_int(0, 2));
    expect_same(c, "refill case " + std::to_string(i));
  }
}

TEST(PlacementExact, RepeatedRefillsMatchTheReference) {
  // Several migrations in a row: the state carries over (memory only ever decreases).
  Rng rng(11, 3);
  for (int i = 0; i < 60; ++i) {
    const auto G = static_cast<int32_t>(rng.uniform_int(2, 16));
    const auto N = static_cast<int32_t>(rng.uniform_int(G, 64));
    const std::vector<int64_t> bytes = random_bytes(rng, N);
    PlacementState a = initial_placement(G, bytes, 4e9, TopUp::one_adapter, 0);
    PlacementState b = reference::initial_placement(G, bytes, 4e9, TopUp::one_adapter, 0);
    ASSERT_EQ(a.lists, b.lists);
    std::vector<int32_t> cap(static_cast<size_t>(G));
    for (int32_t e = 0; e < G; ++e)
      cap[static_cast<size_t>(e)] = static_cast<int32_t>(a.lists[static_cast<size_t>(e)].size());
    std::vector<double> expected(static_cast<size_t>(N), (1.0 + 1e-7) / N);
    for (int round = 0; round < 8; ++round) {
      for (int64_t r = 0, n = rng.uniform_int(0, 200); r < n; ++r)
        expected[static_cast<size_t>(rng.uniform_int(0, N - 1) / (1 + rng.uniform_int(0, 3)))] += 1;
      auto& l = a.lists[static_cast<size_t>(rng.uniform_int(0, G - 1))];
      if (!l.empty()) l.erase(l.begin() + rng.uniform_int(0, static_cast<int64_t>(l.size()) - 1));
      for (auto& x : a.lists) std::sort(x.begin(), x.end());
      b.lists = a.lists;
      std::vector<int32_t> ca(static_cast<size_t>(N), 0);
      for (const auto& x : a.lists)
        for (api::AdapterId ad : x) ++ca[static_cast<size_t>(ad)];
      std::vector<int32_t> cb = ca;
      const int64_t ra = find_best_lora_weight_schedule(a, false, expected, ca, &cap, bytes);
      const int64_t rb =
          reference::find_best_lora_weight_schedule(b, false, expected, cb, &cap, bytes);
      ASSERT_EQ(ra, rb) << i << "/" << round;
      ASSERT_EQ(a.lists, b.lists) << i << "/" << round;
      ASSERT_EQ(a.avail_mem, b.avail_mem) << i << "/" << round;
      ASSERT_EQ(ca, cb) << i << "/" << round;
    }
  }
}

TEST(PlacementExact, FewAdaptersOnManyReplicasMatchTheReference) {
  // Each adapter ends up on many replicas, so the sums over an adapter's replicas are long:
  // kept as running totals when every memory value is whole bytes and small enough for exact
  // sums (1e12), recomputed in the artifact's order when sums could round (3e15 and 1e17
  // bytes: whole numbers, but past 2^53 once added up), both against the reference.
  Rng rng(13, 5);
  for (int i = 0; i < 120; ++i) {
    const auto G = static_cast<int32_t>(rng.uniform_int(16, 96));
    const auto N = static_cast<int32_t>(rng.uniform_int(1, 8));
    Case c;
    c.bytes = random_bytes(rng, N);
    const int64_t mk = rng.uniform_int(0, 2);
    empty_cluster(c, G, mk == 0 ? 1e12 : mk == 1 ? 3e15 : 1e17);
    if (rng.uniform() < 0.5) {
      initial_call(c, rng);
    } else {
      // A refill: skewed arrival counts, one adapter per replica already, two free slots.
      for (auto& x : c.expected) x += static_cast<double>(rng.uniform_int(0, 50));
      c.capacity.assign(static_cast<size_t>(G), 3);
      for (int32_t e = 0; e < G; ++e) {
        const auto a = static_cast<api::AdapterId>(e % N);
        c.s.lists[static_cast<size_t>(e)].push_back(a);
        c.s.avail_mem[static_cast<size_t>(e)] -=
            static_cast<double>(c.bytes[static_cast<size_t>(a)]);
        ++c.current[static_cast<size_t>(a)];
      }
    }
    expect_same(c, "few-adapter case " + std::to_string(i));
  }
}

TEST(PlacementExact, OddInputsMatchTheReference) {
  // Counts inconsistent with the lists, expected values with ties and huge magnitudes,
  // adapters listed twice: the general path, still the reference's result.
  Rng rng(5, 4);
  for (int i = 0; i < 300; ++i) {
    const auto G = static_cast<int32_t>(rng.uniform_int(1, 10));
    const auto N = static_cast<int32_t>(rng.uniform_int(1, 30));
    Case c;
    c.bytes = random_bytes(rng, N);
    c.s.lists.resize(static_cast<size_t>(G));
    c.s.avail_mem.resize(static_cast<size_t>(G));
    for (int32_t e = 0; e < G; ++e) {
      c.s.avail_mem[static_cast<size_t>(e)] = rng.uniform(-1e3, 1e6);  // not whole bytes
      for (int64_t k = 0, n = rng.uniform_int(0, 4); k < n; ++k)
        c.s.lists[static_cast<size_t>(e)].push_back(
            static_cast<api::AdapterId>(rng.uniform_int(0, N - 1)));
    }
    const int64_t ek = rng.uniform_int(0, 3);
    c.expected.resize(static_cast<size_t>(N));
    for (auto& x : c.expected)
      x = ek == 0   ? 1e20
          : ek == 1 ? static_cast<double>(rng.uniform_int(1, 3))
          : ek == 2 ? 0.5
                    : rng.uniform(0.001, 10);
    c.current.resize(static_cast<size_t>(N));
    for (auto& x : c.current) x = static_cast<int32_t>(rng.uniform_int(0, 3));
    c.is_init = rng.uniform() < 0.3;
    if (!c.is_init && rng.uniform() < 0.7) {
      c.capacity.resize(static_cast<size_t>(G));
      for (auto& x : c.capacity) x = static_cast<int32_t>(rng.uniform_int(0, 6));
    }
    expect_same(c, "odd case " + std::to_string(i));
  }
}

TEST(PlacementExact, ThousandReplicasTenThousandAdaptersInSeconds) {
  // The issue-21 scale: the reference did not finish in 600 s.
  const std::vector<int64_t> bytes(10000, 25165824);
  const auto t0 = std::chrono::steady_clock::now();
  PlacementState s = initial_placement(1000, bytes, 60e9, TopUp::one_adapter, 17);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t total = 0;
  for (const auto& l : s.lists) total += static_cast<int64_t>(l.size());
  EXPECT_EQ(total, 1000 + 10000 - 1);
  EXPECT_LT(wall, 5.0);
}

}  // namespace
}  // namespace lorasched::cluster
