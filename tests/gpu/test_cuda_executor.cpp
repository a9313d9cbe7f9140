// The cuda executor against the cpu executor (the fp32 reference) on the same batches: a tiny
// synthetic model, adapters of mixed ranks (one with modules missing), prefill and decode in
// unmerged, merged and mixed mode, weight switches between adapters; plus the bit-exact
// restore of the 16-bit weights after merge / unmerge and a swap-out / swap-in round trip.
// Tests needing a device skip without one; the CudaExecutorHost tests run everywhere.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "core/adapters/synthetic.hpp"
#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/exec/cpu_executor.hpp"
#include "core/exec/cuda_executor.hpp"
#include "core/exec/cuda_factory.hpp"
#include "core/model/llama.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"
#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::kernels::cuda {
void PrintTo(DType dt, std::ostream* os) { *os << dtype_name(dt); }
}  // namespace lorasched::kernels::cuda

namespace lorasched {
namespace {

namespace cu = kernels::cuda;
using api::AdapterId;
using api::Mode;

constexpr int64_t kBlocks = 96;
constexpr int32_t kBlockSize = 16;
constexpr int kBlocksPerRequest = 6;  // 96 tokens of context at most

// ---- host-only -------------------------------------------------------------------------------

TEST(CudaExecutorHost, FactoryWithoutDeviceSaysWhy) {
  const CudaDeviceInfo info = cuda_device_info();
  if (info.available) {
    EXPECT_GT(info.total_bytes, 0);
    EXPECT_FALSE(info.name.empty());
    GTEST_SKIP() << "a CUDA device is present (" << info.name << "): nothing to refuse";
  }
  EXPECT_FALSE(info.reason.empty());
  const ModelShape shape = model_preset("tiny");
  const ModelWeights w = synthetic_model(shape, 1);
  auto host = std::make_shared<const std::vector<LoraAdapterWeights>>();
  try {
    (void)make_cuda_executor(w, host, 8, kBlockSize);
    FAIL() << "make_cuda_executor without a device did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::runtime);
    EXPECT_EQ(std::string(e.what()).rfind("executor cuda: no CUDA device (", 0), 0u) << e.what();
  }
  EXPECT_THROW(require_cuda_device(), Error);
}

TEST(CudaExecutorHost, FixedBytesCoverWeightsAndResiduals) {
  const ModelShape s = model_preset("llama2-7b");
  const double weights = static_cast<double>(s.num_parameters()) * kCudaElementBytes;
  const double fixed = cuda_executor_fixed_bytes(s, 4096, 256);
  EXPECT_GT(fixed, weights * 1.4);  // + 1 byte per projection weight
  EXPECT_LT(fixed, weights * 1.8);
}

// ---- against the cpu executor ----------------------------------------------------------------

struct Request {
  api::RequestId id = 0;
  AdapterId adapter = 0;
  std::vector<int32_t> tokens;  // prompt + generated
  std::vector<int32_t> blocks;
  int32_t context = 0;  // tokens in the KV cache
};

// Fed identically to both executors: each step's new tokens are the cpu executor's choice.
struct Stats {
  int compared = 0;
  int same_token = 0;
  double max_err = 0;  // max |gpu - cpu| / max(1, max |cpu|) over rows
};

class CudaExecutorVsCpu : public ::testing::TestWithParam<cu::DType> {
 protected:
  void SetUp() override {
    std::string why;
    if (!cu::cuda_device_available(&why))
      GTEST_SKIP() << "no CUDA device, cuda executor test skipped (" << why << ")";
    shape_ = model_preset("tiny");
    weights_ = synthetic_model(shape_, 20240611);
    auto adapters = std::make_shared<std::vector<LoraAdapterWeights>>();
    // Scale 2 everywhere (adapter 2 with rsLoRA: alpha / sqrt(rank)), so each adapter moves
    // the outputs well away from the base model's without swamping them.
    const int ranks[] = {8, 16, 64, 32};
    for (int i = 0; i < 4; ++i) {
      const bool rs = i == 2;
      const double alpha = rs ? 2.0 * std::sqrt(double(ranks[i])) : 2.0 * ranks[i];
      adapters->push_back(synthetic_adapter(shape_, ranks[i], alpha, rs,
                                            1000 + static_cast<uint64_t>(i),
                                            "adapter-" + std::to_string(i)));
    }
    // Adapter 3 leaves k_proj and down_proj of every layer alone (rank-0 slots).
    for (auto& layer : (*adapters)[3].layers)
      for (Target t : {Target::k, Target::down}) layer[static_cast<int>(t)] = LoraModule{};
    adapters_ = adapters;
    cpu_ = std::make_unique<CpuExecutor>(weights_, adapters_, kBlocks, kBlockSize);
    gpu_ = std::make_unique<CudaExecutor>(weights_, adapters_, kBlocks, kBlockSize,
                                          CudaExecutor::Options{GetParam()});
    for (AdapterId a = 0; a < 4; ++a) {
      cpu_->load_adapter(a);
      const CostStep s = gpu_->load_adapter(a);
      EXPECT_EQ(s.kind, EventKind::adapter_load);
      EXPECT_GT(s.bytes, 0);
      EXPECT_GE(s.seconds, 0);
    }
  }

  double tolerance() const { return GetParam() == cu::DType::kF16 ? 1e-2 : 1e-1; }

  Request make_request(api::RequestId id, AdapterId adapter, int prompt) {
    Request r;
    r.id = id;
    r.adapter = adapter;
    Rng rng(77, static_cast<uint64_t>(id));
    for (int i = 0; i < prompt; ++i)
      r.tokens.push_back(static_cast<int32_t>(rng.uniform_int(0, shape_.vocab_size - 1)));
    // Blocks scattered over the pool (request id spreads them, descending order).
    for (int b = 0; b < kBlocksPerRequest; ++b)
      r.blocks.push_back(
          static_cast<int32_t>((id * 7 + (kBlocksPerRequest - 1 - b) * 13) % kBlocks));
    return r;
  }

  // Runs one batch on both; appends the cpu executor's tokens; compares.
  void step(std::vector<Request*> reqs, Mode mode, AdapterId merged, Stats& st) {
    ExecBatch b;
    b.mode = mode;
    b.merged_adapter = merged;
    for (Request* r : reqs) {
      ExecEntry e;
      e.request = r->id;
      e.adapter = r->adapter;
      e.prefill = r->context == 0;
      const int32_t total = static_cast<int32_t>(r->tokens.size());
      e.new_tokens = total - r->context;
      e.context_tokens = total;
      e.block_table = r->blocks;
      e.tokens = std::span<const int32_t>(r->tokens).subspan(static_cast<size_t>(r->context));
      b.entries.push_back(e);
    }
    const IterationResult rc = cpu_->run(b);
    const IterationResult rg = gpu_->run(b);
    ASSERT_EQ(rc.next_tokens.size(), reqs.size());
    ASSERT_EQ(rg.next_tokens.size(), reqs.size());
    EXPECT_GT(rg.seconds, 0);
    const std::vector<float>& lc = cpu_->last_logits();
    const std::vector<float> lg = gpu_->last_logits();
    const size_t V = static_cast<size_t>(shape_.vocab_size);
    ASSERT_EQ(lc.size(), reqs.size() * V);
    ASSERT_EQ(lg.size(), reqs.size() * V);
    for (size_t i = 0; i < reqs.size(); ++i) {
      const float* c = lc.data() + i * V;
      const float* g = lg.data() + i * V;
      double scale = 1, err = 0;
      for (size_t j = 0; j < V; ++j) scale = std::max(scale, std::fabs(double(c[j])));
      for (size_t j = 0; j < V; ++j) err = std::max(err, std::fabs(double(g[j]) - double(c[j])));
      st.max_err = std::max(st.max_err, err / scale);
      EXPECT_LE(err / scale, tolerance())
          << "request " << reqs[i]->id << " (adapter " << reqs[i]->adapter << ", mode "
          << api::to_string(mode) << "): logits differ by " << err << " of " << scale;
      ++st.compared;
      const int32_t tc = rc.next_tokens[i], tg = rg.next_tokens[i];
      if (tc == tg) {
        ++st.same_token;
      } else {
        // A different pick must be a near-tie on the reference's logits.
        EXPECT_GE(double(c[tg]), double(c[tc]) - 2 * tolerance() * scale)
            << "request " << reqs[i]->id << ": gpu picked " << tg << " (cpu logit " << c[tg]
            << "), cpu " << tc << " (" << c[tc] << ")";
      }
      reqs[i]->context = static_cast<int32_t>(reqs[i]->tokens.size());
      reqs[i]->tokens.push_back(tc);
    }
  }

  void switch_both(AdapterId from, AdapterId to,
                   SwitchMethod method = SwitchMethod::unmerge_merge) {
    const auto sc = cpu_->switch_weights(from, to, method);
    const auto sg = gpu_->switch_weights(from, to, method);
    ASSERT_EQ(sc.size(), sg.size());
    for (size_t i = 0; i < sg.size(); ++i) {
      EXPECT_EQ(sg[i].kind, sc[i].kind);
      EXPECT_EQ(sg[i].adapter, sc[i].adapter);
      EXPECT_GT(sg[i].bytes, 0);
      EXPECT_GE(sg[i].seconds, 0);
    }
    EXPECT_EQ(gpu_->merged(), to);
  }

  // The device's 16-bit weights equal the uploaded ones (the fp32 weights rounded).
  void expect_base_weights(const char* when) {
    for (int l = 0; l < shape_.num_layers; ++l)
      for (int t = 0; t < kNumTargets; ++t) {
        const std::vector<float>& w = weights_.layers[static_cast<size_t>(l)].proj[t];
        const std::vector<uint16_t> bits = gpu_->projection_bits(l, Target(t));
        ASSERT_EQ(bits.size(), w.size());
        size_t bad = 0;
        for (size_t i = 0; i < w.size(); ++i)
          bad += bits[i] != cu::float_to_bits16(GetParam(), w[i]) ? 1 : 0;
        EXPECT_EQ(bad, 0u) << when << ": layer " << l << " " << kTargetNames[t] << ": " << bad
                           << " of " << w.size() << " weights differ from the uploaded bits";
      }
  }

  ModelShape shape_;
  ModelWeights weights_;
  std::shared_ptr<const std::vector<LoraAdapterWeights>> adapters_;
  std::unique_ptr<CpuExecutor> cpu_;
  std::unique_ptr<CudaExecutor> gpu_;
};

TEST_P(CudaExecutorVsCpu, UnmergedMergedMixedMatchTheCpuExecutor) {
  Stats st;
  Request r0 = make_request(0, 0, 5), r1 = make_request(1, 1, 17), r2 = make_request(2, 2, 33),
          r3 = make_request(3, 0, 8), r4 = make_request(4, 3, 21);
  expect_base_weights("after upload");

  // Unmerged: a prefill batch of three adapters (two requests share adapter 0), then decode.
  step({&r0, &r1, &r2, &r3}, Mode::unmerged, api::kNoAdapter, st);
  for (int i = 0; i < 5; ++i) step({&r2, &r0, &r1, &r3}, Mode::unmerged, api::kNoAdapter, st);

  // Merged on adapter 0: its requests only, no LoRA term.
  switch_both(api::kNoAdapter, 0);
  {
    size_t changed = 0;
    const std::vector<uint16_t> bits = gpu_->projection_bits(0, Target::q);
    const std::vector<float>& w = weights_.layers[0][Target::q];
    for (size_t i = 0; i < w.size(); ++i)
      changed += bits[i] != cu::float_to_bits16(GetParam(), w[i]);
    EXPECT_GT(changed, w.size() / 2) << "merge left the weights as they were";
  }
  for (int i = 0; i < 3; ++i) step({&r0, &r3}, Mode::merged, 0, st);

  // Mixed on adapter 0: the other adapters' requests subtract its term; a prefill of the
  // adapter with missing modules joins the decodes.
  step({&r1, &r0, &r4, &r2, &r3}, Mode::mixed, 0, st);
  for (int i = 0; i < 3; ++i) step({&r4, &r1, &r0, &r2, &r3}, Mode::mixed, 0, st);

  // Another adapter merged (unmerge + merge), mixed again; then a fused switch to the adapter
  // with modules missing (those modules are only unmerged) and back.
  switch_both(0, 1);
  for (int i = 0; i < 3; ++i) step({&r0, &r1, &r2, &r3, &r4}, Mode::mixed, 1, st);
  switch_both(1, 3, SwitchMethod::fused);
  for (int i = 0; i < 2; ++i) step({&r0, &r1, &r2, &r3, &r4}, Mode::mixed, 3, st);
  switch_both(3, 1, SwitchMethod::fused);
  step({&r4, &r2, &r1}, Mode::mixed, 1, st);

  // Back to unmerged: the weights are the uploaded bits again.
  switch_both(1, api::kNoAdapter);
  expect_base_weights("after merge 0, unmerge 0, merge 1, unmerge 1");
  for (int i = 0; i < 2; ++i) step({&r4, &r3, &r2, &r1, &r0}, Mode::unmerged, api::kNoAdapter, st);

  std::cout << "[ cuda vs cpu ] " << cu::dtype_name(GetParam()) << ": " << st.same_token << " of "
            << st.compared << " greedy tokens equal, max logit error " << st.max_err
            << " (relative to max(1, max |logit|))\n";
  RecordProperty("same_tokens", st.same_token);
  RecordProperty("compared", st.compared);
  EXPECT_GE(st.same_token, st.compared * 8 / 10) << "greedy tokens differ too often";
}

TEST_P(CudaExecutorVsCpu, MergeUnmergeRestoresTheWeightsBitExactly) {
  expect_base_weights("after upload");
  for (AdapterId a : {2, 3, 0, 1}) {
    switch_both(api::kNoAdapter, a);
    switch_both(a, api::kNoAdapter);
    expect_base_weights(("after merge / unmerge of adapter " + std::to_string(a)).c_str());
  }
  // Straight from one adapter to another, ten times.
  AdapterId from = api::kNoAdapter;
  for (int i = 0; i < 10; ++i) {
    const AdapterId to = static_cast<AdapterId>(i % 4);
    if (to == from) continue;
    switch_both(from, to);
    from = to;
  }
  switch_both(from, api::kNoAdapter);
  expect_base_weights("after ten switches");
  // The merged adapter stays resident until it is unmerged.
  switch_both(api::kNoAdapter, 2);
  EXPECT_THROW(gpu_->evict_adapter(2), Error);
  switch_both(2, api::kNoAdapter);
  gpu_->evict_adapter(2);
  EXPECT_FALSE(gpu_->resident(2));
  expect_base_weights("after merge / unmerge of adapter 2 and its eviction");
}

// The fused switch against unmerge then merge, on a second cuda executor: after every switch of
// a chain (adapters 3 and 4 adapt different modules) the 16-bit weights are bit-identical, and
// the final unmerge restores the uploaded bits.
TEST_P(CudaExecutorVsCpu, FusedSwitchEqualsUnmergeThenMerge) {
  CudaExecutor plain(weights_, adapters_, kBlocks, kBlockSize, CudaExecutor::Options{GetParam()});
  for (AdapterId a = 0; a < 4; ++a) plain.load_adapter(a);
  const AdapterId chain[] = {2, 3, 0, 3, 1, 2, 0};
  AdapterId from = api::kNoAdapter;
  for (AdapterId to : chain) {
    const auto fused = gpu_->switch_weights(from, to, SwitchMethod::fused);
    (void)plain.switch_weights(from, to, SwitchMethod::unmerge_merge);
    if (from != api::kNoAdapter) {
      ASSERT_EQ(fused.size(), 1u);
      EXPECT_EQ(fused[0].kind, EventKind::adapter_switch);
      EXPECT_EQ(fused[0].adapter, to);
      EXPECT_EQ(fused[0].from, from);
      EXPECT_GT(fused[0].seconds, 0);
    }
    for (int l = 0; l < shape_.num_layers; ++l)
      for (int t = 0; t < kNumTargets; ++t)
        ASSERT_TRUE(gpu_->projection_bits(l, Target(t)) == plain.projection_bits(l, Target(t)))
            << "after the switch to adapter " << to << ": layer " << l << " " << kTargetNames[t];
    from = to;
  }
  gpu_->switch_weights(from, api::kNoAdapter, SwitchMethod::fused);
  expect_base_weights("after a chain of fused switches");
}

// Each adapter moves the reference logits by far more than the tolerance the cuda executor is
// held to, so the comparisons above would catch a LoRA term that is missing or wrong.
TEST_P(CudaExecutorVsCpu, AdaptersMoveTheLogitsBeyondTheTolerance) {
  LlamaModel base(weights_, kBlocks, kBlockSize);
  for (AdapterId a = 0; a < 4; ++a) {
    Request r = make_request(30 + a, a, 24);
    std::vector<float> base_logits;
    const std::vector<ForwardEntry> entries = {{nullptr, r.tokens, 0, r.blocks}};
    base.forward(entries, base_logits);
    ExecBatch b;
    ExecEntry e;
    e.request = r.id;
    e.adapter = a;
    e.prefill = true;
    e.new_tokens = static_cast<int32_t>(r.tokens.size());
    e.context_tokens = e.new_tokens;
    e.block_table = r.blocks;
    e.tokens = r.tokens;
    b.entries.push_back(e);
    (void)cpu_->run(b);
    const std::vector<float>& with = cpu_->last_logits();
    ASSERT_EQ(with.size(), base_logits.size());
    double scale = 1, moved = 0;
    for (size_t j = 0; j < with.size(); ++j) {
      scale = std::max(scale, std::fabs(double(with[j])));
      moved = std::max(moved, std::fabs(double(with[j]) - double(base_logits[j])));
    }
    EXPECT_GT(moved / scale, 5 * tolerance())
        << "adapter " << a << " moves the logits by " << moved << " of " << scale
        << ": too little for the tolerance to tell a missing LoRA term";
  }
}

TEST_P(CudaExecutorVsCpu, SwapOutInKeepsTheContinuation) {
  // Run 1: prefill, then 8 decode steps. Run 2: the same prefill and first step, swap out,
  // another request overwrites the blocks, swap in to other blocks, the remaining steps. The
  // kernels are deterministic, so the continuation is the same tokens and logits.
  auto run_greedy = [&](Request& r, int steps, std::vector<int32_t>& out,
                        std::vector<std::vector<float>>& logits) {
    for (int i = 0; i < steps; ++i) {
      ExecBatch b;
      ExecEntry e;
      e.request = r.id;
      e.adapter = r.adapter;
      e.prefill = r.context == 0;
      e.new_tokens = static_cast<int32_t>(r.tokens.size()) - r.context;
      e.context_tokens = static_cast<int32_t>(r.tokens.size());
      e.block_table = r.blocks;
      e.tokens = std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(r.context));
      b.entries.push_back(e);
      const IterationResult res = gpu_->run(b);
      ASSERT_EQ(res.next_tokens.size(), 1u);
      r.context = static_cast<int32_t>(r.tokens.size());
      r.tokens.push_back(res.next_tokens[0]);
      out.push_back(res.next_tokens[0]);
      logits.push_back(gpu_->last_logits());
    }
  };
  std::vector<int32_t> tokens_a, tokens_b;
  std::vector<std::vector<float>> logits_a, logits_b;
  Request a = make_request(10, 1, 40);
  run_greedy(a, 9, tokens_a, logits_a);

  Request b = make_request(10, 1, 40);
  run_greedy(b, 2, tokens_b, logits_b);
  const size_t used = static_cast<size_t>((b.context + kBlockSize - 1) / kBlockSize);
  const std::vector<int32_t> old_blocks(b.blocks.begin(),
                                        b.blocks.begin() + static_cast<long>(used));
  const CostStep out = gpu_->swap_out(b.id, old_blocks);
  EXPECT_EQ(out.kind, EventKind::preempt_swap);
  EXPECT_EQ(out.bytes, static_cast<int64_t>(used) *
                           static_cast<int64_t>(shape_.kv_bytes_per_token(2)) * kBlockSize);
  // Another request takes the blocks and writes its own keys and values there.
  Request other = make_request(11, 2, static_cast<int>(used) * kBlockSize);
  other.blocks = b.blocks;
  std::vector<int32_t> ignored;
  std::vector<std::vector<float>> ignored_logits;
  run_greedy(other, 1, ignored, ignored_logits);
  // Swap in to blocks no request has used.
  std::vector<int32_t> new_blocks;
  for (int32_t id = kBlocks - 1; static_cast<int>(new_blocks.size()) < kBlocksPerRequest; --id)
    if (std::find(b.blocks.begin(), b.blocks.end(), id) == b.blocks.end()) new_blocks.push_back(id);
  const CostStep in = gpu_->swap_in(b.id, std::span<const int32_t>(new_blocks.data(), used));
  EXPECT_EQ(in.kind, EventKind::swap_in);
  EXPECT_EQ(in.bytes, out.bytes);
  b.blocks = new_blocks;
  run_greedy(b, 7, tokens_b, logits_b);

  ASSERT_EQ(tokens_a.size(), tokens_b.size());
  EXPECT_EQ(tokens_a, tokens_b);
  double diff = 0;
  for (size_t s = 0; s < logits_a.size(); ++s)
    for (size_t j = 0; j < logits_a[s].size(); ++j)
      diff = std::max(diff, std::fabs(double(logits_a[s][j]) - double(logits_b[s][j])));
  EXPECT_LE(diff, 1e-3) << "logits after the swap round trip differ by " << diff;
  EXPECT_THROW(gpu_->swap_in(b.id, new_blocks), std::exception) << "the copy was consumed";
}

TEST_P(CudaExecutorVsCpu, KvExportImportMovesTheContinuationToAnotherExecutor) {
  // Migration with KV transfer: run 1 decodes 9 steps on one executor; run 2 decodes 2 steps,
  // its KV cache is exported, imported into other blocks of a second executor (another
  // replica), and the remaining 7 steps run there: the same tokens and logits.
  auto second = std::make_unique<CudaExecutor>(weights_, adapters_, kBlocks, kBlockSize,
                                               CudaExecutor::Options{GetParam()});
  second->load_adapter(1);
  auto run_greedy = [&](CudaExecutor& ex, Request& r, int steps, std::vector<int32_t>& out,
                        std::vector<std::vector<float>>& logits) {
    for (int i = 0; i < steps; ++i) {
      ExecBatch b;
      ExecEntry e;
      e.request = r.id;
      e.adapter = r.adapter;
      e.prefill = r.context == 0;
      e.new_tokens = static_cast<int32_t>(r.tokens.size()) - r.context;
      e.context_tokens = static_cast<int32_t>(r.tokens.size());
      e.block_table = r.blocks;
      e.tokens = std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(r.context));
      b.entries.push_back(e);
      const IterationResult res = ex.run(b);
      ASSERT_EQ(res.next_tokens.size(), 1u);
      r.context = static_cast<int32_t>(r.tokens.size());
      r.tokens.push_back(res.next_tokens[0]);
      out.push_back(res.next_tokens[0]);
      logits.push_back(ex.last_logits());
    }
  };
  std::vector<int32_t> tokens_a, tokens_b;
  std::vector<std::vector<float>> logits_a, logits_b;
  Request a = make_request(20, 1, 40);
  run_greedy(*gpu_, a, 9, tokens_a, logits_a);

  Request b = make_request(21, 1, 40);
  run_greedy(*gpu_, b, 2, tokens_b, logits_b);
  const size_t used = static_cast<size_t>((b.context + kBlockSize - 1) / kBlockSize);
  const std::vector<int32_t> old_blocks(b.blocks.begin(),
                                        b.blocks.begin() + static_cast<long>(used));
  const KvData kv = gpu_->export_kv(old_blocks);
  EXPECT_EQ(kv.blocks, static_cast<int64_t>(used));
  EXPECT_EQ(
      static_cast<int64_t>(kv.bytes.size()),
      static_cast<int64_t>(used) * static_cast<int64_t>(shape_.kv_bytes_per_token(2)) * kBlockSize);
  std::vector<int32_t> new_blocks;
  for (int32_t id = kBlocks - 1; static_cast<int>(new_blocks.size()) < kBlocksPerRequest; --id)
    new_blocks.push_back(id);
  second->import_kv(std::span<const int32_t>(new_blocks.data(), used), kv);
  b.blocks = new_blocks;
  run_greedy(*second, b, 7, tokens_b, logits_b);

  EXPECT_EQ(tokens_a, tokens_b);
  double diff = 0;
  for (size_t s = 0; s < logits_a.size() && s < logits_b.size(); ++s)
    for (size_t j = 0; j < logits_a[s].size(); ++j)
      diff = std::max(diff, std::fabs(double(logits_a[s][j]) - double(logits_b[s][j])));
  EXPECT_LE(diff, 1e-3) << "logits after the KV move differ by " << diff;
  EXPECT_THROW(second->import_kv(std::span<const int32_t>(new_blocks.data(), used + 1), kv),
               std::exception)
      << "a size mismatch is refused";
}

TEST_P(CudaExecutorVsCpu, RefusesWhatTheEngineMustNotAsk) {
  EXPECT_THROW(gpu_->switch_weights(0, 1, SwitchMethod::fused), Error);  // 0 is not merged
  gpu_->evict_adapter(3);
  EXPECT_FALSE(gpu_->resident(3));
  EXPECT_THROW(gpu_->switch_weights(api::kNoAdapter, 3, SwitchMethod::fused),
               Error);  // not resident
  EXPECT_EQ(gpu_->merged(), api::kNoAdapter);
  Request r = make_request(20, 3, 4);
  ExecBatch b;
  ExecEntry e;
  e.request = r.id;
  e.adapter = 3;
  e.prefill = true;
  e.new_tokens = 4;
  e.context_tokens = 4;
  e.block_table = r.blocks;
  e.tokens = r.tokens;
  b.entries.push_back(e);
  EXPECT_THROW(gpu_->run(b), Error);  // adapter 3 is not resident
  b.entries[0].adapter = 1;
  r.tokens[2] = shape_.vocab_size;
  EXPECT_THROW(gpu_->run(b), Error);  // token outside the vocabulary
  r.tokens[2] = 0;
  EXPECT_EQ(gpu_->run(b).next_tokens.size(), 1u);  // still usable
  EXPECT_EQ(gpu_->load_adapter(3).kind, EventKind::adapter_load);
  EXPECT_TRUE(gpu_->resident(3));
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaExecutorVsCpu,
                         ::testing::Values(cu::DType::kF16, cu::DType::kBF16),
                         [](const ::testing::TestParamInfo<cu::DType>& i) {
                           return std::string(cu::dtype_name(i.param));
                         });

}  // namespace
}  // namespace lorasched
