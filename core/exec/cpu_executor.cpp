#include "core/exec/cpu_executor.hpp"

#include <cstring>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <thread>

#include "core/common/error.hpp"
#include "lorasched/kernels/cpu.hpp"

namespace lorasched {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

int set_cpu_threads(int threads) {
  const int n =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  kernels::cpu::set_blas_threads(n);
  return n;
}

CpuExecutor::CpuExecutor(ModelWeights weights,
                         std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters,
                         int64_t kv_blocks, int32_t block_size)
    : model_(std::move(weights), kv_blocks, block_size), host_(std::move(host_adapters)) {}

std::string CpuExecutor::device() const {
  return fmt::format("CPU ({} threads, OpenBLAS), model {} fp32", kernels::cpu::blas_threads(),
                     model_.shape().name);
}

const LoraAdapterWeights& CpuExecutor::resident(api::AdapterId id) const {
  auto it = pool_.find(id);
  LORASCHED_CHECK(it != pool_.end(), "adapter {} used but not resident in the pool", id);
  return *it->second;
}

IterationResult CpuExecutor::run(const ExecBatch& batch) {
  std::vector<ForwardEntry> entries;
  entries.reserve(batch.entries.size());
  for (const auto& e : batch.entries) {
    LORASCHED_CHECK(static_cast<int32_t>(e.tokens.size()) == e.new_tokens,
                    "request {}: {} token ids for {} new tokens", e.request, e.tokens.size(),
                    e.new_tokens);
    entries.push_back(
        {&resident(e.adapter), e.tokens, e.context_tokens - e.new_tokens, e.block_table});
  }
  const auto t0 = Clock::now();
  model_.forward(entries, logits_);
  IterationResult r;
  const int V = model_.shape().vocab_size;
  r.next_tokens.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const float* row = logits_.data() + i * static_cast<size_t>(V);
    r.next_tokens[i] = static_cast<int32_t>(std::max_element(row, row + V) - row);
  }
  r.seconds = since(t0);
  return r;
}

std::vector<CostStep> CpuExecutor::switch_weights(api::AdapterId from, api::AdapterId to,
                                                  SwitchMethod method) {
  LORASCHED_CHECK(from == merged_, "switch from {} but {} is merged", from, merged_);
  std::vector<CostStep> steps;
  if (from == to) return steps;
  if (method == SwitchMethod::fused && from != api::kNoAdapter && to != api::kNoAdapter) {
    const LoraAdapterWeights& a = resident(to);
    const int64_t bytes = static_cast<int64_t>(model_.switch_bytes(*model_.merged(), a));
    const auto t0 = Clock::now();
    model_.switch_to(a);
    steps.push_back({EventKind::adapter_switch, to, since(t0), bytes, from});
    merged_ = to;
    return steps;
  }
  if (from != api::kNoAdapter) {
    const auto t0 = Clock::now();
    const size_t bytes = model_.merge_bytes(*model_.merged());
    model_.unmerge();
    steps.push_back({EventKind::unmerge, from, since(t0), static_cast<int64_t>(bytes)});
  }
  merged_ = api::kNoAdapter;
  if (to != api::kNoAdapter) {
    const LoraAdapterWeights& a = resident(to);
    const auto t0 = Clock::now();
    model_.merge(a);
    steps.push_back({EventKind::merge, to, since(t0), static_cast<int64_t>(model_.merge_bytes(a))});
    merged_ = to;
  }
  return steps;
}

CostStep CpuExecutor::load_adapter(api::AdapterId adapter) {
  LORASCHED_CHECK(adapter >= 0 && static_cast<size_t>(adapter) < host_->size(),
                  "load of unknown adapter {}", adapter);
  const auto t0 = Clock::now();
  auto copy = std::make_unique<LoraAdapterWeights>((*host_)[static_cast<size_t>(adapter)]);
  const int64_t bytes = static_cast<int64_t>(copy->bytes());
  pool_[adapter] = std::move(copy);
  return {EventKind::adapter_load, adapter, since(t0), bytes};
}

void CpuExecutor::evict_adapter(api::AdapterId adapter) {
  LORASCHED_CHECK(adapter != merged_, "evict of merged adapter {}", adapter);
  pool_.erase(adapter);
}

CostStep CpuExecutor::swap_out(api::RequestId request, std::span<const int32_t> blocks) {
  const auto t0 = Clock::now();
  auto& buf = swapped_[request];
  model_.copy_blocks_out(blocks, buf);
  return {EventKind::preempt_swap, api::kNoAdapter, since(t0),
          static_cast<int64_t>(buf.size() * sizeof(float))};
}

CostStep CpuExecutor::swap_in(api::RequestId request, std::span<const int32_t> blocks) {
  auto it = swapped_.find(request);
  LORASCHED_CHECK(it != swapped_.end(), "swap-in of request {} that was not swapped out", request);
  const auto t0 = Clock::now();
  model_.copy_blocks_in(blocks, it->second);
  const int64_t bytes = static_cast<int64_t>(it->second.size() * sizeof(float));
  swapped_.erase(it);
  return {EventKind::swap_in, api::kNoAdapter, since(t0), bytes};
}

KvData CpuExecutor::export_kv(std::span<const int32_t> blocks) {
  std::vector<float> values;
  model_.copy_blocks_out(blocks, values);
  KvData kv;
  kv.blocks = static_cast<int64_t>(blocks.size());
  kv.bytes.resize(values.size() * sizeof(float));
  std::memcpy(kv.bytes.data(), values.data(), kv.bytes.size());
  return kv;
}

void CpuExecutor::import_kv(std::span<const int32_t> blocks, const KvData& kv) {
  LORASCHED_CHECK(
      kv.blocks == static_cast<int64_t>(blocks.size()) && kv.bytes.size() % sizeof(float) == 0,
      "KV import of {} blocks into {} blocks ({} bytes)", kv.blocks, blocks.size(),
      kv.bytes.size());
  std::vector<float> values(kv.bytes.size() / sizeof(float));
  std::memcpy(values.data(), kv.bytes.data(), kv.bytes.size());
  model_.copy_blocks_in(blocks, values);
}

}  // namespace lorasched
