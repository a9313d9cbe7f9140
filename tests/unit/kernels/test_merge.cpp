// lora_merge / lora_unmerge / lora_switch: merged layer == base + LoRA, bit-exact restoration,
// and the fused switch equal to unmerge-then-merge.

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "lorasched/kernels/cpu.hpp"
#include "lorasched/kernels/reference.hpp"
#include "test_util.hpp"

namespace lorasched::kernels {
namespace {

using testing::all_close;
using testing::randint;
using testing::randn;
using testing::SimdMode;

struct Adapter {
  int rank;
  float scale;
  std::vector<float> A, B;
};

Adapter make_adapter(std::mt19937& rng, int out, int in, int rank, float scale, float stddev) {
  return {rank, scale, randn(static_cast<size_t>(rank) * in, rng, stddev),
          randn(static_cast<size_t>(out) * rank, rng, stddev)};
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

size_t count_marks(const MergeResidual& r) {
  return static_cast<size_t>(
      std::count(r.ulps.begin(), r.ulps.end(), MergeResidual::kUlpException));
}

// Sets the merge thread count for one scope.
class MergeThreads {
 public:
  explicit MergeThreads(int n) : before_(cpu::merge_threads()) { cpu::set_merge_threads(n); }
  ~MergeThreads() { cpu::set_merge_threads(before_); }
  MergeThreads(const MergeThreads&) = delete;
  MergeThreads& operator=(const MergeThreads&) = delete;

 private:
  int before_;
};

TEST(CpuMerge, MergedLayerMatchesBasePlusLora) {
  std::mt19937 rng(11);
  const int out = 131, in = 257, tokens = 9;
  for (int rank : {1, 7, 16, 64}) {
    SCOPED_TRACE(::testing::Message() << "rank " << rank);
    const auto W = randn(static_cast<size_t>(out) * in, rng, 0.05f);
    const Adapter ad = make_adapter(rng, out, in, rank, 0.7f, 0.1f);
    const auto x = randn(static_cast<size_t>(tokens) * in, rng);

    std::vector<float> y_lora(static_cast<size_t>(tokens) * out);
    cpu::gemm_xwt(x.data(), tokens, in, in, W.data(), out, y_lora.data(), out, false);
    const LoraSegment seg{0, tokens, ad.A.data(), ad.B.data(), rank, ad.scale};
    std::vector<float> t(static_cast<size_t>(tokens) * rank);
    cpu::lora_shrink(x.data(), in, in, {&seg, 1}, t.data());
    cpu::lora_expand(t.data(), {&seg, 1}, out, y_lora.data(), out);

    auto Wm = W;
    MergeResidual res;
    cpu::lora_merge(Wm.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &res);
    std::vector<float> y_merged(y_lora.size());
    cpu::gemm_xwt(x.data(), tokens, in, in, Wm.data(), out, y_merged.data(), out, false);
    EXPECT_TRUE(all_close(y_merged, y_lora, 1e-4));

    // and the LoRA term is really there (not a tautology with a vanishing adapter)
    std::vector<float> y_base(y_lora.size());
    cpu::gemm_xwt(x.data(), tokens, in, in, W.data(), out, y_base.data(), out, false);
    EXPECT_FALSE(all_close(y_base, y_lora, 1e-2));

    cpu::lora_unmerge(Wm.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, res);
    EXPECT_TRUE(same_bits(Wm, W));
  }
}

// The cpu and the reference evaluate D identically: same merged bits, same residual, and each
// can undo the other's merge.
TEST(CpuMerge, BitIdenticalToReference) {
  std::mt19937 rng(12);
  const int shapes[][3] = {{131, 257, 64}, {48, 257, 1}, {7, 33, 5}, {64, 64, 16}, {1, 1, 2}};
  for (const auto& sh : shapes) {
    for (bool simd : {true, false}) {
      SimdMode mode(simd);
      const int out = sh[0], in = sh[1], rank = sh[2];
      SCOPED_TRACE(::testing::Message()
                   << out << "x" << in << " rank " << rank << " simd " << simd);
      const auto W = randn(static_cast<size_t>(out) * in, rng);
      const Adapter ad = make_adapter(rng, out, in, rank, 1.3f, 0.6f);
      auto Wc = W, Wr = W;
      MergeResidual rc, rr;
      cpu::lora_merge(Wc.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &rc);
      reference::lora_merge(Wr.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &rr);
      EXPECT_TRUE(same_bits(Wc, Wr));
      EXPECT_EQ(rc.ulps, rr.ulps);
      EXPECT_EQ(rc.exceptions, rr.exceptions);
      EXPECT_FALSE(same_bits(Wc, W));
      reference::lora_unmerge(Wc.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, rc);
      cpu::lora_unmerge(Wr.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, rr);
      EXPECT_TRUE(same_bits(Wc, W));
      EXPECT_TRUE(same_bits(Wr, W));
    }
  }
}

// 10,000 merge/unmerge cycles of adapters of different ranks, sometimes nested two deep, leave
// the base weights bit-identical.
TEST(CpuMerge, TenThousandCyclesRestoreBits) {
  std::mt19937 rng(13);
  const int out = 48, in = 257;
  const auto W0 = randn(static_cast<size_t>(out) * in, rng, 0.02f);
  std::vector<Adapter> adapters;
  const int ranks[] = {1, 3, 8, 16, 33};
  for (int i = 0; i < 5; ++i) {
    adapters.push_back(make_adapter(rng, out, in, ranks[i], 0.5f + 0.3f * i, 0.05f));
  }
  auto W = W0;
  MergeResidual r1, r2;
  size_t changed = 0, exceptions = 0;
  for (int cycle = 0; cycle < 10000; ++cycle) {
    const Adapter& a = adapters[cycle % adapters.size()];
    cpu::lora_merge(W.data(), out, in, a.A.data(), a.B.data(), a.rank, a.scale, &r1);
    changed += same_bits(W, W0) ? 0 : 1;
    exceptions += r1.exceptions.size();
    if (cycle % 10 == 0) {  // stack a second adapter on top, undo in reverse order
      const Adapter& b = adapters[(cycle / 10 + 3) % adapters.size()];
      cpu::lora_merge(W.data(), out, in, b.A.data(), b.B.data(), b.rank, b.scale, &r2);
      cpu::lora_unmerge(W.data(), out, in, b.A.data(), b.B.data(), b.rank, b.scale, r2);
    }
    cpu::lora_unmerge(W.data(), out, in, a.A.data(), a.B.data(), a.rank, a.scale, r1);
    if (cycle % 1000 == 999) {
      ASSERT_TRUE(same_bits(W, W0)) << "after cycle " << cycle;
    }
  }
  EXPECT_EQ(0, std::memcmp(W.data(), W0.data(), W.size() * sizeof(float)));
  EXPECT_EQ(changed, 10000u);  // every merge really modified the weights
  RecordProperty("exceptions", static_cast<int>(exceptions));
}

// |s B A| >> |W|: many elements need the exception list, restoration is still exact.
TEST(CpuMerge, LargeDeltaUsesExceptionsAndStaysExact) {
  std::mt19937 rng(14);
  const int out = 40, in = 97, rank = 8;
  auto W = randn(static_cast<size_t>(out) * in, rng, 1e-3f);
  // special values, some of which can only come back through the exception list
  W[0] = 0.0f;
  W[1] = -0.0f;
  W[2] = std::numeric_limits<float>::denorm_min();
  W[3] = -std::numeric_limits<float>::denorm_min() * 77;
  W[4] = std::numeric_limits<float>::infinity();
  W[5] = -std::numeric_limits<float>::infinity();
  W[6] = std::bit_cast<float>(0x7fc01234u);  // quiet NaN with payload
  W[7] = std::bit_cast<float>(0xffa00001u);  // negative signalling NaN
  W[8] = std::numeric_limits<float>::max();
  W[9] = -std::numeric_limits<float>::max();
  W[10] = 1e-30f;
  const auto W0 = W;
  const Adapter ad = make_adapter(rng, out, in, rank, 4.0f, 30.0f);  // |D| ~ 1e4
  for (int threads : {1, 3}) {
    MergeThreads mt(threads);
    SimdMode mode(threads == 1);
    MergeResidual res;
    cpu::lora_merge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &res);
    EXPECT_GT(res.exceptions.size(), static_cast<size_t>(out) * in / 4);  // |W|/|D| ~ 1e-7
    EXPECT_EQ(count_marks(res), res.exceptions.size());
    EXPECT_TRUE(std::is_sorted(res.exceptions.begin(), res.exceptions.end(),
                               [](const auto& a, const auto& b) { return a.first < b.first; }));
    EXPECT_EQ(res.bytes(), static_cast<size_t>(out) * in + 8 * res.exceptions.size());
    cpu::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, res);
    EXPECT_TRUE(same_bits(W, W0));

    auto Wr = W0;
    MergeResidual rr;
    reference::lora_merge(Wr.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &rr);
    EXPECT_EQ(rr.exceptions.size(), res.exceptions.size());
    reference::lora_unmerge(Wr.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, rr);
    EXPECT_TRUE(same_bits(Wr, W0));
  }
}

TEST(CpuMerge, SpecialValuesWithOrdinaryDelta) {
  std::mt19937 rng(15);
  const int out = 4, in = 16, rank = 3;
  std::vector<float> W = {0.0f,
                          -0.0f,
                          1e-45f,
                          -1e-45f,
                          1e-38f,
                          -1e-38f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          std::bit_cast<float>(0x7f800001u),
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          1.0f,
                          -1.0f,
                          3.0e5f,
                          -7.0e-3f};
  W.resize(static_cast<size_t>(out) * in);
  for (size_t i = 16; i < W.size(); ++i) W[i] = W[i % 16] * (i % 3 == 0 ? -1.0f : 1.0f);
  const auto W0 = W;
  const Adapter ad = make_adapter(rng, out, in, rank, 1.0f, 0.3f);
  MergeResidual res;
  cpu::lora_merge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &res);
  cpu::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, res);
  EXPECT_TRUE(same_bits(W, W0));
}

TEST(CpuMerge, ResidualSizeAsDocumented) {
  std::mt19937 rng(16);
  const int out = 256, in = 300, rank = 16;
  auto W = randn(static_cast<size_t>(out) * in, rng, 0.02f);
  const Adapter ad = make_adapter(rng, out, in, rank, 2.0f, 0.02f);
  MergeResidual res;
  cpu::lora_merge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &res);
  EXPECT_EQ(res.ulps.size(), static_cast<size_t>(out) * in);
  EXPECT_EQ(res.bytes(), res.ulps.size() + res.exceptions.size() * 8);
  EXPECT_EQ(count_marks(res), res.exceptions.size());
  // comparable magnitudes: exceptions are rare (they need |W| tiny next to |D|)
  EXPECT_LT(res.exceptions.size(), static_cast<size_t>(out) * in / 1000);
  // not all zero: rounding really happens and is recorded
  EXPECT_GT(std::count_if(res.ulps.begin(), res.ulps.end(), [](int8_t u) { return u != 0; }), 0);
}

TEST(CpuMerge, ResultIndependentOfThreadCount) {
  std::mt19937 rng(17);
  const int out = 203, in = 129, rank = 24;
  const auto W0 = randn(static_cast<size_t>(out) * in, rng, 0.01f);
  const Adapter ad = make_adapter(rng, out, in, rank, 3.0f, 0.2f);
  std::vector<float> W1 = W0;
  MergeResidual r1;
  {
    MergeThreads mt(1);
    cpu::lora_merge(W1.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &r1);
  }
  ASSERT_GT(r1.exceptions.size(), 0u);  // the concatenation of exception lists is exercised
  for (int threads : {2, 3, 7}) {
    MergeThreads mt(threads);
    SimdMode mode(threads != 3);  // the portable and the AVX2 loops give the same bits
    EXPECT_EQ(cpu::merge_threads(), threads);
    auto W = W0;
    MergeResidual r;
    cpu::lora_merge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &r);
    EXPECT_TRUE(same_bits(W, W1)) << threads;
    EXPECT_EQ(r.ulps, r1.ulps) << threads;
    EXPECT_EQ(r.exceptions, r1.exceptions) << threads;
    cpu::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, r);
    EXPECT_TRUE(same_bits(W, W0)) << threads;
  }
}

TEST(CpuMerge, ZeroRankAndEmptyWeight) {
  std::mt19937 rng(18);
  const int out = 5, in = 9;
  auto W = randn(static_cast<size_t>(out) * in, rng);
  const auto W0 = W;
  MergeResidual res;
  cpu::lora_merge(W.data(), out, in, nullptr, nullptr, 0, 1.0f, &res);
  EXPECT_TRUE(same_bits(W, W0));
  EXPECT_EQ(res.ulps, std::vector<int8_t>(W.size(), 0));
  cpu::lora_unmerge(W.data(), out, in, nullptr, nullptr, 0, 1.0f, res);
  EXPECT_TRUE(same_bits(W, W0));

  MergeResidual empty;
  cpu::lora_merge(nullptr, 0, in, nullptr, nullptr, 0, 1.0f, &empty);
  EXPECT_EQ(empty.bytes(), 0u);
}

TEST(CpuMerge, UnmergeRejectsMismatchedResidual) {
  std::mt19937 rng(19);
  const int out = 6, in = 10, rank = 2;
  auto W = randn(static_cast<size_t>(out) * in, rng);
  const Adapter ad = make_adapter(rng, out, in, rank, 1.0f, 1.0f);
  MergeResidual res;
  cpu::lora_merge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, &res);
  MergeResidual wrong_size = res;
  wrong_size.ulps.pop_back();
  EXPECT_THROW(
      cpu::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, wrong_size),
      std::invalid_argument);
  EXPECT_THROW(reference::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale,
                                       wrong_size),
               std::invalid_argument);
  MergeResidual missing = res;
  missing.ulps[3] = MergeResidual::kUlpException;  // marked, but no saved value
  missing.exceptions.clear();
  EXPECT_THROW(
      cpu::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, missing),
      std::invalid_argument);
  EXPECT_THROW(
      reference::lora_unmerge(W.data(), out, in, ad.A.data(), ad.B.data(), rank, ad.scale, missing),
      std::invalid_argument);
}

// A wrong adapter on unmerge must not silently restore the weights (the test can fail).
TEST(CpuMerge, UnmergeWithOtherAdapterDoesNotRestore) {
  std::mt19937 rng(20);
  const int out = 16, in = 33, rank = 4;
  const auto W0 = randn(static_cast<size_t>(out) * in, rng);
  const Adapter a = make_adapter(rng, out, in, rank, 1.0f, 0.5f);
  const Adapter b = make_adapter(rng, out, in, rank, 1.0f, 0.5f);
  auto W = W0;
  MergeResidual res;
  cpu::lora_merge(W.data(), out, in, a.A.data(), a.B.data(), rank, a.scale, &res);
  cpu::lora_unmerge(W.data(), out, in, b.A.data(), b.B.data(), rank, b.scale, res);
  EXPECT_FALSE(same_bits(W, W0));
}

// The fused switch a -> b against the plain unmerge of a then merge of b, done by the reference
// kernels (an independent implementation): the weights and the residual must be bit-identical,
// with the vector code and without, on one thread and several, through chains of random
// switches that include adapters whose delta is far larger than the weights (exceptions) and
// special values. After every chain the unmerge of the last adapter restores the base bits.
TEST(CpuSwitch, ChainsEqualUnmergeThenMergeAndRestoreTheBase) {
  std::mt19937 rng(21);
  const int out = 37, in = 131;
  auto W0 = randn(static_cast<size_t>(out) * in, rng, 0.02f);
  W0[0] = -0.0f;
  W0[1] = 1e-30f;
  W0[2] = std::numeric_limits<float>::denorm_min();
  W0[3] = std::numeric_limits<float>::infinity();
  W0[4] = std::bit_cast<float>(0x7fc01234u);
  W0[5] = std::numeric_limits<float>::max();
  std::vector<Adapter> adapters;
  const int ranks[] = {1, 4, 8, 16, 33, 0};
  for (int i = 0; i < 6; ++i)
    adapters.push_back(make_adapter(rng, out, in, ranks[i], 0.5f + 0.4f * i, 0.05f));
  adapters.push_back(make_adapter(rng, out, in, 8, 4.0f, 30.0f));  // |D| >> |W|: exceptions
  adapters.push_back(make_adapter(rng, out, in, 2, 3.0f, 10.0f));
  std::uniform_int_distribution<size_t> pick(0, adapters.size() - 1);
  size_t switches = 0, exceptions_seen = 0;
  for (int threads : {1, 3}) {
    for (bool simd : {true, false}) {
      MergeThreads mt(threads);
      SimdMode mode(simd);
      SCOPED_TRACE(::testing::Message() << "threads " << threads << " simd " << simd);
      for (int chain = 0; chain < 25; ++chain) {
        auto W = W0, Wr = W0;
        MergeResidual res, rr;
        size_t cur = pick(rng);
        const Adapter* a = &adapters[cur];
        cpu::lora_merge(W.data(), out, in, a->A.data(), a->B.data(), a->rank, a->scale, &res);
        reference::lora_merge(Wr.data(), out, in, a->A.data(), a->B.data(), a->rank, a->scale, &rr);
        for (int step = 0; step < 12; ++step) {
          size_t next = pick(rng);
          if (next == cur) next = (next + 1) % adapters.size();
          const Adapter* b = &adapters[next];
          cpu::lora_switch(W.data(), out, in, a->A.data(), a->B.data(), a->rank, a->scale,
                           b->A.data(), b->B.data(), b->rank, b->scale, &res);
          reference::lora_unmerge(Wr.data(), out, in, a->A.data(), a->B.data(), a->rank, a->scale,
                                  rr);
          reference::lora_merge(Wr.data(), out, in, b->A.data(), b->B.data(), b->rank, b->scale,
                                &rr);
          ASSERT_TRUE(same_bits(W, Wr)) << "chain " << chain << " step " << step;
          ASSERT_EQ(res.ulps, rr.ulps) << "chain " << chain << " step " << step;
          ASSERT_EQ(res.exceptions, rr.exceptions) << "chain " << chain << " step " << step;
          exceptions_seen += res.exceptions.size();
          ++switches;
          a = b;
          cur = next;
        }
        cpu::lora_unmerge(W.data(), out, in, a->A.data(), a->B.data(), a->rank, a->scale, res);
        ASSERT_TRUE(same_bits(W, W0)) << "chain " << chain;
      }
    }
  }
  EXPECT_EQ(switches, 4u * 25 * 12);
  EXPECT_GT(exceptions_seen, 0u);  // the exception path was exercised
}

// After a switch every element holds base + D_b (nothing of the old adapter is left), as the
// switched layer's outputs against the reference base + LoRA show.
TEST(CpuSwitch, SwitchedLayerMatchesBasePlusNewAdapter) {
  std::mt19937 rng(22);
  const int out = 64, in = 96, tokens = 5;
  const auto W = randn(static_cast<size_t>(out) * in, rng, 0.05f);
  const Adapter a = make_adapter(rng, out, in, 16, 0.9f, 0.1f);
  const Adapter b = make_adapter(rng, out, in, 8, 1.7f, 0.1f);
  const auto x = randn(static_cast<size_t>(tokens) * in, rng);
  std::vector<float> want(static_cast<size_t>(tokens) * out);
  reference::gemm_xwt(x.data(), tokens, in, in, W.data(), out, want.data(), out, false);
  const LoraSegment seg{0, tokens, b.A.data(), b.B.data(), b.rank, b.scale};
  std::vector<float> t(static_cast<size_t>(tokens) * b.rank);
  reference::lora_shrink(x.data(), in, in, {&seg, 1}, t.data());
  reference::lora_expand(t.data(), {&seg, 1}, out, want.data(), out);
  auto Wm = W;
  MergeResidual res;
  cpu::lora_merge(Wm.data(), out, in, a.A.data(), a.B.data(), a.rank, a.scale, &res);
  cpu::lora_switch(Wm.data(), out, in, a.A.data(), a.B.data(), a.rank, a.scale, b.A.data(),
                   b.B.data(), b.rank, b.scale, &res);
  std::vector<float> got(want.size());
  cpu::gemm_xwt(x.data(), tokens, in, in, Wm.data(), out, got.data(), out, false);
  EXPECT_TRUE(all_close(got, want, 1e-4));
}

TEST(CpuSwitch, RejectsMismatchedResidual) {
  std::mt19937 rng(23);
  const int out = 8, in = 16;
  auto W = randn(static_cast<size_t>(out) * in, rng);
  const Adapter a = make_adapter(rng, out, in, 2, 1.0f, 0.1f);
  MergeResidual res;
  res.ulps.assign(static_cast<size_t>(out) * in - 1, 0);
  EXPECT_THROW(cpu::lora_switch(W.data(), out, in, a.A.data(), a.B.data(), 2, 1.0f, a.A.data(),
                                a.B.data(), 2, 1.0f, &res),
               std::invalid_argument);
  res.ulps.assign(static_cast<size_t>(out) * in, 0);
  res.ulps[3] = MergeResidual::kUlpException;  // a mark without its exception entry
  EXPECT_THROW(cpu::lora_switch(W.data(), out, in, a.A.data(), a.B.data(), 2, 1.0f, a.A.data(),
                                a.B.data(), 2, 1.0f, &res),
               std::invalid_argument);
}

}  // namespace
}  // namespace lorasched::kernels
