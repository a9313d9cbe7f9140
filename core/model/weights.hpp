// Host-side fp32 weights of a Llama-style decoder, in HF's [out, in] layout.
#pragma once

#include <vector>

#include "core/model/shape.hpp"

namespace lorasched {

struct LayerWeights {
  std::vector<float> input_norm;  // [hidden]   (input_layernorm)
  std::vector<float> post_norm;   // [hidden]   (post_attention_layernorm)
  // Target projections in Target order, each [out_features(t), in_features(t)].
  std::array<std::vector<float>, kNumTargets> proj;
  std::vector<float>& operator[](Target t) { return proj[static_cast<int>(t)]; }
  const std::vector<float>& operator[](Target t) const { return proj[static_cast<int>(t)]; }
};

struct ModelWeights {
  ModelShape shape;
  std::vector<float> embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab, hidden]; empty when tie_word_embeddings
  const std::vector<float>& output_weight() const {
    return shape.tie_word_embeddings ? embed : lm_head;
  }
};

}  // namespace lorasched
