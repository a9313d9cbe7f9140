// CPU kernel benchmarks (Google Benchmark 1.7).
//
//  (a) one LoRA-adapted linear layer, unmerged (base gemm_xwt + lora_shrink + lora_expand) vs
//      merged (gemm_xwt on the merged weight only): square W of hidden 1024 / 4096, batch 1, 8,
//      32 tokens, rank 8 / 16 / 64. Every token belongs to a different request, the requests
//      use 4 adapters, and the batch is sorted by adapter (as Punica / S-LoRA / dLoRA do), so
//      the LoRA call has min(batch, 4) segments of batch / 4 tokens (1 token at batch 1, 2 at
//      batch 8, 8 at batch 32), one per adapter, all adapters of the same rank.
//  (b) our gemm_xwt vs a bare cblas_sgemm call on the same shapes, and the LoRA shrink / expand
//      of one segment (our path choice) vs a bare cblas_sgemm doing the same product.
//  (c) lora_merge + lora_unmerge of one [4096, 4096] weight at rank 16, as GB/s of weight and
//      residual traffic (per element: W read and written by each of merge and unmerge, plus
//      the residual byte written by merge and read by unmerge: 18 bytes).
//
// Threads: OpenBLAS and the merge use LORASCHED_BENCH_THREADS threads (default 1), or
// --threads=N on the command line. LORASCHED_BENCH_SIMD=0 forces the portable hand loops.
// Both are printed in the context block. Iterations are timed by wall clock (UseRealTime); the
// JSON has the CPU time too, which bench-ratios.py compares for single-threaded runs.
//
// scripts/bench-ratios.py turns the JSON output into unmerged/merged and ours/OpenBLAS tables.

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lorasched/kernels/cpu.hpp"

namespace {

namespace k = lorasched::kernels;

// Deterministic pseudo-random matrices, cached so that the 64 MiB weights are built once.
const std::vector<float>& matrix(size_t n, uint64_t seed, float amplitude = 1.0f) {
  static std::map<std::pair<size_t, uint64_t>, std::unique_ptr<std::vector<float>>> cache;
  auto& slot = cache[{n, seed}];
  if (!slot) {
    slot = std::make_unique<std::vector<float>>(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (float& f : *slot) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      f = amplitude * (static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f);
    }
  }
  return *slot;
}

constexpr int kAdapters = 4;

struct LoraBatch {
  std::vector<k::LoraSegment> segments;
  size_t adapter_bytes = 0;
};

// `batch` tokens sorted by adapter: min(batch, 4) segments over 4 adapters of one rank.
LoraBatch make_lora_batch(int hidden, int rank, int batch) {
  LoraBatch b;
  const int n = std::min(batch, kAdapters);
  int start = 0;
  for (int a = 0; a < n; ++a) {
    const int len = batch / n + (a < batch % n ? 1 : 0);
    const auto& A = matrix(static_cast<size_t>(rank) * hidden, 100 + a, 0.1f);
    const auto& B = matrix(static_cast<size_t>(hidden) * rank, 200 + a, 0.1f);
    b.segments.push_back({start, len, A.data(), B.data(), rank, 0.5f});
    b.adapter_bytes += (A.size() + B.size()) * sizeof(float);
    start += len;
  }
  return b;
}

void BM_LoraLayerUnmerged(benchmark::State& state) {
  const int hidden = static_cast<int>(state.range(0));
  const int rank = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  const auto& W = matrix(static_cast<size_t>(hidden) * hidden, 1, 0.05f);
  const auto& x = matrix(static_cast<size_t>(batch) * hidden, 2);
  const LoraBatch lb = make_lora_batch(hidden, rank, batch);
  std::vector<float> t(k::lora_workspace_floats(lb.segments));
  std::vector<float> y(static_cast<size_t>(batch) * hidden);
  for (auto _ : state) {
    k::cpu::gemm_xwt(x.data(), batch, hidden, hidden, W.data(), hidden, y.data(), hidden, false);
    k::cpu::lora_shrink(x.data(), hidden, hidden, lb.segments, t.data());
    k::cpu::lora_expand(t.data(), lb.segments, hidden, y.data(), hidden);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(W.size() * sizeof(float) + lb.adapter_bytes));
  state.counters["segments"] = static_cast<double>(lb.segments.size());
}

void BM_LoraLayerMerged(benchmark::State& state) {
  const int hidden = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  const auto& W = matrix(static_cast<size_t>(hidden) * hidden, 1, 0.05f);
  const auto& x = matrix(static_cast<size_t>(batch) * hidden, 2);
  std::vector<float> y(static_cast<size_t>(batch) * hidden);
  for (auto _ : state) {
    k::cpu::gemm_xwt(x.data(), batch, hidden, hidden, W.data(), hidden, y.data(), hidden, false);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(W.size() * sizeof(float)));
}

// (b) y[m, n] = x[m, k] W[n, k]^T through our wrapper and through OpenBLAS directly.
template <bool kOurs>
void BM_Gemm(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0));
  const int kk = static_cast<int>(state.range(1));
  const int n = static_cast<int>(state.range(2));
  const auto& W = matrix(static_cast<size_t>(n) * kk, 1, 0.05f);
  const auto& x = matrix(static_cast<size_t>(m) * kk, 2);
  std::vector<float> y(static_cast<size_t>(m) * n);
  for (auto _ : state) {
    if constexpr (kOurs) {
      k::cpu::gemm_xwt(x.data(), m, kk, kk, W.data(), n, y.data(), n, false);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, kk, 1.0f, x.data(), kk, W.data(),
                  kk, 0.0f, y.data(), n);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * 2 * static_cast<int64_t>(m) * n * kk);  // flops
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(W.size() * sizeof(float)));
}
void BM_GemmOurs(benchmark::State& state) { BM_Gemm<true>(state); }
void BM_GemmBlas(benchmark::State& state) { BM_Gemm<false>(state); }

// One LoRA segment of `len` tokens: shrink t = x A^T, expand y += s t B^T. Ours picks the
// hand loop or sgemm; Blas always calls cblas_sgemm.
template <bool kOurs, bool kShrink>
void BM_LoraSegment(benchmark::State& state) {
  const int hidden = static_cast<int>(state.range(0));
  const int rank = static_cast<int>(state.range(1));
  const int len = static_cast<int>(state.range(2));
  const auto& A = matrix(static_cast<size_t>(rank) * hidden, 100, 0.1f);
  const auto& B = matrix(static_cast<size_t>(hidden) * rank, 200, 0.1f);
  const auto& x = matrix(static_cast<size_t>(len) * hidden, 2);
  const k::LoraSegment seg{0, len, A.data(), B.data(), rank, 0.5f};
  std::vector<float> t(matrix(static_cast<size_t>(len) * rank, 3));
  std::vector<float> y(static_cast<size_t>(len) * hidden);
  for (auto _ : state) {
    if constexpr (kShrink && kOurs) {
      k::cpu::lora_shrink(x.data(), hidden, hidden, {&seg, 1}, t.data());
    } else if constexpr (kShrink) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, rank, hidden, 1.0f, x.data(),
                  hidden, A.data(), hidden, 0.0f, t.data(), rank);
    } else if constexpr (kOurs) {
      k::cpu::lora_expand(t.data(), {&seg, 1}, hidden, y.data(), hidden);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, hidden, rank, 0.5f, t.data(), rank,
                  B.data(), rank, 1.0f, y.data(), hidden);
    }
    benchmark::DoNotOptimize(t.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * 2 * static_cast<int64_t>(len) * rank * hidden);
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>((kShrink ? A.size() : B.size()) * sizeof(float)));
}
void BM_LoraShrinkSegmentOurs(benchmark::State& s) { BM_LoraSegment<true, true>(s); }
void BM_LoraShrinkSegmentBlas(benchmark::State& s) { BM_LoraSegment<false, true>(s); }
void BM_LoraExpandSegmentOurs(benchmark::State& s) { BM_LoraSegment<true, false>(s); }
void BM_LoraExpandSegmentBlas(benchmark::State& s) { BM_LoraSegment<false, false>(s); }

// (c) merge + unmerge of one weight; W is restored bit-exactly after every iteration.
void BM_MergeUnmerge(benchmark::State& state) {
  const int out = static_cast<int>(state.range(0));
  const int in = static_cast<int>(state.range(1));
  const int rank = static_cast<int>(state.range(2));
  std::vector<float> W = matrix(static_cast<size_t>(out) * in, 1, 0.05f);
  const auto& A = matrix(static_cast<size_t>(rank) * in, 100, 0.1f);
  const auto& B = matrix(static_cast<size_t>(out) * rank, 200, 0.1f);
  k::MergeResidual res;
  for (auto _ : state) {
    k::cpu::lora_merge(W.data(), out, in, A.data(), B.data(), rank, 0.5f, &res);
    k::cpu::lora_unmerge(W.data(), out, in, A.data(), B.data(), rank, 0.5f, res);
    benchmark::ClobberMemory();
  }
  const int64_t elems = static_cast<int64_t>(out) * in;
  state.SetItemsProcessed(state.iterations() * elems);
  state.SetBytesProcessed(state.iterations() * elems * (4 * sizeof(float) + 2));
  state.counters["residual_bytes"] = static_cast<double>(res.bytes());
  state.counters["exceptions"] = static_cast<double>(res.exceptions.size());
  if (std::memcmp(W.data(), matrix(W.size(), 1, 0.05f).data(), W.size() * sizeof(float)) != 0) {
    state.SkipWithError("merge/unmerge did not restore the weights");
  }
}

benchmark::internal::Benchmark* add(const char* name, void (*fn)(benchmark::State&)) {
  return benchmark::RegisterBenchmark(name, fn)->UseRealTime();
}

void register_benchmarks() {
  for (int hidden : {1024, 4096}) {
    for (int rank : {8, 16, 64}) {
      for (int batch : {1, 8, 32}) {
        add("BM_LoraLayerUnmerged", BM_LoraLayerUnmerged)
            ->Args({hidden, rank, batch})
            ->ArgNames({"hidden", "rank", "batch"});
      }
    }
    for (int batch : {1, 8, 32}) {
      add("BM_LoraLayerMerged", BM_LoraLayerMerged)
          ->Args({hidden, batch})
          ->ArgNames({"hidden", "batch"});
    }
  }
  for (int hidden : {1024, 4096}) {
    for (int batch : {1, 8, 32}) {
      for (auto fn : {BM_GemmOurs, BM_GemmBlas}) {
        add(fn == BM_GemmOurs ? "BM_GemmOurs" : "BM_GemmBlas", fn)
            ->Args({batch, hidden, hidden})
            ->ArgNames({"m", "k", "n"});
      }
    }
  }
  const std::pair<const char*, void (*)(benchmark::State&)> segment_fns[] = {
      {"BM_LoraShrinkSegmentOurs", BM_LoraShrinkSegmentOurs},
      {"BM_LoraShrinkSegmentBlas", BM_LoraShrinkSegmentBlas},
      {"BM_LoraExpandSegmentOurs", BM_LoraExpandSegmentOurs},
      {"BM_LoraExpandSegmentBlas", BM_LoraExpandSegmentBlas}};
  for (const auto& [name, fn] : segment_fns) {
    for (int rank : {8, 16, 64}) {
      for (int len : {1, 2, 4, 8, 16, 64}) {
        add(name, fn)->Args({4096, rank, len})->ArgNames({"hidden", "rank", "len"});
      }
    }
  }
  add("BM_MergeUnmerge", BM_MergeUnmerge)
      ->Args({4096, 4096, 16})
      ->ArgNames({"out", "in", "rank"})
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  if (const char* env = std::getenv("LORASCHED_BENCH_THREADS")) threads = std::atoi(env);
  bool simd = true;
  if (const char* env = std::getenv("LORASCHED_BENCH_SIMD")) simd = std::atoi(env) != 0;
  // Take --threads=N out of argv before Google Benchmark sees it.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  threads = std::max(threads, 1);
  k::cpu::set_blas_threads(threads);
  k::cpu::set_merge_threads(threads);
  k::cpu::set_cpu_simd(simd);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("blas_threads", std::to_string(k::cpu::blas_threads()));
  benchmark::AddCustomContext("merge_threads", std::to_string(k::cpu::merge_threads()));
  benchmark::AddCustomContext("cpu_simd_avx2", k::cpu::cpu_simd() ? "yes" : "no");
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  benchmark::AddCustomContext("lora_layer_batch",
                              "tokens sorted by adapter, 4 adapters of one rank, "
                              "min(batch,4) segments");
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
