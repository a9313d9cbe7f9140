// CUDA kernel benchmarks (Google Benchmark, manual timing with CUDA events).
//
//  * lora_decode / lora_prefill: LoRA shrink + expand (fp16, hidden 4096, one distinct adapter
//    per request) with our gathered (BGMV) / segmented (SGMV) kernels, a loop of cuBLAS GEMMs
//    per adapter and cuBLAS grouped batched GEMM. Counters: GBps (adapter weights + x + y read
//    and written + t, per op), pct_peak (of the device's peak memory bandwidth).
//  * lora_tile_rows: the segmented kernels with 1-row and 8-row tiles forced, at segment
//    lengths 1 to 16 (the cut-over rule of LoraBatchPlan::segmented).
//  * layer: one 4096x4096 projection at batch 32: base GEMM + LoRA (rank 16, 8 adapters) vs
//    the merged weight (base GEMM alone).
//  * merge / unmerge: Llama-2-7B projection shapes, rank 16, against the bandwidth bound.
// Weights are rotated over enough copies to exceed 3x the L2 cache, so each op reads them from
// device memory as in a real decode step. Without a CUDA device the program prints why and
// exits 0.

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lorasched/kernels/cuda/common.hpp"
#include "lorasched/kernels/cuda/gemm.hpp"
#include "lorasched/kernels/cuda/lora.hpp"
#include "lorasched/kernels/cuda/merge.hpp"

namespace cu = lorasched::kernels::cuda;
using cu::DeviceBuffer;

namespace {

constexpr int kHidden = 4096;
constexpr int kReps = 10;  // ops between two events

// ---- device facts -----------------------------------------------------------------------------

struct DeviceInfo {
  std::string name;
  double peak_gbps = 0.0;   // what pct_peak refers to
  std::string peak_source;  // how peak_gbps was obtained
  double theoretical_gbps = 0.0;
  double copy_gbps = 0.0;  // measured device-to-device cudaMemcpy (read + write bytes)
  size_t l2_bytes = 0;
};

double measure_copy_gbps() {
  const size_t bytes = size_t{512} << 20;
  DeviceBuffer<unsigned char> a(bytes);
  DeviceBuffer<unsigned char> b(bytes);
  LORASCHED_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
  cudaEvent_t start;
  cudaEvent_t stop;
  LORASCHED_CUDA_CHECK(cudaEventCreate(&start));
  LORASCHED_CUDA_CHECK(cudaEventCreate(&stop));
  LORASCHED_CUDA_CHECK(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
  constexpr int kCopies = 10;
  LORASCHED_CUDA_CHECK(cudaEventRecord(start));
  for (int i = 0; i < kCopies; ++i) {
    LORASCHED_CUDA_CHECK(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
  }
  LORASCHED_CUDA_CHECK(cudaEventRecord(stop));
  LORASCHED_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  LORASCHED_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  LORASCHED_CUDA_CHECK(cudaEventDestroy(start));
  LORASCHED_CUDA_CHECK(cudaEventDestroy(stop));
  return 2.0 * static_cast<double>(bytes) * kCopies / (static_cast<double>(ms) * 1e-3) / 1e9;
}

DeviceInfo probe_device() {
  DeviceInfo info;
  int dev = 0;
  LORASCHED_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  LORASCHED_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  info.name = prop.name;
  int l2 = 0;
  if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) == cudaSuccess && l2 > 0) {
    info.l2_bytes = static_cast<size_t>(l2);
  } else {
    info.l2_bytes = size_t{64} << 20;
  }
  int clock_khz = 0;
  int bus_bits = 0;
  const bool have_clock =
      cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess;
  const bool have_bus =
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess;
  (void)cudaGetLastError();
  info.copy_gbps = measure_copy_gbps();
  if (have_clock && have_bus && clock_khz > 0 && bus_bits > 0) {
    // Double data rate: two transfers per memory clock.
    info.theoretical_gbps = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    info.peak_gbps = info.theoretical_gbps;
    info.peak_source = "cudaDevAttrMemoryClockRate x cudaDevAttrGlobalMemoryBusWidth x 2 (DDR)";
  } else {
    info.peak_gbps = info.copy_gbps;
    info.peak_source = "measured device-to-device cudaMemcpy bandwidth (attributes unavailable)";
  }
  return info;
}

DeviceInfo& device_info() {
  static DeviceInfo info = probe_device();
  return info;
}

// Enough copies of a working set of `bytes` that cycling through them defeats the L2 cache.
int copies_for(size_t bytes) {
  const size_t want = 3 * device_info().l2_bytes;
  const size_t n = (want + bytes - 1) / std::max<size_t>(bytes, 1);
  return static_cast<int>(std::clamp<size_t>(n, 1, 64));
}

// ---- helpers ----------------------------------------------------------------------------------

__global__ void fill_half(__half* p, size_t n, uint32_t seed, float amplitude) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float u = static_cast<float>(h & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
    p[i] = __float2half_rn(u * amplitude);
  }
}

void fill(DeviceBuffer<__half>& buf, uint32_t seed, float amplitude) {
  if (buf.empty()) return;
  fill_half<<<1024, 256>>>(buf.get(), buf.size(), seed, amplitude);
  LORASCHED_CUDA_CHECK_LAUNCH();
}

// Times `op` (kReps calls between two events per iteration); returns seconds per op.
double time_ops(benchmark::State& state, const std::function<void()>& op) {
  cudaEvent_t start;
  cudaEvent_t stop;
  LORASCHED_CUDA_CHECK(cudaEventCreate(&start));
  LORASCHED_CUDA_CHECK(cudaEventCreate(&stop));
  op();  // warm-up
  LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
  double total = 0.0;
  int64_t n = 0;
  for (auto _ : state) {
    LORASCHED_CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < kReps; ++i) op();
    LORASCHED_CUDA_CHECK(cudaEventRecord(stop));
    LORASCHED_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    LORASCHED_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double per_op = static_cast<double>(ms) * 1e-3 / kReps;
    state.SetIterationTime(per_op);
    total += per_op;
    ++n;
  }
  LORASCHED_CUDA_CHECK(cudaEventDestroy(start));
  LORASCHED_CUDA_CHECK(cudaEventDestroy(stop));
  return n > 0 ? total / static_cast<double>(n) : 0.0;
}

void report_bandwidth(benchmark::State& state, double bytes, double seconds) {
  const DeviceInfo& dev = device_info();
  const double gbps = seconds > 0 ? bytes / seconds / 1e9 : 0.0;
  state.counters["bytes"] = bytes;
  state.counters["GBps"] = gbps;
  state.counters["pct_peak"] = dev.peak_gbps > 0 ? 100.0 * gbps / dev.peak_gbps : 0.0;
  state.counters["us_per_op"] = seconds * 1e6;
}

// Runs `body`, turning exceptions into a skipped benchmark with the message.
void guarded(benchmark::State& state, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- LoRA shrink + expand ---------------------------------------------------------------------

enum class Method { kOurs, kCublasLoop, kCublasGrouped };

const char* method_name(Method m, bool gathered) {
  switch (m) {
    case Method::kOurs:
      return gathered ? "bgmv" : "sgmv";
    case Method::kCublasLoop:
      return "cublas_loop";
    case Method::kCublasGrouped:
      return "cublas_grouped";
  }
  return "?";
}

// `adapters` requests, request a owning rows [a * rows_per, (a + 1) * rows_per), one distinct
// adapter each, all of rank `rank` and scale 1.
struct LoraSetup {
  std::string key;
  int rank = 0;
  int adapters = 0;
  int rows_per = 0;
  int tokens = 0;
  bool gathered = true;
  int tile_rows = 0;  // segmented form: forced rows per tile (0: the plan's rule)
  int copies = 1;
  size_t adapter_elems = 0;      // A + B elements of one adapter
  DeviceBuffer<__half> weights;  // [copies][adapters][A | B]
  DeviceBuffer<__half> x, y, t16;
  DeviceBuffer<float> t;
  std::vector<cu::LoraAdapterTable> tables;  // per copy
  cu::LoraBatchPlan plan;
  // cuBLAS grouped GEMM pointer arrays, per copy (device).
  std::vector<DeviceBuffer<const void*>> g_a, g_x, g_b, g_t_in;
  std::vector<DeviceBuffer<void*>> g_t_out, g_y;
  double bytes = 0.0;
  int next_copy = 0;

  const __half* A(int copy, int a) const {
    return weights.get() + (static_cast<size_t>(copy) * adapters + a) * adapter_elems;
  }
  const __half* B(int copy, int a) const {
    return A(copy, a) + static_cast<size_t>(rank) * kHidden;
  }
};

std::unique_ptr<LoraSetup> make_lora_setup(const std::string& key, int rank, int adapters,
                                           int rows_per, bool gathered, int tile_rows = 0) {
  auto s = std::make_unique<LoraSetup>();
  s->key = key;
  s->rank = rank;
  s->adapters = adapters;
  s->rows_per = rows_per;
  s->tokens = adapters * rows_per;
  s->gathered = gathered;
  s->tile_rows = tile_rows;
  s->adapter_elems = 2 * static_cast<size_t>(rank) * kHidden;
  const size_t weight_bytes = s->adapter_elems * adapters * sizeof(__half);
  s->copies = copies_for(weight_bytes);
  s->weights.resize(s->adapter_elems * adapters * s->copies);
  s->x.resize(static_cast<size_t>(s->tokens) * kHidden);
  s->y.resize(static_cast<size_t>(s->tokens) * kHidden);
  s->t16.resize(static_cast<size_t>(s->tokens) * rank);
  fill(s->weights, 1, 0.02f);
  fill(s->x, 2, 1.0f);
  fill(s->y, 3, 1.0f);

  const std::vector<int32_t> ranks(adapters, rank);
  s->tables.resize(s->copies);
  for (int c = 0; c < s->copies; ++c) {
    std::vector<cu::LoraAdapterRef> refs(adapters);
    for (int a = 0; a < adapters; ++a) refs[a] = {s->A(c, a), s->B(c, a), rank, 1.0f};
    s->tables[c].assign(refs);
  }
  if (gathered) {
    std::vector<int32_t> row_slot(s->tokens);
    for (int i = 0; i < s->tokens; ++i) row_slot[i] = i / rows_per;
    s->plan = cu::LoraBatchPlan::gathered(row_slot, ranks);
  } else {
    std::vector<cu::LoraSlotSegment> segs;
    for (int a = 0; a < adapters; ++a) segs.push_back({a * rows_per, rows_per, a});
    s->plan = cu::LoraBatchPlan::segmented(segs, s->tokens, ranks, nullptr, tile_rows);
  }
  s->t.resize(std::max<size_t>(s->plan.t_floats(), 1));

  for (int c = 0; c < s->copies; ++c) {
    std::vector<const void*> a_ptr(adapters), x_ptr(adapters), b_ptr(adapters), tin(adapters);
    std::vector<void*> tout(adapters), y_ptr(adapters);
    for (int a = 0; a < adapters; ++a) {
      const size_t row0 = static_cast<size_t>(a) * rows_per;
      a_ptr[a] = s->A(c, a);
      b_ptr[a] = s->B(c, a);
      x_ptr[a] = s->x.get() + row0 * kHidden;
      y_ptr[a] = s->y.get() + row0 * kHidden;
      tin[a] = s->t16.get() + row0 * rank;
      tout[a] = s->t16.get() + row0 * rank;
    }
    auto put = [](auto& vec, const auto& host) {
      vec.emplace_back(host.size());
      vec.back().upload(std::span(host));
    };
    put(s->g_a, a_ptr);
    put(s->g_x, x_ptr);
    put(s->g_b, b_ptr);
    put(s->g_t_in, tin);
    put(s->g_t_out, tout);
    put(s->g_y, y_ptr);
  }
  LORASCHED_CUDA_CHECK(cudaDeviceSynchronize());
  // Bytes an op must move: adapter weights, x read, y read + written, t written + read (fp32).
  s->bytes = static_cast<double>(weight_bytes) +
             static_cast<double>(s->tokens) * kHidden * sizeof(__half) * 3 +
             static_cast<double>(s->plan.t_floats()) * sizeof(float) * 2;
  return s;
}

// Device state kept between the runs Google Benchmark makes of one benchmark; released
// before main returns (not left to static destructors running after the CUDA runtime's).
std::unique_ptr<LoraSetup> g_lora;  // one entry: a benchmark's repeated runs reuse it
std::unique_ptr<cu::BlasHandle> g_blas;

LoraSetup& lora_setup(int rank, int adapters, int rows_per, bool gathered, int tile_rows = 0) {
  std::unique_ptr<LoraSetup>& cache = g_lora;
  const std::string key = std::to_string(rank) + "/" + std::to_string(adapters) + "/" +
                          std::to_string(rows_per) + "/" + (gathered ? "g" : "s") + "/" +
                          std::to_string(tile_rows);
  if (!cache || cache->key != key) {
    cache.reset();
    cache = make_lora_setup(key, rank, adapters, rows_per, gathered, tile_rows);
  }
  return *cache;
}

cu::BlasHandle& blas() {
  if (!g_blas) g_blas = std::make_unique<cu::BlasHandle>();
  return *g_blas;
}

void lora_op(LoraSetup& s, Method method) {
  const int c = s.next_copy;
  s.next_copy = (s.next_copy + 1) % s.copies;
  const float one = 1.0f;
  const float zero = 0.0f;
  cublasHandle_t h = blas().get();
  switch (method) {
    case Method::kOurs:
      cu::lora_shrink(cu::DType::kF16, s.x.get(), kHidden, kHidden, s.tables[c], s.plan, s.t.get());
      cu::lora_expand(cu::DType::kF16, s.t.get(), s.tables[c], s.plan, kHidden, s.y.get(), kHidden);
      break;
    case Method::kCublasLoop:
      // Per adapter: t16 = x_a A^T, y_a += t16 B^T (row-major via the column-major trick).
      for (int a = 0; a < s.adapters; ++a) {
        const size_t row0 = static_cast<size_t>(a) * s.rows_per;
        LORASCHED_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rank, s.rows_per,
                                            kHidden, &one, s.A(c, a), CUDA_R_16F, kHidden,
                                            s.x.get() + row0 * kHidden, CUDA_R_16F, kHidden, &zero,
                                            s.t16.get() + row0 * s.rank, CUDA_R_16F, s.rank,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        LORASCHED_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, kHidden, s.rows_per,
                                            s.rank, &one, s.B(c, a), CUDA_R_16F, s.rank,
                                            s.t16.get() + row0 * s.rank, CUDA_R_16F, s.rank, &one,
                                            s.y.get() + row0 * kHidden, CUDA_R_16F, kHidden,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }
      break;
    case Method::kCublasGrouped: {
#if defined(CUBLAS_VERSION) && CUBLAS_VERSION >= 120500
      const cublasOperation_t ta = CUBLAS_OP_T;
      const cublasOperation_t tb = CUBLAS_OP_N;
      const int group_size = s.adapters;
      const int m1 = s.rank, n1 = s.rows_per, k1 = kHidden;
      const int lda1 = kHidden, ldb1 = kHidden, ldc1 = s.rank;
      LORASCHED_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
          h, &ta, &tb, &m1, &n1, &k1, &one, s.g_a[c].get(), CUDA_R_16F, &lda1, s.g_x[c].get(),
          CUDA_R_16F, &ldb1, &zero, s.g_t_out[c].get(), CUDA_R_16F, &ldc1, 1, &group_size,
          CUBLAS_COMPUTE_32F));
      const int m2 = kHidden, n2 = s.rows_per, k2 = s.rank;
      const int lda2 = s.rank, ldb2 = s.rank, ldc2 = kHidden;
      LORASCHED_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
          h, &ta, &tb, &m2, &n2, &k2, &one, s.g_b[c].get(), CUDA_R_16F, &lda2, s.g_t_in[c].get(),
          CUDA_R_16F, &ldb2, &one, s.g_y[c].get(), CUDA_R_16F, &ldc2, 1, &group_size,
          CUBLAS_COMPUTE_32F));
#else
      throw std::runtime_error("cublasGemmGroupedBatchedEx needs cuBLAS >= 12.5");
#endif
      break;
    }
  }
}

void bench_lora(benchmark::State& state, Method method, int rank, int adapters, int rows_per,
                bool gathered, int tile_rows = 0) {
  guarded(state, [&] {
    LoraSetup& s = lora_setup(rank, adapters, rows_per, gathered, tile_rows);
    blas().set_stream(nullptr);
    const double sec = time_ops(state, [&] { lora_op(s, method); });
    report_bandwidth(state, s.bytes, sec);
    state.counters["tokens"] = s.tokens;
    state.counters["weight_copies"] = s.copies;
  });
}

// ---- one projection: merged vs unmerged -------------------------------------------------------

struct LayerSetup {
  int copies = 1;
  DeviceBuffer<__half> W, x, y;
  std::unique_ptr<LoraSetup> lora;  // batch 32, rank 16, 8 adapters, 4 rows each (gathered)
  int next = 0;
};

std::unique_ptr<LayerSetup> g_layer;

LayerSetup& layer_setup() {
  std::unique_ptr<LayerSetup>& s = g_layer;
  if (!s) {
    s = std::make_unique<LayerSetup>();
    const size_t w_elems = static_cast<size_t>(kHidden) * kHidden;
    s->copies = copies_for(w_elems * sizeof(__half));
    s->W.resize(w_elems * s->copies);
    s->x.resize(32 * static_cast<size_t>(kHidden));
    s->y.resize(32 * static_cast<size_t>(kHidden));
    fill(s->W, 11, 0.02f);
    fill(s->x, 12, 1.0f);
    s->lora = make_lora_setup("layer", 16, 8, 4, true);
  }
  return *s;
}

void bench_layer(benchmark::State& state, bool merged) {
  guarded(state, [&] {
    LayerSetup& s = layer_setup();
    blas().set_stream(nullptr);
    LoraSetup& l = *s.lora;
    const size_t w_elems = static_cast<size_t>(kHidden) * kHidden;
    const double sec = time_ops(state, [&] {
      const __half* W = s.W.get() + w_elems * static_cast<size_t>(s.next);
      s.next = (s.next + 1) % s.copies;
      cu::gemm_xwt(blas(), cu::DType::kF16, s.x.get(), 32, kHidden, kHidden, W, kHidden, kHidden,
                   s.y.get(), kHidden, false);
      if (!merged) {
        const int c = l.next_copy;
        l.next_copy = (l.next_copy + 1) % l.copies;
        cu::lora_shrink(cu::DType::kF16, s.x.get(), kHidden, kHidden, l.tables[c], l.plan,
                        l.t.get());
        cu::lora_expand(cu::DType::kF16, l.t.get(), l.tables[c], l.plan, kHidden, s.y.get(),
                        kHidden);
      }
    });
    double bytes =
        static_cast<double>(w_elems) * sizeof(__half) + 32.0 * kHidden * sizeof(__half) * 2;
    if (!merged) bytes += l.bytes;
    report_bandwidth(state, bytes, sec);
  });
}

// ---- merge / unmerge --------------------------------------------------------------------------

void bench_merge(benchmark::State& state, int out, int in, bool unmerge) {
  guarded(state, [&] {
    const int rank = 16;
    const float scale = 2.0f;
    const size_t numel = static_cast<size_t>(out) * in;
    DeviceBuffer<__half> W(numel);
    DeviceBuffer<__half> A(static_cast<size_t>(rank) * in);
    DeviceBuffer<__half> B(static_cast<size_t>(out) * rank);
    fill(W, 21, 0.02f);
    fill(A, 22, 0.02f);
    fill(B, 23, 0.02f);
    cu::MergeResidual16 res;
    auto merge = [&] {
      cu::lora_merge(cu::DType::kF16, W.get(), out, in, A.get(), B.get(), rank, scale, &res);
    };
    auto restore = [&] {
      cu::lora_unmerge(cu::DType::kF16, W.get(), out, in, A.get(), B.get(), rank, scale, &res);
    };
    cudaEvent_t start;
    cudaEvent_t stop;
    LORASCHED_CUDA_CHECK(cudaEventCreate(&start));
    LORASCHED_CUDA_CHECK(cudaEventCreate(&stop));
    merge();  // warm-up
    restore();
    double total = 0.0;
    int64_t n = 0;
    for (auto _ : state) {
      if (unmerge) merge();
      LORASCHED_CUDA_CHECK(cudaEventRecord(start));
      if (unmerge) {
        restore();
      } else {
        merge();
      }
      LORASCHED_CUDA_CHECK(cudaEventRecord(stop));
      LORASCHED_CUDA_CHECK(cudaEventSynchronize(stop));
      if (!unmerge) restore();
      float ms = 0.0f;
      LORASCHED_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      state.SetIterationTime(ms * 1e-3);
      total += ms * 1e-3;
      ++n;
    }
    LORASCHED_CUDA_CHECK(cudaEventDestroy(start));
    LORASCHED_CUDA_CHECK(cudaEventDestroy(stop));
    // Bound: W read + written (2 + 2 bytes), residual int8 written / read, A and B read.
    const double bytes =
        static_cast<double>(numel) * 5.0 + static_cast<double>(rank) * (in + out) * sizeof(__half);
    const double sec = n > 0 ? total / static_cast<double>(n) : 0.0;
    report_bandwidth(state, bytes, sec);
    state.counters["bound_us"] = bytes / (device_info().peak_gbps * 1e9) * 1e6;
    state.counters["exceptions"] = static_cast<double>(res.num_exceptions());
  });
}

void release_device_state() {
  g_lora.reset();
  g_layer.reset();
  g_blas.reset();
}

void register_all() {
  for (const int rank : {8, 16, 64}) {
    for (const int batch : {1, 4, 16, 32, 64}) {
      for (const Method m : {Method::kOurs, Method::kCublasLoop, Method::kCublasGrouped}) {
        const std::string name = std::string("lora_decode/") + method_name(m, true) +
                                 "/rank:" + std::to_string(rank) +
                                 "/batch:" + std::to_string(batch);
        benchmark::RegisterBenchmark(
            name.c_str(), [=](benchmark::State& st) { bench_lora(st, m, rank, batch, 1, true); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const int rank : {8, 16, 64}) {
    for (const int seqlen : {128, 512}) {
      for (const Method m : {Method::kOurs, Method::kCublasLoop, Method::kCublasGrouped}) {
        const std::string name = std::string("lora_prefill/") + method_name(m, false) +
                                 "/rank:" + std::to_string(rank) +
                                 "/segments:4/seqlen:" + std::to_string(seqlen);
        benchmark::RegisterBenchmark(
            name.c_str(), [=](benchmark::State& st) { bench_lora(st, m, rank, 4, seqlen, false); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  // The segmented plan's cut-over between 1-row and 8-row tiles (lora.cu): both forms forced,
  // 16 segments of L rows each.
  for (const int seglen : {1, 2, 4, 8, 16}) {
    for (const int tile_rows : {1, 8}) {
      const std::string name = "lora_tile_rows/rows_per_tile:" + std::to_string(tile_rows) +
                               "/seglen:" + std::to_string(seglen) + "/rank:16/segments:16";
      benchmark::RegisterBenchmark(name.c_str(),
                                   [=](benchmark::State& st) {
                                     bench_lora(st, Method::kOurs, 16, 16, seglen, false,
                                                tile_rows);
                                   })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::RegisterBenchmark("layer/merged/batch:32/hidden:4096",
                               [](benchmark::State& st) { bench_layer(st, true); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("layer/unmerged/batch:32/hidden:4096/rank:16/adapters:8",
                               [](benchmark::State& st) { bench_layer(st, false); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  struct Shape {
    const char* name;
    int out, in;
  };
  for (const Shape sh :
       {Shape{"qkvo_4096x4096", 4096, 4096}, Shape{"gate_up_11008x4096", 11008, 4096},
        Shape{"down_4096x11008", 4096, 11008}}) {
    for (const bool unmerge : {false, true}) {
      const std::string name = std::string(unmerge ? "unmerge/" : "merge/") + sh.name + "/rank:16";
      benchmark::RegisterBenchmark(
          name.c_str(), [=](benchmark::State& st) { bench_merge(st, sh.out, sh.in, unmerge); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.1);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::string why;
  if (!cu::cuda_device_available(&why)) {
    std::printf("bench_kernels_cuda: no CUDA device (%s); nothing measured\n", why.c_str());
    return 0;
  }
  try {
    const DeviceInfo& dev = device_info();
    std::printf("bench_kernels_cuda: %s, peak memory bandwidth %.1f GB/s from %s\n",
                dev.name.c_str(), dev.peak_gbps, dev.peak_source.c_str());
    std::printf("bench_kernels_cuda: measured device-to-device copy %.1f GB/s, L2 %zu MiB\n",
                dev.copy_gbps, dev.l2_bytes >> 20);
    benchmark::AddCustomContext("device", dev.name);
    benchmark::AddCustomContext("peak_bandwidth_GBps", std::to_string(dev.peak_gbps));
    benchmark::AddCustomContext("peak_bandwidth_source", dev.peak_source);
    benchmark::AddCustomContext("theoretical_bandwidth_GBps", std::to_string(dev.theoretical_gbps));
    benchmark::AddCustomContext("d2d_copy_bandwidth_GBps", std::to_string(dev.copy_gbps));
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    release_device_state();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels_cuda: %s\n", e.what());
    benchmark::Shutdown();
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
