#include "core/exec/costmodel.hpp"

#include <fmt/format.h>
#include <algorithm>

namespace lorasched {

BatchFeatures batch_features(const ExecBatch& batch, const std::vector<AdapterInfo>& adapters) {
  BatchFeatures f;
  f.mode = batch.mode;
  f.entries = static_cast<int32_t>(batch.entries.size());
  // With an adapter merged (merged or mixed mode), the rows of other adapters get their own
  // LoRA term and the merged adapter's negated, in a second pass over the same rows.
  const bool merged =
      api::has_merged_weights(batch.mode) && batch.merged_adapter != api::kNoAdapter;
  const int64_t merged_rank = merged ? adapters[static_cast<size_t>(batch.merged_adapter)].rank : 0;
  // Distinct LoRA adapters: a batch is small, so a linear scan of a short list wins.
  api::AdapterId seen_small[64];
  std::vector<api::AdapterId> seen_more;
  int32_t distinct = 0;
  for (const auto& e : batch.entries) {
    if (e.prefill) {
      f.prefill_tokens += e.new_tokens;
      f.prefill_sq_tokens += static_cast<int64_t>(e.new_tokens) * e.new_tokens;
    } else {
      f.decode_seqs += 1;
      f.decode_context += e.context_tokens;
    }
    if (merged && e.adapter == batch.merged_adapter) continue;
    const int64_t rank = adapters[static_cast<size_t>(e.adapter)].rank;
    f.lora_tokens += e.new_tokens;
    f.lora_token_rank += static_cast<int64_t>(e.new_tokens) * (rank + merged_rank);
    const int32_t small = std::min<int32_t>(distinct, 64);
    bool found = std::find(seen_small, seen_small + small, e.adapter) != seen_small + small;
    if (!found && distinct > 64)
      found = std::find(seen_more.begin(), seen_more.end(), e.adapter) != seen_more.end();
    if (!found) {
      if (distinct < 64)
        seen_small[distinct] = e.adapter;
      else
        seen_more.push_back(e.adapter);
      ++distinct;
      f.lora_adapter_rank += rank;
    }
  }
  if (f.lora_tokens > 0) {
    f.lora_passes = merged ? 2 : 1;
    f.lora_segments = distinct * f.lora_passes;
    if (merged) {  // the merged adapter's weights are read for the second pass
      ++distinct;
      f.lora_adapter_rank += merged_rank;
    }
  }
  f.distinct_adapters = distinct;
  return f;
}

BatchFeatures reference_batch(bool unmerged) {
  BatchFeatures f;
  f.mode = unmerged ? api::Mode::unmerged : api::Mode::merged;
  f.entries = kReferenceBatch;
  f.decode_seqs = kReferenceBatch;
  f.decode_context = static_cast<int64_t>(kReferenceBatch) * kReferenceContext;
  if (unmerged) {
    f.lora_passes = 1;
    f.lora_segments = kReferenceBatch;
    f.distinct_adapters = kReferenceBatch;
    f.lora_tokens = kReferenceBatch;
    f.lora_token_rank = static_cast<int64_t>(kReferenceBatch) * kReferenceRank;
    f.lora_adapter_rank = static_cast<int64_t>(kReferenceBatch) * kReferenceRank;
  }
  return f;
}

AdapterInfo reference_adapter(const ModelShape& shape, int element_bytes, api::AdapterId id) {
  AdapterInfo a;
  a.id = id;
  a.rank = kReferenceRank;
  a.num_parameters = lora_parameters(shape, kReferenceRank);
  a.bytes = a.num_parameters * element_bytes;
  return a;
}

std::string shape_difference(const ModelShape& a, const ModelShape& b) {
  std::string out;
  auto diff = [](const char* field, auto x, auto y) {
    return x == y ? std::string() : fmt::format("{} {} vs {}", field, x, y);
  };
  for (const std::string& d :
       {diff("vocab_size", a.vocab_size, b.vocab_size),
        diff("hidden_size", a.hidden_size, b.hidden_size),
        diff("intermediate_size", a.intermediate_size, b.intermediate_size),
        diff("num_layers", a.num_layers, b.num_layers), diff("num_heads", a.num_heads, b.num_heads),
        diff("num_kv_heads", a.num_kv_heads, b.num_kv_heads),
        diff("head_dim", a.head_dim, b.head_dim),
        diff("tie_word_embeddings", a.tie_word_embeddings, b.tie_word_embeddings),
        diff("max_position", a.max_position, b.max_position),
        diff("rms_norm_eps", a.rms_norm_eps, b.rms_norm_eps),
        diff("rope_theta", a.rope_theta, b.rope_theta)})
    if (!d.empty()) out += (out.empty() ? "" : ", ") + d;
  return out;
}

CostModelExecutor::CostModelExecutor(std::shared_ptr<const CostModel> model,
                                     std::vector<AdapterInfo> adapters)
    : CostModelExecutor(std::move(model),
                        std::make_shared<const std::vector<AdapterInfo>>(std::move(adapters))) {}

CostModelExecutor::CostModelExecutor(std::shared_ptr<const CostModel> model,
                                     std::shared_ptr<const std::vector<AdapterInfo>> adapters)
    : model_(std::move(model)), adapters_(std::move(adapters)) {}

IterationResult CostModelExecutor::run(const ExecBatch& batch) {
  IterationResult r;
  const BatchFeatures f = batch_features(batch, *adapters_);
  r.seconds = model_->iteration(f);
  // The same tokens with no LoRA term, priced as a merged batch.
  BatchFeatures base = f;
  base.mode = api::Mode::merged;
  base.lora_passes = base.lora_segments = base.distinct_adapters = 0;
  base.lora_tokens = base.lora_token_rank = base.lora_adapter_rank = 0;
  r.merged_seconds = model_->iteration(base);
  return r;
}

std::vector<CostStep> CostModelExecutor::switch_weights(api::AdapterId from, api::AdapterId to,
                                                        SwitchMethod method) {
  if (from == to) return {};
  const AdapterInfo* f =
      from == api::kNoAdapter ? nullptr : &adapters_->at(static_cast<size_t>(from));
  const AdapterInfo* t = to == api::kNoAdapter ? nullptr : &adapters_->at(static_cast<size_t>(to));
  return model_->switch_steps(f, t, method);
}

CostStep CostModelExecutor::load_adapter(api::AdapterId adapter) {
  const int64_t bytes = adapters_->at(static_cast<size_t>(adapter)).bytes;
  return {EventKind::adapter_load, adapter, model_->load(bytes), bytes};
}

CostStep CostModelExecutor::swap_out(api::RequestId, std::span<const int32_t> blocks) {
  const int64_t bytes = static_cast<int64_t>(blocks.size()) * block_bytes_;
  return {EventKind::preempt_swap, api::kNoAdapter, model_->swap(bytes, false), bytes};
}

CostStep CostModelExecutor::swap_in(api::RequestId, std::span<const int32_t> blocks) {
  const int64_t bytes = static_cast<int64_t>(blocks.size()) * block_bytes_;
  return {EventKind::swap_in, api::kNoAdapter, model_->swap(bytes, true), bytes};
}

}  // namespace lorasched
