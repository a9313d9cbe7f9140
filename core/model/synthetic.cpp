#include "core/model/synthetic.hpp"

#include <cmath>

#include "core/common/rng.hpp"

namespace lorasched {

namespace {
void fill_normal(std::vector<float>& v, size_t n, double stddev, Rng& rng) {
  v.resize(n);
  for (auto& x : v) x = static_cast<float>(rng.normal() * stddev);
}
void fill_norm(std::vector<float>& v, size_t n, Rng& rng) {
  v.resize(n);
  for (auto& x : v) x = static_cast<float>(1.0 + 0.1 * rng.normal());
}
}  // namespace

ModelWeights synthetic_model(const ModelShape& shape, uint64_t seed) {
  ModelWeights w;
  w.shape = shape;
  const size_t H = static_cast<size_t>(shape.hidden_size);
  Rng rng(seed, /*stream=*/0x6d6f64656cULL);
  fill_normal(w.embed, static_cast<size_t>(shape.vocab_size) * H, 1.0, rng);
  w.layers.resize(static_cast<size_t>(shape.num_layers));
  for (auto& layer : w.layers) {
    fill_norm(layer.input_norm, H, rng);
    fill_norm(layer.post_norm, H, rng);
    for (int t = 0; t < kNumTargets; ++t) {
      const int in = shape.in_features(Target(t));
      const size_t n = static_cast<size_t>(shape.out_features(Target(t))) * in;
      fill_normal(layer.proj[t], n, 1.0 / std::sqrt(static_cast<double>(in)), rng);
    }
  }
  fill_norm(w.final_norm, H, rng);
  if (!shape.tie_word_embeddings)
    fill_normal(w.lm_head, static_cast<size_t>(shape.vocab_size) * H, 1.0 / std::sqrt(double(H)),
                rng);
  return w;
}

}  // namespace lorasched
