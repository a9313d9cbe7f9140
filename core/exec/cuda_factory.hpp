// The cuda executor as seen from code that builds with and without the CUDA backend
// (core/cluster, core/cli): no CUDA header here. With LORASCHED_HAVE_CUDA the functions are
// defined in core/exec/cuda_executor.cpp (target lorasched_exec_cuda, linked into
// lorasched_exec); without it, core/exec/cuda_factory_stub.cpp says the executor is not built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/exec/executor.hpp"
#include "core/model/weights.hpp"

namespace lorasched {

// Element size of the cuda executor's weights, KV cache and adapters (fp16).
inline constexpr int kCudaElementBytes = 2;

// Whether this build has the cuda executor (configured with the CUDA backend).
bool cuda_executor_built();

// The device the cuda executor runs on (the current CUDA device, 0 unless
// CUDA_VISIBLE_DEVICES says otherwise). available = false with the reason when there is none
// or the build has no CUDA backend.
struct CudaDeviceInfo {
  bool available = false;
  std::string reason;  // why not available
  std::string name;
  double total_bytes = 0;
  double free_bytes = 0;  // free when asked (other processes and contexts excluded)
};
CudaDeviceInfo cuda_device_info();

// Throws when the cuda executor cannot run here: Error(ExitCode::runtime)
// "executor cuda: no CUDA device (<reason>)" (exit 1) when the build has it but there is no
// device; InputError (exit 2) when the build has no CUDA backend.
void require_cuda_device();

// One replica's cuda executor: uploads the weights (fp16) and allocates a pool of
// `kv_blocks` KV blocks of `block_size` tokens on the device; host_adapters are the adapters'
// fp32 weights indexed by adapter id (as for the cpu executor). Throws as
// require_cuda_device() does, and Error(ExitCode::runtime) when the device memory is short.
std::unique_ptr<Executor> make_cuda_executor(
    const ModelWeights& weights,
    std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters, int64_t kv_blocks,
    int32_t block_size);

// Device bytes one cuda executor holds besides its pool and its resident adapters, for
// batches of at most max_tokens tokens and max_seqs sequences: fp16 weights, the merge
// residuals (1 byte per projection weight, allocated up front) and activation workspaces,
// plus a fixed 96 MiB for cuBLAS's workspace and small buffers. An upper estimate used to
// size the pool from the device's memory (core/cluster/simulation.cpp).
inline double cuda_executor_fixed_bytes(const ModelShape& s, int64_t max_tokens, int64_t max_seqs) {
  const double e = kCudaElementBytes;
  double proj = 0;
  for (int t = 0; t < kNumTargets; ++t)
    proj += static_cast<double>(s.out_features(Target(t))) * s.in_features(Target(t));
  proj *= s.num_layers;
  const double H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size;
  const double QD = static_cast<double>(s.num_heads) * s.head_dim;
  const double KD = static_cast<double>(s.num_kv_heads) * s.head_dim;
  // h, xn, q, k, v, attn, gate, up per token; last row, logits per sequence; LoRA's fp32
  // shrink output (at most 1,024 ranks per token).
  const double act =
      static_cast<double>(max_tokens) * ((2 * H + 2 * QD + 2 * KD + 2 * I) * e + 4096.0 * 2) +
      static_cast<double>(max_seqs) * (H + V) * e;
  return static_cast<double>(s.num_parameters()) * e + proj + act + 96.0 * 1024 * 1024;
}

}  // namespace lorasched
