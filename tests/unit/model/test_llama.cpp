// The model's equivalences: merged == unmerged, a mixed batch == each request alone,
// mixed-mode batches (one adapter merged, others unmerged) == unmerged, exact unmerge, and the
// fused switch == unmerge then merge.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include "core/adapters/synthetic.hpp"
#include "core/common/rng.hpp"
#include "core/model/llama.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"

namespace lorasched {
namespace {

constexpr int kBlock = 16;

struct Seq {
  const LoraAdapterWeights* adapter;
  std::vector<int32_t> tokens;  // prompt, then generated
  std::vector<int32_t> blocks;
  int prompt;
};

// Greedy decoding of all sequences together: one prefill step, then `steps` decodes.
// Returns the generated ids per sequence and the logits of every step per sequence.
std::vector<std::vector<int32_t>> decode(
    LlamaModel& m, std::vector<Seq> seqs, int steps,
    std::vector<std::vector<std::vector<float>>>* logits = nullptr) {
  const int V = m.shape().vocab_size;
  std::vector<std::vector<int32_t>> out(seqs.size());
  if (logits) logits->assign(seqs.size(), {});
  for (int s = 0; s <= steps; ++s) {
    std::vector<ForwardEntry> entries;
    for (auto& q : seqs) {
      const int ctx = static_cast<int>(q.tokens.size());
      const int start = s == 0 ? 0 : ctx - 1;
      entries.push_back({q.adapter,
                         std::span<const int32_t>(q.tokens).subspan(static_cast<size_t>(start)),
                         start, q.blocks});
    }
    std::vector<float> lg;
    m.forward(entries, lg);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const float* row = lg.data() + i * static_cast<size_t>(V);
      const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
      seqs[i].tokens.push_back(next);
      out[i].push_back(next);
      if (logits) (*logits)[i].emplace_back(row, row + V);
    }
  }
  return out;
}

class LlamaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shape_ = model_preset("tiny");
    weights_ = synthetic_model(shape_, 7);
    const int ranks[] = {8, 16, 64, 1};
    for (int i = 0; i < 4; ++i) {
      // scale 2 for every adapter (adapter 2 uses rsLoRA: alpha / sqrt(r)).
      const double alpha = i == 2 ? 2.0 * std::sqrt(double(ranks[i])) : 2.0 * ranks[i];
      adapters_.push_back(
          synthetic_adapter(shape_, ranks[i], alpha, i == 2, 100 + i, "a" + std::to_string(i)));
    }
  }
  Seq make_seq(const LoraAdapterWeights* a, int prompt, int first_block, uint64_t seed) {
    Seq q{a, {}, {}, prompt};
    Rng rng(seed);
    for (int i = 0; i < prompt; ++i)
      q.tokens.push_back(static_cast<int32_t>(rng.uniform_int(0, shape_.vocab_size - 1)));
    for (int b = 0; b < 8; ++b) q.blocks.push_back(first_block + b);
    return q;
  }
  static double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num = std::max(num, std::fabs(double(a[i]) - b[i]));
      den = std::max(den, std::fabs(double(b[i])));
    }
    return num / std::max(den, 1e-30);
  }
  ModelShape shape_;
  ModelWeights weights_;
  std::vector<LoraAdapterWeights> adapters_;
};

TEST_F(LlamaTest, AdaptersChangeTheOutput) {
  LlamaModel m(weights_, 64, kBlock);
  std::vector<std::vector<std::vector<float>>> base, lora;
  decode(m, {make_seq(nullptr, 20, 0, 1)}, 0, &base);
  decode(m, {make_seq(&adapters_[0], 20, 0, 1)}, 0, &lora);
  EXPECT_GT(max_rel_diff(lora[0][0], base[0][0]), 0.05) << "a synthetic adapter must matter";
}

TEST_F(LlamaTest, MergedEqualsUnmergedForEveryAdapter) {
  for (const auto& a : adapters_) {
    LlamaModel m(weights_, 64, kBlock);
    std::vector<std::vector<std::vector<float>>> unmerged, merged;
    const auto t_un = decode(m, {make_seq(&a, 37, 0, 3)}, 6, &unmerged);
    m.merge(a);
    const auto t_m = decode(m, {make_seq(&a, 37, 8, 3)}, 6, &merged);
    m.unmerge();
    EXPECT_EQ(t_un, t_m) << a.name;
    for (size_t s = 0; s < unmerged[0].size(); ++s)
      EXPECT_LT(max_rel_diff(merged[0][s], unmerged[0][s]), 1e-4) << a.name << " step " << s;
  }
}

TEST_F(LlamaTest, MixedBatchEqualsEachRequestAlone) {
  LlamaModel m(weights_, 128, kBlock);
  std::vector<Seq> seqs;
  const LoraAdapterWeights* which[] = {&adapters_[0], &adapters_[1], nullptr,
                                       &adapters_[2], &adapters_[0], &adapters_[3]};
  int prompts[] = {5, 33, 17, 1, 48, 12};
  for (int i = 0; i < 6; ++i) seqs.push_back(make_seq(which[i], prompts[i], i * 8, 50 + i));
  std::vector<std::vector<std::vector<float>>> together;
  const auto t_all = decode(m, seqs, 5, &together);
  for (int i = 0; i < 6; ++i) {
    LlamaModel alone(weights_, 128, kBlock);
    std::vector<std::vector<std::vector<float>>> solo;
    const auto t_one = decode(alone, {seqs[i]}, 5, &solo);
    EXPECT_EQ(t_all[i], t_one[0]) << "request " << i;
    for (size_t s = 0; s < solo[0].size(); ++s)
      EXPECT_LT(max_rel_diff(together[i][s], solo[0][s]), 1e-4) << "request " << i << " step " << s;
  }
}

TEST_F(LlamaTest, MixedModeBatchEqualsUnmerged) {
  // Adapter 1 merged; requests of adapters 0, 1, 3 and the base model share the batch.
  std::vector<Seq> seqs = {make_seq(&adapters_[0], 9, 0, 11), make_seq(&adapters_[1], 21, 8, 12),
                           make_seq(nullptr, 14, 16, 13), make_seq(&adapters_[3], 30, 24, 14)};
  LlamaModel ref(weights_, 64, kBlock);
  std::vector<std::vector<std::vector<float>>> want, got;
  const auto t_ref = decode(ref, seqs, 5, &want);
  LlamaModel mixed(weights_, 64, kBlock);
  mixed.merge(adapters_[1]);
  const auto t_mixed = decode(mixed, seqs, 5, &got);
  EXPECT_EQ(t_ref, t_mixed);
  for (size_t i = 0; i < seqs.size(); ++i)
    for (size_t s = 0; s < want[i].size(); ++s)
      EXPECT_LT(max_rel_diff(got[i][s], want[i][s]), 1e-4) << "request " << i << " step " << s;
}

TEST_F(LlamaTest, UnmergeRestoresEveryWeightBitExactly) {
  LlamaModel m(weights_, 8, kBlock);
  for (int round = 0; round < 3; ++round)
    for (const auto& a : adapters_) {
      m.merge(a);
      m.unmerge();
    }
  for (size_t l = 0; l < weights_.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const auto& want = weights_.layers[l].proj[t];
      const auto& got = m.weights().layers[l].proj[t];
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
          << "layer " << l << " " << kTargetNames[t];
    }
}

// A fused switch leaves every weight bit-identical to unmerge() then merge(), also when the two
// adapters adapt different modules (a module only the old adapter has is unmerged, one only the
// new adapter has is merged), so the logits are identical too; after a chain of switches the
// unmerge restores the base bits.
TEST_F(LlamaTest, SwitchEqualsUnmergeThenMergeAndRestoresTheBase) {
  std::vector<LoraAdapterWeights> adapters = adapters_;
  LoraAdapterWeights partial = adapters_[1];  // no q, no down; another adapter without o
  partial.name = "partial";
  for (auto& layer : partial.layers) {
    layer[static_cast<int>(Target::q)] = LoraModule{};
    layer[static_cast<int>(Target::down)] = LoraModule{};
  }
  adapters.push_back(partial);
  LoraAdapterWeights no_o = adapters_[2];
  no_o.name = "no_o";
  for (auto& layer : no_o.layers) layer[static_cast<int>(Target::o)] = LoraModule{};
  adapters.push_back(no_o);
  const size_t chain[] = {4, 0, 5, 1, 4, 3, 5, 2, 0};
  LlamaModel fused(weights_, 32, kBlock), plain(weights_, 32, kBlock);
  fused.merge(adapters[chain[0]]);
  plain.merge(adapters[chain[0]]);
  for (size_t i = 1; i < std::size(chain); ++i) {
    const LoraAdapterWeights& to = adapters[chain[i]];
    fused.switch_to(to);
    plain.unmerge();
    plain.merge(to);
    ASSERT_EQ(fused.merged(), &to);
    for (size_t l = 0; l < weights_.layers.size(); ++l)
      for (int t = 0; t < kNumTargets; ++t) {
        const auto& want = plain.weights().layers[l].proj[t];
        const auto& got = fused.weights().layers[l].proj[t];
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << "switch " << i << " layer " << l << " " << kTargetNames[t];
      }
    std::vector<std::vector<std::vector<float>>> a, b;
    decode(fused, {make_seq(&to, 12, 0, 40 + i)}, 1, &a);
    decode(plain, {make_seq(&to, 12, 8, 40 + i)}, 1, &b);
    ASSERT_EQ(a, b) << "switch " << i;
  }
  fused.unmerge();
  for (size_t l = 0; l < weights_.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const auto& want = weights_.layers[l].proj[t];
      const auto& got = fused.weights().layers[l].proj[t];
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
          << "layer " << l << " " << kTargetNames[t];
    }
  LlamaModel clean(weights_, 8, kBlock);
  EXPECT_THROW(clean.switch_to(adapters_[0]), std::exception);
}

TEST_F(LlamaTest, MergeWhileMergedIsRefused) {
  LlamaModel m(weights_, 8, kBlock);
  m.merge(adapters_[0]);
  EXPECT_THROW(m.merge(adapters_[1]), std::exception);
  m.unmerge();
  EXPECT_THROW(m.unmerge(), std::exception);
}

TEST_F(LlamaTest, SwapOutAndInRestoresTheCache) {
  LlamaModel m(weights_, 32, kBlock);
  auto seq = make_seq(&adapters_[0], 40, 0, 21);
  std::vector<std::vector<std::vector<float>>> ref;
  const auto want = decode(m, {seq}, 3, &ref);
  // Same prefill, then move the KV blocks elsewhere and continue decoding from there.
  LlamaModel m2(weights_, 32, kBlock);
  std::vector<ForwardEntry> e = {{seq.adapter, seq.tokens, 0, seq.blocks}};
  std::vector<float> lg;
  m2.forward(e, lg);
  const int V = shape_.vocab_size;
  int32_t next = static_cast<int32_t>(std::max_element(lg.begin(), lg.begin() + V) - lg.begin());
  std::vector<int32_t> used(seq.blocks.begin(), seq.blocks.begin() + 3);  // 40 tokens: 3 blocks
  std::vector<float> host;
  m2.copy_blocks_out(used, host);
  std::vector<int32_t> moved = {20, 9, 31, 12, 13, 14, 15, 16};
  m2.copy_blocks_in(std::span<const int32_t>(moved).first(3), host);
  std::vector<int32_t> got = {next};
  auto tokens = seq.tokens;
  for (int s = 0; s < 3; ++s) {
    tokens.push_back(next);
    std::vector<ForwardEntry> d = {{seq.adapter, std::span<const int32_t>(tokens).last(1),
                                    static_cast<int32_t>(tokens.size()) - 1, moved}};
    m2.forward(d, lg);
    next = static_cast<int32_t>(std::max_element(lg.begin(), lg.begin() + V) - lg.begin());
    got.push_back(next);
  }
  EXPECT_EQ(want[0], got);
}

}  // namespace
}  // namespace lorasched
