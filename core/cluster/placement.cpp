#include "core/cluster/placement.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lorasched::cluster {

using api::AdapterId;

namespace {

bool hosts(const std::vector<AdapterId>& list, AdapterId a) {
  return std::find(list.begin(), list.end(), a) != list.end();
}

}  // namespace

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
                                       const std::vector<int64_t>& adapter_bytes, TopUp top_up,
                                       AdapterId replicated) {
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
      const double new_bt = calc_min_bt(s, expected);
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
  // The artifact: dist = [1] * N; expected = (1 + 1e-7) / N for every adapter.
  std::vector<double> expected(N, (1.0 + 1e-7) / static_cast<double>(N));
  std::vector<int32_t> current(N, 0);
  find_best_lora_weight_schedule(s, true, expected, current, nullptr, adapter_bytes, top_up,
                                 replicated);
  return s;
}

}  // namespace lorasched::cluster
