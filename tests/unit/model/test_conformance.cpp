// Conformance with HF transformers + PEFT: on the fixture model and adapters
// (tests/fixtures/hf-tiny, made by scripts/make-fixtures.py), our greedy tokens equal HF's
// exactly and every step's logits are within 1e-4, merged and unmerged; a mixed batch of
// all adapters gives every prompt what it gets alone.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/peft_adapter.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/model/generate.hpp"

namespace lorasched {
namespace {

const std::filesystem::path kDir =
    std::filesystem::path(LORASCHED_SOURCE_DIR) / "tests/fixtures/hf-tiny";

class Conformance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::ifstream f(kDir / "expected.json");
    expected_ = new nlohmann::json(nlohmann::json::parse(f));
    weights_ = new ModelWeights(load_hf_model(kDir / "model"));
    adapters_ = new std::map<std::string, LoraAdapterWeights>();
    for (const auto& [name, a] : (*expected_)["adapters"].items())
      adapters_->emplace(name,
                         load_peft_adapter(kDir / a["dir"].get<std::string>(), weights_->shape));
    logits_ = new checkpoint::SafetensorsFile(
        checkpoint::SafetensorsFile::open(kDir / "logits.safetensors"));
  }
  static void TearDownTestSuite() {
    delete expected_;
    delete weights_;
    delete adapters_;
    delete logits_;
  }

  static std::vector<GenerateRequest> requests(const LoraAdapterWeights* a) {
    std::vector<GenerateRequest> rs;
    for (const auto& p : (*expected_)["prompts"]) rs.push_back({p.get<std::vector<int32_t>>(), a});
    return rs;
  }

  // Checks tokens and logits of `got` against an expected block ("generated", "logits").
  static void check(const GenerateResult& got, const nlohmann::json& want,
                    const std::string& what) {
    const auto& gen = want["generated"];
    const auto& names = want["logits"];
    ASSERT_EQ(got.tokens.size(), gen.size()) << what;
    for (size_t i = 0; i < gen.size(); ++i) {
      EXPECT_EQ(got.tokens[i], gen[i].get<std::vector<int32_t>>()) << what << " prompt " << i;
      ASSERT_EQ(got.logits[i].size(), gen[i].size()) << what << " prompt " << i;
      const auto* info = logits_->find(names[i].get<std::string>());
      ASSERT_NE(info, nullptr) << names[i];
      const auto ref = logits_->read_f32(*info);
      const size_t vocab = got.logits[i][0].size();
      double worst = 0;
      for (size_t s = 0; s < got.logits[i].size(); ++s)
        for (size_t v = 0; v < vocab; ++v)
          worst = std::max(worst, std::fabs(double(got.logits[i][s][v]) - ref[s * vocab + v]));
      EXPECT_LT(worst, 1e-4) << what << " prompt " << i << ": logits differ by " << worst;
    }
  }

  static nlohmann::json* expected_;
  static ModelWeights* weights_;
  static std::map<std::string, LoraAdapterWeights>* adapters_;
  static checkpoint::SafetensorsFile* logits_;
};

nlohmann::json* Conformance::expected_ = nullptr;
ModelWeights* Conformance::weights_ = nullptr;
std::map<std::string, LoraAdapterWeights>* Conformance::adapters_ = nullptr;
checkpoint::SafetensorsFile* Conformance::logits_ = nullptr;

TEST_F(Conformance, BaseModelMatchesHf) {
  const int n = (*expected_)["max_new_tokens"].get<int>();
  const auto rs = requests(nullptr);
  check(greedy_generate(*weights_, rs, n, false, true), (*expected_)["base"], "base");
}

TEST_F(Conformance, EveryAdapterMatchesPeftUnmergedAndMerged) {
  const int n = (*expected_)["max_new_tokens"].get<int>();
  for (const auto& [name, a] : *adapters_) {
    const auto rs = requests(&a);
    const auto& want = (*expected_)["adapters"][name];
    check(greedy_generate(*weights_, rs, n, false, true), want["unmerged"], name + " unmerged");
    check(greedy_generate(*weights_, rs, n, true, true), want["merged"], name + " merged");
  }
}

TEST_F(Conformance, ShardedCheckpointGivesTheSameTokens) {
  const ModelWeights sharded = load_hf_model(kDir / "model-sharded");
  const int n = (*expected_)["max_new_tokens"].get<int>();
  check(greedy_generate(sharded, requests(nullptr), n, false, true), (*expected_)["base"],
        "sharded");
}

// HF's default generate() stops a sequence at its first end-of-sequence id (ids from
// generation_config.json, else config.json): so does greedy_generate given those ids, unmerged
// (one batch, from which finished requests leave) and merged; without them it runs on.
TEST_F(Conformance, StopsAtEndOfSequenceLikeHf) {
  const int n = (*expected_)["max_new_tokens"].get<int>();
  for (const auto& [name, want] : (*expected_)["eos"].items()) {
    const ModelWeights w = load_hf_model(kDir / want["dir"].get<std::string>());
    const std::vector<int32_t> eos = read_eos_token_ids(kDir / want["dir"].get<std::string>());
    ASSERT_FALSE(eos.empty()) << name;
    const auto rs = requests(nullptr);
    check(greedy_generate(w, rs, n, false, true, eos), want, name + " unmerged");
    check(greedy_generate(w, rs, n, true, true, eos), want, name + " merged");
    const auto ignored = greedy_generate(w, rs, n, false, false);
    for (size_t i = 0; i < rs.size(); ++i)
      EXPECT_EQ(ignored.tokens[i],
                (*expected_)["base"]["generated"][i].get<std::vector<int32_t>>());
  }
}

TEST_F(Conformance, MixedBatchOfAllAdaptersEqualsHf) {
  // Every (prompt, adapter) pair and the base model in one unmerged batch.
  const int n = (*expected_)["max_new_tokens"].get<int>();
  std::vector<GenerateRequest> rs;
  std::vector<std::pair<std::string, size_t>> who;
  const auto prompts = (*expected_)["prompts"];
  for (size_t p = 0; p < prompts.size(); ++p) {
    rs.push_back({prompts[p].get<std::vector<int32_t>>(), nullptr});
    who.emplace_back("", p);
    for (const auto& [name, a] : *adapters_) {
      rs.push_back({prompts[p].get<std::vector<int32_t>>(), &a});
      who.emplace_back(name, p);
    }
  }
  const auto got = greedy_generate(*weights_, rs, n, false, false);
  for (size_t i = 0; i < rs.size(); ++i) {
    const auto& [name, p] = who[i];
    const auto& want = name.empty() ? (*expected_)["base"]["generated"][p]
                                    : (*expected_)["adapters"][name]["unmerged"]["generated"][p];
    EXPECT_EQ(got.tokens[i], want.get<std::vector<int32_t>>())
        << (name.empty() ? "base" : name) << " prompt " << p;
  }
}

}  // namespace
}  // namespace lorasched
