// Merging a LoRA adapter into the base weights and undoing it bit-exactly (types.hpp,
// MergeResidual). One fused pass per weight chunk: D is evaluated in registers for a chunk of
// columns of one or two rows (r ascending, from +0, in float: the order types.hpp fixes), then
// W' = W + D, u = W' - D and the ulp difference are computed and stored before moving on, so
// W is read and written once. The multiplies and adds are plain IEEE float operations in both
// the scalar and the vector code (this file is compiled with -ffp-contract=off), so every
// element comes out the same whichever code path, row pairing or thread computes it.
//
// A switch from adapter a to adapter b (lora_switch) fuses unmerge and merge into the same single
// pass: per element, the base value is restored from a's residual and b merged onto it in
// registers, so W and the residual byte are read and written once for both.
//
// Cost: 9 bytes of memory traffic per element (W read + written, one residual byte) plus
// `rank` multiplies and adds (10 bytes and rank_a + rank_b for a switch). On the 2-core Zen 4 test
// box (1 thread, CPU time) a 4096 x 4096 merge takes ~12 ms at rank 0 (about the memory bound), ~30
// ms at rank 16 and ~90 ms at rank 64, so beyond small ranks the arithmetic dominates; unmerge
// costs the same.

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "internal.hpp"
#include "lorasched/kernels/cpu.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define LORASCHED_INLINE inline __attribute__((always_inline))
#else
#define LORASCHED_INLINE inline
#endif

namespace lorasched::kernels::cpu {
namespace {

std::atomic<int> g_merge_threads{1};

constexpr int kChunk = 32;  // columns evaluated together (4 AVX registers per row)

// Order-preserving integer image of a float's bits (an involution on bit patterns): negative
// floats get their 31 low bits flipped, so -0 -> -1 < +0 -> 0 and larger magnitudes go further
// out. Differences are taken modulo 2^32; since the map is a bijection, order(u) + diff
// restores the exact bits whenever diff was recorded.
LORASCHED_INLINE uint32_t order(float f) {
  const int32_t b = std::bit_cast<int32_t>(f);
  return static_cast<uint32_t>(b ^ ((b >> 31) & 0x7fffffff));
}
LORASCHED_INLINE float from_order(uint32_t k) {
  const int32_t b = static_cast<int32_t>(k);
  return std::bit_cast<float>(b ^ ((b >> 31) & 0x7fffffff));
}

struct MergeArgs {
  float* W;
  int out;
  int in;
  const float* A;
  const float* B;
  int rank;
  float scale;
};

// d[k][l] = sum_r sb[k * rank + r] * A[r, i0 + l], r ascending, starting from +0, where
// sb = scale * B[o0 + k, :] (computed once per row block, in float).
template <int NR, bool kFull>
LORASCHED_INLINE void delta_chunk(const MergeArgs& a, const float* sb, int i0, int w,
                                  float (&d)[NR][kChunk]) {
  const int width = kFull ? kChunk : w;
  for (int k = 0; k < NR; ++k) {
    for (int l = 0; l < kChunk; ++l) d[k][l] = 0.0f;
  }
  for (int r = 0; r < a.rank; ++r) {
    const float* ar = a.A + static_cast<size_t>(r) * a.in + i0;
    for (int k = 0; k < NR; ++k) {
      const float c = sb[static_cast<size_t>(k) * a.rank + r];
      for (int l = 0; l < width; ++l) d[k][l] += c * ar[l];
    }
  }
}

// Merge rows [o0, o0 + NR), columns [i0, i0 + w); exceptions are appended.
template <int NR, bool kFull>
LORASCHED_INLINE void merge_chunk(const MergeArgs& a, const float* sb, int o0, int i0, int w,
                                  int8_t* ulps,
                                  std::vector<std::pair<uint32_t, float>>& exceptions) {
  const int width = kFull ? kChunk : w;
  float d[NR][kChunk];
  delta_chunk<NR, kFull>(a, sb, i0, w, d);
  float merged[NR][kChunk];
  int bad = 0;
  for (int k = 0; k < NR; ++k) {
    const size_t row = static_cast<size_t>(o0 + k) * a.in + i0;
    const float* wr = a.W + row;
    int8_t* ur = ulps + row;
    for (int l = 0; l < width; ++l) {
      const float m = wr[l] + d[k][l];
      const float u = m - d[k][l];
      const uint32_t diff = order(wr[l]) - order(u);
      const bool fits = diff + 127u <= 254u;
      ur[l] = fits ? static_cast<int8_t>(static_cast<int32_t>(diff)) : MergeResidual::kUlpException;
      bad += fits ? 0 : 1;
      merged[k][l] = m;
    }
  }
  if (bad != 0) {  // rare: record the original values before they are overwritten
    for (int k = 0; k < NR; ++k) {
      const size_t row = static_cast<size_t>(o0 + k) * a.in + i0;
      for (int l = 0; l < width; ++l) {
        if (ulps[row + l] == MergeResidual::kUlpException) {
          exceptions.emplace_back(static_cast<uint32_t>(row + l), a.W[row + l]);
        }
      }
    }
  }
  for (int k = 0; k < NR; ++k) {
    float* wr = a.W + static_cast<size_t>(o0 + k) * a.in + i0;
    for (int l = 0; l < width; ++l) wr[l] = merged[k][l];
  }
}

// Unmerge; elements marked as exceptions get a meaningless value here and are restored by the
// caller afterwards.
template <int NR, bool kFull>
LORASCHED_INLINE void unmerge_chunk(const MergeArgs& a, const float* sb, int o0, int i0, int w,
                                    const int8_t* ulps) {
  const int width = kFull ? kChunk : w;
  float d[NR][kChunk];
  delta_chunk<NR, kFull>(a, sb, i0, w, d);
  for (int k = 0; k < NR; ++k) {
    const size_t row = static_cast<size_t>(o0 + k) * a.in + i0;
    float* wr = a.W + row;
    const int8_t* ur = ulps + row;
    for (int l = 0; l < width; ++l) {
      const float u = wr[l] - d[k][l];
      wr[l] = from_order(order(u) + static_cast<uint32_t>(static_cast<int32_t>(ur[l])));
    }
  }
}

// Switch rows [o0, o0 + NR), columns [i0, i0 + w) from adapter f to adapter t in one pass: the
// base value is restored exactly as unmerge_chunk does (u = W' - D_f moved by the residual's
// ulps), then merged with D_t as merge_chunk does, and the residual rewritten in place. So W and
// the residual end up bit-identical to an unmerge followed by a merge. Elements that were
// exceptions of f get a placeholder here (their base value is in f's exception list, not in the
// ulps); the caller redoes them afterwards. New exceptions of t are appended.
template <int NR, bool kFull>
LORASCHED_INLINE void switch_chunk(const MergeArgs& f, const float* sbf, const MergeArgs& t,
                                   const float* sbt, int o0, int i0, int w, int8_t* ulps,
                                   std::vector<std::pair<uint32_t, float>>& exceptions) {
  const int width = kFull ? kChunk : w;
  float df[NR][kChunk];
  float dt[NR][kChunk];
  delta_chunk<NR, kFull>(f, sbf, i0, w, df);
  delta_chunk<NR, kFull>(t, sbt, i0, w, dt);
  float merged[NR][kChunk];
  float base[NR][kChunk];
  int8_t fresh[NR][kChunk];  // 1: a new exception of t (base value to record)
  int bad = 0;
  for (int k = 0; k < NR; ++k) {
    const size_t row = static_cast<size_t>(o0 + k) * f.in + i0;
    const float* wr = f.W + row;
    int8_t* ur = ulps + row;
    for (int l = 0; l < width; ++l) {
      const int8_t old = ur[l];
      const float u = wr[l] - df[k][l];
      const float b = from_order(order(u) + static_cast<uint32_t>(static_cast<int32_t>(old)));
      const float m = b + dt[k][l];
      const float u2 = m - dt[k][l];
      const uint32_t diff = order(b) - order(u2);
      const bool fits = diff + 127u <= 254u;
      const bool was_exception = old == MergeResidual::kUlpException;
      ur[l] = fits && !was_exception ? static_cast<int8_t>(static_cast<int32_t>(diff))
                                     : MergeResidual::kUlpException;
      fresh[k][l] = static_cast<int8_t>(!fits && !was_exception);
      bad += fresh[k][l];
      merged[k][l] = m;
      base[k][l] = b;
    }
  }
  if (bad != 0) {
    for (int k = 0; k < NR; ++k) {
      const size_t row = static_cast<size_t>(o0 + k) * f.in + i0;
      for (int l = 0; l < width; ++l)
        if (fresh[k][l]) exceptions.emplace_back(static_cast<uint32_t>(row + l), base[k][l]);
    }
  }
  for (int k = 0; k < NR; ++k) {
    float* wr = f.W + static_cast<size_t>(o0 + k) * f.in + i0;
    for (int l = 0; l < width; ++l) wr[l] = merged[k][l];
  }
}

// Rows are processed in blocks of kRowBlock: for each chunk of columns, all rows of the block
// (in pairs, sharing the loads of A), so that the rank x kChunk slice of A stays in L1 while
// the block uses it instead of A being streamed from L2/L3 once per row pair.
constexpr int kRowBlock = 8;

// Calls f(o, nr, sb_row) for the rows of block [ob, oe): pairs (nr = 2), then a single row.
struct RowBlock {
  int ob, oe;
  std::vector<float>& sb;  // [oe - ob][rank]: scale * B rows
  RowBlock(const MergeArgs& a, int ob_, int oe_, std::vector<float>& buf)
      : ob(ob_), oe(oe_), sb(buf) {
    sb.resize(static_cast<size_t>(kRowBlock) * a.rank);
    for (int o = ob; o < oe; ++o) {
      for (int r = 0; r < a.rank; ++r) {
        sb[static_cast<size_t>(o - ob) * a.rank + r] =
            a.scale * a.B[static_cast<size_t>(o) * a.rank + r];
      }
    }
  }
  const float* row(const MergeArgs& a, int o) const {
    return sb.data() + static_cast<size_t>(o - ob) * a.rank;
  }
};

template <bool kFull>
LORASCHED_INLINE void merge_block_chunk(const MergeArgs& a, const RowBlock& b, int i0, int w,
                                        int8_t* ulps,
                                        std::vector<std::pair<uint32_t, float>>& exceptions) {
  int o = b.ob;
  for (; o + 2 <= b.oe; o += 2) merge_chunk<2, kFull>(a, b.row(a, o), o, i0, w, ulps, exceptions);
  if (o < b.oe) merge_chunk<1, kFull>(a, b.row(a, o), o, i0, w, ulps, exceptions);
}

template <bool kFull>
LORASCHED_INLINE void unmerge_block_chunk(const MergeArgs& a, const RowBlock& b, int i0, int w,
                                          const int8_t* ulps) {
  int o = b.ob;
  for (; o + 2 <= b.oe; o += 2) unmerge_chunk<2, kFull>(a, b.row(a, o), o, i0, w, ulps);
  if (o < b.oe) unmerge_chunk<1, kFull>(a, b.row(a, o), o, i0, w, ulps);
}

template <bool kFull>
LORASCHED_INLINE void switch_block_chunk(const MergeArgs& f, const RowBlock& bf, const MergeArgs& t,
                                         const RowBlock& bt, int i0, int w, int8_t* ulps,
                                         std::vector<std::pair<uint32_t, float>>& exceptions) {
  int o = bf.ob;
  for (; o + 2 <= bf.oe; o += 2)
    switch_chunk<2, kFull>(f, bf.row(f, o), t, bt.row(t, o), o, i0, w, ulps, exceptions);
  if (o < bf.oe)
    switch_chunk<1, kFull>(f, bf.row(f, o), t, bt.row(t, o), o, i0, w, ulps, exceptions);
}

LORASCHED_INLINE void merge_range_impl(const MergeArgs& a, int r0, int r1, int8_t* ulps,
                                       std::vector<std::pair<uint32_t, float>>& exceptions) {
  std::vector<float> buf;
  for (int ob = r0; ob < r1; ob += kRowBlock) {
    const RowBlock b(a, ob, std::min(ob + kRowBlock, r1), buf);
    const size_t before = exceptions.size();
    int i = 0;
    for (; i + kChunk <= a.in; i += kChunk)
      merge_block_chunk<true>(a, b, i, kChunk, ulps, exceptions);
    if (i < a.in) merge_block_chunk<false>(a, b, i, a.in - i, ulps, exceptions);
    if (exceptions.size() - before > 1) {  // chunks interleave the rows: restore index order
      std::sort(exceptions.begin() + static_cast<std::ptrdiff_t>(before), exceptions.end(),
                [](const auto& x, const auto& y) { return x.first < y.first; });
    }
  }
}

LORASCHED_INLINE void unmerge_range_impl(const MergeArgs& a, int r0, int r1, const int8_t* ulps) {
  std::vector<float> buf;
  for (int ob = r0; ob < r1; ob += kRowBlock) {
    const RowBlock b(a, ob, std::min(ob + kRowBlock, r1), buf);
    int i = 0;
    for (; i + kChunk <= a.in; i += kChunk) unmerge_block_chunk<true>(a, b, i, kChunk, ulps);
    if (i < a.in) unmerge_block_chunk<false>(a, b, i, a.in - i, ulps);
  }
}

LORASCHED_INLINE void switch_range_impl(const MergeArgs& f, const MergeArgs& t, int r0, int r1,
                                        int8_t* ulps,
                                        std::vector<std::pair<uint32_t, float>>& exceptions) {
  std::vector<float> buf_f, buf_t;
  for (int ob = r0; ob < r1; ob += kRowBlock) {
    const int oe = std::min(ob + kRowBlock, r1);
    const RowBlock bf(f, ob, oe, buf_f);
    const RowBlock bt(t, ob, oe, buf_t);
    const size_t before = exceptions.size();
    int i = 0;
    for (; i + kChunk <= f.in; i += kChunk)
      switch_block_chunk<true>(f, bf, t, bt, i, kChunk, ulps, exceptions);
    if (i < f.in) switch_block_chunk<false>(f, bf, t, bt, i, f.in - i, ulps, exceptions);
    if (exceptions.size() - before > 1) {  // chunks interleave the rows: restore index order
      std::sort(exceptions.begin() + static_cast<std::ptrdiff_t>(before), exceptions.end(),
                [](const auto& x, const auto& y) { return x.first < y.first; });
    }
  }
}

void merge_range_base(const MergeArgs& a, int r0, int r1, int8_t* ulps,
                      std::vector<std::pair<uint32_t, float>>& exceptions) {
  merge_range_impl(a, r0, r1, ulps, exceptions);
}
void unmerge_range_base(const MergeArgs& a, int r0, int r1, const int8_t* ulps) {
  unmerge_range_impl(a, r0, r1, ulps);
}
void switch_range_base(const MergeArgs& f, const MergeArgs& t, int r0, int r1, int8_t* ulps,
                       std::vector<std::pair<uint32_t, float>>& exceptions) {
  switch_range_impl(f, t, r0, r1, ulps, exceptions);
}

#if LORASCHED_X86_DISPATCH
// Same code with 256-bit vectors. No "fma" in the target: multiplies and adds stay separate.
__attribute__((target("avx2"))) void merge_range_avx2(
    const MergeArgs& a, int r0, int r1, int8_t* ulps,
    std::vector<std::pair<uint32_t, float>>& exceptions) {
  merge_range_impl(a, r0, r1, ulps, exceptions);
}
__attribute__((target("avx2"))) void unmerge_range_avx2(const MergeArgs& a, int r0, int r1,
                                                        const int8_t* ulps) {
  unmerge_range_impl(a, r0, r1, ulps);
}
__attribute__((target("avx2"))) void switch_range_avx2(
    const MergeArgs& f, const MergeArgs& t, int r0, int r1, int8_t* ulps,
    std::vector<std::pair<uint32_t, float>>& exceptions) {
  switch_range_impl(f, t, r0, r1, ulps, exceptions);
}
#endif

void merge_range(const MergeArgs& a, int r0, int r1, int8_t* ulps,
                 std::vector<std::pair<uint32_t, float>>& exceptions) {
#if LORASCHED_X86_DISPATCH
  if (detail::use_avx2()) return merge_range_avx2(a, r0, r1, ulps, exceptions);
#endif
  merge_range_base(a, r0, r1, ulps, exceptions);
}

void unmerge_range(const MergeArgs& a, int r0, int r1, const int8_t* ulps) {
#if LORASCHED_X86_DISPATCH
  if (detail::use_avx2()) return unmerge_range_avx2(a, r0, r1, ulps);
#endif
  unmerge_range_base(a, r0, r1, ulps);
}

void switch_range(const MergeArgs& f, const MergeArgs& t, int r0, int r1, int8_t* ulps,
                  std::vector<std::pair<uint32_t, float>>& exceptions) {
#if LORASCHED_X86_DISPATCH
  if (detail::use_avx2()) return switch_range_avx2(f, t, r0, r1, ulps, exceptions);
#endif
  switch_range_base(f, t, r0, r1, ulps, exceptions);
}

// D at one element, in the order delta_chunk uses (the same float operations, so the same bits).
float delta_at(const MergeArgs& a, int o, int i) {
  float d = 0.0f;
  for (int r = 0; r < a.rank; ++r) {
    const float c = a.scale * a.B[static_cast<size_t>(o) * a.rank + r];
    d += c * a.A[static_cast<size_t>(r) * a.in + i];
  }
  return d;
}

// Threads to use for `out` rows: at most one per 8 rows, so tiny weights stay serial.
int thread_count(int out) {
  return std::max(1, std::min(g_merge_threads.load(std::memory_order_relaxed), out / 8));
}

// Rows [r0, r1) of thread t of n: contiguous, balanced, in thread order.
std::pair<int, int> row_range(int out, int t, int n) {
  const int64_t r0 = static_cast<int64_t>(out) * t / n;
  const int64_t r1 = static_cast<int64_t>(out) * (t + 1) / n;
  return {static_cast<int>(r0), static_cast<int>(r1)};
}

// The residual of a merge of a weight of n elements: one ulp per element, and every
// kUlpException mark with exactly one exception entry, sorted by index.
void check_residual(const char* what, const MergeResidual& residual, size_t n_elems) {
  if (residual.ulps.size() != n_elems) {
    throw std::invalid_argument(std::string(what) + ": residual has " +
                                std::to_string(residual.ulps.size()) + " entries, weight has " +
                                std::to_string(n_elems));
  }
  const auto marks = static_cast<size_t>(
      std::count(residual.ulps.begin(), residual.ulps.end(), MergeResidual::kUlpException));
  bool consistent = marks == residual.exceptions.size();
  for (size_t e = 0; consistent && e < residual.exceptions.size(); ++e) {
    const uint32_t idx = residual.exceptions[e].first;
    consistent = idx < n_elems && residual.ulps[idx] == MergeResidual::kUlpException &&
                 (e == 0 || residual.exceptions[e - 1].first < idx);
  }
  if (!consistent) {
    throw std::invalid_argument(std::string(what) + ": exception list does not match the ulps");
  }
}

void check_shape(const char* what, int out, int in, int rank) {
  if (out < 0 || in < 0 || rank < 0) {
    throw std::invalid_argument(std::string(what) + ": negative shape");
  }
  if (static_cast<uint64_t>(out) * static_cast<uint64_t>(in) >
      std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument(std::string(what) + ": weight has more than 2^32-1 elements");
  }
}

}  // namespace

void set_merge_threads(int n) { g_merge_threads.store(std::max(1, n), std::memory_order_relaxed); }

int merge_threads() { return g_merge_threads.load(std::memory_order_relaxed); }

void lora_merge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                MergeResidual* residual) {
  check_shape("lora_merge", out, in, rank);
  const MergeArgs args{W, out, in, A, B, rank, scale};
  residual->ulps.resize(static_cast<size_t>(out) * static_cast<size_t>(in));
  residual->exceptions.clear();
  const int n = thread_count(out);
  if (n == 1) {
    merge_range(args, 0, out, residual->ulps.data(), residual->exceptions);
    return;
  }
  std::vector<std::vector<std::pair<uint32_t, float>>> exceptions(n);
  std::vector<std::thread> threads;
  threads.reserve(n - 1);
  for (int t = 1; t < n; ++t) {
    threads.emplace_back([&, t] {
      const auto [r0, r1] = row_range(out, t, n);
      merge_range(args, r0, r1, residual->ulps.data(), exceptions[t]);
    });
  }
  const auto [r0, r1] = row_range(out, 0, n);
  merge_range(args, r0, r1, residual->ulps.data(), residual->exceptions);
  for (auto& th : threads) th.join();
  for (int t = 1; t < n; ++t) {  // row ranges are in order, so the result stays sorted
    residual->exceptions.insert(residual->exceptions.end(), exceptions[t].begin(),
                                exceptions[t].end());
  }
}

void lora_unmerge(float* W, int out, int in, const float* A, const float* B, int rank, float scale,
                  const MergeResidual& residual) {
  check_shape("lora_unmerge", out, in, rank);
  check_residual("lora_unmerge", residual, static_cast<size_t>(out) * static_cast<size_t>(in));
  const MergeArgs args{W, out, in, A, B, rank, scale};
  const int n = thread_count(out);
  if (n == 1) {
    unmerge_range(args, 0, out, residual.ulps.data());
  } else {
    std::vector<std::thread> threads;
    threads.reserve(n - 1);
    for (int t = 1; t < n; ++t) {
      threads.emplace_back([&, t] {
        const auto [r0, r1] = row_range(out, t, n);
        unmerge_range(args, r0, r1, residual.ulps.data());
      });
    }
    const auto [r0, r1] = row_range(out, 0, n);
    unmerge_range(args, r0, r1, residual.ulps.data());
    for (auto& th : threads) th.join();
  }
  for (const auto& [idx, value] : residual.exceptions) W[idx] = value;
}

void lora_switch(float* W, int out, int in, const float* A_from, const float* B_from, int rank_from,
                 float scale_from, const float* A_to, const float* B_to, int rank_to,
                 float scale_to, MergeResidual* residual) {
  check_shape("lora_switch", out, in, rank_from);
  check_shape("lora_switch", out, in, rank_to);
  check_residual("lora_switch", *residual, static_cast<size_t>(out) * static_cast<size_t>(in));
  const MergeArgs f{W, out, in, A_from, B_from, rank_from, scale_from};
  const MergeArgs t{W, out, in, A_to, B_to, rank_to, scale_to};
  // The from-adapter's exceptions are read after the pass (their elements are redone below).
  std::vector<std::pair<uint32_t, float>> old = std::move(residual->exceptions);
  residual->exceptions.clear();
  const int n = thread_count(out);
  if (n == 1) {
    switch_range(f, t, 0, out, residual->ulps.data(), residual->exceptions);
  } else {
    std::vector<std::vector<std::pair<uint32_t, float>>> exceptions(n);
    std::vector<std::thread> threads;
    threads.reserve(n - 1);
    for (int k = 1; k < n; ++k) {
      threads.emplace_back([&, k] {
        const auto [r0, r1] = row_range(out, k, n);
        switch_range(f, t, r0, r1, residual->ulps.data(), exceptions[k]);
      });
    }
    const auto [r0, r1] = row_range(out, 0, n);
    switch_range(f, t, r0, r1, residual->ulps.data(), residual->exceptions);
    for (auto& th : threads) th.join();
    for (int k = 1; k < n; ++k) {  // row ranges are in order, so the result stays sorted
      residual->exceptions.insert(residual->exceptions.end(), exceptions[k].begin(),
                                  exceptions[k].end());
    }
  }
  // Elements that were exceptions of the from-adapter: their base value was recorded, so merge
  // the to-adapter onto it here, exactly as merge_chunk would have.
  if (old.empty()) return;
  for (const auto& [idx, b] : old) {
    const int o = static_cast<int>(idx / static_cast<uint32_t>(in));
    const int i = static_cast<int>(idx % static_cast<uint32_t>(in));
    const float d = delta_at(t, o, i);
    const float m = b + d;
    const uint32_t diff = order(b) - order(m - d);
    if (diff + 127u <= 254u) {
      residual->ulps[idx] = static_cast<int8_t>(static_cast<int32_t>(diff));
    } else {
      residual->ulps[idx] = MergeResidual::kUlpException;
      residual->exceptions.emplace_back(idx, b);
    }
    W[idx] = m;
  }
  std::sort(residual->exceptions.begin(), residual->exceptions.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
}

}  // namespace lorasched::kernels::cpu
