// Host-side weights of one LoRA adapter: per layer and target module, A [r, in], B [out, r]
// and the scale (lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/shape.hpp"

namespace lorasched {

struct LoraModule {
  int rank = 0;          // 0: this module is not adapted
  float scale = 0.0f;    // multiplies (x A^T) B^T
  std::vector<float> A;  // [rank, in]
  std::vector<float> B;  // [out, rank]
  bool present() const { return rank > 0; }
};

struct LoraAdapterWeights {
  std::string name;
  int rank = 0;  // nominal rank (r in adapter_config.json); modules may differ
  float lora_alpha = 0.0f;
  bool use_rslora = false;
  // layers[l][t]: module t of layer l (Target order).
  std::vector<std::array<LoraModule, kNumTargets>> layers;

  size_t num_parameters() const {
    size_t n = 0;
    for (const auto& layer : layers)
      for (const auto& m : layer) n += m.A.size() + m.B.size();
    return n;
  }
  size_t bytes(size_t bytes_per_element = sizeof(float)) const {
    return num_parameters() * bytes_per_element;
  }
};

// What the engine and the cost model know of an adapter: no weights, just its size.
// One row per cache line: a simulated step reads a row of each adapter in its batch (the
// replica's admission and the cost model's batch features, from the same shared table), and
// a row that straddled two lines cost two misses at 1,000 replicas (docs/performance.md).
struct alignas(64) AdapterInfo {
  int32_t id = 0;
  std::string name;
  int32_t rank = 0;            // nominal rank
  int64_t num_parameters = 0;  // all A and B elements
  int64_t bytes = 0;           // on the device, at the executor's element size
};

// Parameters of an adapter of rank r on every target module of every layer.
inline int64_t lora_parameters(const ModelShape& s, int rank) {
  int64_t per_layer = 0;
  for (int t = 0; t < kNumTargets; ++t)
    per_layer +=
        static_cast<int64_t>(rank) * (s.in_features(Target(t)) + s.out_features(Target(t)));
  return per_layer * s.num_layers;
}

}  // namespace lorasched
