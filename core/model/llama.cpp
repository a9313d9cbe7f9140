#include "core/model/llama.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include "core/common/error.hpp"
#include "lorasched/kernels/cpu.hpp"

namespace lorasched {

namespace cpu = kernels::cpu;

LlamaModel::LlamaModel(ModelWeights weights, int64_t kv_blocks, int32_t block_size)
    : w_(std::move(weights)), kv_blocks_(kv_blocks), block_size_(block_size) {
  const ModelShape& s = w_.shape;
  LORASCHED_CHECK(s.num_heads % s.num_kv_heads == 0, "heads {} not a multiple of kv heads {}",
                  s.num_heads, s.num_kv_heads);
  LORASCHED_CHECK(kv_blocks > 0 && block_size > 0, "empty KV cache");
  const size_t per_layer =
      static_cast<size_t>(kv_blocks) * block_size * s.num_kv_heads * s.head_dim;
  k_cache_.assign(s.num_layers, std::vector<float>(per_layer, 0.0f));
  v_cache_.assign(s.num_layers, std::vector<float>(per_layer, 0.0f));
  residuals_.resize(s.num_layers);
}

size_t LlamaModel::block_floats() const {
  const ModelShape& s = w_.shape;
  return 2ull * s.num_layers * block_size_ * s.num_kv_heads * s.head_dim;
}

void LlamaModel::copy_blocks_out(std::span<const int32_t> blocks, std::vector<float>& out) const {
  const ModelShape& s = w_.shape;
  const size_t bf = static_cast<size_t>(block_size_) * s.num_kv_heads * s.head_dim;
  out.resize(blocks.size() * bf * 2 * s.num_layers);
  float* dst = out.data();
  for (int l = 0; l < s.num_layers; ++l)
    for (int32_t b : blocks) {
      std::memcpy(dst, k_cache_[l].data() + static_cast<size_t>(b) * bf, bf * sizeof(float));
      dst += bf;
      std::memcpy(dst, v_cache_[l].data() + static_cast<size_t>(b) * bf, bf * sizeof(float));
      dst += bf;
    }
}

void LlamaModel::copy_blocks_in(std::span<const int32_t> blocks, const std::vector<float>& in) {
  const ModelShape& s = w_.shape;
  const size_t bf = static_cast<size_t>(block_size_) * s.num_kv_heads * s.head_dim;
  LORASCHED_CHECK(in.size() == blocks.size() * bf * 2 * s.num_layers, "swap-in size mismatch");
  const float* src = in.data();
  for (int l = 0; l < s.num_layers; ++l)
    for (int32_t b : blocks) {
      std::memcpy(k_cache_[l].data() + static_cast<size_t>(b) * bf, src, bf * sizeof(float));
      src += bf;
      std::memcpy(v_cache_[l].data() + static_cast<size_t>(b) * bf, src, bf * sizeof(float));
      src += bf;
    }
}

void LlamaModel::merge(const LoraAdapterWeights& adapter) {
  LORASCHED_CHECK(merged_ == nullptr, "merge of '{}' while '{}' is merged", adapter.name,
                  merged_->name);
  LORASCHED_CHECK(adapter.layers.size() == w_.layers.size(), "adapter '{}' has {} layers, model {}",
                  adapter.name, adapter.layers.size(), w_.layers.size());
  for (size_t l = 0; l < w_.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const LoraModule& m = adapter.layers[l][t];
      if (!m.present()) continue;
      const Target tg = Target(t);
      cpu::lora_merge(w_.layers[l][tg].data(), w_.shape.out_features(tg), w_.shape.in_features(tg),
                      m.A.data(), m.B.data(), m.rank, m.scale, &residuals_[l][t]);
    }
  merged_ = &adapter;
}

void LlamaModel::unmerge() {
  LORASCHED_CHECK(merged_ != nullptr, "unmerge with nothing merged");
  const LoraAdapterWeights& adapter = *merged_;
  for (size_t l = 0; l < w_.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const LoraModule& m = adapter.layers[l][t];
      if (!m.present()) continue;
      const Target tg = Target(t);
      cpu::lora_unmerge(w_.layers[l][tg].data(), w_.shape.out_features(tg),
                        w_.shape.in_features(tg), m.A.data(), m.B.data(), m.rank, m.scale,
                        residuals_[l][t]);
      residuals_[l][t] = {};
    }
  merged_ = nullptr;
}

void LlamaModel::switch_to(const LoraAdapterWeights& adapter) {
  LORASCHED_CHECK(merged_ != nullptr, "switch to '{}' with nothing merged", adapter.name);
  LORASCHED_CHECK(adapter.layers.size() == w_.layers.size(), "adapter '{}' has {} layers, model {}",
                  adapter.name, adapter.layers.size(), w_.layers.size());
  const LoraAdapterWeights& from = *merged_;
  for (size_t l = 0; l < w_.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const LoraModule& a = from.layers[l][t];
      const LoraModule& b = adapter.layers[l][t];
      const Target tg = Target(t);
      float* W = w_.layers[l][tg].data();
      const int out = w_.shape.out_features(tg), in = w_.shape.in_features(tg);
      if (a.present() && b.present()) {
        cpu::lora_switch(W, out, in, a.A.data(), a.B.data(), a.rank, a.scale, b.A.data(),
                         b.B.data(), b.rank, b.scale, &residuals_[l][t]);
      } else if (a.present()) {
        cpu::lora_unmerge(W, out, in, a.A.data(), a.B.data(), a.rank, a.scale, residuals_[l][t]);
        residuals_[l][t] = {};
      } else if (b.present()) {
        cpu::lora_merge(W, out, in, b.A.data(), b.B.data(), b.rank, b.scale, &residuals_[l][t]);
      }
    }
  merged_ = &adapter;
}

size_t LlamaModel::switch_bytes(const LoraAdapterWeights& from,
                                const LoraAdapterWeights& to) const {
  size_t n = 0;
  for (size_t l = 0; l < w_.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const LoraModule& a = from.layers[l][t];
      const LoraModule& b = to.layers[l][t];
      if (a.present() || b.present()) n += 2 * w_.layers[l][Target(t)].size() * sizeof(float);
      if (a.present()) n += (a.A.size() + a.B.size()) * sizeof(float);
      if (b.present()) n += (b.A.size() + b.B.size()) * sizeof(float);
    }
  return n;
}

size_t LlamaModel::merge_bytes(const LoraAdapterWeights& adapter) const {
  size_t n = 0;
  for (size_t l = 0; l < adapter.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t)
      if (adapter.layers[l][t].present())
        n += 2 * w_.layers[l][Target(t)].size() * sizeof(float) +
             (adapter.layers[l][t].A.size() + adapter.layers[l][t].B.size()) * sizeof(float);
  return n;
}

// Adds the LoRA terms of layer `layer`, module t to y for every token group: its own
// adapter's term, minus the merged adapter's for groups of other adapters.
void LlamaModel::lora(
    int layer, Target t, const float* x, int in, float* y, int out,
    const std::vector<std::pair<const LoraAdapterWeights*, std::pair<int, int>>>& groups) {
  const int ti = static_cast<int>(t);
  for (int pass = 0; pass < 2; ++pass) {
    segs_.clear();
    for (const auto& [adapter, range] : groups) {
      if (pass == 0) {
        if (adapter == nullptr || adapter == merged_) continue;
        const LoraModule& m = adapter->layers[layer][ti];
        if (!m.present()) continue;
        segs_.push_back({range.first, range.second, m.A.data(), m.B.data(), m.rank, m.scale});
      } else {
        if (merged_ == nullptr || adapter == merged_) continue;
        const LoraModule& m = merged_->layers[layer][ti];
        if (!m.present()) continue;
        segs_.push_back({range.first, range.second, m.A.data(), m.B.data(), m.rank, -m.scale});
      }
    }
    if (segs_.empty()) continue;
    t_.resize(kernels::lora_workspace_floats(segs_));
    cpu::lora_shrink(x, in, in, segs_, t_.data());
    cpu::lora_expand(t_.data(), segs_, out, y, out);
  }
}

void LlamaModel::forward(std::span<const ForwardEntry> entries, std::vector<float>& logits) {
  const ModelShape& s = w_.shape;
  const int H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size;
  const int QD = s.num_heads * s.head_dim, KD = s.num_kv_heads * s.head_dim;
  const int E = static_cast<int>(entries.size());
  logits.assign(static_cast<size_t>(E) * V, 0.0f);
  if (E == 0) return;

  // Group entries by adapter (order of first appearance) so each adapter's tokens form one
  // segment (Punica's SGMV layout).
  std::vector<const LoraAdapterWeights*> seen;
  std::vector<int> group_of(E);
  for (int e = 0; e < E; ++e) {
    auto it = std::find(seen.begin(), seen.end(), entries[e].adapter);
    group_of[e] = static_cast<int>(it - seen.begin());
    if (it == seen.end()) seen.push_back(entries[e].adapter);
  }
  std::vector<int> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return group_of[a] < group_of[b]; });

  int T = 0;
  std::vector<int> last_row(E);
  std::vector<int32_t> tokens, positions, slots;
  std::vector<kernels::AttentionSeq> seqs;
  std::vector<std::pair<const LoraAdapterWeights*, std::pair<int, int>>> groups;
  for (int e : order) {
    const ForwardEntry& en = entries[e];
    const int n = static_cast<int>(en.tokens.size());
    LORASCHED_CHECK(n > 0, "entry without tokens");
    const int ctx = en.start_pos + n;
    LORASCHED_CHECK(static_cast<int64_t>(en.block_table.size()) * block_size_ >= ctx,
                    "block table of {} blocks too short for {} tokens", en.block_table.size(), ctx);
    LORASCHED_CHECK(en.adapter == nullptr || en.adapter->layers.size() == w_.layers.size(),
                    "adapter '{}' does not fit the model", en.adapter->name);
    for (int i = 0; i < n; ++i) {
      const int32_t tok = en.tokens[i];
      LORASCHED_CHECK(tok >= 0 && tok < V, "token {} outside the vocabulary of {}", tok, V);
      const int pos = en.start_pos + i;
      tokens.push_back(tok);
      positions.push_back(pos);
      const int32_t blk = en.block_table[pos / block_size_];
      LORASCHED_CHECK(blk >= 0 && blk < kv_blocks_, "KV block {} out of range", blk);
      slots.push_back(blk * block_size_ + pos % block_size_);
    }
    seqs.push_back({T, n, ctx, en.block_table.data()});
    if (!groups.empty() && groups.back().first == en.adapter)
      groups.back().second.second += n;
    else
      groups.push_back({en.adapter, {T, n}});
    T += n;
    last_row[e] = T - 1;
  }

  h_.resize(static_cast<size_t>(T) * H);
  for (int r = 0; r < T; ++r)
    std::memcpy(h_.data() + static_cast<size_t>(r) * H,
                w_.embed.data() + static_cast<size_t>(tokens[r]) * H, H * sizeof(float));
  xn_.resize(h_.size());
  q_.resize(static_cast<size_t>(T) * QD);
  k_.resize(static_cast<size_t>(T) * KD);
  v_.resize(static_cast<size_t>(T) * KD);
  attn_.resize(q_.size());
  o_.resize(h_.size());
  g_.resize(static_cast<size_t>(T) * I);
  u_.resize(g_.size());

  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  for (int l = 0; l < s.num_layers; ++l) {
    const LayerWeights& L = w_.layers[l];
    kernels::PagedKvLayer kv{
        k_cache_[l].data(), v_cache_[l].data(), static_cast<int32_t>(kv_blocks_),
        block_size_,        s.num_kv_heads,     s.head_dim};
    cpu::rmsnorm(h_.data(), L.input_norm.data(), T, H, s.rms_norm_eps, xn_.data());
    cpu::gemm_xwt(xn_.data(), T, H, H, L[Target::q].data(), QD, q_.data(), QD, false);
    lora(l, Target::q, xn_.data(), H, q_.data(), QD, groups);
    cpu::gemm_xwt(xn_.data(), T, H, H, L[Target::k].data(), KD, k_.data(), KD, false);
    lora(l, Target::k, xn_.data(), H, k_.data(), KD, groups);
    cpu::gemm_xwt(xn_.data(), T, H, H, L[Target::v].data(), KD, v_.data(), KD, false);
    lora(l, Target::v, xn_.data(), H, v_.data(), KD, groups);
    cpu::rope(q_.data(), T, s.num_heads, s.head_dim, positions.data(), s.rope_theta);
    cpu::rope(k_.data(), T, s.num_kv_heads, s.head_dim, positions.data(), s.rope_theta);
    cpu::paged_kv_write(kv, k_.data(), v_.data(), T, slots.data());
    cpu::paged_attention(q_.data(), s.num_heads, kv, seqs, scale, attn_.data());
    cpu::gemm_xwt(attn_.data(), T, QD, QD, L[Target::o].data(), H, o_.data(), H, false);
    lora(l, Target::o, attn_.data(), QD, o_.data(), H, groups);
    for (size_t i = 0; i < h_.size(); ++i) h_[i] += o_[i];

    cpu::rmsnorm(h_.data(), L.post_norm.data(), T, H, s.rms_norm_eps, xn_.data());
    cpu::gemm_xwt(xn_.data(), T, H, H, L[Target::gate].data(), I, g_.data(), I, false);
    lora(l, Target::gate, xn_.data(), H, g_.data(), I, groups);
    cpu::gemm_xwt(xn_.data(), T, H, H, L[Target::up].data(), I, u_.data(), I, false);
    lora(l, Target::up, xn_.data(), H, u_.data(), I, groups);
    cpu::silu_mul(g_.data(), u_.data(), g_.size(), g_.data());
    cpu::gemm_xwt(g_.data(), T, I, I, L[Target::down].data(), H, o_.data(), H, false);
    lora(l, Target::down, g_.data(), I, o_.data(), H, groups);
    for (size_t i = 0; i < h_.size(); ++i) h_[i] += o_[i];
  }

  // Final norm and LM head on each entry's last token only.
  std::vector<float> last(static_cast<size_t>(E) * H);
  for (int e = 0; e < E; ++e)
    std::memcpy(last.data() + static_cast<size_t>(e) * H,
                h_.data() + static_cast<size_t>(last_row[e]) * H, H * sizeof(float));
  cpu::rmsnorm(last.data(), w_.final_norm.data(), E, H, s.rms_norm_eps, last.data());
  cpu::gemm_xwt(last.data(), E, H, H, w_.output_weight().data(), V, logits.data(), V, false);
}

}  // namespace lorasched
