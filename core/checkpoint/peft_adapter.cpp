#include "core/checkpoint/peft_adapter.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
// GCC 12 reports a false -Wmaybe-uninitialized inside <regex> at -O2 with the sanitizers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/json_util.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"

namespace lorasched {

using checkpoint::quote_name;
using checkpoint::SafetensorsFile;
using checkpoint::TensorInfo;
using checkpoint::detail::brief;
using checkpoint::detail::Json;
using checkpoint::detail::JsonFile;

namespace {

// `shown` is the regex as the user wrote it (pattern keys are wrapped before compiling).
std::regex compile(const JsonFile& cfg, std::string_view key, const std::string& pattern,
                   const std::string& shown) {
  // std::regex compiles recursively: a pattern nesting ~10,000 groups overflows the stack.
  constexpr size_t kMaxRegex = 4096;
  if (shown.size() > kMaxRegex)
    cfg.fail(key, fmt::format("regex of {} characters is longer than the {} lorasched accepts",
                              shown.size(), kMaxRegex));
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    cfg.fail(key, fmt::format("regex {} is not a valid ECMAScript regex ({}); lorasched matches "
                              "PEFT's Python regexes with std::regex",
                              quote_name(shown), e.what()));
  }
}

bool ends_with_component(const std::string& key, const std::string& name) {
  return key.size() > name.size() &&
         key.compare(key.size() - name.size(), name.size(), name) == 0 &&
         key[key.size() - name.size() - 1] == '.';
}

bool truthy(const Json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_array() || v.is_object() || v.is_string()) return !v.empty();
  return true;
}

// target_modules / exclude_modules: a list of names or a regex (full match).
struct ModuleMatcher {
  bool set = false;
  bool is_regex = false;
  std::string pattern;
  std::regex re;
  std::vector<std::string> names;

  bool exact(const std::string& key) const {
    return set && !is_regex && std::find(names.begin(), names.end(), key) != names.end();
  }
  bool matches(const std::string& key) const {
    if (!set) return false;
    if (is_regex) return std::regex_match(key, re);
    if (exact(key)) return true;
    for (const auto& n : names)
      if (ends_with_component(key, n)) return true;
    return false;
  }
};

ModuleMatcher parse_matcher(const JsonFile& cfg, std::string_view key) {
  ModuleMatcher m;
  const Json* v = cfg.get(key);
  if (v == nullptr) return m;
  m.set = true;
  if (v->is_string()) {
    m.pattern = v->get<std::string>();
    if (key == "target_modules" && m.pattern == "all-linear") {
      m.names.assign(kTargetNames.begin(), kTargetNames.end());
      return m;
    }
    m.is_regex = true;
    m.re = compile(cfg, key, m.pattern, m.pattern);
    return m;
  }
  if (!v->is_array())
    cfg.fail(key, fmt::format("expected a list or a regex string, found {}", brief(*v)));
  for (const auto& e : *v) {
    if (!e.is_string()) cfg.fail(key, fmt::format("entry {} is not a string", brief(e)));
    m.names.push_back(e.get<std::string>());
  }
  return m;
}

struct Pattern {
  std::string key;
  std::regex re;
  double value;
};

std::vector<Pattern> parse_patterns(const JsonFile& cfg, std::string_view key, bool is_rank) {
  std::vector<Pattern> out;
  const Json* v = cfg.get(key);
  if (v == nullptr) return out;
  if (!v->is_object()) cfg.fail(key, fmt::format("expected an object, found {}", brief(*v)));
  for (auto it = v->begin(); it != v->end(); ++it) {
    const Json& val = it.value();
    double x = 0;
    if (is_rank) {
      if (!val.is_number_integer() || val.get<long long>() < 1 ||
          val.get<long long>() > std::numeric_limits<int>::max())
        cfg.fail(key, fmt::format("{}: rank must be a positive integer, found {}",
                                  quote_name(it.key()), brief(val)));
      x = static_cast<double>(val.get<long long>());
    } else {
      if (!val.is_number() || val.is_boolean())
        cfg.fail(key, fmt::format("{}: alpha must be a number, found {}", quote_name(it.key()),
                                  brief(val)));
      x = val.get<double>();
      if (!(std::fabs(x) <= std::numeric_limits<float>::max()))
        cfg.fail(key, fmt::format("{}: alpha {} is out of the range of a float",
                                  quote_name(it.key()), x));
    }
    // PEFT: re.match(rf"(.*\.)?({key})$", module_name)
    out.push_back({it.key(), compile(cfg, key, "(.*\\.)?(" + it.key() + ")", it.key()), x});
  }
  return out;
}

const Pattern* find_pattern(const std::vector<Pattern>& ps, const std::string& module) {
  for (const auto& p : ps)
    if (std::regex_match(module, p.re)) return &p;
  return nullptr;
}

struct AdapterConfig {
  JsonFile file;
  int r = 0;
  double alpha = 0;
  bool rslora = false;
  ModuleMatcher target, exclude;
  std::optional<std::set<long long>> layers;  // layers_to_transform
  std::vector<Pattern> rank_pattern, alpha_pattern;

  // PEFT's check_target_module_exists for a module of a Llama model; `layer` is the decoder
  // layer the module belongs to, or -1.
  bool targets(const std::string& key, int layer) const {
    if (exclude.matches(key)) return false;
    if (target.is_regex || target.exact(key)) return target.matches(key);
    if (!target.matches(key)) return false;  // suffix match: layers_to_transform applies
    if (layers) return layer >= 0 && layers->count(layer) > 0;
    return true;
  }
};

AdapterConfig read_adapter_config(const std::filesystem::path& path) {
  AdapterConfig c;
  c.file = JsonFile{path, checkpoint::detail::read_json_file(path)};
  const JsonFile& cfg = c.file;

  const auto type = cfg.opt_string("peft_type");
  if (!type) cfg.fail("peft_type", "missing (expected \"LORA\")");
  if (*type != "LORA")
    cfg.fail("peft_type", fmt::format("'{}' is not supported (only LORA)", *type));

  auto r = cfg.opt_int("r", 1, std::numeric_limits<int>::max());
  if (!r) cfg.fail("r", "missing (required)");
  c.r = static_cast<int>(*r);
  c.alpha = cfg.opt_number("lora_alpha").value_or(8.0);  // PEFT's default
  // The scale is a float: a larger alpha would make it infinite and every output NaN.
  if (!(std::fabs(c.alpha) <= std::numeric_limits<float>::max()))
    cfg.fail("lora_alpha", fmt::format("{} is out of the range of a float", c.alpha));
  c.rslora = cfg.opt_bool("use_rslora").value_or(false);

  if (cfg.opt_bool("fan_in_fan_out").value_or(false))
    cfg.fail("fan_in_fan_out", "true is not supported (weights stored transposed, GPT-2 style)");
  if (auto bias = cfg.opt_string("bias"); bias && *bias != "none")
    cfg.fail("bias", fmt::format("'{}' is not supported (only \"none\")", *bias));
  if (const Json* m = cfg.get("modules_to_save"); m != nullptr && truthy(*m))
    cfg.fail("modules_to_save",
             fmt::format("modules_to_save is not supported (found {})", brief(*m)));
  static const std::pair<const char*, const char*> kVariants[] = {
      {"use_dora", "DoRA is not supported"},
      {"lora_bias", "a bias on lora_B is not supported"},
      {"use_qalora", "QALoRA is not supported"},
      {"alora_invocation_tokens", "activated LoRA (aLoRA) is not supported"},
      {"kasa_config", "KaSA is not supported"},
      {"arrow_config", "Arrow routing is not supported"},
      {"monteclora_config", "MonteCLoRA is not supported"},
      {"use_bdlora", "block-diagonal LoRA is not supported"},
      {"trainable_token_indices", "trainable tokens are not supported"},
      {"layer_replication", "layer replication is not supported"},
      {"target_parameters", "target_parameters is not supported"},
  };
  for (const auto& [key, msg] : kVariants)
    if (const Json* v = cfg.get(key); v != nullptr && truthy(*v))
      cfg.fail(key, fmt::format("{} (found {})", msg, brief(*v)));
  if (const Json* init = cfg.get("init_lora_weights"); init != nullptr && init->is_string()) {
    const auto s = init->get<std::string>();
    for (const char* bad : {"pissa", "olora", "corda", "loftq", "lora_ga"})
      if (s.rfind(bad, 0) == 0)
        cfg.fail("init_lora_weights",
                 fmt::format("'{}' adapters need the modified base weights; save them converted "
                             "(PEFT save_pretrained(path_initial_model_for_weight_conversion=...))",
                             s));
  }

  c.target = parse_matcher(cfg, "target_modules");
  if (!c.target.set) cfg.fail("target_modules", "missing (required)");
  c.exclude = parse_matcher(cfg, "exclude_modules");

  if (const Json* ltt = cfg.get("layers_to_transform")) {
    std::set<long long> layers;
    if (ltt->is_number_integer()) {
      layers.insert(ltt->get<long long>());
    } else if (ltt->is_array()) {
      for (const auto& e : *ltt) {
        if (!e.is_number_integer())
          cfg.fail("layers_to_transform", fmt::format("entry {} is not an integer", brief(e)));
        layers.insert(e.get<long long>());
      }
    } else {
      cfg.fail("layers_to_transform",
               fmt::format("expected an integer or a list of integers, found {}", brief(*ltt)));
    }
    if (ltt->is_number_integer() || !layers.empty()) {
      if (c.target.is_regex)
        cfg.fail("layers_to_transform", "cannot be used with a regex target_modules (as in PEFT)");
      c.layers = std::move(layers);
    }
  }
  if (const Json* lp = cfg.get("layers_pattern"); lp != nullptr && truthy(*lp)) {
    bool names_layers = false;
    if (lp->is_string()) {
      names_layers = lp->get<std::string>() == "layers";
    } else if (lp->is_array()) {
      for (const auto& e : *lp) names_layers |= e.is_string() && e.get<std::string>() == "layers";
    } else {
      cfg.fail("layers_pattern", fmt::format("expected a string or a list, found {}", brief(*lp)));
    }
    if (!names_layers)
      cfg.fail("layers_pattern", fmt::format("{} is not supported (a Llama model's layers are "
                                             "model.layers.N)",
                                             brief(*lp)));
  }
  c.rank_pattern = parse_patterns(cfg, "rank_pattern", true);
  c.alpha_pattern = parse_patterns(cfg, "alpha_pattern", false);
  return c;
}

// Every module name of a transformers LlamaForCausalLM (the keys PEFT matches), with the
// decoder layer it belongs to (-1 for none).
std::vector<std::pair<std::string, int>> llama_module_names(int num_layers) {
  std::vector<std::pair<std::string, int>> out = {
      {"model", -1}, {"model.embed_tokens", -1}, {"model.layers", -1}};
  for (int l = 0; l < num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}", l);
    for (const char* s :
         {"", ".self_attn", ".mlp", ".mlp.act_fn", ".input_layernorm", ".post_attention_layernorm"})
      out.emplace_back(p + s, l);
    for (int t = 0; t < kNumTargets; ++t) out.emplace_back(hf_module_name(l, Target(t)), l);
  }
  out.emplace_back("model.norm", -1);
  out.emplace_back("model.rotary_emb", -1);
  out.emplace_back("lm_head", -1);
  return out;
}

bool is_projection(const std::string& name) {
  for (auto t : kTargetNames)
    if (ends_with_component(name, std::string(t)) && name.rfind("model.layers.", 0) == 0)
      return true;
  return false;
}

std::string target_list() {
  std::string s;
  for (auto t : kTargetNames) s += (s.empty() ? "" : ", ") + std::string(t);
  return s;
}

// Parses "model.layers.N.<self_attn|mlp>.<proj>" into (N, target).
bool parse_module(const std::string& module, int& layer, Target& t) {
  static const std::regex kModule(
      R"(model\.layers\.(0|[1-9][0-9]*)\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj)))");
  std::smatch m;
  if (!std::regex_match(module, m, kModule)) return false;
  const std::string idx = m[1].str();
  auto [ptr, ec] = std::from_chars(idx.data(), idx.data() + idx.size(), layer);
  if (ec != std::errc() || ptr != idx.data() + idx.size()) return false;
  const std::string proj = m[3].matched ? m[3].str() : m[4].str();
  for (int i = 0; i < kNumTargets; ++i)
    if (kTargetNames[static_cast<size_t>(i)] == proj) t = Target(i);
  return true;
}

std::string folder_name(const std::filesystem::path& p) {
  auto n = p.lexically_normal();
  if (n.filename().empty()) n = n.parent_path();
  std::string s = std::filesystem::absolute(n).lexically_normal().filename().string();
  return s.empty() ? std::string("adapter") : s;
}

}  // namespace

LoraAdapterWeights load_peft_adapter(const std::filesystem::path& dir, const ModelShape& shape) {
  const auto config_path = dir / "adapter_config.json";
  const auto weights_path = dir / "adapter_model.safetensors";
  std::error_code ec;
  if (!std::filesystem::exists(config_path, ec))
    throw InputError(
        fmt::format("{}: not found (not a PEFT adapter folder?)", config_path.string()));
  AdapterConfig cfg = read_adapter_config(config_path);
  if (!std::filesystem::exists(weights_path, ec)) {
    if (std::filesystem::exists(dir / "adapter_model.bin", ec))
      throw InputError(
          fmt::format("{}: only adapter_model.bin found; convert the adapter to "
                      "safetensors (save_pretrained(..., safe_serialization=True))",
                      dir.string()));
    throw InputError(fmt::format("{}: not found", weights_path.string()));
  }

  // Which modules the config targets; anything but the seven projections is unsupported.
  const int L = shape.num_layers;
  std::vector<std::array<bool, kNumTargets>> targeted(static_cast<size_t>(L));
  int num_targeted = 0;
  for (const auto& [name, layer] : llama_module_names(L)) {
    if (!cfg.targets(name, layer)) continue;
    if (!is_projection(name))
      cfg.file.fail("target_modules",
                    fmt::format("selects module '{}', which is not supported (lorasched adapts "
                                "only the decoder projections {})",
                                name, target_list()));
    int l = 0;
    Target t{};
    parse_module(name, l, t);
    targeted[static_cast<size_t>(l)][static_cast<size_t>(t)] = true;
    ++num_targeted;
  }
  if (num_targeted == 0)
    cfg.file.fail("target_modules", fmt::format("{} selects no module of the model",
                                                brief(*cfg.file.get("target_modules"))));

  // Find every tensor's module.
  const SafetensorsFile file = SafetensorsFile::open(weights_path);
  auto fail_tensor = [&](const std::string& tensor, const std::string& msg) {
    throw InputError(
        fmt::format("{}: tensor {}: {}", weights_path.string(), quote_name(tensor), msg));
  };
  static const std::regex kLora(R"((.*)\.(lora_A|lora_B)(\.[^.]+)?\.weight)");
  std::vector<std::array<std::array<const TensorInfo*, 2>, kNumTargets>> found(
      static_cast<size_t>(L));
  std::set<std::string> infixes;
  for (const TensorInfo& t : file.tensors()) {
    std::string name = t.name;
    const std::string prefix = "base_model.model.";
    if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
    std::smatch m;
    if (!std::regex_match(name, m, kLora)) {
      if (name.find("lora_embedding_") != std::string::npos)
        fail_tensor(t.name, "LoRA on embeddings is not supported");
      if (name.find("lora_magnitude_vector") != std::string::npos)
        fail_tensor(t.name, "DoRA is not supported");
      fail_tensor(t.name,
                  "unexpected tensor (expected <module>.lora_A.weight or "
                  "<module>.lora_B.weight)");
    }
    const std::string module = m[1].str();
    const int ab = m[2].str() == "lora_A" ? 0 : 1;
    infixes.insert(m[3].str());
    int layer = 0;
    Target target{};
    if (!parse_module(module, layer, target))
      fail_tensor(t.name, fmt::format("module '{}' is not supported (lorasched adapts only the "
                                      "decoder projections {})",
                                      module, target_list()));
    if (layer >= L)
      fail_tensor(t.name,
                  fmt::format("layer {} does not exist: the model has {} layers", layer, L));
    if (!targeted[static_cast<size_t>(layer)][static_cast<size_t>(target)])
      fail_tensor(t.name,
                  fmt::format("module '{}' is not targeted by {} (target_modules {})", module,
                              config_path.string(), brief(*cfg.file.get("target_modules"))));
    auto& slot =
        found[static_cast<size_t>(layer)][static_cast<size_t>(target)][static_cast<size_t>(ab)];
    if (slot != nullptr)
      fail_tensor(t.name, fmt::format("duplicate {} of module '{}' (also {})", m[2].str(), module,
                                      quote_name(slot->name)));
    slot = &t;
  }
  if (infixes.size() > 1)
    throw InputError(
        fmt::format("{}: holds tensors of several adapters (names with different "
                    "adapter infixes)",
                    weights_path.string()));

  LoraAdapterWeights w;
  w.name = folder_name(dir);
  w.rank = cfg.r;
  w.lora_alpha = static_cast<float>(cfg.alpha);
  w.use_rslora = cfg.rslora;
  w.layers.resize(static_cast<size_t>(L));
  for (int l = 0; l < L; ++l) {
    for (int ti = 0; ti < kNumTargets; ++ti) {
      if (!targeted[static_cast<size_t>(l)][static_cast<size_t>(ti)]) continue;
      const Target t = Target(ti);
      const std::string module = hf_module_name(l, t);
      const auto& ab = found[static_cast<size_t>(l)][static_cast<size_t>(ti)];
      for (int i = 0; i < 2; ++i)
        if (ab[static_cast<size_t>(i)] == nullptr)
          throw InputError(
              fmt::format("{}: module '{}' is targeted by adapter_config.json but "
                          "its {} weight is missing",
                          weights_path.string(), module, i == 0 ? "lora_A" : "lora_B"));
      const Pattern* rp = find_pattern(cfg.rank_pattern, module);
      const Pattern* ap = find_pattern(cfg.alpha_pattern, module);
      const int rank = rp ? static_cast<int>(rp->value) : cfg.r;
      const double alpha = ap ? ap->value : cfg.alpha;
      const std::string rank_src =
          rp ? fmt::format("rank_pattern[{}]", quote_name(rp->key)) : std::string("r");
      const int64_t in = shape.in_features(t), out = shape.out_features(t);
      const TensorInfo& A = *ab[0];
      const TensorInfo& B = *ab[1];
      if (A.shape.size() == 2 && A.shape[1] == in && A.shape[0] != rank)
        fail_tensor(A.name, fmt::format("rank {} but adapter_config.json gives rank {} ({})",
                                        A.shape[0], rank, rank_src));
      if (B.shape.size() == 2 && B.shape[0] == out && B.shape[1] != rank)
        fail_tensor(B.name, fmt::format("rank {} but adapter_config.json gives rank {} ({})",
                                        B.shape[1], rank, rank_src));
      LoraModule& mod = w.layers[static_cast<size_t>(l)][static_cast<size_t>(ti)];
      mod.rank = rank;
      mod.scale = static_cast<float>(cfg.rslora ? alpha / std::sqrt(static_cast<double>(rank))
                                                : alpha / rank);
      mod.A = file.read_f32(A.name, {static_cast<int64_t>(rank), in});
      mod.B = file.read_f32(B.name, {out, static_cast<int64_t>(rank)});
      checkpoint::require_finite(mod.A, weights_path, A.name);
      checkpoint::require_finite(mod.B, weights_path, B.name);
    }
  }
  return w;
}

}  // namespace lorasched
