// Synthetic cluster snapshots for the migration benchmark and tests (seeded, deterministic):
// R replicas x K adapters placed by dLoRA's greedy (placement.hpp); a quarter of the
// replicas overloaded (about 200 requests against 45); each request's adapter drawn from its
// replica's adapters with Zipf(1) popularity; contexts lognormal (median 600 tokens) in
// 16-token KV blocks; 7,000 KV blocks of 8 MiB per replica (Llama-2-7B on an A100-80GB),
// 32 GB/s links; per-adapter execution times 2..8 s; 5% of the requests running, 20%
// waiting, 5% swapped, the rest ready.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/cluster/placement.hpp"
#include "core/common/rng.hpp"
#include "lorasched/plugin/views.hpp"

namespace lorasched::cluster {

struct Snapshot {
  std::vector<std::vector<api::AdapterId>> hosted;
  std::vector<std::vector<int32_t>> counts;
  std::vector<std::vector<api::RequestView>> requests;
  std::vector<api::ReplicaState> states;
  std::vector<int64_t> bytes;
  std::vector<double> exec;
  api::ClusterView view;
  api::ClusterViewIndex index;
};

inline std::unique_ptr<Snapshot> make_snapshot(int32_t R, int32_t K, uint64_t seed) {
  auto s = std::make_unique<Snapshot>();
  Rng rng(seed, static_cast<uint64_t>(R) * 1000 + static_cast<uint64_t>(K));
  s->bytes.assign(static_cast<size_t>(K), 100925440);  // Llama-2-7B, rank 16
  const double memory = 7000.0 * 8.0 * (1 << 20);
  auto placement = cluster::initial_placement(R, s->bytes, memory, cluster::TopUp::one_adapter, 0);
  s->hosted = placement.lists;
  for (auto& h : s->hosted) std::sort(h.begin(), h.end());
  s->exec.resize(static_cast<size_t>(K));
  for (auto& e : s->exec) e = rng.uniform(2.0, 8.0);
  s->counts.assign(static_cast<size_t>(R), std::vector<int32_t>(static_cast<size_t>(K), 0));
  s->requests.resize(static_cast<size_t>(R));
  api::RequestId next = 0;
  const int32_t overloaded = std::max(1, R / 4);
  for (int32_t r = 0; r < R; ++r) {
    const bool hot = r % 4 == 0 && r / 4 < overloaded;
    const int n = hot ? static_cast<int>(rng.uniform_int(170, 230))
                      : static_cast<int>(rng.uniform_int(30, 60));
    const auto& h = s->hosted[static_cast<size_t>(r)];
    std::vector<double> w;
    double total = 0;
    for (api::AdapterId a : h) {
      w.push_back(1.0 / (a + 1.0));
      total += w.back();
    }
    for (int i = 0; i < n; ++i) {
      double u = rng.uniform() * total;
      size_t pick = 0;
      while (pick + 1 < w.size() && u >= w[pick]) u -= w[pick++];
      api::RequestView v;
      v.id = next++;
      v.adapter = h[pick];
      v.arrival = rng.uniform(0, 100);
      const int32_t len =
          std::clamp(static_cast<int32_t>(600 * std::exp(0.8 * rng.normal())), 16, 4000);
      v.generated = static_cast<int32_t>(rng.uniform_int(0, len / 4));
      v.prompt_tokens = len - v.generated;
      v.output_tokens = v.generated + 100;
      const double st = rng.uniform();
      v.state = st < 0.05   ? api::RequestState::running
                : st < 0.25 ? api::RequestState::waiting
                : st < 0.30 ? api::RequestState::swapped
                            : api::RequestState::ready;
      v.kv_blocks = v.state == api::RequestState::waiting ? 0 : (len + 15) / 16;
      s->requests[static_cast<size_t>(r)].push_back(v);
      ++s->counts[static_cast<size_t>(r)][static_cast<size_t>(v.adapter)];
    }
  }
  for (int32_t r = 0; r < R; ++r) {
    api::ReplicaState st;
    st.replica = r;
    st.kv_blocks_total = 7000;
    st.adapter_slots = static_cast<int32_t>(s->hosted[static_cast<size_t>(r)].size());
    st.hosted = s->hosted[static_cast<size_t>(r)];
    st.unfinished_per_adapter = s->counts[static_cast<size_t>(r)];
    st.requests = s->requests[static_cast<size_t>(r)];
    st.unfinished = static_cast<int32_t>(st.requests.size());
    for (const auto& q : st.requests) st.kv_blocks_used += q.kv_blocks;
    s->states.push_back(st);
  }
  s->view.now = 100;
  s->view.num_adapters = K;
  s->view.replicas = s->states;
  s->view.adapter_bytes = s->bytes;
  s->view.adapter_mean_exec_time = s->exec;
  s->view.kv_block_bytes = 8 << 20;
  s->view.link_bandwidth = 32e9;
  api::index_cluster_view(s->view, s->states, s->index);
  return s;
}

}  // namespace lorasched::cluster
