// CUDA kernels against the fp32 reference (kernels/reference). Inputs are rounded to the
// storage dtype once and the same values are given to both sides. Tests needing a device
// skip when there is none; the CudaHostSide tests check host-only code and run everywhere.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "lorasched/kernels/cuda/attention.hpp"
#include "lorasched/kernels/cuda/common.hpp"
#include "lorasched/kernels/cuda/gemm.hpp"
#include "lorasched/kernels/cuda/lora.hpp"
#include "lorasched/kernels/cuda/merge.hpp"
#include "lorasched/kernels/cuda/ops.hpp"
#include "lorasched/kernels/reference.hpp"

#include <ostream>

// Readable test parameter values (ctest names carry them).
namespace lorasched::kernels::cuda {
void PrintTo(DType dt, std::ostream* os) { *os << dtype_name(dt); }
}  // namespace lorasched::kernels::cuda

namespace lk = lorasched::kernels;
namespace cu = lorasched::kernels::cuda;
using cu::DType;

namespace {

// ---- helpers ----------------------------------------------------------------------------------

template <typename P>
class GpuP : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override {
    std::string why;
    if (!cu::cuda_device_available(&why)) {
      GTEST_SKIP() << "no CUDA device, GPU kernel test skipped (" << why << ")";
    }
  }
};

// Fast deterministic uniform values in [-1, 1).
class Rand {
 public:
  explicit Rand(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

std::vector<float> random_values(size_t n, uint64_t seed, float amplitude) {
  Rand r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.uniform() * amplitude;
  return v;
}

double tolerance(DType dt) {
  switch (dt) {
    case DType::kF16:
      return 5e-3;
    case DType::kBF16:
      return 3e-2;
    default:
      return 1e-4;
  }
}

std::string name_of(DType dt) { return cu::dtype_name(dt); }

// Host values <-> device storage.
std::vector<std::byte> encode(DType dt, std::span<const float> v) {
  std::vector<std::byte> out(v.size() * cu::dtype_size(dt));
  if (dt == DType::kF32) {
    if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
    return out;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t b = cu::float_to_bits16(dt, v[i]);
    std::memcpy(out.data() + 2 * i, &b, 2);
  }
  return out;
}

std::vector<float> decode(DType dt, std::span<const std::byte> b) {
  const size_t n = b.size() / cu::dtype_size(dt);
  std::vector<float> out(n);
  if (dt == DType::kF32) {
    if (n != 0) std::memcpy(out.data(), b.data(), n * 4);
    return out;
  }
  for (size_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, b.data() + 2 * i, 2);
    out[i] = cu::bits16_to_float(dt, bits);
  }
  return out;
}

// A device array in dtype plus the exact host values it holds.
struct Tensor {
  DType dtype = DType::kF32;
  std::vector<float> host;
  cu::DeviceBuffer<std::byte> dev;
  void* data() { return dev.get(); }
  const void* data() const { return dev.get(); }
};

// Rounds `values` to dt and uploads them.
Tensor make_tensor(DType dt, std::vector<float> values) {
  Tensor t;
  t.dtype = dt;
  for (auto& v : values) v = cu::round_to(dt, v);
  t.host = std::move(values);
  const auto bytes = encode(dt, t.host);
  t.dev.resize(std::max<size_t>(bytes.size(), 1));
  t.dev.upload(std::span<const std::byte>(bytes));
  return t;
}

std::vector<float> fetch(const Tensor& t) {
  std::vector<std::byte> bytes(t.host.size() * cu::dtype_size(t.dtype));
  t.dev.download(std::span<std::byte>(bytes));
  return decode(t.dtype, bytes);
}

std::vector<float> fetch_floats(const cu::DeviceBuffer<float>& b, size_t n) {
  std::vector<float> out(n);
  b.download(std::span<float>(out));
  return out;
}

// Punica's tolerances for its SGMV / BGMV tests (tests/test_sgmv.py): |got - ref| <= atol +
// rtol |ref| elementwise.
struct Tol {
  double rtol, atol;
};
Tol elementwise_tolerance(DType dt) {
  switch (dt) {
    case DType::kF16:
      return {5e-3, 5e-3};
    case DType::kBF16:
      return {3e-2, 2e-2};
    default:
      return {1e-4, 1e-5};
  }
}

// Compares the LoRA delta the GPU added to y (got - y0) with the reference's (ref - y0), element
// by element, so that a wrong row or column cannot hide under the magnitude of y or of the rest
// of the output. Also requires the reference delta to be far above atol on most adapted
// elements, so that a kernel adding nothing cannot pass. adapted: rows with a LoRA term.
void expect_delta_close(DType dt, std::span<const float> got, std::span<const float> ref,
                        std::span<const float> y0, int rows, int cols, int ld,
                        const std::vector<bool>& adapted, const std::string& what) {
  const Tol tol = elementwise_tolerance(dt);
  size_t bad = 0, checked = 0, large = 0;
  std::string first;
  for (int i = 0; i < rows; ++i) {
    if (!adapted[static_cast<size_t>(i)]) continue;
    for (int c = 0; c < cols; ++c) {
      const size_t idx = static_cast<size_t>(i) * ld + c;
      const double want = static_cast<double>(ref[idx]) - y0[idx];
      const double have = static_cast<double>(got[idx]) - y0[idx];
      ++checked;
      if (std::abs(want) > 10 * tol.atol) ++large;
      if (!(std::abs(have - want) <= tol.atol + tol.rtol * std::abs(want))) {
        if (bad++ == 0)
          first = "row " + std::to_string(i) + " col " + std::to_string(c) + ": delta " +
                  std::to_string(have) + ", reference " + std::to_string(want);
      }
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << checked
                     << " LoRA deltas outside atol + rtol |ref| (first: " << first << ")";
  if (checked > 0) {
    EXPECT_GT(large, checked / 2) << what << ": the reference deltas are too small for the check "
                                  << "to tell a working kernel from one adding nothing";
  }
}

// max |got - ref| / max |ref| over the finite reference entries.
double rel_err(std::span<const float> got, std::span<const float> ref) {
  EXPECT_EQ(got.size(), ref.size());
  double max_ref = 0.0;
  double max_diff = 0.0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    if (!std::isfinite(ref[i])) continue;
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[i])));
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    max_diff = std::max(max_diff, std::isnan(d) ? INFINITY : d);
  }
  return max_diff / std::max(max_ref, 1e-30);
}

// ---- host-only checks (run without a device) -------------------------------------------------

TEST(CudaHostSide, ConversionsRoundToNearestEven) {
  EXPECT_EQ(cu::float_to_bits16(DType::kF16, 1.0f), 0x3C00);
  EXPECT_EQ(cu::float_to_bits16(DType::kBF16, 1.0f), 0x3F80);
  EXPECT_EQ(cu::float_to_bits16(DType::kF16, -2.0f), 0xC000);
  EXPECT_EQ(cu::float_to_bits16(DType::kF16, 65520.0f), 0x7C00);               // rounds to +inf
  EXPECT_EQ(cu::float_to_bits16(DType::kF16, std::ldexp(1.0f, -24)), 0x0001);  // subnormal
  // bf16 ties to even: 1 + 2^-8 -> 1.0, 1 + 3 * 2^-8 -> 1 + 2^-6.
  EXPECT_EQ(cu::float_to_bits16(DType::kBF16, 1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(cu::float_to_bits16(DType::kBF16, 1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(cu::bits16_to_float(DType::kF16, 0x3555), 0.333251953125f);
  EXPECT_EQ(cu::bits16_to_float(DType::kBF16, 0xC2F7), -123.5f);
  EXPECT_EQ(cu::round_to(DType::kF32, 0.1f), 0.1f);
  for (uint32_t b = 0; b < 0x10000; b += 7) {  // exact round trips of finite patterns
    const auto bits = static_cast<uint16_t>(b);
    for (DType dt : {DType::kF16, DType::kBF16}) {
      const float f = cu::bits16_to_float(dt, bits);
      if (std::isfinite(f)) {
        EXPECT_EQ(cu::float_to_bits16(dt, f), bits) << b;
      }
    }
  }
}

TEST(CudaHostSide, DeviceAvailabilityGivesAReason) {
  std::string why;
  if (!cu::cuda_device_available(&why)) {
    EXPECT_FALSE(why.empty());
  } else {
    EXPECT_TRUE(why.empty());
  }
}

// An out-of-range KV slot is refused (a device-side assertion; nothing written), not skipped
// as it once was. In a child process: a failed device assertion leaves the CUDA context unusable.
TEST(CudaKvWrite, OutOfRangeSlotIsRefused) {
  std::string why;
  if (!cu::cuda_device_available(&why)) GTEST_SKIP() << "no CUDA device (" << why << ")";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto child = [] {
    // 2 blocks of 4 slots, one KV head of 4 dims: slots 0..7 exist, 8 does not.
    Tensor kc = make_tensor(DType::kF32, std::vector<float>(32, 0.0f));
    Tensor vc = make_tensor(DType::kF32, std::vector<float>(32, 0.0f));
    const Tensor k = make_tensor(DType::kF32, std::vector<float>(8, 1.0f));
    const Tensor v = make_tensor(DType::kF32, std::vector<float>(8, 2.0f));
    const std::vector<int32_t> slots = {3, 8};
    cu::DeviceBuffer<int32_t> dslots(slots.size());
    dslots.upload(std::span<const int32_t>(slots));
    cu::PagedKvCache cache{kc.data(), vc.data(), 2, 4, 1, 4};
    cu::paged_kv_write(DType::kF32, cache, k.data(), v.data(), 2, dslots.get());
    const cudaError_t e = cudaDeviceSynchronize();
    std::fprintf(stderr, "sync: %s\n", cudaGetErrorName(e));
    std::exit(e == cudaErrorAssert ? 0 : 1);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "sync: cudaErrorAssert");
}

TEST(CudaHostSide, PlansRejectBadBatches) {
  const std::vector<int32_t> ranks = {8, 16};
  const std::vector<cu::LoraSlotSegment> overlap = {{0, 4, 0}, {3, 2, 1}};
  EXPECT_THROW(cu::LoraBatchPlan::segmented(overlap, 8, ranks), std::invalid_argument);
  const std::vector<cu::LoraSlotSegment> outside = {{6, 4, 0}};
  EXPECT_THROW(cu::LoraBatchPlan::segmented(outside, 8, ranks), std::invalid_argument);
  const std::vector<cu::LoraSlotSegment> bad_slot = {{0, 4, 2}};
  EXPECT_THROW(cu::LoraBatchPlan::segmented(bad_slot, 8, ranks), std::invalid_argument);
  const std::vector<int32_t> row_slot = {0, -2};
  EXPECT_THROW(cu::LoraBatchPlan::gathered(row_slot, ranks), std::invalid_argument);

  const std::vector<int32_t> table = {0, 7};
  lk::AttentionSeq seq;
  seq.q_len = 1;
  seq.context_len = 20;
  seq.block_table = table.data();
  EXPECT_THROW(cu::AttentionPlan::build(std::span(&seq, 1), 16, 4), std::invalid_argument);
  seq.q_len = 21;
  EXPECT_THROW(cu::AttentionPlan::build(std::span(&seq, 1), 16, 8), std::invalid_argument);
}

TEST(CudaHostSide, MergeRejectsBadArguments) {
  cu::MergeResidual16 res;
  int dummy = 0;
  EXPECT_THROW(cu::lora_merge(DType::kF32, &dummy, 4, 4, &dummy, &dummy, 1, 1.0f, &res),
               std::invalid_argument);
  EXPECT_THROW(cu::lora_merge(DType::kF16, &dummy, 0, 4, &dummy, &dummy, 1, 1.0f, &res),
               std::invalid_argument);
  EXPECT_THROW(cu::lora_unmerge(DType::kF16, &dummy, 4, 4, &dummy, &dummy, 1, 1.0f, &res),
               std::logic_error);  // nothing merged
}

// ---- base GEMM --------------------------------------------------------------------------------

struct GemmCase {
  DType dtype;
  int m, k, n;
};

void PrintTo(const GemmCase& c, std::ostream* os) {
  *os << cu::dtype_name(c.dtype) << " m=" << c.m << " k=" << c.k << " n=" << c.n;
}

class GemmTest : public GpuP<GemmCase> {};

TEST_P(GemmTest, MatchesReference) {
  const auto [dt, m, k, n] = GetParam();
  cu::BlasHandle blas;
  const Tensor x = make_tensor(dt, random_values(static_cast<size_t>(m) * k, 1, 1.0f));
  const Tensor W = make_tensor(dt, random_values(static_cast<size_t>(n) * k, 2, 0.05f));
  Tensor y = make_tensor(dt, random_values(static_cast<size_t>(m) * n, 3, 1.0f));
  for (bool accumulate : {false, true}) {
    std::vector<float> ref = y.host;
    lk::reference::gemm_xwt(x.host.data(), m, k, k, W.host.data(), n, ref.data(), n, accumulate);
    cu::gemm_xwt(blas, dt, x.data(), m, k, k, W.data(), n, k, y.data(), n, accumulate);
    LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = fetch(y);
    EXPECT_LE(rel_err(got, ref), tolerance(dt)) << "accumulate " << accumulate;
    y.host = got;  // the next round accumulates onto what the GPU produced
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, GemmTest,
    ::testing::Values(GemmCase{DType::kF16, 1, 4096, 512}, GemmCase{DType::kF16, 33, 4096, 1024},
                      GemmCase{DType::kBF16, 33, 4096, 1024}, GemmCase{DType::kF32, 7, 2049, 257},
                      GemmCase{DType::kF16, 7, 2049, 257}, GemmCase{DType::kBF16, 133, 1024, 96}),
    [](const auto& p) {
      return name_of(p.param.dtype) + "_m" + std::to_string(p.param.m) + "_k" +
             std::to_string(p.param.k) + "_n" + std::to_string(p.param.n);
    });

// ---- LoRA shrink / expand ---------------------------------------------------------------------

constexpr int32_t kRanks[] = {1, 8, 16, 32, 64, 96, 128, 256};
constexpr int kNumRanks = static_cast<int>(std::size(kRanks));

enum class Popularity { kDistinct, kUniform, kZipf, kIdentical, kSkewed };

std::string name_of(Popularity p) {
  switch (p) {
    case Popularity::kDistinct:
      return "distinct";
    case Popularity::kUniform:
      return "uniform";
    case Popularity::kZipf:
      return "zipf15";
    case Popularity::kIdentical:
      return "identical";
    case Popularity::kSkewed:
      return "skewed";
  }
  return "unknown";
}

void PrintTo(Popularity p, std::ostream* os) { *os << name_of(p); }

// Slot of each token (-1: base model only) and the rank of each slot.
struct Assignment {
  std::vector<int32_t> row_slot;
  std::vector<int32_t> slot_ranks;
};

Assignment assign(Popularity pop, int tokens, uint64_t seed) {
  constexpr int kPool = 16;
  std::mt19937_64 rng(seed);
  Assignment a;
  int num_slots = kPool;
  switch (pop) {
    case Popularity::kDistinct:
      num_slots = tokens;
      for (int i = 0; i < tokens; ++i) a.row_slot.push_back(i);
      std::shuffle(a.row_slot.begin(), a.row_slot.end(), rng);
      break;
    case Popularity::kUniform: {
      std::uniform_int_distribution<int> d(0, kPool - 1);
      for (int i = 0; i < tokens; ++i) a.row_slot.push_back(d(rng));
      break;
    }
    case Popularity::kZipf: {
      std::vector<double> w(kPool);
      for (int k = 0; k < kPool; ++k) w[k] = 1.0 / std::pow(k + 1.0, 1.5);
      std::discrete_distribution<int> d(w.begin(), w.end());
      for (int i = 0; i < tokens; ++i) a.row_slot.push_back(d(rng));
      break;
    }
    case Popularity::kIdentical:
      num_slots = 1;
      a.row_slot.assign(tokens, 0);
      break;
    case Popularity::kSkewed: {
      // 80% one hot adapter, 10% spread, 10% no adapter; slot 3 has rank 0 (no LoRA term).
      std::uniform_real_distribution<double> u(0.0, 1.0);
      std::uniform_int_distribution<int> other(1, kPool - 1);
      for (int i = 0; i < tokens; ++i) {
        const double p = u(rng);
        a.row_slot.push_back(p < 0.8 ? 0 : (p < 0.9 ? other(rng) : -1));
      }
      break;
    }
  }
  const int shift = static_cast<int>(seed % kNumRanks);
  for (int s = 0; s < num_slots; ++s) a.slot_ranks.push_back(kRanks[(s + shift) % kNumRanks]);
  if (pop == Popularity::kSkewed) a.slot_ranks[3] = 0;
  return a;
}

struct AdapterPool {
  std::vector<std::vector<float>> A, B;  // host values (rounded to the dtype)
  std::vector<cu::DeviceBuffer<std::byte>> dA, dB;
  std::vector<cu::LoraAdapterRef> refs;
};

AdapterPool make_pool(DType dt, int in, int out, std::span<const int32_t> ranks, uint64_t seed) {
  AdapterPool p;
  const size_t n = ranks.size();
  p.A.resize(n);
  p.B.resize(n);
  p.dA.resize(n);
  p.dB.resize(n);
  p.refs.resize(n);
  for (size_t s = 0; s < n; ++s) {
    const int r = ranks[s];
    cu::LoraAdapterRef ref;
    ref.rank = r;
    ref.scale = 0.5f + 0.25f * static_cast<float>(s % 4);
    if (r > 0) {
      Tensor a = make_tensor(dt, random_values(static_cast<size_t>(r) * in, seed + 2 * s,
                                               1.0f / std::sqrt(static_cast<float>(in))));
      Tensor b = make_tensor(dt, random_values(static_cast<size_t>(out) * r, seed + 2 * s + 1,
                                               1.0f / std::sqrt(static_cast<float>(r))));
      p.A[s] = std::move(a.host);
      p.B[s] = std::move(b.host);
      p.dA[s] = std::move(a.dev);
      p.dB[s] = std::move(b.dev);
      ref.A = p.dA[s].get();
      ref.B = p.dB[s].get();
    }
    p.refs[s] = ref;
  }
  return p;
}

enum class Form { kGathered, kSegmented };

// Runs shrink + expand on the GPU and on the reference and compares t and y.
void check_lora(DType dt, int in, int out, int extra_ld, int tokens, Popularity pop, Form form,
                uint64_t seed) {
  SCOPED_TRACE(name_of(dt) + " in=" + std::to_string(in) + " out=" + std::to_string(out) +
               " tokens=" + std::to_string(tokens) + " " + name_of(pop) +
               (form == Form::kGathered ? " gathered" : " segmented"));
  Assignment a = assign(pop, tokens, seed);
  const AdapterPool pool = make_pool(dt, in, out, a.slot_ranks, seed * 1000);
  cu::LoraAdapterTable table;
  table.assign(pool.refs);

  const int ldx = in + extra_ld;
  const int ldy = out + extra_ld;
  const Tensor x =
      make_tensor(dt, random_values(static_cast<size_t>(tokens) * ldx, seed + 7, 1.0f));
  Tensor y = make_tensor(dt, random_values(static_cast<size_t>(tokens) * ldy, seed + 8, 1.0f));
  const std::vector<float> y0 = y.host;

  auto ref_segment = [&](int start, int len, int slot) {
    lk::LoraSegment s;
    s.start = start;
    s.len = len;
    s.rank = a.slot_ranks[slot];
    s.scale = pool.refs[slot].scale;
    s.A = pool.A[slot].data();
    s.B = pool.B[slot].data();
    return s;
  };
  std::vector<lk::LoraSegment> ref_segments;
  std::vector<bool> adapted(tokens, false);
  cu::LoraBatchPlan plan;
  if (form == Form::kGathered) {
    for (int i = 0; i < tokens; ++i) {
      const int slot = a.row_slot[i];
      if (slot < 0) continue;
      ref_segments.push_back(ref_segment(i, 1, slot));
      adapted[i] = a.slot_ranks[slot] > 0;
    }
    plan = cu::LoraBatchPlan::gathered(a.row_slot, a.slot_ranks);
  } else {
    // Rows grouped by adapter (base-only rows first, uncovered), segments in reverse order.
    std::sort(a.row_slot.begin(), a.row_slot.end());
    std::vector<cu::LoraSlotSegment> segs;
    for (int i = 0; i < tokens;) {
      int j = i;
      while (j < tokens && a.row_slot[j] == a.row_slot[i]) ++j;
      if (a.row_slot[i] >= 0) {
        segs.push_back({i, j - i, a.row_slot[i]});
        for (int k = i; k < j; ++k) adapted[k] = a.slot_ranks[a.row_slot[i]] > 0;
      }
      i = j;
    }
    std::reverse(segs.begin(), segs.end());
    for (const auto& s : segs) ref_segments.push_back(ref_segment(s.start, s.len, s.slot));
    plan = cu::LoraBatchPlan::segmented(segs, tokens, a.slot_ranks);
  }
  ASSERT_EQ(plan.t_floats(), lk::lora_workspace_floats(ref_segments));

  std::vector<float> t_ref(plan.t_floats());
  lk::reference::lora_shrink(x.host.data(), in, ldx, ref_segments, t_ref.data());
  std::vector<float> y_ref = y0;
  lk::reference::lora_expand(t_ref.data(), ref_segments, out, y_ref.data(), ldy);

  cu::DeviceBuffer<float> t(std::max<size_t>(plan.t_floats(), 1));
  cu::lora_shrink(dt, x.data(), in, ldx, table, plan, t.get());
  cu::lora_expand(dt, t.get(), table, plan, out, y.data(), ldy);
  LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());

  const auto t_got = fetch_floats(t, plan.t_floats());
  EXPECT_LE(rel_err(t_got, t_ref), 1e-4) << "shrink";
  const auto y_got = fetch(y);
  EXPECT_LE(rel_err(y_got, y_ref), tolerance(dt)) << "expand";
  expect_delta_close(dt, y_got, y_ref, y0, tokens, out, ldy, adapted, "expand");
  // Rows without a LoRA term, and the padding columns, keep their bits.
  for (int i = 0; i < tokens; ++i) {
    for (int c = adapted[i] ? out : 0; c < ldy; ++c) {
      const size_t idx = static_cast<size_t>(i) * ldy + c;
      ASSERT_EQ(y_got[idx], y0[idx]) << "row " << i << " col " << c << " changed";
    }
  }
}

class LoraRank256 : public GpuP<DType> {};

// Rank 256 (four shared-memory chunks of the expand, 64 rank groups of the shrink) on Llama-2-7B
// shapes, both forms, and the segmented form with 1-row and 8-row tiles forced.
TEST_P(LoraRank256, ShrinkExpandMatchReference) {
  const DType dt = GetParam();
  for (const auto& [in, out] : {std::pair{4096, 4096}, std::pair{4096, 11008}}) {
    SCOPED_TRACE(std::to_string(in) + "x" + std::to_string(out));
    const std::vector<int32_t> ranks = {256, 256};
    const AdapterPool pool = make_pool(dt, in, out, ranks, 31337);
    cu::LoraAdapterTable table;
    table.assign(pool.refs);
    const int tokens = 24;  // rows 0-15 adapter 0, 16-23 adapter 1
    const Tensor x = make_tensor(dt, random_values(static_cast<size_t>(tokens) * in, 5, 1.0f));
    const std::vector<cu::LoraSlotSegment> segs = {{0, 16, 0}, {16, 8, 1}};
    std::vector<lk::LoraSegment> ref_segs;
    for (const auto& s : segs)
      ref_segs.push_back({s.start, s.len, pool.A[static_cast<size_t>(s.slot)].data(),
                          pool.B[static_cast<size_t>(s.slot)].data(), 256,
                          pool.refs[static_cast<size_t>(s.slot)].scale});
    std::vector<int32_t> row_slot(tokens);
    for (int i = 0; i < tokens; ++i) row_slot[i] = i < 16 ? 0 : 1;
    const std::vector<bool> adapted(tokens, true);
    for (int form = 0; form < 4; ++form) {
      SCOPED_TRACE("form " + std::to_string(form));
      cu::LoraBatchPlan plan = form == 0   ? cu::LoraBatchPlan::gathered(row_slot, ranks)
                               : form == 1 ? cu::LoraBatchPlan::segmented(segs, tokens, ranks)
                               : form == 2
                                   ? cu::LoraBatchPlan::segmented(segs, tokens, ranks, nullptr, 1)
                                   : cu::LoraBatchPlan::segmented(segs, tokens, ranks, nullptr, 8);
      Tensor y = make_tensor(dt, random_values(static_cast<size_t>(tokens) * out, 6, 1.0f));
      const std::vector<float> y0 = y.host;
      std::vector<float> t_ref(lk::lora_workspace_floats(ref_segs));
      lk::reference::lora_shrink(x.host.data(), in, in, ref_segs, t_ref.data());
      std::vector<float> y_ref = y0;
      lk::reference::lora_expand(t_ref.data(), ref_segs, out, y_ref.data(), out);
      cu::DeviceBuffer<float> t(plan.t_floats());
      cu::lora_shrink(dt, x.data(), in, in, table, plan, t.get());
      cu::lora_expand(dt, t.get(), table, plan, out, y.data(), out);
      LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_LE(rel_err(fetch_floats(t, plan.t_floats()), t_ref), 1e-4) << "shrink";
      expect_delta_close(dt, fetch(y), y_ref, y0, tokens, out, out, adapted, "expand");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, LoraRank256, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& p) { return name_of(p.param); });

TEST(CudaPlans, SegmentedPlanPicksTileRowsByMeanSegmentLength) {
  if (!cu::cuda_device_available()) GTEST_SKIP() << "plans upload their tiles to the device";
  const std::vector<int32_t> ranks = {16, 16, 16, 16};
  // Mean 3 rows per segment: 1-row tiles; mean 4: 8-row tiles; forced either way.
  const std::vector<cu::LoraSlotSegment> short_segs = {{0, 3, 0}, {3, 3, 1}};
  const std::vector<cu::LoraSlotSegment> long_segs = {{0, 4, 0}, {4, 4, 1}};
  EXPECT_EQ(cu::LoraBatchPlan::segmented(short_segs, 6, ranks).rows_per_tile(), 1);
  EXPECT_EQ(cu::LoraBatchPlan::segmented(long_segs, 8, ranks).rows_per_tile(), 8);
  EXPECT_EQ(cu::LoraBatchPlan::segmented(long_segs, 8, ranks, nullptr, 1).rows_per_tile(), 1);
  EXPECT_EQ(cu::LoraBatchPlan::segmented(short_segs, 6, ranks, nullptr, 8).rows_per_tile(), 8);
  EXPECT_THROW(cu::LoraBatchPlan::segmented(short_segs, 6, ranks, nullptr, 4),
               std::invalid_argument);
}

class LoraSweep : public GpuP<std::tuple<DType, Popularity>> {};

// Punica-style sweep: hidden 4096, ranks 1..256 mixed in one batch, 1..133 tokens.
TEST_P(LoraSweep, ShrinkExpandMatchReference) {
  const auto [dt, pop] = GetParam();
  for (int tokens : {1, 7, 33, 133}) {
    for (Form form : {Form::kGathered, Form::kSegmented}) {
      check_lora(dt, 4096, 4096, 0, tokens, pop, form,
                 static_cast<uint64_t>(tokens * 10 + static_cast<int>(pop)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, LoraSweep,
    ::testing::Combine(::testing::Values(DType::kF16, DType::kBF16),
                       ::testing::Values(Popularity::kDistinct, Popularity::kUniform,
                                         Popularity::kZipf, Popularity::kIdentical,
                                         Popularity::kSkewed)),
    [](const auto& p) {
      return name_of(std::get<0>(p.param)) + "_" + name_of(std::get<1>(p.param));
    });

struct Shape {
  int in, out;
};

void PrintTo(const Shape& s, std::ostream* os) { *os << s.in << "x" << s.out; }

class LoraShapes : public GpuP<std::tuple<DType, Shape>> {};

// Projection shapes of Llama-2-7B (gate/up: 4096 -> 11008, down: 11008 -> 4096) and an odd
// hidden size (no 16-byte vector path), with padded row strides.
TEST_P(LoraShapes, ShrinkExpandMatchReference) {
  const auto [dt, shape] = GetParam();
  for (Form form : {Form::kGathered, Form::kSegmented}) {
    check_lora(dt, shape.in, shape.out, 8, 33, Popularity::kZipf, form, 4242);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, LoraShapes,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       ::testing::Values(Shape{4096, 11008}, Shape{11008, 4096}, Shape{2049, 2049},
                                         Shape{2049, 4096})),
    [](const auto& p) {
      const Shape s = std::get<1>(p.param);
      return name_of(std::get<0>(p.param)) + "_" + std::to_string(s.in) + "x" +
             std::to_string(s.out);
    });

// ---- merge / unmerge --------------------------------------------------------------------------

struct Adapter16 {
  int rank = 0;
  Tensor A, B;
};

Adapter16 make_adapter16(DType dt, int out, int in, int rank, uint64_t seed) {
  Adapter16 a;
  a.rank = rank;
  a.A = make_tensor(dt, random_values(static_cast<size_t>(rank) * in, seed, 0.1f));
  a.B = make_tensor(dt, random_values(static_cast<size_t>(out) * rank, seed + 1, 0.1f));
  return a;
}

std::vector<uint16_t> fetch_bits(const cu::DeviceBuffer<uint16_t>& W) {
  std::vector<uint16_t> bits(W.size());
  W.download(std::span<uint16_t>(bits));
  return bits;
}

void check_residual_consistent(const cu::MergeResidual16& res, size_t numel) {
  for (size_t i = 1; i < res.exceptions.size(); ++i) {
    ASSERT_LT(res.exceptions[i - 1].first, res.exceptions[i].first) << "exceptions not sorted";
  }
  std::vector<int8_t> ulps(numel);
  res.ulps.download(std::span<int8_t>(ulps));
  const auto marked =
      static_cast<size_t>(std::count(ulps.begin(), ulps.end(), cu::MergeResidual16::kUlpException));
  ASSERT_EQ(marked, res.exceptions.size());
  for (const auto& [idx, value] : res.exceptions) {
    ASSERT_EQ(ulps[idx], cu::MergeResidual16::kUlpException);
    (void)value;
  }
}

class MergeTest : public GpuP<DType> {};

TEST_P(MergeTest, ThousandCyclesRestoreBitsExactly) {
  const DType dt = GetParam();
  const int out = 70;  // not multiples of the kernel tile
  const int in = 300;
  const size_t numel = static_cast<size_t>(out) * in;
  const bool f16 = dt == DType::kF16;

  // Weights ~ U(-0.05, 0.05), a band of tiny values (where large deltas need exceptions) and
  // special patterns: +-0, +-min subnormal, +-inf, NaN with payload, max finite.
  std::vector<float> w = random_values(numel, 99, 0.05f);
  for (size_t i = 1000; i < 1600; ++i) w[i] *= 1e-4f;
  std::vector<uint16_t> bits(numel);
  for (size_t i = 0; i < numel; ++i) bits[i] = cu::float_to_bits16(dt, w[i]);
  const uint16_t specials[] = {0x0000,
                               0x8000,
                               0x0001,
                               0x8001,
                               static_cast<uint16_t>(f16 ? 0x7C00 : 0x7F80),
                               static_cast<uint16_t>(f16 ? 0xFC00 : 0xFF80),
                               static_cast<uint16_t>(f16 ? 0x7E01 : 0x7FC1),
                               static_cast<uint16_t>(f16 ? 0x7BFF : 0x7F7F)};
  for (size_t i = 0; i < std::size(specials); ++i) bits[37 * i + 5] = specials[i];
  const std::vector<uint16_t> original = bits;
  cu::DeviceBuffer<uint16_t> W(numel);
  W.upload(std::span<const uint16_t>(bits));

  std::vector<Adapter16> adapters;
  const int ranks[] = {1, 8, 16, 64, 96, 128, 256};
  for (size_t k = 0; k < std::size(ranks); ++k) {
    adapters.push_back(make_adapter16(dt, out, in, ranks[k], 500 + 2 * k));
  }
  auto scale_of = [](int c) {
    if (c % 7 == 3) return 2000.0f;  // |D| >> |W|: exceptions
    if (c % 11 == 5) return -1.5f;
    return 0.5f + 0.37f * static_cast<float>(c % 5);
  };

  cu::MergeResidual16 res[3];
  size_t total_exceptions = 0;
  for (int c = 0; c < 1000; ++c) {
    SCOPED_TRACE("cycle " + std::to_string(c));
    if (c % 100 == 99) {
      // Three adapters merged on top of each other, unmerged last-in first-out.
      for (int k = 0; k < 3; ++k) {
        const Adapter16& ad = adapters[(c + k) % adapters.size()];
        cu::lora_merge(dt, W.get(), out, in, ad.A.data(), ad.B.data(), ad.rank, scale_of(c + k),
                       &res[k]);
      }
      for (int k = 2; k >= 0; --k) {
        const Adapter16& ad = adapters[(c + k) % adapters.size()];
        cu::lora_unmerge(dt, W.get(), out, in, ad.A.data(), ad.B.data(), ad.rank, scale_of(c + k),
                         &res[k]);
      }
    } else {
      const Adapter16& ad = adapters[c % adapters.size()];
      const float scale = scale_of(c);
      cu::lora_merge(dt, W.get(), out, in, ad.A.data(), ad.B.data(), ad.rank, scale, &res[0]);
      total_exceptions += res[0].num_exceptions();
      if (c < 12 || c % 250 == 0) {
        check_residual_consistent(res[0], numel);
        // Merged weights against the fp32 reference merge of the same values.
        std::vector<float> ref(numel);
        for (size_t i = 0; i < numel; ++i) ref[i] = cu::bits16_to_float(dt, original[i]);
        lk::MergeResidual ref_res;
        lk::reference::lora_merge(ref.data(), out, in, ad.A.host.data(), ad.B.host.data(), ad.rank,
                                  scale, &ref_res);
        for (auto& v : ref) v = cu::round_to(dt, v);
        for (size_t i = 0; i < std::size(specials); ++i) ref[37 * i + 5] = NAN;  // not compared
        const auto merged_bits = fetch_bits(W);
        std::vector<float> merged(numel);
        for (size_t i = 0; i < numel; ++i) merged[i] = cu::bits16_to_float(dt, merged_bits[i]);
        EXPECT_LE(rel_err(merged, ref), tolerance(dt));
      }
      cu::lora_unmerge(dt, W.get(), out, in, ad.A.data(), ad.B.data(), ad.rank, scale, &res[0]);
    }
    const auto restored = fetch_bits(W);
    for (size_t i = 0; i < numel; ++i) {
      ASSERT_EQ(restored[i], original[i]) << "element " << i;
    }
  }
  EXPECT_GT(total_exceptions, 0u) << "the exception path was not exercised";
}

// Llama-2-7B projection shapes (q/k/v/o and gate/up; 11008 x 4096 has indices > 2^24).
TEST_P(MergeTest, LlamaShapesRestoreBitsExactly) {
  const DType dt = GetParam();
  for (const auto& [out, in] : {std::pair{4096, 4096}, std::pair{11008, 4096}}) {
    SCOPED_TRACE(std::to_string(out) + "x" + std::to_string(in));
    const size_t numel = static_cast<size_t>(out) * in;
    Rand r(7);
    std::vector<uint16_t> original(numel);
    for (auto& b : original) b = cu::float_to_bits16(dt, 0.02f * r.uniform());
    cu::DeviceBuffer<uint16_t> W(numel);
    W.upload(std::span<const uint16_t>(original));
    const Adapter16 ad = make_adapter16(dt, out, in, 16, 11);
    const float scale = 2.0f;
    cu::MergeResidual16 res;
    cu::lora_merge(dt, W.get(), out, in, ad.A.data(), ad.B.data(), 16, scale, &res);
    const auto merged = fetch_bits(W);
    // Spot-check merged values against a double-precision delta.
    for (int s = 0; s < 2000; ++s) {
      const size_t idx = r.next() % numel;
      const size_t o = idx / in;
      const size_t i = idx % in;
      double d = 0.0;
      for (int k = 0; k < 16; ++k) {
        d += static_cast<double>(scale) * ad.B.host[o * 16 + k] * ad.A.host[k * in + i];
      }
      const double want = cu::bits16_to_float(dt, original[idx]) + d;
      const double got = cu::bits16_to_float(dt, merged[idx]);
      ASSERT_NEAR(got, want, 0.1 * tolerance(dt)) << "element " << idx;
    }
    cu::lora_unmerge(dt, W.get(), out, in, ad.A.data(), ad.B.data(), 16, scale, &res);
    ASSERT_TRUE(fetch_bits(W) == original);
  }
}

// The fused switch against unmerge then merge on a second copy of the weights, through chains
// of random switches: W and the exception list (host copy) bit-identical after every switch,
// the base restored by the final unmerge. An adapter with |D| >> |W| gives thousands of
// exceptions in a 70 x 300 weight, more than a switch's first list holds (1,024 or twice the
// previous merge's), so the second launch is exercised too.
TEST_P(MergeTest, SwitchChainsEqualUnmergeThenMerge) {
  const DType dt = GetParam();
  const int out = 70, in = 300;
  const size_t numel = static_cast<size_t>(out) * in;
  std::vector<float> w = random_values(numel, 7, 0.05f);
  for (size_t i = 2000; i < 2600; ++i) w[i] *= 1e-4f;
  std::vector<uint16_t> original(numel);
  for (size_t i = 0; i < numel; ++i) original[i] = cu::float_to_bits16(dt, w[i]);
  cu::DeviceBuffer<uint16_t> Wf(numel), Wp(numel);
  Wf.upload(std::span<const uint16_t>(original));
  Wp.upload(std::span<const uint16_t>(original));
  struct Ad {
    Adapter16 a;
    float scale;
  };
  std::vector<Ad> ads;
  const int ranks[] = {1, 8, 16, 64, 256, 3};
  const float scales[] = {0.7f, -1.5f, 2.0f, 0.5f, 1.0f, 2000.0f};  // the last: exceptions
  for (size_t k = 0; k < std::size(ranks); ++k)
    ads.push_back({make_adapter16(dt, out, in, ranks[k], 900 + 2 * k), scales[k]});
  auto merge = [&](cu::DeviceBuffer<uint16_t>& W, const Ad& x, cu::MergeResidual16& res) {
    cu::lora_merge(dt, W.get(), out, in, x.a.A.data(), x.a.B.data(), x.a.rank, x.scale, &res);
  };
  auto unmerge = [&](cu::DeviceBuffer<uint16_t>& W, const Ad& x, cu::MergeResidual16& res) {
    cu::lora_unmerge(dt, W.get(), out, in, x.a.A.data(), x.a.B.data(), x.a.rank, x.scale, &res);
  };
  Rand r(3);
  size_t cur = 0, most_exceptions = 0;
  cu::MergeResidual16 rf, rp;
  merge(Wf, ads[cur], rf);
  merge(Wp, ads[cur], rp);
  for (int step = 0; step < 40; ++step) {
    SCOPED_TRACE("switch " + std::to_string(step));
    size_t next = static_cast<size_t>(r.below(static_cast<int>(ads.size())));
    if (next == cur) next = (next + 1) % ads.size();
    if (step == 3) next = 5;  // at least once onto the adapter with many exceptions
    const Ad& a = ads[cur];
    const Ad& b = ads[next];
    cu::lora_switch(dt, Wf.get(), out, in, a.a.A.data(), a.a.B.data(), a.a.rank, a.scale,
                    b.a.A.data(), b.a.B.data(), b.a.rank, b.scale, &rf);
    unmerge(Wp, a, rp);
    merge(Wp, b, rp);
    ASSERT_TRUE(fetch_bits(Wf) == fetch_bits(Wp));
    ASSERT_EQ(rf.exceptions, rp.exceptions);
    check_residual_consistent(rf, numel);
    most_exceptions = std::max(most_exceptions, rf.num_exceptions());
    cur = next;
  }
  unmerge(Wf, ads[cur], rf);
  ASSERT_TRUE(fetch_bits(Wf) == original);
  EXPECT_GT(most_exceptions, 2048u) << "the second launch was not exercised";
  // A from-adapter other than the merged one is refused before anything changes.
  merge(Wf, ads[0], rf);
  EXPECT_THROW(cu::lora_switch(dt, Wf.get(), out, in, ads[1].a.A.data(), ads[1].a.B.data(),
                               ads[1].a.rank, ads[1].scale, ads[2].a.A.data(), ads[2].a.B.data(),
                               ads[2].a.rank, ads[2].scale, &rf),
               std::invalid_argument);
  unmerge(Wf, ads[0], rf);
  ASSERT_TRUE(fetch_bits(Wf) == original);
}

INSTANTIATE_TEST_SUITE_P(Cuda, MergeTest, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& p) { return name_of(p.param); });

// ---- RMSNorm, RoPE, SiLU ----------------------------------------------------------------------

class OpsTest : public GpuP<DType> {};

TEST_P(OpsTest, RmsNormMatchesReference) {
  const DType dt = GetParam();
  for (const auto& [rows, dim] : {std::pair{1, 4096}, std::pair{33, 4096}, std::pair{7, 2049}}) {
    const Tensor x = make_tensor(dt, random_values(static_cast<size_t>(rows) * dim, 21, 2.0f));
    std::vector<float> wv = random_values(dim, 22, 0.5f);
    for (auto& v : wv) v += 1.0f;
    const Tensor weight = make_tensor(dt, wv);
    Tensor y = make_tensor(dt, std::vector<float>(static_cast<size_t>(rows) * dim, 0.0f));
    std::vector<float> ref(y.host.size());
    lk::reference::rmsnorm(x.host.data(), weight.host.data(), rows, dim, 1e-5f, ref.data());
    cu::rmsnorm(dt, x.data(), weight.data(), rows, dim, 1e-5f, y.data());
    LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_LE(rel_err(fetch(y), ref), tolerance(dt)) << rows << "x" << dim;
    // In place.
    Tensor z = make_tensor(dt, x.host);
    cu::rmsnorm(dt, z.data(), weight.data(), rows, dim, 1e-5f, z.data());
    LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(fetch(z), fetch(y));
  }
}

TEST_P(OpsTest, RopeMatchesReference) {
  const DType dt = GetParam();
  const int tokens = 33;
  const int heads = 4;
  for (const int head_dim : {64, 128}) {
    for (const float theta : {10000.0f, 500000.0f}) {
      std::vector<int32_t> pos(tokens);
      Rand r(head_dim);
      for (auto& p : pos) p = r.below(4096);
      cu::DeviceBuffer<int32_t> dpos(tokens);
      dpos.upload(std::span<const int32_t>(pos));
      Tensor x =
          make_tensor(dt, random_values(static_cast<size_t>(tokens) * heads * head_dim, 31, 1.0f));
      std::vector<float> ref = x.host;
      lk::reference::rope(ref.data(), tokens, heads, head_dim, pos.data(), theta);
      cu::rope(dt, x.data(), tokens, heads, head_dim, dpos.get(), theta);
      LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_LE(rel_err(fetch(x), ref), tolerance(dt)) << head_dim << " " << theta;
    }
  }
}

TEST_P(OpsTest, SiluMulMatchesReference) {
  const DType dt = GetParam();
  const size_t n = 33 * 11008 + 3;
  const Tensor gate = make_tensor(dt, random_values(n, 41, 6.0f));
  const Tensor up = make_tensor(dt, random_values(n, 42, 2.0f));
  Tensor y = make_tensor(dt, std::vector<float>(n, 0.0f));
  std::vector<float> ref(n);
  lk::reference::silu_mul(gate.host.data(), up.host.data(), n, ref.data());
  cu::silu_mul(dt, gate.data(), up.data(), n, y.data());
  LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(rel_err(fetch(y), ref), tolerance(dt));
}

INSTANTIATE_TEST_SUITE_P(Cuda, OpsTest, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& p) { return name_of(p.param); });

// ---- paged KV cache and attention ---------------------------------------------------------------

struct AttnCase {
  DType dtype;
  int num_heads, num_kv_heads, head_dim, block_size;
};

void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << cu::dtype_name(c.dtype) << " heads=" << c.num_heads << " kv_heads=" << c.num_kv_heads
      << " head_dim=" << c.head_dim << " block_size=" << c.block_size;
}

class AttentionTest : public GpuP<AttnCase> {};

// A mixed batch: prefills, a chunked prefill over a cached prefix and decodes, with block
// tables drawn from a shuffled pool; GQA / MQA / MHA and odd head dims.
TEST_P(AttentionTest, MixedPrefillDecodeMatchesReference) {
  const auto [dt, num_heads, num_kv_heads, head_dim, block_size] = GetParam();
  struct SeqSpec {
    int q_len, context_len;
  };
  const std::vector<SeqSpec> specs = {{37, 37}, {1, 300}, {16, 80}, {1, 1}, {1, 513}, {64, 200}};
  std::vector<int32_t> pool_ids;
  int blocks_needed = 0;
  for (const auto& s : specs) blocks_needed += (s.context_len + block_size - 1) / block_size;
  const int num_blocks = blocks_needed + 17;
  pool_ids.resize(num_blocks);
  std::iota(pool_ids.begin(), pool_ids.end(), 0);
  std::shuffle(pool_ids.begin(), pool_ids.end(), std::mt19937_64(5));

  // Block tables, query rows and the slots of every context token (plus padding tokens).
  std::vector<std::vector<int32_t>> tables;
  std::vector<lk::AttentionSeq> seqs;
  std::vector<int32_t> slots;
  int next_block = 0;
  int q_rows = 0;
  for (const auto& s : specs) {
    const int nb = (s.context_len + block_size - 1) / block_size;
    tables.emplace_back(pool_ids.begin() + next_block, pool_ids.begin() + next_block + nb);
    next_block += nb;
    for (int p = 0; p < s.context_len; ++p) {
      slots.push_back(tables.back()[p / block_size] * block_size + p % block_size);
    }
    slots.push_back(-1);  // a padding token: not written
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    lk::AttentionSeq seq;
    seq.q_start = q_rows;
    seq.q_len = specs[i].q_len;
    seq.context_len = specs[i].context_len;
    seq.block_table = tables[i].data();
    seqs.push_back(seq);
    q_rows += specs[i].q_len;
  }
  const int rows = q_rows + 3;  // spare rows the kernel must not touch
  const int tokens = static_cast<int>(slots.size());
  const size_t kv_row = static_cast<size_t>(num_kv_heads) * head_dim;
  const size_t cache_elems = static_cast<size_t>(num_blocks) * block_size * kv_row;

  // KV write.
  const Tensor k_new = make_tensor(dt, random_values(tokens * kv_row, 51, 1.0f));
  const Tensor v_new = make_tensor(dt, random_values(tokens * kv_row, 52, 1.0f));
  Tensor kc = make_tensor(dt, std::vector<float>(cache_elems, 0.0f));
  Tensor vc = make_tensor(dt, std::vector<float>(cache_elems, 0.0f));
  cu::DeviceBuffer<int32_t> dslots(slots.size());
  dslots.upload(std::span<const int32_t>(slots));
  cu::PagedKvCache cache{kc.data(), vc.data(), num_blocks, block_size, num_kv_heads, head_dim};
  cu::paged_kv_write(dt, cache, k_new.data(), v_new.data(), tokens, dslots.get());

  std::vector<float> ref_k(cache_elems, 0.0f);
  std::vector<float> ref_v(cache_elems, 0.0f);
  lk::PagedKvLayer layer{ref_k.data(), ref_v.data(), num_blocks,
                         block_size,   num_kv_heads, head_dim};
  lk::reference::paged_kv_write(layer, k_new.host.data(), v_new.host.data(), tokens, slots.data());
  LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_TRUE(fetch(kc) == ref_k) << "key cache differs";
  ASSERT_TRUE(fetch(vc) == ref_v) << "value cache differs";

  // Attention.
  const size_t q_elems = static_cast<size_t>(rows) * num_heads * head_dim;
  const Tensor q = make_tensor(dt, random_values(q_elems, 53, 1.0f));
  Tensor o = make_tensor(dt, std::vector<float>(q_elems, 7.0f));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const auto plan = cu::AttentionPlan::build(seqs, block_size, num_blocks);
  ASSERT_EQ(plan.num_queries(), q_rows);
  cu::paged_attention(dt, q.data(), num_heads, cache, plan, scale, o.data());
  std::vector<float> ref(q_elems, 7.0f);
  lk::reference::paged_attention(q.host.data(), num_heads, layer, seqs, scale, ref.data());
  LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = fetch(o);
  EXPECT_LE(rel_err(got, ref), tolerance(dt));
  for (size_t i = static_cast<size_t>(q_rows) * num_heads * head_dim; i < q_elems; ++i) {
    ASSERT_EQ(got[i], 7.0f) << "spare row written";
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, AttentionTest,
                         ::testing::Values(AttnCase{DType::kF16, 8, 2, 128, 16},
                                           AttnCase{DType::kBF16, 8, 2, 128, 16},
                                           AttnCase{DType::kF32, 4, 4, 64, 16},
                                           AttnCase{DType::kF16, 8, 1, 80, 8},
                                           AttnCase{DType::kBF16, 2, 1, 256, 32}),
                         [](const auto& p) {
                           const AttnCase& c = p.param;
                           return name_of(c.dtype) + "_h" + std::to_string(c.num_heads) + "_kv" +
                                  std::to_string(c.num_kv_heads) + "_d" +
                                  std::to_string(c.head_dim) + "_bs" + std::to_string(c.block_size);
                         });

}  // namespace
