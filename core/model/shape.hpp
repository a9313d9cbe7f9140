// The shape of a Llama-style decoder and the names of the linear layers LoRA can target.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lorasched {

// The seven linear layers of a Llama decoder layer that LoRA adapters target.
enum class Target : uint8_t { q = 0, k, v, o, gate, up, down };
inline constexpr int kNumTargets = 7;
inline constexpr std::array<std::string_view, kNumTargets> kTargetNames = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

struct ModelShape {
  std::string name = "tiny";
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // grouped-query attention when < num_heads
  int head_dim = 0;      // hidden_size / num_heads
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  int max_position = 4096;

  // [out, in] of a target projection.
  int out_features(Target t) const {
    switch (t) {
      case Target::q:
        return num_heads * head_dim;
      case Target::k:
      case Target::v:
        return num_kv_heads * head_dim;
      case Target::o:
        return hidden_size;
      case Target::gate:
      case Target::up:
        return intermediate_size;
      case Target::down:
        return hidden_size;
    }
    return 0;
  }
  int in_features(Target t) const {
    switch (t) {
      case Target::o:
        return num_heads * head_dim;
      case Target::down:
        return intermediate_size;
      default:
        return hidden_size;
    }
  }
  // Parameters of the weights (fp32 elements), for memory accounting.
  size_t num_parameters() const {
    size_t per_layer = 2 * static_cast<size_t>(hidden_size);
    for (int t = 0; t < kNumTargets; ++t)
      per_layer += static_cast<size_t>(out_features(Target(t))) * in_features(Target(t));
    size_t n = per_layer * num_layers + hidden_size +
               static_cast<size_t>(vocab_size) * hidden_size * (tie_word_embeddings ? 1 : 2);
    return n;
  }
  // Bytes of K and V for one token across all layers at `bytes_per_element`.
  size_t kv_bytes_per_token(size_t bytes_per_element) const {
    return 2 * static_cast<size_t>(num_layers) * num_kv_heads * head_dim * bytes_per_element;
  }
};

}  // namespace lorasched
