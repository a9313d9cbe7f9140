#include "core/exec/profile_grid.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/adapters/adapter.hpp"

namespace lorasched {

namespace {

std::vector<int32_t> powers_of_two(int32_t lo, int32_t hi) {
  std::vector<int32_t> v;
  for (int64_t x = lo; x <= hi; x *= 2) v.push_back(static_cast<int32_t>(x));
  return v;
}

double linear_params(const ModelShape& s) {
  double n = 0;
  for (int t = 0; t < kNumTargets; ++t)
    n += static_cast<double>(s.out_features(Target(t))) * s.in_features(Target(t));
  return n * s.num_layers;
}

}  // namespace

ProfileGrid default_profile_grid(const ModelShape& shape, bool quick, std::vector<int32_t> ranks) {
  ProfileGrid g;
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  g.ranks = std::move(ranks);
  if (quick) {
    g.prefill_tokens = {1, 4, 16, 64};
    g.prefill_seqs = {1, 2, 4};
    g.decode_batch = {1, 4, 16};
    g.decode_context = {16, 64, 256};
    g.swap_blocks = {1, 16};
    g.mixed = {{16, 1, 4, 64, {}}, {64, 2, 16, 16, {}}};
    g.max_kv_tokens = 8192;
    g.adapter_rotation = 8;
    g.repeats = 2;
    g.warmup = 1;
    return g;
  }
  // Prefill up to the largest power of two whose forward pass stays near 8 GFLOP (1,024
  // tokens for tiny, 128 for small), so the grid takes a minute or two.
  const double flops_per_token = 2.0 * linear_params(shape);
  int32_t max_prefill = 128;
  while (max_prefill < 1024 && 2.0 * max_prefill * flops_per_token <= 8e9) max_prefill *= 2;
  g.prefill_tokens = powers_of_two(1, max_prefill);
  g.prefill_seqs = {1, 2, 4, 8, 16};
  g.decode_batch = powers_of_two(1, 64);
  g.decode_context = powers_of_two(16, 2048);
  g.swap_blocks = {1, 4, 16, 64, 256};
  g.mixed = {{16, 1, 16, 128, {}}, {32, 1, 4, 64, {}},    {64, 1, 8, 128, {}},
             {64, 2, 2, 32, {}},   {128, 2, 16, 256, {}}, {256, 4, 8, 512, {}}};
  // KV slots for the largest points: 256 MiB of fp32 KV cache (64 Ki tokens on tiny).
  g.max_kv_tokens = std::max<int64_t>(
      4096, static_cast<int64_t>((256.0 * 1024 * 1024) /
                                 static_cast<double>(shape.kv_bytes_per_token(4))));
  // Rotation: twice the largest batch's adapters, as far as 128 MiB of fp32 weights of the
  // largest rank allow (32 on tiny: 4.7 MB each at rank 64; 16 on small).
  const int32_t max_d = *std::max_element(g.prefill_seqs.begin(), g.prefill_seqs.end());
  const double largest =
      4.0 * static_cast<double>(lora_parameters(shape, g.ranks.empty() ? 1 : g.ranks.back()));
  g.adapter_rotation =
      std::clamp(static_cast<int32_t>(128.0 * 1024 * 1024 / largest), max_d, 2 * max_d);
  g.repeats = 7;
  g.warmup = 1;
  return g;
}

int32_t profile_adapters_per_rank(const ProfileGrid& grid) {
  int32_t d = grid.adapter_rotation;
  for (int32_t k : grid.prefill_seqs) d = std::max(d, k);
  // At least two resident (a fused switch goes from one to another), + one to load and evict.
  return std::max(d, 2) + 1;
}
}  // namespace lorasched
