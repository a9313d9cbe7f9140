// Executor "cuda": the forward pass of core/model/llama.cpp on one CUDA device, with the
// kernels of kernels/cuda. Weights, KV pool and resident adapters live in device memory in a
// 16-bit dtype (fp16 by default, bf16 on request); every kernel accumulates in fp32. Each
// iteration, weight switch, adapter load and swap is timed with CUDA events on its stream.
//
//  * Weights: one device allocation (embeddings, norms, the seven projections per layer, LM
//    head), converted from the fp32 host weights once (round to nearest even).
//  * Merge / unmerge / fused switch: kernels::cuda::lora_merge / lora_unmerge / lora_switch on
//    every adapted projection, with one MergeResidual16 per projection allocated up front (1
//    byte per weight), so an unmerge restores the uploaded 16-bit weights bit-exactly.
//  * Batches: the host-side layout (core/exec/batch_layout.hpp) groups entries by adapter (order
//    of first appearance, like the cpu executor); each group is one SGMV segment. Unmerged groups
//    get their adapter's LoRA term (pass 0); with an adapter merged, every group of another adapter
//    (or of none) also gets the merged adapter's term with the scale negated (pass 1), so each
//    entry computes exactly its own adapter's function (mixed mode). Greedy next tokens: argmax on
//    the device.
//  * Adapters: fp16 images in pinned host memory (made on an adapter's first load), copied to
//    their own device allocation on a side stream (load_stream) on load_adapter, freed on
//    evict_adapter. The engine accounts their pool blocks (unified paging); the device holds
//    their bytes beside the KV pool while they are resident.
//  * KV pool: [layer][K|V][block][block_size][kv_heads][head_dim], zeroed at construction.
//    Swaps copy a request's blocks to pinned host memory and back (runs of consecutive block
//    ids in one copy).
// Every operation waits for its work before returning (the simulation is sequential), so the
// host never touches memory the device still uses. After a device failure in the middle of a
// weight switch the executor refuses further work (its weights may be half merged).
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/exec/batch_layout.hpp"
#include "core/exec/executor.hpp"
#include "core/model/weights.hpp"
#include "lorasched/kernels/cuda/attention.hpp"
#include "lorasched/kernels/cuda/common.hpp"
#include "lorasched/kernels/cuda/gemm.hpp"
#include "lorasched/kernels/cuda/lora.hpp"
#include "lorasched/kernels/cuda/merge.hpp"

namespace lorasched {

namespace cuda_exec {

struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept { (void)cudaStreamDestroy(s); }
};
struct EventDeleter {
  void operator()(cudaEvent_t e) const noexcept { (void)cudaEventDestroy(e); }
};
using UniqueStream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDeleter>;
using UniqueEvent = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDeleter>;

// Page-locked host memory (cudaHostAlloc), move-only.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;

  void release() noexcept;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace cuda_exec

class CudaExecutor final : public Executor {
 public:
  struct Options {
    kernels::cuda::DType dtype = kernels::cuda::DType::kF16;  // kF16 or kBF16
  };

  // Throws Error(ExitCode::runtime) "executor cuda: no CUDA device (...)" without a device,
  // and when the weights and the pool do not fit in the device's free memory.
  CudaExecutor(const ModelWeights& weights,
               std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters,
               int64_t kv_blocks, int32_t block_size, Options options);
  CudaExecutor(const ModelWeights& weights,
               std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters,
               int64_t kv_blocks, int32_t block_size)
      : CudaExecutor(weights, std::move(host_adapters), kv_blocks, block_size, Options{}) {}
  ~CudaExecutor() override;
  CudaExecutor(const CudaExecutor&) = delete;
  CudaExecutor& operator=(const CudaExecutor&) = delete;

  std::string name() const override { return "cuda"; }
  std::string device() const override { return device_text_; }
  bool needs_tokens() const override { return true; }

  IterationResult run(const ExecBatch& batch) override;
  std::vector<CostStep> switch_weights(api::AdapterId from, api::AdapterId to,
                                       SwitchMethod method) override;
  CostStep load_adapter(api::AdapterId adapter) override;
  void evict_adapter(api::AdapterId adapter) override;
  CostStep swap_out(api::RequestId request, std::span<const int32_t> blocks) override;
  CostStep swap_in(api::RequestId request, std::span<const int32_t> blocks) override;
  void drop_swapped(api::RequestId request) override;
  KvData export_kv(std::span<const int32_t> blocks) override;
  void import_kv(std::span<const int32_t> blocks, const KvData& kv) override;

  // For tests and checks.
  const ModelShape& shape() const { return shape_; }
  kernels::cuda::DType dtype() const { return dtype_; }
  api::AdapterId merged() const { return merged_; }
  bool resident(api::AdapterId adapter) const { return resident_.count(adapter) != 0; }
  // Logits of the last run's entries, [entries, vocab] in entry order, widened to float.
  std::vector<float> last_logits() const;
  // The 16-bit patterns of projection t of `layer` as the device holds them now.
  std::vector<uint16_t> projection_bits(int layer, Target t) const;
  // Device memory held now (weights, residuals, pool, resident adapters, workspaces).
  size_t device_bytes() const;

 private:
  // Element offsets of one module's A and B in an adapter image (16-byte aligned).
  struct ModuleSlice {
    size_t a = 0, b = 0;
    int rank = 0;
    float scale = 0;
  };
  struct AdapterImage {  // the 16-bit copy in pinned host memory
    cuda_exec::PinnedBuffer host;
    size_t elems = 0;
    int64_t payload_bytes = 0;  // A and B elements x element size (no alignment padding)
    std::vector<std::array<ModuleSlice, kNumTargets>> modules;
  };
  struct DeviceAdapter {
    kernels::cuda::DeviceBuffer<uint16_t> data;
    std::vector<std::array<kernels::cuda::LoraAdapterRef, kNumTargets>> refs;  // rank 0: absent
  };
  struct LayerOffsets {
    size_t input_norm = 0, post_norm = 0;
    std::array<size_t, kNumTargets> proj{};
  };
  struct Swapped {
    cuda_exec::PinnedBuffer host;
    std::vector<int32_t> blocks;  // as swapped out (for the size check)
  };

  void check_usable() const;
  void activate() const;  // cudaSetDevice
  [[noreturn]] void fail(const char* what, const std::exception& e);
  double elapsed(cudaEvent_t start, cudaEvent_t stop) const;
  const AdapterImage& image(api::AdapterId adapter);
  const DeviceAdapter& resident_adapter(api::AdapterId adapter) const;
  uint16_t* weight(size_t offset) { return weights_.get() + offset; }
  const uint16_t* weight(size_t offset) const { return weights_.get() + offset; }
  kernels::cuda::PagedKvCache kv_layer(int layer);
  uint16_t* kv_part(int layer, int kv);  // kv 0: K, 1: V
  void prepare_tables(const std::vector<api::AdapterId>& slots);
  size_t stage_ints(const BatchLayout& layout);
  size_t plan_lora(const BatchLayout& layout);
  double run_layers(const BatchLayout& layout, int entries);
  void add_lora(int layer, Target t, const void* x, int in, void* y, int out);
  void copy_blocks(std::span<const int32_t> blocks, void* host, bool to_host);
  cuda_exec::PinnedBuffer take_pinned(size_t bytes);
  void give_pinned(cuda_exec::PinnedBuffer buffer);
  void ensure_pinned(cuda_exec::PinnedBuffer& buffer, size_t bytes);

  // Declared first: destroyed last, after every buffer that work on them may touch.
  cuda_exec::UniqueStream stream_, load_stream_;
  cuda_exec::UniqueEvent start_, stop_, load_start_, load_stop_;
  std::unique_ptr<kernels::cuda::BlasHandle> blas_;

  int device_ = 0;
  std::string device_text_;
  kernels::cuda::DType dtype_;
  ModelShape shape_;
  int64_t kv_blocks_ = 0;
  int32_t block_size_ = 0;
  std::shared_ptr<const std::vector<LoraAdapterWeights>> host_;
  std::string broken_;  // why the executor refuses work (empty: usable)

  kernels::cuda::DeviceBuffer<uint16_t> weights_;
  size_t embed_ = 0, lm_head_ = 0, final_norm_ = 0;
  std::vector<LayerOffsets> layers_;
  std::vector<std::array<kernels::cuda::MergeResidual16, kNumTargets>> residuals_;
  api::AdapterId merged_ = api::kNoAdapter;

  kernels::cuda::DeviceBuffer<uint16_t> kv_;
  size_t kv_layer_elems_ = 0;  // one layer's K (or V)

  std::map<api::AdapterId, AdapterImage> images_;
  std::map<api::AdapterId, DeviceAdapter> resident_;

  // Per (pass, layer * kNumTargets + target): the adapter table of the current slots, and
  // the plan of this iteration's segments for its ranks (null: no LoRA work).
  std::array<std::vector<kernels::cuda::LoraAdapterTable>, 2> tables_;
  std::vector<api::AdapterId> table_slots_;
  api::AdapterId table_merged_ = api::kNoAdapter;
  bool tables_valid_ = false;
  std::array<std::map<std::vector<int32_t>, kernels::cuda::LoraBatchPlan>, 2> plan_cache_;
  std::array<std::vector<const kernels::cuda::LoraBatchPlan*>, 2> plans_;

  // Workspaces (grown on demand).
  kernels::cuda::DeviceBuffer<uint16_t> h_, xn_, q_, k_, v_, attn_, g_, u_, last_, logits_;
  kernels::cuda::DeviceBuffer<float> t_;
  kernels::cuda::DeviceBuffer<int32_t> ints_, next_;
  cuda_exec::PinnedBuffer ints_host_, next_host_, refs_host_;
  int last_entries_ = 0;

  std::map<api::RequestId, Swapped> swapped_;
  std::vector<cuda_exec::PinnedBuffer> spare_pinned_;  // freed swap buffers, for reuse
};

}  // namespace lorasched
