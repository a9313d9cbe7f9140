// Loading HF Llama checkpoints: the fixture model (single file and sharded), config variants,
// and tables of bad config.json files and bad weights.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"
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

// The fixture's logits file is what expected.json says: every listed tensor exists with the
// right shape, and each generation step's argmax is the recorded token.
TEST(Fixture, LogitsMatchGeneratedTokens) {
  const auto& e = expected();
  const auto f =
      checkpoint::SafetensorsFile::open(fixture_dir() / e["logits_file"].get<std::string>());
  const int64_t V = 256, steps = e["max_new_tokens"].get<int64_t>();
  const auto& prompts = e["prompts"];
  size_t checked = 0;
  auto check = [&](const nlohmann::json& run, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(run["generated"].size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto logits = f.read_f32(run["logits"][i].get<std::string>(), {steps, V});
      const auto& gen = run["generated"][i];
      ASSERT_EQ(gen.size(), static_cast<size_t>(steps));
      for (int64_t s = 0; s < steps; ++s) {
        const auto row = logits.begin() + s * V;
        EXPECT_EQ(std::max_element(row, row + V) - row, gen[static_cast<size_t>(s)].get<int64_t>());
      }
      ++checked;
    }
  };
  auto check_prefill = [&](const nlohmann::json& names) {
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(
          f.read_f32(names[i].get<std::string>(), {static_cast<int64_t>(prompts[i].size()), V})
              .size(),
          prompts[i].size() * V);
  };
  check(e["base"], "base");
  check_prefill(e["base"]["prefill_logits"]);
  for (auto it = e["adapters"].begin(); it != e["adapters"].end(); ++it) {
    check(it.value()["unmerged"], it.key() + " unmerged");
    check(it.value()["merged"], it.key() + " merged");
    check_prefill(it.value()["prefill_logits"]);
  }
  const size_t adapters = e["adapters"].size();
  EXPECT_EQ(adapters, 6u);
  EXPECT_EQ(checked, 3u * (1u + 2u * adapters));
  // Runs that stop at an end-of-sequence id: each step's argmax is the recorded token, the last
  // one is an EOS id unless the run reached max_new_tokens, and no earlier one is.
  size_t eos_runs = 0;
  for (const auto& [name, run] : e["eos"].items()) {
    SCOPED_TRACE(name);
    std::vector<int64_t> eos;
    if (run["eos_token_id"].is_array())
      eos = run["eos_token_id"].get<std::vector<int64_t>>();
    else
      eos.push_back(run["eos_token_id"].get<int64_t>());
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto& gen = run["generated"][i];
      const auto n = static_cast<int64_t>(gen.size());
      const auto logits = f.read_f32(run["logits"][i].get<std::string>(), {n, V});
      for (int64_t s = 0; s < n; ++s) {
        const auto row = logits.begin() + s * V;
        const int64_t tok = gen[static_cast<size_t>(s)].get<int64_t>();
        EXPECT_EQ(std::max_element(row, row + V) - row, tok);
        const bool is_eos = std::find(eos.begin(), eos.end(), tok) != eos.end();
        EXPECT_EQ(is_eos, s == n - 1 && n < steps) << "step " << s;
      }
      ++eos_runs;
    }
  }
  EXPECT_EQ(eos_runs, 3u * 2u);
  EXPECT_EQ(f.tensors().size(), 3u * (2u + adapters * 3u + 2u));
}

TEST(HfConfig, ReadsTheFixtureConfig) {
  const ModelShape s = read_hf_config(fixture_dir() / "model" / "config.json");
  EXPECT_EQ(s.name, "model");
  EXPECT_EQ(s.hidden_size, 64);
  EXPECT_EQ(s.intermediate_size, 176);
  EXPECT_EQ(s.num_layers, 2);
  EXPECT_EQ(s.num_heads, 4);
  EXPECT_EQ(s.num_kv_heads, 2);
  EXPECT_EQ(s.head_dim, 16);
  EXPECT_EQ(s.vocab_size, 256);
  EXPECT_EQ(s.max_position, 128);
  EXPECT_FLOAT_EQ(s.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(s.rope_theta, 10000.0f);  // from rope_parameters (transformers 5)
  EXPECT_FALSE(s.tie_word_embeddings);
}

TEST(HfModel, LoadsTheFixtureModel) {
  const ModelWeights w = load_hf_model(fixture_dir() / "model");
  const ModelShape& s = w.shape;
  const auto& tensors = expected()["model"]["tensors"];
  expect_matches_summary(w.embed, tensors["model.embed_tokens.weight"], "embed");
  expect_matches_summary(w.final_norm, tensors["model.norm.weight"], "norm");
  expect_matches_summary(w.lm_head, tensors["lm_head.weight"], "lm_head");
  EXPECT_EQ(&w.output_weight(), &w.lm_head);
  ASSERT_EQ(w.layers.size(), 2u);
  for (int l = 0; l < s.num_layers; ++l) {
    const auto& L = w.layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    expect_matches_summary(L.input_norm, tensors[p + "input_layernorm.weight"], p + "in");
    expect_matches_summary(L.post_norm, tensors[p + "post_attention_layernorm.weight"], p + "post");
    for (int t = 0; t < kNumTargets; ++t) {
      const std::string name = hf_module_name(l, Target(t));
      EXPECT_EQ(L[Target(t)].size(),
                static_cast<size_t>(s.out_features(Target(t))) * s.in_features(Target(t)));
      expect_matches_summary(L[Target(t)], tensors[name + ".weight"], name);
    }
  }
  // k/v are [num_kv_heads * head_dim, hidden] = [32, 64] (GQA).
  EXPECT_EQ(w.layers[0][Target::k].size(), 32u * 64u);
}

TEST(HfModel, ShardedEqualsUnsharded) {
  const ModelWeights a = load_hf_model(fixture_dir() / "model");
  const ModelWeights b = load_hf_model(fixture_dir() / "model-sharded");
  EXPECT_EQ(a.embed, b.embed);
  EXPECT_EQ(a.final_norm, b.final_norm);
  EXPECT_EQ(a.lm_head, b.lm_head);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].input_norm, b.layers[l].input_norm);
    EXPECT_EQ(a.layers[l].post_norm, b.layers[l].post_norm);
    EXPECT_EQ(a.layers[l].proj, b.layers[l].proj);
  }
  EXPECT_EQ(b.shape.name, "model-sharded");
}

// A model folder in a temp dir made from the fixture: config edited by `cfg`, tensors by
// `tensors`, written as one model.safetensors.
struct ModelDir {
  TempDir dir;
  explicit ModelDir(const std::function<void(Json&)>& cfg = {},
                    const std::function<void(std::vector<TensorToWrite>&)>& tensors = {}) {
    Json c = test::read_json(fixture_dir() / "model" / "config.json");
    if (cfg) cfg(c);
    test::write_json(dir / "config.json", c);
    auto ts = test::load_all(fixture_dir() / "model" / "model.safetensors");
    if (tensors) tensors(ts);
    checkpoint::write_safetensors(dir / "model.safetensors", ts);
  }
  std::filesystem::path path() const { return dir.path(); }
};

void erase_tensor(std::vector<TensorToWrite>& ts, const std::string& name) {
  std::erase_if(ts, [&](const TensorToWrite& t) { return t.name == name; });
}
TensorToWrite& tensor(std::vector<TensorToWrite>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

// Where generate()'s end-of-sequence ids come from, as in transformers: generation_config.json
// when the folder has one (config.json's id is then ignored), else config.json; an int or a list.
TEST(HfConfig, EosTokenIds) {
  const auto& e = expected();
  EXPECT_EQ(read_eos_token_ids(fixture_dir() / "model-eos"),
            e["eos"]["model-eos"]["eos_token_id"].get<std::vector<int32_t>>());
  EXPECT_EQ(read_eos_token_ids(fixture_dir() / "model-eos-config"),
            std::vector<int32_t>{e["eos"]["model-eos-config"]["eos_token_id"].get<int32_t>()});
  EXPECT_TRUE(read_eos_token_ids(fixture_dir() / "model").empty());  // no ids at all
  {
    ModelDir m([](Json& c) { c["eos_token_id"] = 7; });
    test::write_file(m.dir / "generation_config.json", R"({"do_sample": false})");
    EXPECT_TRUE(read_eos_token_ids(m.path()).empty()) << "generation_config.json wins";
  }
  for (const char* bad : {R"({"eos_token_id": "2"})", R"({"eos_token_id": [1, 2.5]})",
                          R"({"eos_token_id": 4294967296})"}) {
    ModelDir m;
    test::write_file(m.dir / "generation_config.json", bad);
    expect_input_error([&] { read_eos_token_ids(m.path()); },
                       {(m.dir / "generation_config.json").string(), "eos_token_id",
                        "expected a token id or a list of token ids"});
  }
}

TEST(HfModel, TiedEmbeddings) {
  ModelDir m([](Json& c) { c["tie_word_embeddings"] = true; },
             [](auto& ts) { erase_tensor(ts, "lm_head.weight"); });
  const ModelWeights w = load_hf_model(m.path());
  EXPECT_TRUE(w.shape.tie_word_embeddings);
  EXPECT_TRUE(w.lm_head.empty());
  EXPECT_EQ(&w.output_weight(), &w.embed);
}

TEST(HfModel, HalfPrecisionWeightsAndExtraTensors) {
  ModelDir m({}, [](auto& ts) {
    for (auto& t : ts) t.dtype = t.name.find("mlp") != std::string::npos ? Dtype::BF16 : Dtype::F16;
    ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq",
                  {8},
                  std::vector<float>(8, 1.f),
                  Dtype::F32});
  });
  const ModelWeights w = load_hf_model(m.path());
  const ModelWeights ref = load_hf_model(fixture_dir() / "model");
  const auto& a = w.layers[1][Target::q];
  const auto& b = ref.layers[1][Target::q];
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(a[i], checkpoint::f16_to_f32(checkpoint::f32_to_f16(b[i])));
  const auto& c = w.layers[0][Target::down];
  const auto& d = ref.layers[0][Target::down];
  for (size_t i = 0; i < c.size(); ++i)
    ASSERT_EQ(c[i], checkpoint::bf16_to_f32(checkpoint::f32_to_bf16(d[i])));
}

TEST(HfConfig, TransformersFourStyleAndDefaults) {
  ModelDir m(
      [](Json& c) {
        c.erase("rope_parameters");
        c.erase("head_dim");
        c.erase("num_key_value_heads");  // default: num_attention_heads (no GQA)
        c.erase("max_position_embeddings");
        c.erase("rms_norm_eps");
        c["rope_theta"] = 500000.0;
        c["rope_scaling"] = nullptr;
      },
      [](auto& ts) {
        // k/v must then be [64, 64]: widen them.
        for (auto& t : ts)
          if (t.name.find("k_proj") != std::string::npos ||
              t.name.find("v_proj") != std::string::npos) {
            t.shape = {64, 64};
            t.values.resize(64 * 64, 0.5f);
          }
      });
  const ModelShape s = read_hf_config(m.path() / "config.json");
  EXPECT_FLOAT_EQ(s.rope_theta, 500000.0f);
  EXPECT_EQ(s.num_kv_heads, 4);
  EXPECT_EQ(s.max_position, 2048);
  EXPECT_FLOAT_EQ(s.rms_norm_eps, 1e-6f);
  EXPECT_EQ(load_hf_model(m.path()).layers[1][Target::v].size(), 64u * 64u);
}

TEST(HfConfig, MistralWithoutSlidingWindow) {
  ModelDir m([](Json& c) {
    c["model_type"] = "mistral";
    c["sliding_window"] = nullptr;
  });
  EXPECT_EQ(load_hf_model(m.path()).shape.hidden_size, 64);
}

struct BadConfig {
  const char* name;
  std::function<void(Json&)> edit;
  std::vector<std::string> needles;  // besides "config.json"
};

TEST(HfConfig, BadConfigsAreInputErrors) {
  const std::vector<BadConfig> rows = {
      {"unsupported arch",
       [](Json& c) { c["model_type"] = "gpt2"; },
       {"model_type", "unsupported architecture 'gpt2'"}},
      {"no model_type", [](Json& c) { c.erase("model_type"); }, {"model_type", "missing"}},
      {"mistral with sliding window",
       [](Json& c) {
         c["model_type"] = "mistral";
         c["sliding_window"] = 4096;
       },
       {"sliding_window", "not supported"}},
      {"rope_scaling (llama3)",
       [](Json& c) {
         c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
       },
       {"rope_scaling", "RoPE scaling is not supported"}},
      {"rope_scaling (linear, v4 'type')",
       [](Json& c) {
         c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
       },
       {"rope_scaling", "not supported"}},
      {"rope_parameters yarn",
       [](Json& c) { c["rope_parameters"]["rope_type"] = "yarn"; },
       {"rope_parameters", "rope_type 'yarn'"}},
      {"partial rotary",
       [](Json& c) { c["rope_parameters"]["partial_rotary_factor"] = 0.5; },
       {"rope_parameters", "partial_rotary_factor"}},
      {"attention_bias",
       [](Json& c) { c["attention_bias"] = true; },
       {"attention_bias", "not supported"}},
      {"mlp_bias", [](Json& c) { c["mlp_bias"] = true; }, {"mlp_bias", "not supported"}},
      {"hidden_act", [](Json& c) { c["hidden_act"] = "gelu"; }, {"hidden_act", "'gelu'"}},
      {"pretraining_tp", [](Json& c) { c["pretraining_tp"] = 2; }, {"pretraining_tp", "2"}},
      {"head_dim", [](Json& c) { c["head_dim"] = 32; }, {"head_dim", "32", "16"}},
      {"quantized",
       [](Json& c) {
         c["quantization_config"] = {{"quant_method", "gptq"}};
       },
       {"quantization_config"}},
      {"kv heads do not divide",
       [](Json& c) { c["num_key_value_heads"] = 3; },
       {"num_key_value_heads", "3"}},
      {"heads do not divide hidden",
       [](Json& c) { c["num_attention_heads"] = 5; },
       {"num_attention_heads", "5"}},
      {"hidden_size missing", [](Json& c) { c.erase("hidden_size"); }, {"hidden_size", "missing"}},
      {"hidden_size a string",
       [](Json& c) { c["hidden_size"] = "64"; },
       {"hidden_size", "expected an integer"}},
      {"hidden_size a float",
       [](Json& c) { c["hidden_size"] = 64.5; },
       {"hidden_size", "expected an integer"}},
      {"hidden_size zero", [](Json& c) { c["hidden_size"] = 0; }, {"hidden_size", "out of range"}},
      {"vocab_size huge",
       [](Json& c) { c["vocab_size"] = 1ll << 40; },
       {"vocab_size", "out of range"}},
      {"rms_norm_eps negative",
       [](Json& c) { c["rms_norm_eps"] = -1.0; },
       {"rms_norm_eps", "positive"}},
      {"tie_word_embeddings a string",
       [](Json& c) { c["tie_word_embeddings"] = "yes"; },
       {"tie_word_embeddings", "true or false"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    ModelDir m(r.edit);
    auto needles = r.needles;
    needles.push_back((m.path() / "config.json").string());
    expect_input_error([&] { read_hf_config(m.path() / "config.json"); }, needles);
    expect_input_error([&] { load_hf_model(m.path()); }, needles);
  }
}

TEST(HfConfig, UnreadableConfigs) {
  TempDir d;
  expect_input_error([&] { read_hf_config(d / "config.json"); }, {"config.json", "not found"});
  test::write_file(d / "config.json", "{\"model_type\": \"llama\",");
  expect_input_error([&] { read_hf_config(d / "config.json"); }, {"config.json", "not valid JSON"});
  test::write_file(d / "config.json",
                   "{\"a\":" + std::string(50000, '[') + std::string(50000, ']') + "}");
  expect_input_error([&] { read_hf_config(d / "config.json"); }, {"config.json", "nests deeper"});
  test::write_file(d / "config.json", "[]");
  expect_input_error([&] { read_hf_config(d / "config.json"); }, {"not a JSON object"});
  test::write_file(d / "config.json",
                   R"({"model_type":"llama","hidden_size":64,"hidden_size":32})");
  expect_input_error([&] { read_hf_config(d / "config.json"); },
                     {"config.json", "duplicate key 'hidden_size'"});
}

struct BadWeights {
  const char* name;
  std::function<void(std::vector<TensorToWrite>&)> edit;
  std::vector<std::string> needles;  // besides the folder
};

TEST(HfModel, BadWeightsAreInputErrors) {
  const std::vector<BadWeights> rows = {
      {"missing norm",
       [](auto& ts) { erase_tensor(ts, "model.norm.weight"); },
       {"model.safetensors", "tensor 'model.norm.weight'", "not found"}},
      {"missing layer tensor",
       [](auto& ts) { erase_tensor(ts, "model.layers.1.mlp.up_proj.weight"); },
       {"model.safetensors", "'model.layers.1.mlp.up_proj.weight'", "not found"}},
      {"missing lm_head (untied)",
       [](auto& ts) { erase_tensor(ts, "lm_head.weight"); },
       {"'lm_head.weight'", "not found"}},
      {"wrong shape",
       [](auto& ts) {
         auto& t = tensor(ts, "model.layers.0.self_attn.q_proj.weight");
         t.shape = {64, 63};
         t.values.resize(64 * 63);
       },
       {"model.safetensors", "'model.layers.0.self_attn.q_proj.weight'",
        "expected shape [64, 64], found [64, 63]"}},
      {"transposed k",
       [](auto& ts) {
         tensor(ts, "model.layers.1.self_attn.k_proj.weight").shape = {64, 32};
       },
       {"'model.layers.1.self_attn.k_proj.weight'", "expected shape [32, 64], found [64, 32]"}},
      {"wrong vocab",
       [](auto& ts) {
         auto& t = tensor(ts, "model.embed_tokens.weight");
         t.shape = {255, 64};
         t.values.resize(255 * 64);
       },
       {"'model.embed_tokens.weight'", "expected shape [256, 64], found [255, 64]"}},
      {"projection bias",
       [](auto& ts) {
         ts.push_back(
             {"model.layers.0.self_attn.q_proj.bias", {64}, std::vector<float>(64), Dtype::F32});
       },
       {"'model.layers.0.self_attn.q_proj.bias'", "biases are not supported"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    ModelDir m({}, r.edit);
    auto needles = r.needles;
    needles.push_back(m.path().string());
    expect_input_error([&] { load_hf_model(m.path()); }, needles);
  }
}

TEST(HfModel, MissingOrUnsupportedWeightFiles) {
  TempDir d;
  std::filesystem::copy_file(fixture_dir() / "model" / "config.json", d / "config.json");
  expect_input_error([&] { load_hf_model(d.path()); },
                     {d.path().string(), "no model.safetensors or model.safetensors.index.json"});
  test::write_file(d / "pytorch_model.bin", "not really");
  expect_input_error([&] { load_hf_model(d.path()); }, {"only PyTorch .bin", "safetensors"});
  expect_input_error([&] { load_hf_model(d / "nope"); }, {"config.json", "not found"});
  // An int64 tensor where floats are expected.
  TempDir e;
  std::filesystem::copy_file(fixture_dir() / "model" / "config.json", e / "config.json");
  auto ts = test::load_all(fixture_dir() / "model" / "model.safetensors");
  erase_tensor(ts, "model.norm.weight");
  std::string bytes = checkpoint::encode_safetensors(ts);
  // Append model.norm.weight as I64 [64] by hand: rewrite the header.
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header = bytes.substr(8, n);
  std::string data = bytes.substr(8 + n);
  while (!header.empty() && header.back() == ' ') header.pop_back();
  header.pop_back();  // '}'
  header +=
      fmt::format(R"(,"model.norm.weight":{{"dtype":"I64","shape":[64],"data_offsets":[{},{}]}}}})",
                  data.size(), data.size() + 512);
  data.append(512, '\0');
  test::write_file(e / "model.safetensors", test::raw_safetensors(header, data));
  expect_input_error([&] { load_hf_model(e.path()); },
                     {"model.safetensors", "'model.norm.weight'", "dtype I64 cannot be read"});
}

// The sharded fixture with its index edited.
struct ShardedDir {
  TempDir dir;
  explicit ShardedDir(const std::function<void(Json&)>& index) {
    for (const auto& e : std::filesystem::directory_iterator(fixture_dir() / "model-sharded"))
      std::filesystem::copy_file(e.path(), dir / e.path().filename().string());
    Json j = test::read_json(dir / "model.safetensors.index.json");
    index(j);
    test::write_json(dir / "model.safetensors.index.json", j);
  }
};

TEST(HfModel, BadShardIndexes) {
  struct Row {
    const char* name;
    std::function<void(Json&)> edit;
    std::vector<std::string> needles;
  };
  const std::vector<Row> rows = {
      {"tensor missing from weight_map",
       [](Json& j) { j["weight_map"].erase("model.norm.weight"); },
       {"model.safetensors.index.json", "'model.norm.weight'", "not found in weight_map"}},
      {"shard file missing",
       [](Json& j) { j["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors"; },
       {"model-00009-of-00009.safetensors", "cannot open"}},
      {"wrong shard",
       [](Json& j) { j["weight_map"]["lm_head.weight"] = "model-00001-of-00003.safetensors"; },
       {"model-00001-of-00003.safetensors", "'lm_head.weight'", "not found"}},
      {"path in shard name",
       [](Json& j) { j["weight_map"]["model.norm.weight"] = "../model/model.safetensors"; },
       {"model.safetensors.index.json", "weight_map", "is not a file name"}},
      {"no weight_map",
       [](Json& j) { j.erase("weight_map"); },
       {"model.safetensors.index.json", "weight_map", "missing"}},
      {"weight_map not an object",
       [](Json& j) { j["weight_map"] = Json::array(); },
       {"weight_map", "expected an object"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    ShardedDir s(r.edit);
    expect_input_error([&] { load_hf_model(s.dir.path()); }, r.needles);
  }
}

}  // namespace
}  // namespace lorasched
