// The executor interface's KV export and import (migration with migration_kv = "transfer"):
// a request decoded on one cpu executor, its KV cache moved into other blocks of a second
// executor (another replica), continues there with the same tokens and logits as a request
// that never moved; the cost model moves only the block count. (The cuda executor's test is
// in tests/gpu/test_cuda_executor.cpp.)
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/adapters/synthetic.hpp"
#include "core/common/rng.hpp"
#include "core/exec/costmodel.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/exec/cpu_executor.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"

namespace lorasched {
namespace {

constexpr int64_t kBlocks = 32;
constexpr int32_t kBlockSize = 16;

struct Seq {
  std::vector<int32_t> tokens, blocks;
  int32_t context = 0;
};

// Greedy decoding steps of one request on `ex`; appends tokens and logits.
void decode(CpuExecutor& ex, Seq& s, int steps, std::vector<int32_t>& out,
            std::vector<std::vector<float>>& logits) {
  for (int i = 0; i < steps; ++i) {
    ExecBatch b;
    ExecEntry e;
    e.request = 1;
    e.adapter = 0;
    e.prefill = s.context == 0;
    e.new_tokens = static_cast<int32_t>(s.tokens.size()) - s.context;
    e.context_tokens = static_cast<int32_t>(s.tokens.size());
    e.block_table = s.blocks;
    e.tokens = std::span<const int32_t>(s.tokens).subspan(static_cast<size_t>(s.context));
    b.entries.push_back(e);
    const IterationResult r = ex.run(b);
    ASSERT_EQ(r.next_tokens.size(), 1u);
    s.context = static_cast<int32_t>(s.tokens.size());
    s.tokens.push_back(r.next_tokens[0]);
    out.push_back(r.next_tokens[0]);
    logits.push_back(ex.last_logits());
  }
}

TEST(KvTransfer, CpuExecutorsMoveTheCacheBetweenReplicas) {
  const ModelShape shape = model_preset("tiny");
  const ModelWeights weights = synthetic_model(shape, 99);
  auto adapters = std::make_shared<std::vector<LoraAdapterWeights>>();
  adapters->push_back(synthetic_adapter(shape, 8, 16.0, false, 5, "a0"));
  CpuExecutor source(weights, adapters, kBlocks, kBlockSize);
  CpuExecutor destination(weights, adapters, kBlocks, kBlockSize);
  source.load_adapter(0);
  destination.load_adapter(0);
  Seq base;
  Rng rng(3, 1);
  for (int i = 0; i < 37; ++i)
    base.tokens.push_back(static_cast<int32_t>(rng.uniform_int(0, shape.vocab_size - 1)));
  base.blocks = {3, 9, 4, 20};

  std::vector<int32_t> tokens_a, tokens_b;
  std::vector<std::vector<float>> logits_a, logits_b;
  Seq a = base;
  decode(source, a, 8, tokens_a, logits_a);

  Seq b = base;
  decode(source, b, 3, tokens_b, logits_b);
  const std::vector<int32_t> used(b.blocks.begin(), b.blocks.begin() + 3);  // 39 tokens
  const KvData kv = source.export_kv(used);
  EXPECT_EQ(kv.blocks, 3);
  EXPECT_EQ(static_cast<int64_t>(kv.bytes.size()),
            3 * kBlockSize * static_cast<int64_t>(shape.kv_bytes_per_token(4)));
  b.blocks = {30, 1, 17, 8};  // other blocks, in another executor
  destination.import_kv(std::span<const int32_t>(b.blocks.data(), 3), kv);
  decode(destination, b, 5, tokens_b, logits_b);

  EXPECT_EQ(tokens_a, tokens_b);
  ASSERT_EQ(logits_a.size(), logits_b.size());
  for (size_t s = 0; s < logits_a.size(); ++s) EXPECT_EQ(logits_a[s], logits_b[s]) << "step " << s;
  EXPECT_THROW(destination.import_kv(std::span<const int32_t>(b.blocks.data(), 2), kv),
               std::exception);
}

TEST(KvTransfer, CostModelMovesOnlyTheBlockCount) {
  std::shared_ptr<const CostModel> model =
      make_cost_model("llama2-7b@a100-80gb", model_preset("llama2-7b"));
  CostModelExecutor ex(model, std::vector<AdapterInfo>{});
  const std::vector<int32_t> blocks{1, 2, 3};
  const KvData kv = ex.export_kv(blocks);
  EXPECT_EQ(kv.blocks, 3);
  EXPECT_TRUE(kv.bytes.empty());
  ex.import_kv(blocks, kv);
}

}  // namespace
}  // namespace lorasched
