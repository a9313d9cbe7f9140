// Executor "cpu": the real forward pass, merges and copies on the CPU (OpenBLAS), each
// timed with a steady clock.
#pragma once

#include <map>
#include <memory>

#include "core/exec/executor.hpp"
#include "core/model/llama.hpp"

namespace lorasched {

class CpuExecutor final : public Executor {
 public:
  // host_adapters: the adapters' weights in host memory, indexed by adapter id (shared by
  // every replica); the executor copies an adapter into its own pool on load_adapter.
  CpuExecutor(ModelWeights weights,
              std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters,
              int64_t kv_blocks, int32_t block_size);

  std::string name() const override { return "cpu"; }
  std::string device() const override;
  bool needs_tokens() const override { return true; }

  IterationResult run(const ExecBatch& batch) override;
  std::vector<CostStep> switch_weights(api::AdapterId from, api::AdapterId to,
                                       SwitchMethod method) override;
  CostStep load_adapter(api::AdapterId adapter) override;
  void evict_adapter(api::AdapterId adapter) override;
  CostStep swap_out(api::RequestId request, std::span<const int32_t> blocks) override;
  CostStep swap_in(api::RequestId request, std::span<const int32_t> blocks) override;
  void drop_swapped(api::RequestId request) override { swapped_.erase(request); }
  KvData export_kv(std::span<const int32_t> blocks) override;
  void import_kv(std::span<const int32_t> blocks, const KvData& kv) override;

  LlamaModel& model() { return model_; }
  // Logits of the last run, [entries, vocab] (for conformance checks).
  const std::vector<float>& last_logits() const { return logits_; }

 private:
  const LoraAdapterWeights& resident(api::AdapterId id) const;
  LlamaModel model_;
  std::shared_ptr<const std::vector<LoraAdapterWeights>> host_;
  std::map<api::AdapterId, std::unique_ptr<LoraAdapterWeights>> pool_;  // resident copies
  api::AdapterId merged_ = api::kNoAdapter;
  std::map<api::RequestId, std::vector<float>> swapped_;
  std::vector<float> logits_;
};

// The BLAS thread count the cpu executor uses (0 = all cores); returns what was set.
int set_cpu_threads(int threads);

}  // namespace lorasched
