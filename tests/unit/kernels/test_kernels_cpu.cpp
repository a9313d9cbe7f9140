// CPU kernels against the reference kernels (and the reference against direct formulas).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
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

constexpr double kRtol = 1e-4;

TEST(KernelTestUtil, AllCloseDetectsErrors) {
  const std::vector<float> ref = {1.0f, -2.0f, 3.0f, 0.0f};
  EXPECT_TRUE(all_close(ref, ref, kRtol));
  std::vector<float> off = ref;
  off[1] = -2.01f;
  EXPECT_FALSE(all_close(off, ref, kRtol));
  off = ref;
  off[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(all_close(off, ref, kRtol));
  EXPECT_FALSE(all_close(std::vector<float>(3), ref, kRtol));
}

// ---- gemm --------------------------------------------------------------------------------------

TEST(ReferenceGemm, SmallExample) {
  // x [2, 3], W [2, 3]: y = x W^T.
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const std::vector<float> W = {1, 0, -1, 2, 1, 0};
  std::vector<float> y(4, 100.0f);
  reference::gemm_xwt(x.data(), 2, 3, 3, W.data(), 2, y.data(), 2, false);
  EXPECT_EQ(y, (std::vector<float>{-2, 4, -2, 13}));
  reference::gemm_xwt(x.data(), 2, 3, 3, W.data(), 2, y.data(), 2, true);
  EXPECT_EQ(y, (std::vector<float>{-4, 8, -4, 26}));
}

TEST(CpuGemm, MatchesReferenceStrided) {
  std::mt19937 rng(1);
  // m <= 24 takes the hand loop (with AVX2), larger m sgemm; odd k exercises the masked tail.
  const int shapes[][3] = {{1, 257, 131},  {7, 257, 131}, {24, 257, 131}, {25, 131, 257},
                           {33, 131, 257}, {16, 1, 5},    {3, 64, 1},     {32, 1024, 96},
                           {5, 17, 33},    {2, 4096, 9}};
  for (const auto& sh : shapes) {
    const int m = sh[0], k = sh[1], n = sh[2];
    const int ldx = k + 3, ldy = n + 5;
    for (bool accumulate : {false, true}) {
      const bool simd = accumulate == (m % 2 == 0);
      SimdMode mode(simd);
      SCOPED_TRACE(::testing::Message() << "m " << m << " k " << k << " n " << n << " acc "
                                        << accumulate << " simd " << simd);
      const auto x = randn(static_cast<size_t>(m) * ldx, rng);
      const auto W = randn(static_cast<size_t>(n) * k, rng);
      const auto y0 = randn(static_cast<size_t>(m) * ldy, rng);
      auto y_cpu = y0, y_ref = y0;
      cpu::gemm_xwt(x.data(), m, k, ldx, W.data(), n, y_cpu.data(), ldy, accumulate);
      reference::gemm_xwt(x.data(), m, k, ldx, W.data(), n, y_ref.data(), ldy, accumulate);
      EXPECT_TRUE(all_close(y_cpu, y_ref, kRtol));
      for (int i = 0; i < m; ++i) {  // padding columns untouched
        for (int j = n; j < ldy; ++j) {
          ASSERT_EQ(y_cpu[static_cast<size_t>(i) * ldy + j], y0[static_cast<size_t>(i) * ldy + j]);
        }
      }
    }
  }
}

TEST(CpuGemm, EmptyInnerDimension) {
  std::vector<float> y(6, 7.0f);
  cpu::gemm_xwt(nullptr, 2, 0, 0, nullptr, 3, y.data(), 3, true);
  EXPECT_EQ(y, std::vector<float>(6, 7.0f));
  cpu::gemm_xwt(nullptr, 2, 0, 0, nullptr, 3, y.data(), 3, false);
  EXPECT_EQ(y, std::vector<float>(6, 0.0f));
}

TEST(CpuGemm, BlasThreadsRoundTrip) {
  const int before = cpu::blas_threads();
  cpu::set_blas_threads(1);
  EXPECT_EQ(cpu::blas_threads(), 1);
  cpu::set_blas_threads(0);  // clamped
  EXPECT_EQ(cpu::blas_threads(), 1);
  cpu::set_blas_threads(before);
}

TEST(CpuSimd, SwitchForcesPortableLoops) {
  const bool before = cpu::cpu_simd();
  cpu::set_cpu_simd(false);
  EXPECT_FALSE(cpu::cpu_simd());
  cpu::set_cpu_simd(true);  // true only where the CPU has AVX2 + FMA
  cpu::set_cpu_simd(before);
  EXPECT_EQ(cpu::cpu_simd(), before);
}

// ---- LoRA shrink / expand ----------------------------------------------------------------------

struct Adapter {
  int rank = 0;
  float scale = 1.0f;
  std::vector<float> A, B;
};

struct LoraBatch {
  int tokens = 0;
  std::vector<Adapter> adapters;
  std::vector<LoraSegment> segments;
  std::vector<int> covered;  // per token: 1 if some segment covers it
};

constexpr int kRanks[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64};

// Random tokens split into runs (some empty, some tokens uncovered) that each take one of up to
// 16 adapters of mixed ranks; the segment list is shuffled.
LoraBatch make_batch(std::mt19937& rng, int tokens, int in, int out) {
  LoraBatch b;
  b.tokens = tokens;
  const int n_adapters = randint(rng, 1, 16);
  for (int a = 0; a < n_adapters; ++a) {
    Adapter ad;
    ad.rank = kRanks[randint(rng, 0, static_cast<int>(std::size(kRanks)) - 1)];
    ad.scale = std::uniform_real_distribution<float>(0.25f, 2.0f)(rng);
    ad.A = randn(static_cast<size_t>(ad.rank) * in, rng, 0.5f);
    ad.B = randn(static_cast<size_t>(out) * ad.rank, rng, 0.5f);
    b.adapters.push_back(std::move(ad));
  }
  const int n_segments = randint(rng, 1, 16);
  std::vector<int> cuts(n_segments - 1);
  for (int& c : cuts) c = randint(rng, 0, tokens);
  cuts.push_back(0);
  cuts.push_back(tokens);
  std::sort(cuts.begin(), cuts.end());
  b.covered.assign(tokens, 0);
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    int start = cuts[i];
    int len = cuts[i + 1] - cuts[i];
    if (len > 0 && randint(rng, 0, 4) == 0) {  // leave a few tokens without LoRA
      const int drop = randint(rng, 1, len);
      start += randint(rng, 0, 1) ? drop : 0;
      len -= drop;
    }
    const Adapter& ad = b.adapters[randint(rng, 0, n_adapters - 1)];
    b.segments.push_back({start, len, ad.A.data(), ad.B.data(), ad.rank, ad.scale});
    for (int t = start; t < start + len; ++t) b.covered[t] = 1;
  }
  std::shuffle(b.segments.begin(), b.segments.end(), rng);
  return b;
}

void check_lora(std::mt19937& rng, const LoraBatch& b, int in, int out) {
  const int ldx = in + 3, ldy = out + 2;
  const auto x = randn(static_cast<size_t>(b.tokens) * ldx, rng);
  const size_t ws = lora_workspace_floats(b.segments);
  std::vector<float> t_cpu(ws, std::numeric_limits<float>::quiet_NaN()), t_ref(ws);
  cpu::lora_shrink(x.data(), in, ldx, b.segments, t_cpu.data());
  reference::lora_shrink(x.data(), in, ldx, b.segments, t_ref.data());
  ASSERT_TRUE(all_close(t_cpu, t_ref, kRtol)) << "shrink";

  const auto y0 = randn(static_cast<size_t>(b.tokens) * ldy, rng);
  auto y_cpu = y0, y_ref = y0;
  cpu::lora_expand(t_ref.data(), b.segments, out, y_cpu.data(), ldy);
  reference::lora_expand(t_ref.data(), b.segments, out, y_ref.data(), ldy);
  ASSERT_TRUE(all_close(y_cpu, y_ref, kRtol)) << "expand";
  for (int tok = 0; tok < b.tokens; ++tok) {
    for (int j = 0; j < ldy; ++j) {
      const size_t e = static_cast<size_t>(tok) * ldy + j;
      if (!b.covered[tok] || j >= out) {
        ASSERT_EQ(y_cpu[e], y0[e]) << "token " << tok << " col " << j;
      }
    }
  }
}

TEST(CpuLora, MixedSegmentsMatchReference) {
  std::mt19937 rng(2);
  const int dims[][2] = {{257, 131}, {131, 257}, {64, 96}, {1, 7}, {1000, 33}};
  for (bool simd : {true, false}) {
    SimdMode mode(simd);
    for (const auto& d : dims) {
      for (int tokens = 1; tokens <= 33; tokens += (tokens < 4 ? 1 : 4)) {
        SCOPED_TRACE(::testing::Message() << "simd " << simd << " in " << d[0] << " out " << d[1]
                                          << " tokens " << tokens);
        check_lora(rng, make_batch(rng, tokens, d[0], d[1]), d[0], d[1]);
      }
    }
  }
}

// One adapter per token (decode) and long single-adapter runs (prefill), big enough to reach
// every code path: hand loops (1-2 tokens, and short segments with many MACs), sgemm.
TEST(CpuLora, EveryPathMatchesReference) {
  std::mt19937 rng(3);
  for (int in : {4096, 257}) {
    for (int rank : {1, 8, 13, 64}) {
      for (int len : {1, 2, 3, 4, 5, 11, 12, 20, 64, 70}) {
        const bool simd = len % 2 == 1;  // both loop versions over all shapes
        SimdMode mode(simd);
        SCOPED_TRACE(::testing::Message()
                     << "in " << in << " rank " << rank << " len " << len << " simd " << simd);
        const int out = 67;
        Adapter ad{rank, 0.5f, randn(static_cast<size_t>(rank) * in, rng),
                   randn(static_cast<size_t>(out) * rank, rng)};
        LoraBatch b;
        b.tokens = len + 2;
        b.covered.assign(b.tokens, 1);
        b.covered[0] = b.covered[len + 1] = 0;
        b.segments.push_back({1, len, ad.A.data(), ad.B.data(), rank, ad.scale});
        check_lora(rng, b, in, out);
      }
    }
  }
}

TEST(CpuLora, ZeroLengthAndZeroRankSegmentsDoNothing) {
  std::mt19937 rng(4);
  const int in = 33, out = 9;
  const auto A = randn(4 * in, rng), B = randn(out * 4, rng);
  const std::vector<LoraSegment> segs = {{0, 0, A.data(), B.data(), 4, 1.0f},
                                         {1, 2, nullptr, nullptr, 0, 1.0f},
                                         {3, 0, A.data(), B.data(), 4, 1.0f}};
  EXPECT_EQ(lora_workspace_floats(segs), 0u);
  const auto x = randn(4 * in, rng);
  const auto y0 = randn(4 * out, rng);
  auto y = y0;
  cpu::lora_shrink(x.data(), in, in, segs, nullptr);
  cpu::lora_expand(nullptr, segs, out, y.data(), out);
  EXPECT_EQ(0, std::memcmp(y.data(), y0.data(), y.size() * sizeof(float)));
}

// The oracle itself: segment bookkeeping against y = x (W + s B A)^T formed densely.
TEST(ReferenceLora, MatchesDenseAdaptedWeight) {
  std::mt19937 rng(5);
  const int in = 37, out = 23, tokens = 9;
  const LoraBatch b = make_batch(rng, tokens, in, out);
  const auto x = randn(static_cast<size_t>(tokens) * in, rng);
  const auto W = randn(static_cast<size_t>(out) * in, rng);
  std::vector<float> y(static_cast<size_t>(tokens) * out);
  reference::gemm_xwt(x.data(), tokens, in, in, W.data(), out, y.data(), out, false);
  std::vector<float> t(lora_workspace_floats(b.segments));
  reference::lora_shrink(x.data(), in, in, b.segments, t.data());
  reference::lora_expand(t.data(), b.segments, out, y.data(), out);

  std::vector<float> expected(y.size());
  for (int tok = 0; tok < tokens; ++tok) {
    const LoraSegment* seg = nullptr;
    for (const auto& s : b.segments) {
      if (tok >= s.start && tok < s.start + s.len) seg = &s;
    }
    for (int o = 0; o < out; ++o) {
      double acc = 0.0;
      for (int i = 0; i < in; ++i) {
        double w = W[static_cast<size_t>(o) * in + i];
        if (seg != nullptr) {
          for (int r = 0; r < seg->rank; ++r) {
            w += static_cast<double>(seg->scale) * seg->B[static_cast<size_t>(o) * seg->rank + r] *
                 seg->A[static_cast<size_t>(r) * in + i];
          }
        }
        acc += w * x[static_cast<size_t>(tok) * in + i];
      }
      expected[static_cast<size_t>(tok) * out + o] = static_cast<float>(acc);
    }
  }
  EXPECT_TRUE(all_close(y, expected, 1e-5));
}

// ---- rmsnorm / rope / silu ---------------------------------------------------------------------

std::vector<float> rmsnorm_direct(const std::vector<float>& x, const std::vector<float>& w,
                                  int rows, int dim, float eps) {
  std::vector<float> out(x.size());
  for (int r = 0; r < rows; ++r) {
    double ms = 0.0;
    for (int i = 0; i < dim; ++i) ms += std::pow(static_cast<double>(x[r * dim + i]), 2);
    ms /= dim;
    for (int i = 0; i < dim; ++i) {
      out[r * dim + i] = static_cast<float>(x[r * dim + i] / std::sqrt(ms + eps) * w[i]);
    }
  }
  return out;
}

TEST(Kernels, RmsnormMatchesFormula) {
  std::mt19937 rng(6);
  for (int dim : {1, 7, 257, 4096}) {
    const int rows = 5;
    const auto x = randn(static_cast<size_t>(rows) * dim, rng, 3.0f);
    const auto w = randn(dim, rng);
    const auto expected = rmsnorm_direct(x, w, rows, dim, 1e-5f);
    std::vector<float> out_cpu(x.size()), out_ref(x.size());
    cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, out_cpu.data());
    reference::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, out_ref.data());
    EXPECT_TRUE(all_close(out_cpu, expected, 1e-5)) << "dim " << dim;
    EXPECT_TRUE(all_close(out_ref, expected, 1e-6)) << "dim " << dim;
    auto in_place = x;
    cpu::rmsnorm(in_place.data(), w.data(), rows, dim, 1e-5f, in_place.data());
    EXPECT_EQ(in_place, out_cpu);
  }
  // eps matters for a zero row
  const std::vector<float> zeros(8, 0.0f), ones(8, 1.0f);
  std::vector<float> out(8, 1.0f);
  cpu::rmsnorm(zeros.data(), ones.data(), 1, 8, 1e-6f, out.data());
  EXPECT_EQ(out, zeros);
}

// HF Llama, vectorised form: emb = cat(freqs, freqs), x * cos(emb) + rotate_half(x) * sin(emb).
std::vector<float> rope_hf(const std::vector<float>& x, int tokens, int heads, int hd,
                           const std::vector<int32_t>& pos, double theta) {
  std::vector<float> out(x.size());
  for (int t = 0; t < tokens; ++t) {
    std::vector<double> emb(hd);
    for (int i = 0; i < hd; ++i) {
      const int k = i % (hd / 2);
      emb[i] = pos[t] * (1.0 / std::pow(theta, static_cast<double>(2 * k) / hd));
    }
    for (int h = 0; h < heads; ++h) {
      const float* v = &x[(static_cast<size_t>(t) * heads + h) * hd];
      for (int i = 0; i < hd; ++i) {
        const double rot = i < hd / 2 ? -static_cast<double>(v[i + hd / 2]) : v[i - hd / 2];
        out[(static_cast<size_t>(t) * heads + h) * hd + i] =
            static_cast<float>(v[i] * std::cos(emb[i]) + rot * std::sin(emb[i]));
      }
    }
  }
  return out;
}

TEST(Kernels, RopeMatchesHfFormula) {
  std::mt19937 rng(7);
  for (int hd : {2, 64, 128, 36}) {
    for (float theta : {10000.0f, 500000.0f}) {
      const int tokens = 11, heads = 3;
      std::vector<int32_t> pos(tokens);
      for (auto& p : pos) p = randint(rng, 0, 8191);
      pos[0] = 0;
      const auto x = randn(static_cast<size_t>(tokens) * heads * hd, rng);
      const auto expected = rope_hf(x, tokens, heads, hd, pos, theta);
      auto y_cpu = x, y_ref = x;
      cpu::rope(y_cpu.data(), tokens, heads, hd, pos.data(), theta);
      reference::rope(y_ref.data(), tokens, heads, hd, pos.data(), theta);
      EXPECT_TRUE(all_close(y_cpu, expected, 1e-5)) << "hd " << hd;
      EXPECT_TRUE(all_close(y_ref, expected, 1e-6)) << "hd " << hd;
      for (int e = 0; e < heads * hd; ++e) EXPECT_EQ(y_cpu[e], x[e]);  // position 0: identity
    }
  }
}

TEST(Kernels, SiluMulMatchesFormula) {
  std::mt19937 rng(8);
  auto gate = randn(1001, rng, 4.0f);
  gate[0] = 0.0f;
  gate[1] = -100.0f;
  gate[2] = 100.0f;
  gate[3] = -20.0f;
  const auto up = randn(gate.size(), rng);
  std::vector<float> expected(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    expected[i] = static_cast<float>(g * (1.0 / (1.0 + std::exp(-g))) * up[i]);
  }
  std::vector<float> out_cpu(gate.size()), out_ref(gate.size());
  cpu::silu_mul(gate.data(), up.data(), gate.size(), out_cpu.data());
  reference::silu_mul(gate.data(), up.data(), gate.size(), out_ref.data());
  EXPECT_TRUE(all_close(out_cpu, expected, 1e-6));
  EXPECT_TRUE(all_close(out_ref, expected, 1e-6));
  EXPECT_FLOAT_EQ(out_cpu[2], 100.0f * up[2]);
}

// ---- paged KV cache and attention --------------------------------------------------------------

struct Seq {
  int q_len = 0;
  int context_len = 0;
  std::vector<int32_t> blocks;
  std::vector<float> k, v;  // dense [context_len, kv_heads, head_dim]
  int q_start = 0;
};

// Dense causal GQA attention straight from the contiguous K/V of each sequence.
std::vector<float> dense_attention(const std::vector<Seq>& seqs, const std::vector<float>& q,
                                   int heads, int kv_heads, int hd, float scale) {
  std::vector<float> out(q.size(), 0.0f);
  for (const Seq& s : seqs) {
    for (int j = 0; j < s.q_len; ++j) {
      const int pos = s.context_len - s.q_len + j;
      for (int h = 0; h < heads; ++h) {
        const int g = h / (heads / kv_heads);
        const float* qv = &q[(static_cast<size_t>(s.q_start + j) * heads + h) * hd];
        std::vector<double> p(pos + 1);
        for (int t = 0; t <= pos; ++t) {
          double d = 0.0;
          for (int e = 0; e < hd; ++e)
            d += qv[e] * static_cast<double>(s.k[(t * kv_heads + g) * hd + e]);
          p[t] = d * scale;
        }
        const double m = *std::max_element(p.begin(), p.end());
        double z = 0.0;
        for (double& x : p) z += (x = std::exp(x - m));
        for (int e = 0; e < hd; ++e) {
          double acc = 0.0;
          for (int t = 0; t <= pos; ++t) acc += p[t] * s.v[(t * kv_heads + g) * hd + e];
          out[(static_cast<size_t>(s.q_start + j) * heads + h) * hd + e] =
              static_cast<float>(acc / z);
        }
      }
    }
  }
  return out;
}

void check_attention(std::mt19937& rng, int block_size, int hd, float q_stddev) {
  const int heads = 8, kv_heads = 2;
  // decode, full prefill, chunked prefill (q_len < context), block-aligned, length-1 contexts
  const int shapes[][2] = {
      {1, 37}, {23, 23}, {5, 40}, {1, 1}, {block_size * 2, block_size * 2}, {1, 3 * block_size},
      {7, 9},  {0, 5}};
  int num_blocks = 7;  // a few more than needed, so the ids are not a permutation of the use
  for (const auto& sh : shapes) num_blocks += (sh[1] + block_size - 1) / block_size;
  const size_t row = static_cast<size_t>(kv_heads) * hd;
  // Unwritten cache slots hold NaN: reading the wrong slot poisons the output.
  std::vector<float> kc(static_cast<size_t>(num_blocks) * block_size * row,
                        std::numeric_limits<float>::quiet_NaN());
  std::vector<float> vc = kc;
  const PagedKvLayer kv{kc.data(), vc.data(), num_blocks, block_size, kv_heads, hd};

  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  size_t next_block = 0;

  std::vector<Seq> seqs;
  for (const auto& sh : shapes) {
    Seq s;
    s.q_len = sh[0];
    s.context_len = sh[1];
    const int nb = (s.context_len + block_size - 1) / block_size;
    for (int b = 0; b < nb; ++b) s.blocks.push_back(free_blocks.at(next_block++));
    s.k = randn(static_cast<size_t>(s.context_len) * row, rng);
    s.v = randn(static_cast<size_t>(s.context_len) * row, rng);
    seqs.push_back(std::move(s));
  }
  // Order of the sequences' query rows differs from their order in the call.
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  int total = 0;
  for (size_t i : order) {
    seqs[i].q_start = total;
    total += seqs[i].q_len;
  }

  // Fill the cache token by token through paged_kv_write, in a shuffled order, with one
  // padding token (slot -1) in every call.
  struct Item {
    size_t seq;
    int pos;
  };
  std::vector<Item> items;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int p = 0; p < seqs[i].context_len; ++p) items.push_back({i, p});
  }
  std::shuffle(items.begin(), items.end(), rng);
  for (size_t start = 0; start < items.size(); start += 13) {
    const size_t n = std::min<size_t>(13, items.size() - start);
    std::vector<float> kb((n + 1) * row, 1e30f), vb((n + 1) * row, 1e30f);
    std::vector<int32_t> slots(n + 1, -1);
    for (size_t t = 0; t < n; ++t) {
      const Item& it = items[start + t];
      const Seq& s = seqs[it.seq];
      slots[t + 1] = s.blocks[it.pos / block_size] * block_size + it.pos % block_size;
      std::copy_n(&s.k[it.pos * row], row, &kb[(t + 1) * row]);
      std::copy_n(&s.v[it.pos * row], row, &vb[(t + 1) * row]);
    }
    cpu::paged_kv_write(kv, kb.data(), vb.data(), static_cast<int>(n + 1), slots.data());
  }

  const auto q = randn(static_cast<size_t>(total) * heads * hd, rng, q_stddev);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<AttentionSeq> args;
  for (const Seq& s : seqs) args.push_back({s.q_start, s.q_len, s.context_len, s.blocks.data()});
  const auto expected = dense_attention(seqs, q, heads, kv_heads, hd, scale);
  std::vector<float> out_cpu(q.size(), -1.0f), out_ref(q.size(), -1.0f);
  cpu::paged_attention(q.data(), heads, kv, args, scale, out_cpu.data());
  reference::paged_attention(q.data(), heads, kv, args, scale, out_ref.data());
  EXPECT_TRUE(all_close(out_cpu, expected, kRtol));
  EXPECT_TRUE(all_close(out_ref, expected, 1e-6));
}

TEST(Kernels, PagedAttentionMatchesDense) {
  std::mt19937 rng(9);
  for (int block_size : {16, 5, 1}) {
    for (int hd : {64, 36}) {
      SCOPED_TRACE(::testing::Message() << "block_size " << block_size << " head_dim " << hd);
      check_attention(rng, block_size, hd, 1.0f);
    }
  }
}

TEST(Kernels, PagedAttentionStableForLargeScores) {
  std::mt19937 rng(10);
  check_attention(rng, 16, 64, 300.0f);  // scores of order 1e3: exp would overflow unshifted
}

TEST(Kernels, PagedKvWriteLayoutAndBounds) {
  const int kv_heads = 2, hd = 3, bs = 4, nb = 3;
  std::vector<float> kc(nb * bs * kv_heads * hd, 0.0f), vc = kc;
  const PagedKvLayer kv{kc.data(), vc.data(), nb, bs, kv_heads, hd};
  std::vector<float> k(2 * kv_heads * hd), v(k.size());
  std::iota(k.begin(), k.end(), 1.0f);
  std::iota(v.begin(), v.end(), 100.0f);
  const int32_t slots[] = {9, -1};  // block 2, offset 1; second token is padding
  cpu::paged_kv_write(kv, k.data(), v.data(), 2, slots);
  for (size_t e = 0; e < kc.size(); ++e) {
    const bool in_slot = e >= 9u * kv_heads * hd && e < 10u * kv_heads * hd;
    const size_t i = e - 9u * kv_heads * hd;
    EXPECT_EQ(kc[e], in_slot ? k[i] : 0.0f) << e;
    EXPECT_EQ(vc[e], in_slot ? v[i] : 0.0f) << e;
  }
  // Out-of-range slots (past the end, or negative other than the padding slot -1) are refused,
  // naming the token and the slot, before anything is written: a good slot before the bad one
  // stays unwritten too.
  const auto before_k = kc, before_v = vc;
  const int32_t past_end[] = {0, 12};
  const int32_t negative[] = {1, -2};
  for (const int32_t* bad : {past_end, negative}) {
    for (auto* write : {&cpu::paged_kv_write, &reference::paged_kv_write}) {
      try {
        write(kv, k.data(), v.data(), 2, bad);
        ADD_FAILURE() << "slot " << bad[1] << " accepted";
      } catch (const std::out_of_range& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("token 1 has slot " + std::to_string(bad[1])), std::string::npos) << msg;
        EXPECT_NE(msg.find("[0, 12)"), std::string::npos) << msg;
      }
      EXPECT_EQ(kc, before_k);
      EXPECT_EQ(vc, before_v);
    }
  }
}

TEST(Kernels, PagedAttentionRejectsBadArguments) {
  std::vector<float> kc(2 * 4 * 2 * 8, 0.0f), vc = kc, q(8 * 8), out(q.size());
  const PagedKvLayer kv{kc.data(), vc.data(), 2, 4, 2, 8};
  const int32_t table[] = {0, 5};
  const AttentionSeq bad_block{0, 1, 6, table};
  EXPECT_THROW(cpu::paged_attention(q.data(), 8, kv, {&bad_block, 1}, 1.0f, out.data()),
               std::out_of_range);
  const AttentionSeq bad_len{0, 3, 2, table};
  EXPECT_THROW(cpu::paged_attention(q.data(), 8, kv, {&bad_len, 1}, 1.0f, out.data()),
               std::invalid_argument);
  const AttentionSeq ok{0, 1, 2, table};
  EXPECT_THROW(cpu::paged_attention(q.data(), 7, kv, {&ok, 1}, 1.0f, out.data()),
               std::invalid_argument);
}

}  // namespace
}  // namespace lorasched::kernels
