#include "core/exec/batch_layout.hpp"

#include <algorithm>
#include <numeric>

#include "core/common/error.hpp"

namespace lorasched {

BatchLayout layout_batch(const ExecBatch& batch, int32_t block_size, int64_t kv_blocks,
                         int32_t vocab) {
  BatchLayout L;
  const int E = static_cast<int>(batch.entries.size());
  if (E == 0) return L;

  std::vector<int> group_of(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) {
    const api::AdapterId a = batch.entries[static_cast<size_t>(e)].adapter;
    auto it = std::find(L.slots.begin(), L.slots.end(), a);
    group_of[static_cast<size_t>(e)] = static_cast<int>(it - L.slots.begin());
    if (it == L.slots.end()) L.slots.push_back(a);
  }
  std::vector<int> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return group_of[static_cast<size_t>(a)] < group_of[static_cast<size_t>(b)];
  });

  int64_t T64 = 0;
  for (const auto& en : batch.entries) T64 += std::max<int32_t>(en.new_tokens, 0);
  LORASCHED_CHECK(T64 > 0 && T64 < (int64_t(1) << 28), "a batch of {} tokens", T64);
  L.tokens = static_cast<int32_t>(T64);
  const auto T = static_cast<size_t>(T64);
  L.token_ids.resize(T);
  L.positions.resize(T);
  L.kv_slots.resize(T);
  L.last_row.resize(static_cast<size_t>(E));
  L.seqs.reserve(static_cast<size_t>(E));

  int32_t row = 0;
  for (int e : order) {
    const ExecEntry& en = batch.entries[static_cast<size_t>(e)];
    const int32_t n = en.new_tokens;
    LORASCHED_CHECK(n > 0 && static_cast<int64_t>(en.tokens.size()) == n,
                    "request {}: {} token ids for {} new tokens", en.request, en.tokens.size(), n);
    LORASCHED_CHECK(en.context_tokens >= n, "request {}: context {} < {} new tokens", en.request,
                    en.context_tokens, n);
    const int32_t start = en.context_tokens - n;
    LORASCHED_CHECK(static_cast<int64_t>(en.block_table.size()) * block_size >= en.context_tokens,
                    "request {}: block table of {} blocks too short for {} tokens", en.request,
                    en.block_table.size(), en.context_tokens);
    const size_t used_blocks =
        static_cast<size_t>((en.context_tokens + block_size - 1) / block_size);
    for (size_t b = 0; b < used_blocks; ++b)
      LORASCHED_CHECK(en.block_table[b] >= 0 && en.block_table[b] < kv_blocks,
                      "request {}: KV block {} out of range", en.request, en.block_table[b]);
    for (int32_t i = 0; i < n; ++i) {
      const int32_t tok = en.tokens[static_cast<size_t>(i)];
      LORASCHED_CHECK(tok >= 0 && tok < vocab, "token {} outside the vocabulary of {}", tok, vocab);
      const int32_t pos = start + i;
      const auto r = static_cast<size_t>(row + i);
      L.token_ids[r] = tok;
      L.positions[r] = pos;
      L.kv_slots[r] =
          en.block_table[static_cast<size_t>(pos / block_size)] * block_size + pos % block_size;
    }
    L.seqs.push_back({row, n, en.context_tokens, en.block_table.data()});
    const int32_t slot = group_of[static_cast<size_t>(e)];
    if (!L.segments.empty() && L.segments.back().slot == slot)
      L.segments.back().len += n;
    else
      L.segments.push_back({row, n, slot});
    row += n;
    L.last_row[static_cast<size_t>(e)] = row - 1;
  }
  return L;
}

}  // namespace lorasched
