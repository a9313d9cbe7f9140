// A tiny valid Llama checkpoint and PEFT adapter written from code (no fixture files), for the
// config.json and adapter_config.json harnesses and the bad-numbers tests.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/model/shape.hpp"

namespace lorasched::fuzz {

// hidden 8, 2 heads of 4 (1 KV head), MLP 12, 2 layers, vocab 16, untied embeddings.
inline ModelShape tiny_shape() {
  ModelShape s;
  s.name = "model";
  s.vocab_size = 16;
  s.hidden_size = 8;
  s.intermediate_size = 12;
  s.num_layers = 2;
  s.num_heads = 2;
  s.num_kv_heads = 1;
  s.head_dim = 4;
  s.rms_norm_eps = 1e-5f;
  s.rope_theta = 10000.0f;
  s.tie_word_embeddings = false;
  s.max_position = 64;
  return s;
}

// The config.json of tiny_shape().
inline std::string tiny_config_json() {
  return R"({"model_type": "llama", "hidden_size": 8, "intermediate_size": 12,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
  "vocab_size": 16, "max_position_embeddings": 64, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu"}
)";
}

inline std::vector<float> ramp(int64_t n, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = scale * static_cast<float>((i % 7) - 3);
  return v;
}

inline checkpoint::TensorToWrite tensor(std::string name, std::vector<int64_t> shape,
                                        float scale = 0.01f) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return {std::move(name), std::move(shape), ramp(n, scale), checkpoint::Dtype::F32};
}

// Every tensor load_hf_model reads for `s`.
inline std::vector<checkpoint::TensorToWrite> model_tensors(const ModelShape& s) {
  std::vector<checkpoint::TensorToWrite> t;
  const int64_t H = s.hidden_size, V = s.vocab_size;
  t.push_back(tensor("model.embed_tokens.weight", {V, H}));
  for (int l = 0; l < s.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back(tensor(p + "input_layernorm.weight", {H}, 0.1f));
    for (int k = 0; k < kNumTargets; ++k)
      t.push_back(tensor(hf_module_name(l, Target(k)) + ".weight",
                         {s.out_features(Target(k)), s.in_features(Target(k))}));
    t.push_back(tensor(p + "post_attention_layernorm.weight", {H}, 0.1f));
  }
  t.push_back(tensor("model.norm.weight", {H}, 0.1f));
  if (!s.tie_word_embeddings) t.push_back(tensor("lm_head.weight", {V, H}));
  return t;
}

// PEFT tensors of a rank-`r` adapter on every projection of every layer.
inline std::vector<checkpoint::TensorToWrite> adapter_tensors(const ModelShape& s, int r) {
  std::vector<checkpoint::TensorToWrite> t;
  for (int l = 0; l < s.num_layers; ++l)
    for (int k = 0; k < kNumTargets; ++k) {
      const std::string m = "base_model.model." + hf_module_name(l, Target(k));
      t.push_back(tensor(m + ".lora_A.weight", {r, s.in_features(Target(k))}));
      t.push_back(tensor(m + ".lora_B.weight", {s.out_features(Target(k)), r}));
    }
  return t;
}

// The adapter_config.json of adapter_tensors(s, 2).
inline std::string tiny_adapter_config_json() {
  return R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_rslora": false, "bias": "none",
  "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
)";
}

}  // namespace lorasched::fuzz
