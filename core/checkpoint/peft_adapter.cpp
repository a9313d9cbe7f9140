#include "core/checkpoint/peft_adapter.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/json_util.hpp"
#include "core/checkpoint/python_regex.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"
#include "core/common/log.hpp"

namespace lorasched {

using checkpoint::PythonRegex;
using checkpoint::quote_name;
using checkpoint::RegexError;
using checkpoint::SafetensorsFile;
using checkpoint::TensorInfo;
using checkpoint::detail::brief;
using checkpoint::detail::Json;
using checkpoint::detail::JsonFile;

namespace {

// A Python regex of the config (`what` names it in messages: "regex 'X'" or "key 'X'"),
// compiled by PCRE2 (core/checkpoint/python_regex.hpp). `skip` characters of `pattern` are
// lorasched's wrapping, not the user's.
struct ConfigRegex {
  std::string what;
  PythonRegex re;
};

// A regex quoted for a message as its author wrote it (backslashes single, so positions match);
// only control characters are escaped, to keep the message on one line.
std::string quote_regex(std::string_view re) {
  std::string s = "'";
  for (char c : re) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f)
      s += fmt::format("\\x{:02x}", u);
    else
      s += c;
  }
  return s + "'";
}

ConfigRegex compile(const JsonFile& cfg, std::string_view key, const std::string& pattern,
                    const std::string& shown, size_t skip, const char* noun) {
  const std::string what = fmt::format("{} {}", noun, quote_regex(shown));
  constexpr size_t kMaxRegex = 4096;  // a limit on input size, not a PCRE2 need
  if (shown.size() > kMaxRegex)
    cfg.fail(key, fmt::format("{} of {} characters is longer than the {} lorasched accepts", noun,
                              shown.size(), kMaxRegex));
  try {
    return {what, PythonRegex::compile(pattern, skip)};
  } catch (const RegexError& e) {
    cfg.fail(key, fmt::format("{} is not a Python regex lorasched can run: {}", what, e.what()));
  }
}

// re.fullmatch / re.match of a config regex; a runaway match is an InputError naming the file,
// the key and the pattern.
bool regex_matches(const JsonFile& cfg, std::string_view key, const ConfigRegex& r,
                   const std::string& name, bool full) {
  try {
    return full ? r.re.fullmatch(name) : r.re.match(name);
  } catch (const RegexError& e) {
    cfg.fail(key, fmt::format("{}: {}", r.what, e.what()));
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
  std::string_view config_key;  // "target_modules" or "exclude_modules"
  bool set = false;
  bool is_regex = false;
  std::string pattern;
  std::optional<ConfigRegex> re;
  std::vector<std::string> names;

  bool exact(const std::string& key) const {
    return set && !is_regex && std::find(names.begin(), names.end(), key) != names.end();
  }
  bool matches(const JsonFile& cfg, const std::string& key) const {
    if (!set) return false;
    if (is_regex) return regex_matches(cfg, config_key, *re, key, /*full=*/true);
    if (exact(key)) return true;
    for (const auto& n : names)
      if (ends_with_component(key, n)) return true;
    return false;
  }
};

ModuleMatcher parse_matcher(const JsonFile& cfg, std::string_view key) {
  ModuleMatcher m;
  m.config_key = key;
  const Json* v = cfg.get(key);
  if (v == nullptr) return m;
  m.set = true;
  if (v->is_string()) {
    m.pattern = v->get<std::string>();
    // PEFT compares the lower-cased string (_maybe_include_all_linear_layers).
    std::string lower = m.pattern;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (key == "target_modules" && lower == "all-linear") {
      m.names.assign(kTargetNames.begin(), kTargetNames.end());
      return m;
    }
    m.is_regex = true;
    m.re = compile(cfg, key, m.pattern, m.pattern, 0, "regex");
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
  ConfigRegex re;
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
                                  quote_regex(it.key()), brief(val)));
      x = static_cast<double>(val.get<long long>());
    } else {
      if (!val.is_number() || val.is_boolean())
        cfg.fail(key, fmt::format("{}: alpha must be a number, found {}", quote_regex(it.key()),
                                  brief(val)));
      x = val.get<double>();
      if (!(std::fabs(x) <= std::numeric_limits<float>::max()))
        cfg.fail(key, fmt::format("{}: alpha {} is out of the range of a float",
                                  quote_regex(it.key()), x));
    }
    // PEFT (get_pattern_key): re.match(rf"(.*\.)?({key})$", module_name)
    const std::string prefix = "(.*\\.)?(";
    out.push_back(
        {it.key(), compile(cfg, key, prefix + it.key() + ")$", it.key(), prefix.size(), "key"), x});
  }
  return out;
}

// PEFT's get_pattern_key: the first key (in file order) that matches.
const Pattern* find_pattern(const JsonFile& cfg, std::string_view key,
                            const std::vector<Pattern>& ps, const std::string& module) {
  for (const auto& p : ps)
    if (regex_matches(cfg, key, p.re, module, /*full=*/false)) return &p;
  return nullptr;
}

// PEFT 0.21 (BaseTuner.inject_adapter) warns about pattern keys that match no targeted module:
// such a key is ignored, which is rarely what its author meant (e.g. std::regex's reading of
// "down_proj\Z" matched nothing and silently left down_proj at the default alpha).
void warn_unused_patterns(const JsonFile& cfg, std::string_view key,
                          const std::vector<Pattern>& patterns,
                          const std::vector<std::string>& targeted) {
  std::vector<std::string> unused;
  for (const auto& p : patterns) {
    bool used = false;
    for (const auto& name : targeted)
      if ((used = regex_matches(cfg, key, p.re, name, /*full=*/false))) break;
    if (!used) unused.push_back(quote_regex(p.key));
  }
  if (unused.empty()) return;
  std::sort(unused.begin(), unused.end());
  std::string list;
  for (const auto& u : unused) list += (list.empty() ? "" : ", ") + u;
  log::warn("{}: {}: keys that match no targeted module are ignored (as in PEFT): {}",
            cfg.path.string(), key, list);
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
    if (exclude.matches(file, key)) return false;
    if (target.is_regex || target.exact(key)) return target.matches(file, key);
    if (!target.matches(file, key)) return false;  // suffix match: layers_to_transform applies
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

  // fan_in_fan_out describes GPT-2's Conv1D weights ([in, out]). PEFT resets it to false for
  // nn.Linear targets, which every Llama projection is, and computes plain LoRA (with a warning,
  // lora/layer.py dispatch_default); the stored A and B are the usual [r, in] and [out, r].
  if (cfg.opt_bool("fan_in_fan_out").value_or(false))
    log::warn(
        "{}: fan_in_fan_out is true but the targeted modules are nn.Linear layers: "
        "computing plain LoRA (fan_in_fan_out false), as PEFT does",
        path.string());
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

// Parses "model.layers.N.<self_attn|mlp>.<proj>" (N without leading zeros) into (N, target).
bool parse_module(std::string_view module, int& layer, Target& t) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (!module.starts_with(kPrefix)) return false;
  module.remove_prefix(kPrefix.size());
  const size_t dot = module.find('.');
  if (dot == std::string_view::npos || dot == 0 || (module[0] == '0' && dot > 1)) return false;
  auto [ptr, ec] = std::from_chars(module.data(), module.data() + dot, layer);
  if (ec != std::errc() || ptr != module.data() + dot) return false;
  const std::string_view rest = module.substr(dot + 1);
  for (int i = 0; i < kNumTargets; ++i) {
    // hf_module_name's "<self_attn|mlp>.<proj>" part.
    const std::string full = hf_module_name(0, Target(i));
    if (rest == std::string_view(full).substr(kPrefix.size() + 2)) {
      t = Target(i);
      return true;
    }
  }
  return false;
}

// A PEFT tensor name without "base_model.model.": "<module>.lora_A.weight", or with an
// adapter-name infix "<module>.lora_B.<name>.weight" (the regex
// (.*)\.(lora_A|lora_B)(\.[^.]+)?\.weight, whose greedy module part prefers no infix).
struct LoraTensorName {
  std::string module;
  int ab = 0;  // 0: lora_A, 1: lora_B
  std::string infix;
};
std::optional<LoraTensorName> parse_lora_tensor(std::string_view name) {
  constexpr std::string_view kWeight = ".weight";
  if (!name.ends_with(kWeight)) return std::nullopt;
  name.remove_suffix(kWeight.size());
  auto split_ab = [](std::string_view s, std::string infix) -> std::optional<LoraTensorName> {
    for (int ab = 0; ab < 2; ++ab) {
      const std::string_view tail = ab == 0 ? ".lora_A" : ".lora_B";
      if (s.ends_with(tail))
        return LoraTensorName{std::string(s.substr(0, s.size() - tail.size())), ab,
                              std::move(infix)};
    }
    return std::nullopt;
  };
  if (auto r = split_ab(name, "")) return r;
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot + 1 == name.size()) return std::nullopt;
  return split_ab(name.substr(0, dot), std::string(name.substr(dot)));
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
  std::vector<std::string> targeted_names;
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
    targeted_names.push_back(name);
    ++num_targeted;
  }
  if (num_targeted == 0)
    cfg.file.fail("target_modules", fmt::format("{} selects no module of the model",
                                                brief(*cfg.file.get("target_modules"))));
  warn_unused_patterns(cfg.file, "rank_pattern", cfg.rank_pattern, targeted_names);
  warn_unused_patterns(cfg.file, "alpha_pattern", cfg.alpha_pattern, targeted_names);

  // Find every tensor's module.
  const SafetensorsFile file = SafetensorsFile::open(weights_path);
  auto fail_tensor = [&](const std::string& tensor, const std::string& msg) {
    throw InputError(
        fmt::format("{}: tensor {}: {}", weights_path.string(), quote_name(tensor), msg));
  };
  std::vector<std::array<std::array<const TensorInfo*, 2>, kNumTargets>> found(
      static_cast<size_t>(L));
  std::set<std::string> infixes;
  for (const TensorInfo& t : file.tensors()) {
    std::string name = t.name;
    const std::string prefix = "base_model.model.";
    if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
    const auto parsed = parse_lora_tensor(name);
    if (!parsed) {
      if (name.find("lora_embedding_") != std::string::npos)
        fail_tensor(t.name, "LoRA on embeddings is not supported");
      if (name.find("lora_magnitude_vector") != std::string::npos)
        fail_tensor(t.name, "DoRA is not supported");
      fail_tensor(t.name,
                  "unexpected tensor (expected <module>.lora_A.weight or "
                  "<module>.lora_B.weight)");
    }
    const std::string& module = parsed->module;
    const int ab = parsed->ab;
    infixes.insert(parsed->infix);
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
      fail_tensor(t.name,
                  fmt::format("duplicate {} of module '{}' (also {})",
                              ab == 0 ? "lora_A" : "lora_B", module, quote_name(slot->name)));
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
      const Pattern* rp = find_pattern(cfg.file, "rank_pattern", cfg.rank_pattern, module);
      const Pattern* ap = find_pattern(cfg.file, "alpha_pattern", cfg.alpha_pattern, module);
      const int rank = rp ? static_cast<int>(rp->value) : cfg.r;
      const double alpha = ap ? ap->value : cfg.alpha;
      const std::string rank_src =
          rp ? fmt::format("rank_pattern[{}]", quote_regex(rp->key)) : std::string("r");
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
