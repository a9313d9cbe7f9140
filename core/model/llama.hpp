// The Llama-style decoder executed on the CPU: mixed-adapter batches over a paged KV
// cache, with one adapter optionally merged into the base weights.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/model/weights.hpp"
#include "lorasched/kernels/types.hpp"

namespace lorasched {

// One sequence's slice of a forward pass: its new tokens (a whole prompt at prefill, one
// token at decode) at positions start_pos .., written into and attending over the KV
// blocks of block_table.
struct ForwardEntry {
  const LoraAdapterWeights* adapter = nullptr;  // nullptr: base model
  std::span<const int32_t> tokens;
  int32_t start_pos = 0;
  std::span<const int32_t> block_table;
};

class LlamaModel {
 public:
  // kv_blocks blocks of block_size tokens of KV cache per layer.
  LlamaModel(ModelWeights weights, int64_t kv_blocks, int32_t block_size);

  const ModelShape& shape() const { return w_.shape; }
  const ModelWeights& weights() const { return w_; }
  int32_t block_size() const { return block_size_; }
  int64_t kv_blocks() const { return kv_blocks_; }

  // Runs every entry's new tokens and writes the logits of each entry's last token to
  // logits ([entries, vocab]). With an adapter merged, entries of that adapter run on the
  // merged weights with no LoRA term; entries of other adapters (or of none) get their own
  // LoRA term minus the merged adapter's (mixed-mode batching), so every entry computes
  // exactly its own adapter's function.
  void forward(std::span<const ForwardEntry> entries, std::vector<float>& logits);

  // Folds the adapter into the base weights (W += s B A for every adapted module).
  // Throws if another adapter is merged.
  void merge(const LoraAdapterWeights& adapter);
  // Restores the base weights bit-exactly.
  void unmerge();
  // Replaces the merged adapter by `adapter` in one pass over each adapted weight
  // (kernels::cpu::lora_switch): the weights and the record of how to restore them come out
  // bit-identical to unmerge() then merge(adapter). Throws if nothing is merged.
  void switch_to(const LoraAdapterWeights& adapter);
  const LoraAdapterWeights* merged() const { return merged_; }
  // Bytes of weights merge and unmerge read and write (for bandwidth figures).
  size_t merge_bytes(const LoraAdapterWeights& adapter) const;
  // Bytes switch_to reads and writes: each weight either adapter touches once, both adapters.
  size_t switch_bytes(const LoraAdapterWeights& from, const LoraAdapterWeights& to) const;

  // KV cache contents of whole blocks, for swapping to host memory and back.
  void copy_blocks_out(std::span<const int32_t> blocks, std::vector<float>& out) const;
  void copy_blocks_in(std::span<const int32_t> blocks, const std::vector<float>& in);
  size_t block_floats() const;  // floats of one block across all layers, K and V

 private:
  void lora(int layer, Target t, const float* x, int in, float* y, int out,
            const std::vector<std::pair<const LoraAdapterWeights*, std::pair<int, int>>>& groups);

  ModelWeights w_;
  int64_t kv_blocks_;
  int32_t block_size_;
  std::vector<std::vector<float>> k_cache_, v_cache_;  // per layer
  const LoraAdapterWeights* merged_ = nullptr;
  std::vector<std::array<kernels::MergeResidual, kNumTargets>> residuals_;
  // workspaces
  std::vector<float> h_, xn_, q_, k_, v_, attn_, o_, g_, u_, t_;
  std::vector<kernels::LoraSegment> segs_;
};

}  // namespace lorasched
