// Loading PEFT LoRA adapters: the fixture adapters against what PEFT itself reported (ranks,
// scales, tensor sums), and tables of bad adapter_config.json files and bad adapter weights.
#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/peft_adapter.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"
#include "core/common/log.hpp"
#include "tests/unit/checkpoint/test_util.hpp"

namespace lorasched {
namespace {

using checkpoint::Dtype;
using checkpoint::TensorToWrite;
using test::expect_input_error;
using test::expected;
using test::fixture_dir;
using test::TempDir;
using Json = nlohmann::ordered_json;

const ModelShape& shape() {
  static const ModelShape s = read_hf_config(fixture_dir() / "model" / "config.json");
  return s;
}

void expect_matches_summary(const std::vector<float>& v, const nlohmann::json& s,
                            const std::string& what) {
  SCOPED_TRACE(what);
  size_t n = 1;
  for (const auto& d : s["shape"]) n *= d.get<size_t>();
  ASSERT_EQ(v.size(), n);
  double sum = 0;
  for (float x : v) sum += x;
  EXPECT_NEAR(sum, s["sum"].get<double>(), 1e-9 * s["abs_sum"].get<double>() + 1e-12);
  EXPECT_EQ(v.front(), s["first"].get<float>());
  EXPECT_EQ(v.back(), s["last"].get<float>());
}

TEST(PeftAdapter, FixtureAdaptersMatchPeft) {
  const auto& adapters = expected()["adapters"];
  ASSERT_EQ(adapters.size(), 6u);
  for (auto it = adapters.begin(); it != adapters.end(); ++it) {
    SCOPED_TRACE(it.key());
    const auto& e = it.value();
    const LoraAdapterWeights w =
        load_peft_adapter(fixture_dir() / e["dir"].get<std::string>(), shape());
    EXPECT_EQ(w.name, it.key());
    EXPECT_EQ(w.rank, e["r"].get<int>());
    EXPECT_EQ(w.lora_alpha, e["lora_alpha"].get<float>());
    EXPECT_EQ(w.use_rslora, e["use_rslora"].get<bool>());
    ASSERT_EQ(w.layers.size(), 2u);
    size_t present = 0;
    for (int l = 0; l < 2; ++l) {
      for (int t = 0; t < kNumTargets; ++t) {
        const std::string name = hf_module_name(l, Target(t));
        const LoraModule& m = w.layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
        const bool want = e["modules"].contains(name);
        ASSERT_EQ(m.present(), want) << name;
        if (!want) continue;
        ++present;
        const auto& em = e["modules"][name];
        EXPECT_EQ(m.rank, em["rank"].get<int>()) << name;
        EXPECT_FLOAT_EQ(m.scale, em["scale"].get<float>()) << name;
        EXPECT_EQ(m.A.size(), static_cast<size_t>(m.rank) * shape().in_features(Target(t)));
        EXPECT_EQ(m.B.size(), static_cast<size_t>(shape().out_features(Target(t))) * m.rank);
        expect_matches_summary(m.A, em["A"], name + " A");
        expect_matches_summary(m.B, em["B"], name + " B");
      }
    }
    EXPECT_EQ(present, e["modules"].size());
  }
}

TEST(PeftAdapter, ScalesRanksAndTargets) {
  auto load = [](const char* name) {
    return load_peft_adapter(fixture_dir() / "adapters" / name, shape());
  };
  auto mod = [](const LoraAdapterWeights& w, int l, Target t) -> const LoraModule& {
    return w.layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
  };
  // rsLoRA: alpha / sqrt(r) = 8 / 4.
  const auto rs = load("r16-rslora-f16");
  EXPECT_FLOAT_EQ(mod(rs, 0, Target::q).scale, 2.0f);
  EXPECT_FALSE(mod(rs, 0, Target::up).present());
  // rank_pattern {q_proj: 4, model.layers.1.mlp.down_proj: 16}, alpha_pattern {v_proj: 32,
  // layers\.0\.self_attn\.o_proj: 4}; r 8, alpha 16.
  const auto p = load("r8-patterns");
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ(mod(p, l, Target::q).rank, 4);
    EXPECT_FLOAT_EQ(mod(p, l, Target::q).scale, 4.0f);
    EXPECT_EQ(mod(p, l, Target::v).rank, 8);
    EXPECT_FLOAT_EQ(mod(p, l, Target::v).scale, 4.0f);
    EXPECT_EQ(mod(p, l, Target::k).rank, 8);
    EXPECT_FLOAT_EQ(mod(p, l, Target::k).scale, 2.0f);
  }
  EXPECT_FLOAT_EQ(mod(p, 0, Target::o).scale, 0.5f);
  EXPECT_FLOAT_EQ(mod(p, 1, Target::o).scale, 2.0f);
  EXPECT_EQ(mod(p, 0, Target::down).rank, 8);
  EXPECT_EQ(mod(p, 1, Target::down).rank, 16);
  EXPECT_FLOAT_EQ(mod(p, 1, Target::down).scale, 1.0f);
  // Regex target_modules: q and v only.
  const auto qv = load("r4-qv-regex");
  for (int t = 0; t < kNumTargets; ++t)
    EXPECT_EQ(mod(qv, 1, Target(t)).present(), Target(t) == Target::q || Target(t) == Target::v);
  // layers_to_transform [1].
  const auto l1 = load("r4-layer1-bf16");
  EXPECT_FALSE(mod(l1, 0, Target::k).present());
  EXPECT_TRUE(mod(l1, 1, Target::k).present());
  EXPECT_FALSE(mod(l1, 1, Target::q).present());
}

// An adapter folder in a temp dir made from a fixture adapter: config and tensors edited.
struct AdapterDir {
  TempDir dir;
  std::filesystem::path path;
  AdapterDir(const std::string& from, const std::function<void(Json&)>& cfg,
             const std::function<void(std::vector<TensorToWrite>&)>& tensors = {}) {
    path = dir / from;
    std::filesystem::create_directory(path);
    const auto src = fixture_dir() / "adapters" / from;
    Json c = test::read_json(src / "adapter_config.json");
    if (cfg) cfg(c);
    test::write_json(path / "adapter_config.json", c);
    auto ts = test::load_all(src / "adapter_model.safetensors");
    if (tensors) tensors(ts);
    checkpoint::write_safetensors(path / "adapter_model.safetensors", ts);
  }
};

// Inserts ".<infix>" before the final ".weight" of every LoRA tensor name.
void add_infix(std::vector<TensorToWrite>& ts, const std::string& infix) {
  for (auto& t : ts) t.name.insert(t.name.size() - std::string(".weight").size(), "." + infix);
}
void strip_prefix(std::vector<TensorToWrite>& ts, const std::string& prefix) {
  for (auto& t : ts)
    if (t.name.starts_with(prefix)) t.name.erase(0, prefix.size());
}

void erase_tensor(std::vector<TensorToWrite>& ts, const std::string& name) {
  const auto n = std::erase_if(ts, [&](const TensorToWrite& t) { return t.name == name; });
  if (n != 1) throw std::runtime_error("no tensor " + name);
}
TensorToWrite& tensor(std::vector<TensorToWrite>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

TEST(PeftAdapter, AcceptedVariants) {
  const auto ref = load_peft_adapter(fixture_dir() / "adapters" / "r8-all", shape());
  auto same = [&](const LoraAdapterWeights& w) {
    for (size_t l = 0; l < 2; ++l)
      for (size_t t = 0; t < kNumTargets; ++t) {
        EXPECT_EQ(w.layers[l][t].A, ref.layers[l][t].A);
        EXPECT_EQ(w.layers[l][t].B, ref.layers[l][t].B);
        EXPECT_EQ(w.layers[l][t].scale, ref.layers[l][t].scale);
      }
  };
  {  // adapter-name infix, as saved by some tools: .lora_A.default.weight
    AdapterDir a("r8-all", {}, [](auto& ts) { add_infix(ts, "default"); });
    same(load_peft_adapter(a.path, shape()));
  }
  {  // no base_model.model. prefix; "all-linear"; F16 storage is exercised by the fixture
    AdapterDir a(
        "r8-all", [](Json& c) { c["target_modules"] = "all-linear"; },
        [](auto& ts) { strip_prefix(ts, "base_model.model."); });
    same(load_peft_adapter(a.path, shape()));
  }
  {  // exclude_modules, layers_to_transform as an int, layers_pattern "layers", full names
    AdapterDir a(
        "r8-all",
        [](Json& c) {
          c["target_modules"] = {"model.layers.1.self_attn.q_proj", "v_proj", "down_proj"};
          c["exclude_modules"] = {"down_proj"};
          c["layers_to_transform"] = 1;
          c["layers_pattern"] = "layers";
        },
        [](auto& ts) {
          std::erase_if(ts, [](const TensorToWrite& t) {
            return !t.name.starts_with("base_model.model.model.layers.1.self_attn.q_proj") &&
                   !t.name.starts_with("base_model.model.model.layers.1.self_attn.v_proj");
          });
        });
    const auto w = load_peft_adapter(a.path, shape());
    EXPECT_TRUE(w.layers[1][0].present());
    EXPECT_TRUE(w.layers[1][2].present());
    EXPECT_FALSE(w.layers[0][2].present());
    EXPECT_FALSE(w.layers[1][6].present());
  }
  {  // lora_alpha as a float; rank_pattern key as a regex
    AdapterDir a("r8-all", [](Json& c) {
      c["lora_alpha"] = 12.0;
      c["rank_pattern"] = {{"layers\\.[01]\\.mlp\\.up_proj", 8}};
    });
    const auto w = load_peft_adapter(a.path, shape());
    EXPECT_FLOAT_EQ(w.layers[0][5].scale, 1.5f);
  }
}

// Python regex syntax that std::regex (ECMAScript) read differently, as PEFT reads it now:
// \Z is the end of the name (std::regex: a literal 'Z', so these selected nothing, excluded
// nothing or matched no module), (?P<name>...) is a group.
TEST(PeftAdapter, PythonRegexesAsPeftReadsThem) {
  auto mod = [](const LoraAdapterWeights& w, int l, Target t) -> const LoraModule& {
    return w.layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
  };
  auto keep_only = [](std::vector<std::string> projs) {
    return [projs](std::vector<TensorToWrite>& ts) {
      std::erase_if(ts, [&](const TensorToWrite& t) {
        for (const auto& p : projs)
          if (t.name.find("." + p + ".") != std::string::npos) return false;
        return true;
      });
    };
  };
  {  // target_modules with \Z (was: "selects no module")
    AdapterDir a(
        "r8-all", [](Json& c) { c["target_modules"] = ".*\\.(q_proj|down_proj)\\Z"; },
        keep_only({"q_proj", "down_proj"}));
    const auto w = load_peft_adapter(a.path, shape());
    for (int t = 0; t < kNumTargets; ++t)
      EXPECT_EQ(mod(w, 1, Target(t)).present(),
                Target(t) == Target::q || Target(t) == Target::down);
  }
  {  // exclude_modules with \Z (was: "lora_A weight is missing" for the excluded k_proj)
    AdapterDir a(
        "r8-all", [](Json& c) { c["exclude_modules"] = ".*\\.k_proj\\Z"; },
        keep_only({"q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}));
    const auto w = load_peft_adapter(a.path, shape());
    EXPECT_FALSE(mod(w, 0, Target::k).present());
    EXPECT_TRUE(mod(w, 0, Target::v).present());
  }
  {  // (?P<name>...) (was: an error)
    AdapterDir a(
        "r8-all", [](Json& c) { c["target_modules"] = ".*(?P<proj>q|v)_proj"; },
        keep_only({"q_proj", "v_proj"}));
    const auto w = load_peft_adapter(a.path, shape());
    EXPECT_TRUE(mod(w, 1, Target::v).present());
    EXPECT_FALSE(mod(w, 1, Target::k).present());
  }
  {  // alpha_pattern key down_proj\Z: PEFT's scale alpha/r = 20/8 on down_proj (was: the
     // default 16/8 = 2, silently: the key matched nothing)
    AdapterDir a("r8-all", [](Json& c) { c["alpha_pattern"] = {{"down_proj\\Z", 20}}; });
    log::Capture warnings;
    const auto w = load_peft_adapter(a.path, shape());
    for (int l = 0; l < 2; ++l) {
      EXPECT_FLOAT_EQ(mod(w, l, Target::down).scale, 2.5f);
      EXPECT_FLOAT_EQ(mod(w, l, Target::up).scale, 2.0f);
    }
    EXPECT_TRUE(warnings.messages().empty());
  }
}

// PEFT 0.21 warns about rank_pattern / alpha_pattern keys that match no targeted module (a key
// that matches one but loses to an earlier key is used, as far as PEFT's warning goes).
TEST(PeftAdapter, PatternKeysMatchingNothingAreWarnedAbout) {
  AdapterDir a("r8-all", [](Json& c) {
    c["rank_pattern"] = {{"q_proj", 8}, {"model.layers.0.self_attn.q_proj", 8}, {"qproj", 8}};
    c["alpha_pattern"] = {{"lm_head", 4}, {"embed_tokens", 4}, {"up_proj", 16}};
  });
  log::Capture warnings;
  load_peft_adapter(a.path, shape());
  const auto got = warnings.messages();
  ASSERT_EQ(got.size(), 2u);
  const std::string config = (a.path / "adapter_config.json").string();
  EXPECT_EQ(got[0], config +
                        ": rank_pattern: keys that match no targeted module are ignored (as in "
                        "PEFT): 'qproj'");
  EXPECT_EQ(got[1], config +
                        ": alpha_pattern: keys that match no targeted module are ignored (as in "
                        "PEFT): 'embed_tokens', 'lm_head'");
}

// fan_in_fan_out = true on nn.Linear targets: PEFT warns, sets it to false and computes plain
// LoRA; so does lorasched (it used to refuse the adapter).
TEST(PeftAdapter, FanInFanOutOnLinearLayersIsPlainLoraWithAWarning) {
  const auto ref = load_peft_adapter(fixture_dir() / "adapters" / "r8-all", shape());
  AdapterDir a("r8-all", [](Json& c) { c["fan_in_fan_out"] = true; });
  log::Capture warnings;
  const auto w = load_peft_adapter(a.path, shape());
  for (size_t l = 0; l < 2; ++l)
    for (size_t t = 0; t < kNumTargets; ++t) {
      EXPECT_EQ(w.layers[l][t].A, ref.layers[l][t].A);
      EXPECT_EQ(w.layers[l][t].B, ref.layers[l][t].B);
      EXPECT_EQ(w.layers[l][t].scale, ref.layers[l][t].scale);
    }
  ASSERT_EQ(warnings.messages().size(), 1u);
  EXPECT_NE(warnings.messages()[0].find("fan_in_fan_out"), std::string::npos);
  EXPECT_NE(warnings.messages()[0].find("as PEFT does"), std::string::npos);
}

struct BadConfig {
  const char* name;
  std::function<void(Json&)> edit;
  std::vector<std::string> needles;  // besides adapter_config.json
};

TEST(PeftAdapter, BadConfigsAreInputErrors) {
  const std::vector<BadConfig> rows = {
      {"modules_to_save",
       [](Json& c) { c["modules_to_save"] = {"lm_head"}; },
       {"modules_to_save", "modules_to_save is not supported"}},
      {"bias all", [](Json& c) { c["bias"] = "all"; }, {"bias", "'all' is not supported"}},
      {"bias lora_only", [](Json& c) { c["bias"] = "lora_only"; }, {"bias", "lora_only"}},
      {"DoRA", [](Json& c) { c["use_dora"] = true; }, {"use_dora", "DoRA"}},
      {"lora_bias", [](Json& c) { c["lora_bias"] = true; }, {"lora_bias"}},
      {"aLoRA",
       [](Json& c) {
         c["alora_invocation_tokens"] = {1, 2};
       },
       {"alora_invocation_tokens"}},
      {"layer_replication",
       [](Json& c) {
         c["layer_replication"] = {{0, 1}};
       },
       {"layer_replication"}},
      {"trainable tokens",
       [](Json& c) { c["trainable_token_indices"] = {1}; },
       {"trainable_token_indices"}},
      {"pissa",
       [](Json& c) { c["init_lora_weights"] = "pissa_niter_4"; },
       {"init_lora_weights", "path_initial_model_for_weight_conversion"}},
      {"not LoRA", [](Json& c) { c["peft_type"] = "IA3"; }, {"peft_type", "'IA3'"}},
      {"no peft_type", [](Json& c) { c.erase("peft_type"); }, {"peft_type", "missing"}},
      {"no r", [](Json& c) { c.erase("r"); }, {"r: missing"}},
      {"r zero", [](Json& c) { c["r"] = 0; }, {"r: ", "out of range"}},
      {"lora_alpha a string",
       [](Json& c) { c["lora_alpha"] = "16"; },
       {"lora_alpha", "expected a number"}},
      {"no target_modules",
       [](Json& c) { c.erase("target_modules"); },
       {"target_modules", "missing"}},
      {"target lm_head",
       [](Json& c) {
         c["target_modules"] = {"q_proj", "lm_head"};
       },
       {"target_modules", "'lm_head'", "not supported"}},
      {"target embed_tokens",
       [](Json& c) { c["target_modules"] = {"embed_tokens"}; },
       {"target_modules", "'model.embed_tokens'", "not supported"}},
      {"target regex hits lm_head",
       [](Json& c) { c["target_modules"] = ".*(q_proj|lm_head)"; },
       {"target_modules", "'lm_head'"}},
      {"target a norm",
       [](Json& c) { c["target_modules"] = {"input_layernorm"}; },
       {"target_modules", "input_layernorm", "not supported"}},
      {"target nothing",
       [](Json& c) { c["target_modules"] = {"c_attn"}; },
       {"target_modules", "selects no module"}},
      {"regex Python rejects",
       [](Json& c) { c["target_modules"] = ".*\\p{L}_proj"; },
       {"target_modules", "regex '.*\\p{L}_proj'", "not a Python regex", "bad escape \\p"}},
      {"regex PCRE2 cannot honour",
       [](Json& c) { c["target_modules"] = ".*\\N{LATIN SMALL LETTER Q}_proj"; },
       {"target_modules", "named Unicode escapes"}},
      {"target regex backtracks catastrophically",
       [](Json& c) { c["target_modules"] = "(.|.)*\\d"; },
       {"target_modules", "regex '(.|.)*\\d'", "backtracking steps"}},
      {"exclude regex backtracks catastrophically",
       [](Json& c) { c["exclude_modules"] = "(.*)*\\d"; },
       {"exclude_modules", "regex '(.*)*\\d'", "backtracking steps"}},
      {"pattern key backtracks catastrophically",
       [](Json& c) {
         c["alpha_pattern"] = {{"(\\w|.)+\\d", 4}};
       },
       {"alpha_pattern", "key '(\\w|.)+\\d'", "backtracking steps"}},
      {"target_modules a number",
       [](Json& c) { c["target_modules"] = 3; },
       {"target_modules", "expected a list or a regex string"}},
      {"layers_to_transform with regex",
       [](Json& c) {
         c["target_modules"] = ".*q_proj";
         c["layers_to_transform"] = {0};
       },
       {"layers_to_transform", "regex"}},
      {"layers_to_transform strings",
       [](Json& c) { c["layers_to_transform"] = {"0"}; },
       {"layers_to_transform", "not an integer"}},
      {"layers_pattern",
       [](Json& c) { c["layers_pattern"] = "h"; },
       {"layers_pattern", "not supported"}},
      {"rank_pattern value",
       [](Json& c) {
         c["rank_pattern"] = {{"q_proj", "4"}};
       },
       {"rank_pattern", "'q_proj'", "positive integer"}},
      {"rank_pattern bad regex",
       [](Json& c) {
         c["rank_pattern"] = {{"q_proj(", 4}};
       },
       {"rank_pattern", "key 'q_proj('", "not a Python regex", "at position"}},
      {"alpha_pattern value",
       [](Json& c) {
         c["alpha_pattern"] = {{"q_proj", true}};
       },
       {"alpha_pattern", "must be a number"}},
      {"use_rslora a string",
       [](Json& c) { c["use_rslora"] = "yes"; },
       {"use_rslora", "true or false"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    AdapterDir a("r8-all", r.edit);
    auto needles = r.needles;
    needles.push_back((a.path / "adapter_config.json").string());
    const auto start = std::chrono::steady_clock::now();
    expect_input_error([&] { load_peft_adapter(a.path, shape()); }, needles);
    // A runaway regex is an error at PCRE2's step limit, not a hang.
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
  }
}

struct BadWeights {
  const char* name;
  const char* from;
  std::function<void(std::vector<TensorToWrite>&)> edit;
  std::vector<std::string> needles;  // besides adapter_model.safetensors
};

constexpr const char* kPre = "base_model.model.model.layers.";

TEST(PeftAdapter, BadWeightsAreInputErrors) {
  const std::string pre = kPre;
  const std::vector<BadWeights> rows = {
      {"targeted module missing",
       "r8-all",
       [&](auto& ts) {
         erase_tensor(ts, pre + "1.mlp.up_proj.lora_A.weight");
         erase_tensor(ts, pre + "1.mlp.up_proj.lora_B.weight");
       },
       {"module 'model.layers.1.mlp.up_proj' is targeted", "lora_A weight is missing"}},
      {"lora_B missing",
       "r8-all",
       [&](auto& ts) { erase_tensor(ts, pre + "0.self_attn.o_proj.lora_B.weight"); },
       {"'model.layers.0.self_attn.o_proj'", "lora_B weight is missing"}},
      {"untargeted module",
       "r4-qv-regex",
       [&](auto& ts) {
         ts.push_back({pre + "0.self_attn.k_proj.lora_A.weight",
                       {4, 64},
                       std::vector<float>(256),
                       Dtype::F32});
       },
       {"'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight'",
        "module 'model.layers.0.self_attn.k_proj' is not targeted"}},
      {"untargeted layer",
       "r4-layer1-bf16",
       [&](auto& ts) {
         ts.push_back({pre + "0.self_attn.k_proj.lora_A.weight",
                       {4, 64},
                       std::vector<float>(256),
                       Dtype::F32});
       },
       {"'model.layers.0.self_attn.k_proj' is not targeted"}},
      {"rank differs from r",
       "r8-all",
       [&](auto& ts) {
         auto& t = tensor(ts, pre + "0.mlp.gate_proj.lora_A.weight");
         t.shape = {6, 64};
         t.values.resize(6 * 64);
       },
       {"'base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight'",
        "rank 6 but adapter_config.json gives rank 8 (r)"}},
      {"rank differs from rank_pattern",
       "r8-patterns",
       [&](auto& ts) {
         auto& t = tensor(ts, pre + "1.mlp.down_proj.lora_B.weight");
         t.shape = {64, 8};
         t.values.resize(64 * 8);
       },
       {"lora_B.weight'", "rank 8 but adapter_config.json gives rank 16",
        "rank_pattern['model.layers.1.mlp.down_proj']"}},
      {"wrong in_features",
       "r8-all",
       [&](auto& ts) {
         auto& t = tensor(ts, pre + "0.self_attn.q_proj.lora_A.weight");
         t.shape = {8, 63};
         t.values.resize(8 * 63);
       },
       {"'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'",
        "expected shape [8, 64], found [8, 63]"}},
      {"wrong out_features (GQA k)",
       "r8-all",
       [&](auto& ts) {
         auto& t = tensor(ts, pre + "1.self_attn.k_proj.lora_B.weight");
         t.shape = {64, 8};
         t.values.resize(64 * 8);
       },
       {"k_proj.lora_B.weight'", "expected shape [32, 8], found [64, 8]"}},
      {"embedding LoRA",
       "r8-all",
       [&](auto& ts) {
         ts.push_back({"base_model.model.model.embed_tokens.lora_embedding_A",
                       {8, 256},
                       std::vector<float>(8 * 256),
                       Dtype::F32});
       },
       {"lora_embedding_A'", "LoRA on embeddings is not supported"}},
      {"lm_head LoRA",
       "r8-all",
       [&](auto& ts) {
         ts.push_back({"base_model.model.lm_head.lora_A.weight",
                       {8, 64},
                       std::vector<float>(8 * 64),
                       Dtype::F32});
       },
       {"'base_model.model.lm_head.lora_A.weight'", "module 'lm_head' is not supported"}},
      {"layer out of range",
       "r8-all",
       [&](auto& ts) {
         ts.push_back({pre + "5.self_attn.q_proj.lora_A.weight",
                       {8, 64},
                       std::vector<float>(8 * 64),
                       Dtype::F32});
       },
       {"layer 5 does not exist: the model has 2 layers"}},
      {"duplicate via infix",
       "r8-all",
       [&](auto& ts) {
         auto t = tensor(ts, pre + "0.self_attn.q_proj.lora_A.weight");
         t.name = pre + "0.self_attn.q_proj.lora_A.default.weight";
         ts.push_back(t);
       },
       {"duplicate lora_A of module 'model.layers.0.self_attn.q_proj'"}},
      {"two adapter names",
       "r8-all",
       [&](auto& ts) {
         add_infix(ts, "one");
         tensor(ts, pre + "0.self_attn.q_proj.lora_A.one.weight").name =
             pre + "0.self_attn.q_proj.lora_A.two.weight";
       },
       {"several adapters"}},
      {"DoRA magnitude",
       "r8-all",
       [&](auto& ts) {
         ts.push_back({pre + "0.self_attn.q_proj.lora_magnitude_vector",
                       {64},
                       std::vector<float>(64),
                       Dtype::F32});
       },
       {"DoRA is not supported"}},
      {"unexpected tensor",
       "r8-all",
       [&](auto& ts) {
         ts.push_back({"foo", {1}, {1.f}, Dtype::F32});
       },
       {"tensor 'foo'", "unexpected tensor"}},
      {"3-D A",
       "r8-all",
       [&](auto& ts) {
         tensor(ts, pre + "0.self_attn.q_proj.lora_A.weight").shape = {8, 8, 8};
       },
       {"expected shape [8, 64], found [8, 8, 8]"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    AdapterDir a(r.from, {}, r.edit);
    auto needles = r.needles;
    needles.push_back((a.path / "adapter_model.safetensors").string());
    expect_input_error([&] { load_peft_adapter(a.path, shape()); }, needles);
  }
}

TEST(PeftAdapter, MissingFiles) {
  TempDir d;
  expect_input_error([&] { load_peft_adapter(d.path(), shape()); },
                     {"adapter_config.json", "not found"});
  std::filesystem::copy_file(fixture_dir() / "adapters" / "r8-all" / "adapter_config.json",
                             d / "adapter_config.json");
  expect_input_error([&] { load_peft_adapter(d.path(), shape()); },
                     {"adapter_model.safetensors", "not found"});
  test::write_file(d / "adapter_model.bin", "pickle");
  expect_input_error([&] { load_peft_adapter(d.path(), shape()); },
                     {d.path().string(), "only adapter_model.bin", "convert", "safetensors"});
}

TEST(PeftAdapter, AdapterForAnotherModelShape) {
  ModelShape other = shape();
  other.hidden_size = 128;
  other.head_dim = 32;
  expect_input_error([&] { load_peft_adapter(fixture_dir() / "adapters" / "r4-qv-regex", other); },
                     {"adapter_model.safetensors", "q_proj.lora_A.weight'",
                      "expected shape [4, 128], found [4, 64]"});
}

}  // namespace
}  // namespace lorasched
