#include "core/adapters/synthetic.hpp"

#include <cmath>

#include "core/common/rng.hpp"

namespace lorasched {

LoraAdapterWeights synthetic_adapter(const ModelShape& shape, int rank, double alpha,
                                     bool use_rslora, uint64_t seed, std::string name) {
  LoraAdapterWeights a;
  a.name = std::move(name);
  a.rank = rank;
  a.lora_alpha = static_cast<float>(alpha);
  a.use_rslora = use_rslora;
  const float scale =
      static_cast<float>(use_rslora ? alpha / std::sqrt(double(rank)) : alpha / rank);
  Rng rng(seed, /*stream=*/0x6c6f7261ULL);
  a.layers.resize(static_cast<size_t>(shape.num_layers));
  for (auto& layer : a.layers)
    for (int t = 0; t < kNumTargets; ++t) {
      const int in = shape.in_features(Target(t)), out = shape.out_features(Target(t));
      LoraModule& m = layer[t];
      m.rank = rank;
      m.scale = scale;
      m.A.resize(static_cast<size_t>(rank) * in);
      m.B.resize(static_cast<size_t>(out) * rank);
      const double sa = 1.0 / std::sqrt(double(in)), sb = 0.5 / std::sqrt(double(rank));
      for (auto& x : m.A) x = static_cast<float>(rng.normal() * sa);
      for (auto& x : m.B) x = static_cast<float>(rng.normal() * sb);
    }
  return a;
}

}  // namespace lorasched
