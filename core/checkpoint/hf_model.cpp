#include "core/checkpoint/hf_model.hpp"

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/checkpoint/json_util.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"

namespace lorasched {

using checkpoint::SafetensorsFile;
using checkpoint::detail::brief;
using checkpoint::detail::Json;
using checkpoint::detail::JsonFile;

std::string hf_module_name(int layer, Target t) {
  const bool attn = t == Target::q || t == Target::k || t == Target::v || t == Target::o;
  return fmt::format("model.layers.{}.{}.{}", layer, attn ? "self_attn" : "mlp",
                     kTargetNames[static_cast<int>(t)]);
}

namespace {

std::string folder_name(const std::filesystem::path& p) {
  auto n = p.lexically_normal();
  if (n.filename().empty()) n = n.parent_path();
  auto abs = std::filesystem::absolute(n).lexically_normal();
  std::string s = abs.filename().string();
  return s.empty() ? std::string("model") : s;
}

void check_rope(const JsonFile& cfg, ModelShape& shape) {
  if (auto theta = cfg.opt_number("rope_theta")) shape.rope_theta = static_cast<float>(*theta);
  auto rope_type_of = [&](std::string_view key, const Json& obj) -> std::string {
    for (const char* k : {"rope_type", "type"}) {
      auto it = obj.find(k);
      if (it != obj.end() && !it->is_null()) {
        if (!it->is_string()) cfg.fail(key, fmt::format("{} is not a string: {}", k, brief(*it)));
        return it->get<std::string>();
      }
    }
    return "default";
  };
  if (const Json* rs = cfg.get("rope_scaling")) {
    // transformers 4 wrote null here for plain RoPE; a {"rope_type": "default"} is plain too.
    if (!rs->is_object() || rope_type_of("rope_scaling", *rs) != "default")
      cfg.fail("rope_scaling", fmt::format("RoPE scaling is not supported (found {})", brief(*rs)));
  }
  if (const Json* rp = cfg.get("rope_parameters")) {
    if (!rp->is_object())
      cfg.fail("rope_parameters", fmt::format("expected an object, found {}", brief(*rp)));
    const std::string type = rope_type_of("rope_parameters", *rp);
    if (type != "default")
      cfg.fail("rope_parameters",
               fmt::format("RoPE scaling is not supported (rope_type '{}')", type));
    auto prf = rp->find("partial_rotary_factor");
    if (prf != rp->end() && !prf->is_null() && (!prf->is_number() || prf->get<double>() != 1.0))
      cfg.fail("rope_parameters",
               fmt::format("partial_rotary_factor {} is not supported", brief(*prf)));
    auto th = rp->find("rope_theta");
    if (th != rp->end() && !th->is_null()) {
      if (!th->is_number())
        cfg.fail("rope_parameters", fmt::format("rope_theta is not a number: {}", brief(*th)));
      shape.rope_theta = static_cast<float>(th->get<double>());
    }
  }
  if (!(shape.rope_theta > 0.0f) || !std::isfinite(shape.rope_theta))
    cfg.fail("rope_theta", fmt::format("must be positive, found {}", shape.rope_theta));
}

}  // namespace

ModelShape read_hf_config(const std::filesystem::path& config_json) {
  JsonFile cfg{config_json, checkpoint::detail::read_json_file(config_json)};
  ModelShape s;
  s.name = folder_name(config_json.parent_path().empty() ? std::filesystem::path(".")
                                                         : config_json.parent_path());

  const auto model_type = cfg.opt_string("model_type");
  if (!model_type) cfg.fail("model_type", "missing (expected \"llama\")");
  if (*model_type == "mistral") {
    if (const Json* sw = cfg.get("sliding_window"))
      cfg.fail("sliding_window",
               fmt::format("sliding-window attention is not supported (found {}); only Mistral "
                           "models without a sliding window load",
                           brief(*sw)));
  } else if (*model_type != "llama") {
    cfg.fail("model_type", fmt::format("unsupported architecture '{}' (supported: llama, and "
                                       "mistral without sliding window)",
                                       *model_type));
  }

  s.hidden_size = cfg.req_int("hidden_size", 1);
  s.intermediate_size = cfg.req_int("intermediate_size", 1);
  s.num_layers = cfg.req_int("num_hidden_layers", 1);
  s.num_heads = cfg.req_int("num_attention_heads", 1);
  s.vocab_size = cfg.req_int("vocab_size", 1);
  const int int_max = std::numeric_limits<int>::max();
  s.num_kv_heads =
      static_cast<int>(cfg.opt_int("num_key_value_heads", 1, int_max).value_or(s.num_heads));
  if (s.hidden_size % s.num_heads != 0)
    cfg.fail("num_attention_heads",
             fmt::format("{} does not divide hidden_size {}", s.num_heads, s.hidden_size));
  s.head_dim = s.hidden_size / s.num_heads;
  if (auto hd = cfg.opt_int("head_dim", 1, int_max); hd && *hd != s.head_dim)
    cfg.fail("head_dim", fmt::format("{} is not supported: must equal hidden_size / "
                                     "num_attention_heads = {}",
                                     *hd, s.head_dim));
  if (s.num_heads % s.num_kv_heads != 0)
    cfg.fail("num_key_value_heads",
             fmt::format("{} does not divide num_attention_heads {}", s.num_kv_heads, s.num_heads));
  s.max_position =
      static_cast<int>(cfg.opt_int("max_position_embeddings", 1, int_max).value_or(2048));
  s.rms_norm_eps = static_cast<float>(cfg.opt_number("rms_norm_eps").value_or(1e-6));
  if (!(s.rms_norm_eps > 0.0f) || !std::isfinite(s.rms_norm_eps))
    cfg.fail("rms_norm_eps", fmt::format("must be positive, found {}", s.rms_norm_eps));
  s.tie_word_embeddings = cfg.opt_bool("tie_word_embeddings").value_or(false);
  check_rope(cfg, s);

  if (auto act = cfg.opt_string("hidden_act"); act && *act != "silu")
    cfg.fail("hidden_act", fmt::format("'{}' is not supported (only silu)", *act));
  if (cfg.opt_bool("attention_bias").value_or(false))
    cfg.fail("attention_bias", "true is not supported (bias-free projections only)");
  if (cfg.opt_bool("mlp_bias").value_or(false))
    cfg.fail("mlp_bias", "true is not supported (bias-free projections only)");
  if (auto tp = cfg.opt_int("pretraining_tp", 0, int_max); tp && *tp > 1)
    cfg.fail("pretraining_tp", fmt::format("{} is not supported (only 1)", *tp));
  if (const Json* q = cfg.get("quantization_config"))
    cfg.fail("quantization_config",
             fmt::format("quantized checkpoints are not supported (found {})", brief(*q)));
  return s;
}

namespace {

// Where each tensor lives: one file, or the shards of an index.
class WeightSource {
 public:
  explicit WeightSource(const std::filesystem::path& dir) : dir_(dir) {
    const auto single = dir / "model.safetensors";
    const auto index = dir / "model.safetensors.index.json";
    std::error_code ec;
    if (std::filesystem::exists(single, ec)) {
      single_ = &open_file("model.safetensors");
      return;
    }
    if (!std::filesystem::exists(index, ec)) {
      if (std::filesystem::exists(dir / "pytorch_model.bin", ec) ||
          std::filesystem::exists(dir / "pytorch_model.bin.index.json", ec))
        throw InputError(
            fmt::format("{}: only PyTorch .bin weights found; convert the model to "
                        "safetensors (model.save_pretrained(..., "
                        "safe_serialization=True))",
                        dir.string()));
      throw InputError(
          fmt::format("{}: no model.safetensors or model.safetensors.index.json", dir.string()));
    }
    index_path_ = index;
    JsonFile idx{index, checkpoint::detail::read_json_file(index)};
    const Json* wm = idx.get("weight_map");
    if (wm == nullptr) idx.fail("weight_map", "missing");
    if (!wm->is_object()) idx.fail("weight_map", "expected an object {tensor: file}");
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        idx.fail("weight_map", fmt::format("file of tensor {} is not a string",
                                           checkpoint::quote_name(it.key())));
      const auto& file = it.value().get_ref<const std::string&>();
      if (file.empty() || file == "." || file == ".." ||
          file.find_first_of("/\\") != std::string::npos)
        idx.fail("weight_map", fmt::format("tensor {}: shard {} is not a file name in {}",
                                           checkpoint::quote_name(it.key()),
                                           checkpoint::quote_name(file), dir.string()));
      weight_map_.emplace(it.key(), file);
    }
  }

  // Names of all tensors with the file that lists them (the weights, or the index).
  std::vector<std::pair<std::string, std::filesystem::path>> names() const {
    std::vector<std::pair<std::string, std::filesystem::path>> out;
    if (single_ != nullptr) {
      for (const auto& t : single_->tensors()) out.emplace_back(t.name, single_->path());
    } else {
      for (const auto& [name, file] : weight_map_) out.emplace_back(name, index_path_);
    }
    return out;
  }

  // The tensor as fp32; NaN or infinite weights are refused (file and tensor named).
  std::vector<float> read(const std::string& name, std::initializer_list<int64_t> shape) {
    const SafetensorsFile* file = single_;
    if (file == nullptr) {
      auto it = weight_map_.find(name);
      if (it == weight_map_.end())
        throw InputError(fmt::format("{}: tensor {} not found in weight_map", index_path_.string(),
                                     checkpoint::quote_name(name)));
      file = &open_file(it->second);
    }
    std::vector<float> v = file->read_f32(name, shape);
    checkpoint::require_finite(v, file->path(), name);
    return v;
  }

 private:
  SafetensorsFile& open_file(const std::string& file) {
    auto it = files_.find(file);
    if (it == files_.end()) it = files_.emplace(file, SafetensorsFile::open(dir_ / file)).first;
    return it->second;
  }

  std::filesystem::path dir_;
  std::filesystem::path index_path_;
  std::map<std::string, SafetensorsFile> files_;
  SafetensorsFile* single_ = nullptr;
  std::map<std::string, std::string> weight_map_;
};

}  // namespace

ModelWeights load_hf_model(const std::filesystem::path& dir) {
  ModelWeights w;
  w.shape = read_hf_config(dir / "config.json");
  const ModelShape& s = w.shape;
  WeightSource src(dir);

  // Biases on the projections would change the output silently: refuse them.
  auto is_projection_bias = [](const std::string& name) {
    return name.starts_with("model.layers.") && name.ends_with("_proj.bias") &&
           (name.find(".self_attn.") != std::string::npos ||
            name.find(".mlp.") != std::string::npos);
  };
  for (const auto& [name, file] : src.names())
    if (is_projection_bias(name))
      throw InputError(fmt::format("{}: tensor {}: projection biases are not supported",
                                   file.string(), checkpoint::quote_name(name)));

  const int64_t H = s.hidden_size, V = s.vocab_size;
  w.embed = src.read("model.embed_tokens.weight", {V, H});
  // Layer by layer: a config.json claiming more layers than the file holds fails at the
  // first missing tensor, before any allocation for the layers it does not have.
  for (int l = 0; l < s.num_layers; ++l) {
    auto& L = w.layers.emplace_back();
    const std::string p = fmt::format("model.layers.{}.", l);
    L.input_norm = src.read(p + "input_layernorm.weight", {H});
    for (int t = 0; t < kNumTargets; ++t)
      L.proj[static_cast<size_t>(t)] =
          src.read(hf_module_name(l, Target(t)) + ".weight",
                   {s.out_features(Target(t)), s.in_features(Target(t))});
    L.post_norm = src.read(p + "post_attention_layernorm.weight", {H});
  }
  w.final_norm = src.read("model.norm.weight", {H});
  if (!s.tie_word_embeddings) w.lm_head = src.read("lm_head.weight", {V, H});
  return w;
}

std::vector<int32_t> read_eos_token_ids(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto generation = dir / "generation_config.json";
  const auto path = std::filesystem::exists(generation, ec) ? generation : dir / "config.json";
  const JsonFile cfg{path, checkpoint::detail::read_json_file(path)};
  const Json* v = cfg.get("eos_token_id");
  std::vector<int32_t> ids;
  if (v == nullptr) return ids;
  auto id = [&](const Json& x) {
    if (!x.is_number_integer() || x.get<long long>() < std::numeric_limits<int32_t>::min() ||
        x.get<long long>() > std::numeric_limits<int32_t>::max())
      cfg.fail("eos_token_id",
               fmt::format("expected a token id or a list of token ids, found {}", brief(*v)));
    ids.push_back(static_cast<int32_t>(x.get<long long>()));
  };
  if (v->is_array()) {
    for (const auto& x : *v) id(x);
  } else {
    id(*v);
  }
  return ids;
}

}  // namespace lorasched
