// Executor "costmodel": predicts how long iterations, switches, adapter loads and swaps
// take instead of running them, so cluster-scale experiments run on a laptop. This header is
// the interface every cost model implements; the models are profiles measured with
// `lorasched profile` (profile_model.hpp), hardware presets (presets.hpp) and the dLoRA
// artifact's timing (artifact_costmodel.hpp), built by costmodel_factory.hpp
// (docs/costmodel.md).
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/exec/executor.hpp"
#include "core/model/shape.hpp"

namespace lorasched {

// What a batch looks like to a cost model.
struct BatchFeatures {
  api::Mode mode = api::Mode::unmerged;
  int32_t entries = 0;
  int64_t prefill_tokens = 0;     // tokens of prefill entries
  int64_t prefill_sq_tokens = 0;  // sum over prefill entries of n^2 (causal attention work)
  int32_t decode_seqs = 0;
  int64_t decode_context = 0;  // sum of context lengths of decode entries
  // The LoRA work, as the executors do it: rows are grouped by adapter (one SGMV segment per
  // adapter). Without merged weights every row gets its adapter's term in one pass. With an
  // adapter merged (merged or mixed mode), its rows run on the merged weights with no LoRA
  // term, and the rows of other adapters get two passes: their own adapter's term, and the
  // merged adapter's term negated (V-LoRA's deLoRA); so those rows count with both ranks, and
  // the merged adapter's weights are read too.
  int32_t lora_passes = 0;        // 0, 1 (unmerged), or 2 (merged weights + other rows)
  int32_t lora_segments = 0;      // (adapter, row run) pairs over all passes
  int64_t lora_tokens = 0;        // rows computed with a LoRA term
  int64_t lora_token_rank = 0;    // sum over those rows of the rank(s) applied to them
  int32_t distinct_adapters = 0;  // distinct adapters whose LoRA weights the batch reads
  int64_t lora_adapter_rank = 0;  // sum over the distinct adapters of their rank
  int32_t prefill_seqs() const { return entries - decode_seqs; }
  int64_t tokens() const { return prefill_tokens + decode_seqs; }
  // Rows summed over the segments of every pass (each LoRA row once per pass).
  int64_t lora_segment_tokens() const { return lora_tokens * std::max(1, lora_passes); }
};

BatchFeatures batch_features(const ExecBatch& batch, const std::vector<AdapterInfo>& adapters);

// dLoRA's reference point, at which its artifact measured 15 ms merged and 27 ms unmerged on
// Llama-2-7B / A100: 16 decoding requests with a mean context of 512 tokens; unmerged, each on
// its own adapter of rank 16 (docs/costmodel.md). Presets are calibrated there, and
// [cluster] costmodel_scale sets ratios there.
inline constexpr int kReferenceBatch = 16;
inline constexpr int kReferenceContext = 512;
inline constexpr int kReferenceRank = 16;
BatchFeatures reference_batch(bool unmerged);
// An adapter of the reference rank on `shape`, `element_bytes` per weight; id `id`.
AdapterInfo reference_adapter(const ModelShape& shape, int element_bytes, api::AdapterId id = 0);

// An iteration's predicted time, split into the part every batch of that shape pays on the
// base (or merged) weights and the part its LoRA terms add.
struct IterationTime {
  double base = 0;
  double lora = 0;
  double total() const { return base + lora; }
};

class CostModel {
 public:
  virtual ~CostModel() = default;
  virtual std::string describe() const = 0;
  virtual IterationTime iteration_time(const BatchFeatures& f) const = 0;
  double iteration(const BatchFeatures& f) const { return iteration_time(f).total(); }
  // The steps of a weight switch from `from` to `to` (either may be null: a plain merge or
  // unmerge) done by `method` (core/exec/executor.hpp), with their predicted times.
  virtual std::vector<CostStep> switch_steps(const AdapterInfo* from, const AdapterInfo* to,
                                             SwitchMethod method) const = 0;
  virtual double load(int64_t bytes) const = 0;
  // KV cache to host memory (to_device = false) or back.
  virtual double swap(int64_t bytes, bool to_device) const = 0;
  // Device memory for weights + pool, and bytes per element on the device.
  virtual double device_memory_bytes() const = 0;
  // The pool the modelled executor gets when the experiment sets none, in bytes; 0: device
  // memory x gpu_memory_utilization - weights (a profile of the cpu executor: its default).
  virtual double default_pool_bytes() const { return 0; }
  virtual int bytes_per_element() const = 0;
  // The model shape the model was built for (for checks against the experiment's model).
  virtual const ModelShape& shape() const = 0;
};

// "" when a and b are the same model shape (the name aside), else the fields that differ,
// e.g. "hidden_size 1024 vs 256, num_layers 8 vs 4".
std::string shape_difference(const ModelShape& a, const ModelShape& b);

class CostModelExecutor final : public Executor {
 public:
  CostModelExecutor(std::shared_ptr<const CostModel> model, std::vector<AdapterInfo> adapters);
  // Adapters shared by the executors of a run (one copy however many replicas).
  CostModelExecutor(std::shared_ptr<const CostModel> model,
                    std::shared_ptr<const std::vector<AdapterInfo>> adapters);
  std::string name() const override { return "costmodel"; }
  std::string device() const override { return model_->describe(); }
  bool needs_tokens() const override { return false; }
  IterationResult run(const ExecBatch& batch) override;
  std::vector<CostStep> switch_weights(api::AdapterId from, api::AdapterId to,
                                       SwitchMethod method) override;
  CostStep load_adapter(api::AdapterId adapter) override;
  void evict_adapter(api::AdapterId) override {}
  CostStep swap_out(api::RequestId request, std::span<const int32_t> blocks) override;
  CostStep swap_in(api::RequestId request, std::span<const int32_t> blocks) override;
  // No KV contents: only the number of blocks travels.
  KvData export_kv(std::span<const int32_t> blocks) override {
    return {static_cast<int64_t>(blocks.size()), {}};
  }
  void import_kv(std::span<const int32_t>, const KvData&) override {}
  void set_block_bytes(int64_t b) { block_bytes_ = b; }

 private:
  std::shared_ptr<const CostModel> model_;
  std::shared_ptr<const std::vector<AdapterInfo>> adapters_;
  int64_t block_bytes_ = 0;
};

}  // namespace lorasched
