#include "core/model/presets.hpp"

#include <fmt/format.h>

#include "core/common/error.hpp"
#include "core/common/strings.hpp"

namespace lorasched {

namespace {
ModelShape make(const char* name, int vocab, int hidden, int inter, int layers, int heads,
                int kv_heads, float eps) {
  ModelShape s;
  s.name = name;
  s.vocab_size = vocab;
  s.hidden_size = hidden;
  s.intermediate_size = inter;
  s.num_layers = layers;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.head_dim = hidden / heads;
  s.rms_norm_eps = eps;
  s.rope_theta = 10000.0f;
  s.max_position = 4096;
  return s;
}
}  // namespace

std::vector<std::string> model_preset_names() {
  return {"tiny", "small", "llama2-7b", "llama2-13b", "llama2-70b"};
}

ModelShape model_preset(const std::string& name) {
  // Synthetic shapes keep Llama's proportions (intermediate ~ 2.7 x hidden, GQA 2:1).
  if (name == "tiny") return make("tiny", 2048, 256, 688, 4, 8, 4, 1e-5f);
  if (name == "small") return make("small", 8192, 1024, 2816, 8, 16, 8, 1e-5f);
  // Llama-2 (Touvron et al. 2023; HF config.json of meta-llama/Llama-2-*-hf).
  if (name == "llama2-7b") return make("llama2-7b", 32000, 4096, 11008, 32, 32, 32, 1e-5f);
  if (name == "llama2-13b") return make("llama2-13b", 32000, 5120, 13824, 40, 40, 40, 1e-5f);
  if (name == "llama2-70b") return make("llama2-70b", 32000, 8192, 28672, 80, 64, 8, 1e-5f);
  throw InputError(fmt::format("unknown model preset '{}'{} (known: {})", name,
                               did_you_mean(name, model_preset_names()),
                               join(model_preset_names(), ", ")));
}

}  // namespace lorasched
