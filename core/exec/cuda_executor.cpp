#include "core/exec/cuda_executor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "core/common/error.hpp"
#include "core/exec/batch_layout.hpp"
#include "core/exec/cuda_factory.hpp"
#include "lorasched/kernels/cuda/attention.hpp"
#include "lorasched/kernels/cuda/ops.hpp"

namespace lorasched {

namespace cu = kernels::cuda;
using api::AdapterId;
using api::RequestId;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kMiB = 1024.0 * 1024.0;
// Sub-arrays of the weight and adapter images start at multiples of this many elements
// (256 bytes at 16 bits): the LoRA kernels' 16-byte vector paths and cuBLAS like alignment.
constexpr size_t kAlign = 128;
// Spare swap buffers kept for reuse, at most.
constexpr size_t kMaxSparePinned = 16;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

[[noreturn]] void runtime_error(const std::string& what) { throw Error(ExitCode::runtime, what); }

std::string no_device_message(const std::string& why) {
  return fmt::format("executor cuda: no CUDA device ({})", why);
}

// Converts n floats to 16-bit patterns of dtype.
void encode(cu::DType dtype, const float* src, size_t n, uint16_t* dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = cu::float_to_bits16(dtype, src[i]);
}

}  // namespace

// ---- factory (core/exec/cuda_factory.hpp) ------------------------------------------------------

bool cuda_executor_built() { return true; }

CudaDeviceInfo cuda_device_info() {
  CudaDeviceInfo info;
  std::string why;
  if (!cu::cuda_device_available(&why)) {
    info.reason = why.empty() ? "unknown reason" : why;
    return info;
  }
  int dev = 0;
  cudaDeviceProp prop{};
  size_t free_b = 0, total_b = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, dev);
  if (err == cudaSuccess) err = cudaSetDevice(dev);
  if (err == cudaSuccess) err = cudaMemGetInfo(&free_b, &total_b);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    info.reason =
        fmt::format("device query failed: {}: {}", cudaGetErrorName(err), cudaGetErrorString(err));
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.total_bytes = static_cast<double>(total_b);
  info.free_bytes = static_cast<double>(free_b);
  return info;
}

void require_cuda_device() {
  const CudaDeviceInfo info = cuda_device_info();
  if (!info.available) runtime_error(no_device_message(info.reason));
}

std::unique_ptr<Executor> make_cuda_executor(
    const ModelWeights& weights,
    std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters, int64_t kv_blocks,
    int32_t block_size) {
  return std::make_unique<CudaExecutor>(weights, std::move(host_adapters), kv_blocks, block_size);
}

// ---- PinnedBuffer ----------------------------------------------------------------------------

namespace cuda_exec {

PinnedBuffer::PinnedBuffer(size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    runtime_error(fmt::format(
        "executor cuda: cannot allocate {:.1f} MiB of pinned host memory: {}: {}",
        static_cast<double>(bytes) / kMiB, cudaGetErrorName(err), cudaGetErrorString(err)));
  }
  ptr_ = p;
  bytes_ = bytes;
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void PinnedBuffer::release() noexcept {
  if (ptr_ != nullptr) (void)cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

}  // namespace cuda_exec

// ---- construction ----------------------------------------------------------------------------

CudaExecutor::CudaExecutor(const ModelWeights& weights,
                           std::shared_ptr<const std::vector<LoraAdapterWeights>> host_adapters,
                           int64_t kv_blocks, int32_t block_size, Options options)
    : dtype_(options.dtype),
      shape_(weights.shape),
      kv_blocks_(kv_blocks),
      block_size_(block_size),
      host_(std::move(host_adapters)) {
  std::string why;
  if (!cu::cuda_device_available(&why)) runtime_error(no_device_message(why));

  // The model and the pool, checked before anything is allocated.
  const ModelShape& s = shape_;
  LORASCHED_CHECK(dtype_ == cu::DType::kF16 || dtype_ == cu::DType::kBF16,
                  "the cuda executor stores weights in fp16 or bf16, not {}",
                  cu::dtype_name(dtype_));
  LORASCHED_CHECK(host_ != nullptr, "cuda executor without host adapters");
  LORASCHED_CHECK(s.num_layers > 0 && s.hidden_size > 0 && s.intermediate_size > 0 &&
                      s.vocab_size > 0 && s.num_heads > 0 && s.num_kv_heads > 0,
                  "model '{}' has an empty dimension", s.name);
  LORASCHED_CHECK(s.num_heads % s.num_kv_heads == 0, "heads {} not a multiple of kv heads {}",
                  s.num_heads, s.num_kv_heads);
  LORASCHED_CHECK(s.head_dim > 0 && s.head_dim % 2 == 0 && s.head_dim <= cu::kMaxAttentionHeadDim,
                  "head_dim {} is not even or over the attention kernel's {}", s.head_dim,
                  cu::kMaxAttentionHeadDim);
  LORASCHED_CHECK(kv_blocks_ > 0 && block_size_ > 0, "empty KV cache");
  LORASCHED_CHECK(kv_blocks_ * block_size_ < (int64_t(1) << 31),
                  "a pool of {} blocks of {} tokens has more slots than int32 indexes", kv_blocks_,
                  block_size_);
  const auto H = static_cast<size_t>(s.hidden_size), V = static_cast<size_t>(s.vocab_size);
  LORASCHED_CHECK(weights.embed.size() == V * H, "embeddings of {} values, shape says {}",
                  weights.embed.size(), V * H);
  LORASCHED_CHECK(weights.final_norm.size() == H, "final norm of {} values",
                  weights.final_norm.size());
  LORASCHED_CHECK(s.tie_word_embeddings || weights.lm_head.size() == V * H,
                  "LM head of {} values, shape says {}", weights.lm_head.size(), V * H);
  LORASCHED_CHECK(weights.layers.size() == static_cast<size_t>(s.num_layers),
                  "{} layers, shape says {}", weights.layers.size(), s.num_layers);
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& L = weights.layers[l];
    LORASCHED_CHECK(L.input_norm.size() == H && L.post_norm.size() == H, "layer {}: norm sizes", l);
    for (int t = 0; t < kNumTargets; ++t)
      LORASCHED_CHECK(L.proj[t].size() == static_cast<size_t>(s.out_features(Target(t))) *
                                              static_cast<size_t>(s.in_features(Target(t))),
                      "layer {} {}: {} values for [{}, {}]", l, kTargetNames[t], L.proj[t].size(),
                      s.out_features(Target(t)), s.in_features(Target(t)));
  }

  // Layout of the weight image.
  size_t n = 0;
  auto place = [&n](size_t count) {
    const size_t at = n;
    n = align_up(n + count);
    return at;
  };
  embed_ = place(V * H);
  lm_head_ = s.tie_word_embeddings ? embed_ : place(V * H);
  final_norm_ = place(H);
  size_t proj_elems = 0;
  layers_.resize(weights.layers.size());
  for (auto& lo : layers_) {
    lo.input_norm = place(H);
    lo.post_norm = place(H);
    for (int t = 0; t < kNumTargets; ++t) {
      const size_t count = static_cast<size_t>(s.out_features(Target(t))) *
                           static_cast<size_t>(s.in_features(Target(t)));
      lo.proj[t] = place(count);
      proj_elems += count;
    }
  }
  const size_t esize = cu::dtype_size(dtype_);
  kv_layer_elems_ = static_cast<size_t>(kv_blocks_) * static_cast<size_t>(block_size_) *
                    static_cast<size_t>(s.num_kv_heads) * static_cast<size_t>(s.head_dim);
  const double need = static_cast<double>(n * esize) + static_cast<double>(proj_elems) +
                      static_cast<double>(2 * s.num_layers * kv_layer_elems_ * esize);

  LORASCHED_CUDA_CHECK(cudaGetDevice(&device_));
  activate();
  cudaDeviceProp prop{};
  LORASCHED_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  size_t free_b = 0, total_b = 0;
  LORASCHED_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (need > static_cast<double>(free_b))
    runtime_error(fmt::format(
        "executor cuda: model {} ({:.2f} GiB of {} weights and merge residuals) and a pool of {} "
        "KV blocks ({:.2f} GiB) need {:.2f} GiB; {} has {:.2f} GiB free of {:.2f} GiB: lower "
        "[engine] kv_blocks / pool_gib / gpu_memory_utilization",
        s.name, static_cast<double>(n * esize + proj_elems) / kGiB, cu::dtype_name(dtype_),
        kv_blocks_, static_cast<double>(2 * s.num_layers * kv_layer_elems_ * esize) / kGiB,
        need / kGiB, prop.name, static_cast<double>(free_b) / kGiB,
        static_cast<double>(total_b) / kGiB));
  device_text_ =
      fmt::format("{} (sm_{}{}, {:.1f} GiB), model {} {}", prop.name, prop.major, prop.minor,
                  static_cast<double>(total_b) / kGiB, s.name, cu::dtype_name(dtype_));

  cudaStream_t st = nullptr;
  LORASCHED_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  stream_.reset(st);
  LORASCHED_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  load_stream_.reset(st);
  for (auto* e : {&start_, &stop_, &load_start_, &load_stop_}) {
    cudaEvent_t ev = nullptr;
    LORASCHED_CUDA_CHECK(cudaEventCreate(&ev));
    e->reset(ev);
  }
  blas_ = std::make_unique<cu::BlasHandle>();

  // Weights: converted on the host, one copy.
  {
    std::vector<uint16_t> img(n, 0);
    encode(dtype_, weights.embed.data(), V * H, img.data() + embed_);
    if (!s.tie_word_embeddings)
      encode(dtype_, weights.lm_head.data(), V * H, img.data() + lm_head_);
    encode(dtype_, weights.final_norm.data(), H, img.data() + final_norm_);
    for (size_t l = 0; l < layers_.size(); ++l) {
      const LayerWeights& L = weights.layers[l];
      encode(dtype_, L.input_norm.data(), H, img.data() + layers_[l].input_norm);
      encode(dtype_, L.post_norm.data(), H, img.data() + layers_[l].post_norm);
      for (int t = 0; t < kNumTargets; ++t)
        encode(dtype_, L.proj[t].data(), L.proj[t].size(), img.data() + layers_[l].proj[t]);
    }
    weights_.resize(n);
    weights_.upload(std::span<const uint16_t>(img), stream_.get());
    LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  // KV pool, zeroed (the cpu executor's is too; a batch that reads unwritten slots, as the
  // profiler's decode points do, then sees zeros, not NaN patterns).
  kv_.resize(2 * static_cast<size_t>(s.num_layers) * kv_layer_elems_);
  kv_.zero(stream_.get());

  // Merge residuals, allocated now so a merge never runs out of memory mid-run.
  residuals_.resize(layers_.size());
  for (auto& layer : residuals_)
    for (int t = 0; t < kNumTargets; ++t) {
      layer[t].ulps.ensure(static_cast<size_t>(s.out_features(Target(t))) *
                           static_cast<size_t>(s.in_features(Target(t))));
      layer[t].counter.ensure(1);
    }

  for (auto& tables : tables_) tables.resize(layers_.size() * kNumTargets);
  for (auto& plans : plans_) plans.assign(layers_.size() * kNumTargets, nullptr);
  LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
}

CudaExecutor::~CudaExecutor() {
  // Nothing may be in flight when the buffers go (every operation waits for its work, but an
  // exception may have left some).
  (void)cudaSetDevice(device_);
  if (stream_) (void)cudaStreamSynchronize(stream_.get());
  if (load_stream_) (void)cudaStreamSynchronize(load_stream_.get());
}

// ---- helpers ---------------------------------------------------------------------------------

void CudaExecutor::activate() const { LORASCHED_CUDA_CHECK(cudaSetDevice(device_)); }

void CudaExecutor::check_usable() const {
  if (!broken_.empty())
    runtime_error(fmt::format("executor cuda: unusable after an earlier failure ({})", broken_));
  activate();
}

void CudaExecutor::fail(const char* what, const std::exception& e) {
  broken_ = fmt::format("{}: {}", what, e.what());
  throw;
}

double CudaExecutor::elapsed(cudaEvent_t start, cudaEvent_t stop) const {
  LORASCHED_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  LORASCHED_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  return static_cast<double>(ms) * 1e-3;
}

uint16_t* CudaExecutor::kv_part(int layer, int kv) {
  return kv_.get() + (2 * static_cast<size_t>(layer) + static_cast<size_t>(kv)) * kv_layer_elems_;
}

cu::PagedKvCache CudaExecutor::kv_layer(int layer) {
  return {kv_part(layer, 0), kv_part(layer, 1),   static_cast<int32_t>(kv_blocks_),
          block_size_,       shape_.num_kv_heads, shape_.head_dim};
}

const CudaExecutor::DeviceAdapter& CudaExecutor::resident_adapter(AdapterId adapter) const {
  auto it = resident_.find(adapter);
  LORASCHED_CHECK(it != resident_.end(), "adapter {} used but not resident in the pool", adapter);
  return it->second;
}

// The adapter's 16-bit image in pinned memory, made on first use: per layer and target, A
// then B, each at an aligned offset.
const CudaExecutor::AdapterImage& CudaExecutor::image(AdapterId adapter) {
  auto it = images_.find(adapter);
  if (it != images_.end()) return it->second;
  const LoraAdapterWeights& a = (*host_)[static_cast<size_t>(adapter)];
  LORASCHED_CHECK(a.layers.size() == layers_.size(), "adapter '{}' has {} layers, model {}", a.name,
                  a.layers.size(), layers_.size());
  AdapterImage img;
  img.modules.resize(a.layers.size());
  size_t n = 0;
  int64_t payload = 0;
  for (size_t l = 0; l < a.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const LoraModule& m = a.layers[l][t];
      if (!m.present()) continue;
      const auto in = static_cast<size_t>(shape_.in_features(Target(t)));
      const auto out = static_cast<size_t>(shape_.out_features(Target(t)));
      const auto r = static_cast<size_t>(m.rank);
      LORASCHED_CHECK(m.A.size() == r * in && m.B.size() == out * r,
                      "adapter '{}' layer {} {}: A {} and B {} values for rank {} [{}, {}]", a.name,
                      l, kTargetNames[t], m.A.size(), m.B.size(), m.rank, out, in);
      ModuleSlice& sl = img.modules[l][t];
      sl.rank = m.rank;
      sl.scale = m.scale;
      sl.a = n;
      n = align_up(n + m.A.size());
      sl.b = n;
      n = align_up(n + m.B.size());
      payload += static_cast<int64_t>(m.A.size() + m.B.size());
    }
  img.elems = n;
  img.payload_bytes = payload * static_cast<int64_t>(cu::dtype_size(dtype_));
  img.host = cuda_exec::PinnedBuffer(std::max<size_t>(n, 1) * sizeof(uint16_t));
  auto* dst = static_cast<uint16_t*>(img.host.get());
  std::fill(dst, dst + n, uint16_t{0});
  for (size_t l = 0; l < a.layers.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const LoraModule& m = a.layers[l][t];
      if (!m.present()) continue;
      encode(dtype_, m.A.data(), m.A.size(), dst + img.modules[l][t].a);
      encode(dtype_, m.B.data(), m.B.size(), dst + img.modules[l][t].b);
    }
  return images_.emplace(adapter, std::move(img)).first->second;
}

// ---- run -------------------------------------------------------------------------------------

// The adapter tables of the slots (adapters in group order) for both passes. Unchanged slots,
// merged adapter and residency keep the tables already on the device.
void CudaExecutor::prepare_tables(const std::vector<AdapterId>& slots) {
  if (tables_valid_ && slots == table_slots_ && merged_ == table_merged_) return;
  tables_valid_ = false;
  const DeviceAdapter* merged = merged_ != api::kNoAdapter ? &resident_adapter(merged_) : nullptr;
  std::vector<const DeviceAdapter*> own(slots.size(), nullptr);
  for (size_t i = 0; i < slots.size(); ++i)
    if (slots[i] != api::kNoAdapter && slots[i] != merged_) own[i] = &resident_adapter(slots[i]);
  // Staged in pinned memory, one region per table, so the uploads are asynchronous (the
  // buffer is rewritten only here, after the previous operation waited for its work).
  const size_t S = slots.size(), n_tables = tables_[0].size();
  ensure_pinned(refs_host_, 2 * n_tables * S * sizeof(cu::LoraAdapterRef));
  auto* staged = static_cast<cu::LoraAdapterRef*>(refs_host_.get());
  for (size_t l = 0; l < layers_.size(); ++l)
    for (int t = 0; t < kNumTargets; ++t) {
      const size_t i = l * kNumTargets + static_cast<size_t>(t);
      // Pass 0: each slot's own adapter (none for the merged adapter's slot).
      cu::LoraAdapterRef* refs = staged + i * S;
      for (size_t s = 0; s < S; ++s)
        refs[s] = own[s] != nullptr ? own[s]->refs[l][t] : cu::LoraAdapterRef{};
      tables_[0][i].assign(std::span<const cu::LoraAdapterRef>(refs, S), stream_.get());
      // Pass 1: minus the merged adapter's term, for every slot but its own.
      refs = staged + (n_tables + i) * S;
      for (size_t s = 0; s < S; ++s) {
        refs[s] = cu::LoraAdapterRef{};
        if (merged != nullptr && slots[s] != merged_ && merged->refs[l][t].rank > 0) {
          refs[s] = merged->refs[l][t];
          refs[s].scale = -refs[s].scale;
        }
      }
      tables_[1][i].assign(std::span<const cu::LoraAdapterRef>(refs, S), stream_.get());
    }
  table_slots_ = slots;
  table_merged_ = merged_;
  tables_valid_ = true;
}

void CudaExecutor::add_lora(int layer, Target t, const void* x, int in, void* y, int out) {
  const size_t i = static_cast<size_t>(layer) * kNumTargets + static_cast<size_t>(t);
  for (int p = 0; p < 2; ++p) {
    const cu::LoraBatchPlan* plan = plans_[static_cast<size_t>(p)][i];
    if (plan == nullptr || plan->num_tiles() == 0) continue;
    const cu::LoraAdapterTable& table = tables_[static_cast<size_t>(p)][i];
    cu::lora_shrink(dtype_, x, in, in, table, *plan, t_.get(), stream_.get());
    cu::lora_expand(dtype_, t_.get(), table, *plan, out, y, out, stream_.get());
  }
}

IterationResult CudaExecutor::run(const ExecBatch& batch) {
  check_usable();
  LORASCHED_CHECK(batch.merged_adapter == merged_, "batch for merged adapter {} but {} is merged",
                  batch.merged_adapter, merged_);
  IterationResult result;
  last_entries_ = 0;
  if (batch.entries.empty()) return result;
  // Host side, everything checked before any device work.
  for (const ExecEntry& en : batch.entries)
    LORASCHED_CHECK(en.adapter == api::kNoAdapter || resident_.count(en.adapter) != 0,
                    "request {}: adapter {} used but not resident in the pool", en.request,
                    en.adapter);
  const BatchLayout layout = layout_batch(batch, block_size_, kv_blocks_, shape_.vocab_size);
  const int E = static_cast<int>(batch.entries.size());
  try {
    result.seconds = run_layers(layout, E);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("run", e);
  }
  const auto* next = static_cast<const int32_t*>(next_host_.get());
  result.next_tokens.assign(next, next + E);
  for (int32_t tok : result.next_tokens)
    LORASCHED_CHECK(tok >= 0 && tok < shape_.vocab_size,
                    "argmax gave token {} outside the vocabulary", tok);
  last_entries_ = E;
  return result;
}

// The layout's integers in one pinned staging buffer: tokens [T] | positions [T] | KV slots [T]
// | last rows [E], the order run_layers uploads and reads them in.
size_t CudaExecutor::stage_ints(const BatchLayout& layout) {
  const auto T = static_cast<size_t>(layout.tokens);
  const size_t n = 3 * T + layout.last_row.size();
  ensure_pinned(ints_host_, n * sizeof(int32_t));
  auto* p = static_cast<int32_t*>(ints_host_.get());
  std::copy(layout.token_ids.begin(), layout.token_ids.end(), p);
  std::copy(layout.positions.begin(), layout.positions.end(), p + T);
  std::copy(layout.kv_slots.begin(), layout.kv_slots.end(), p + 2 * T);
  std::copy(layout.last_row.begin(), layout.last_row.end(), p + 3 * T);
  return n;
}

// The LoRA tables of the layout's slots and, per pass and projection, the plan of its
// segments for the table's ranks (one plan per distinct rank pattern). Returns the floats the
// shrink output needs.
size_t CudaExecutor::plan_lora(const BatchLayout& layout) {
  prepare_tables(layout.slots);
  std::vector<cu::LoraSlotSegment> segments;
  segments.reserve(layout.segments.size());
  for (const SlotSegment& g : layout.segments) segments.push_back({g.start, g.len, g.slot});
  cudaStream_t st = stream_.get();
  size_t t_floats = 1;
  for (size_t p = 0; p < 2; ++p) {
    plan_cache_[p].clear();
    for (size_t i = 0; i < plans_[p].size(); ++i) {
      const std::vector<int32_t>& ranks = tables_[p][i].ranks();
      plans_[p][i] = nullptr;
      if (std::all_of(ranks.begin(), ranks.end(), [](int32_t r) { return r == 0; })) continue;
      auto it = plan_cache_[p].find(ranks);
      if (it == plan_cache_[p].end())
        it = plan_cache_[p]
                 .emplace(ranks, cu::LoraBatchPlan::segmented(segments, layout.tokens, ranks, st))
                 .first;
      plans_[p][i] = &it->second;
      t_floats = std::max(t_floats, it->second.t_floats());
    }
  }
  return t_floats;
}

// The device work of one iteration, timed by CUDA events: the inputs' upload, the LoRA plans,
// the embedding lookup, every layer, the final norm and LM head on each entry's last row, the
// greedy argmax and its download to next_host_.
double CudaExecutor::run_layers(const BatchLayout& layout, int E) {
  const ModelShape& s = shape_;
  const int H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size;
  const int QD = s.num_heads * s.head_dim, KD = s.num_kv_heads * s.head_dim;
  const int T = layout.tokens;
  const auto Tz = static_cast<size_t>(T), Ez = static_cast<size_t>(E);
  h_.ensure(Tz * H);
  xn_.ensure(Tz * H);
  q_.ensure(Tz * QD);
  k_.ensure(Tz * KD);
  v_.ensure(Tz * KD);
  attn_.ensure(Tz * QD);
  g_.ensure(Tz * I);
  u_.ensure(Tz * I);
  last_.ensure(Ez * H);
  logits_.ensure(Ez * V);
  next_.ensure(Ez);
  ensure_pinned(next_host_, Ez * sizeof(int32_t));
  const size_t n_ints = stage_ints(layout);
  ints_.ensure(n_ints);

  cudaStream_t st = stream_.get();
  LORASCHED_CUDA_CHECK(cudaEventRecord(start_.get(), st));
  LORASCHED_CUDA_CHECK(cudaMemcpyAsync(ints_.get(), ints_host_.get(), n_ints * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, st));
  const int32_t* d_tokens = ints_.get();
  const int32_t* d_positions = d_tokens + T;
  const int32_t* d_slots = d_positions + T;
  const int32_t* d_last = d_slots + T;
  t_.ensure(plan_lora(layout));
  const cu::AttentionPlan att =
      cu::AttentionPlan::build(layout.seqs, block_size_, static_cast<int>(kv_blocks_), st);

  cu::gather_rows(dtype_, weight(embed_), H, d_tokens, T, H, h_.get(), H, st);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  cu::BlasHandle& blas = *blas_;
  for (int l = 0; l < s.num_layers; ++l) {
    const LayerOffsets& L = layers_[static_cast<size_t>(l)];
    auto W = [&](Target t) { return weight(L.proj[static_cast<int>(t)]); };
    cu::rmsnorm(dtype_, h_.get(), weight(L.input_norm), T, H, s.rms_norm_eps, xn_.get(), st);
    cu::gemm_xwt(blas, dtype_, xn_.get(), T, H, H, W(Target::q), QD, H, q_.get(), QD, false, st);
    add_lora(l, Target::q, xn_.get(), H, q_.get(), QD);
    cu::gemm_xwt(blas, dtype_, xn_.get(), T, H, H, W(Target::k), KD, H, k_.get(), KD, false, st);
    add_lora(l, Target::k, xn_.get(), H, k_.get(), KD);
    cu::gemm_xwt(blas, dtype_, xn_.get(), T, H, H, W(Target::v), KD, H, v_.get(), KD, false, st);
    add_lora(l, Target::v, xn_.get(), H, v_.get(), KD);
    cu::rope(dtype_, q_.get(), T, s.num_heads, s.head_dim, d_positions, s.rope_theta, st);
    cu::rope(dtype_, k_.get(), T, s.num_kv_heads, s.head_dim, d_positions, s.rope_theta, st);
    const cu::PagedKvCache kv = kv_layer(l);
    cu::paged_kv_write(dtype_, kv, k_.get(), v_.get(), T, d_slots, st);
    cu::paged_attention(dtype_, q_.get(), s.num_heads, kv, att, scale, attn_.get(), st);
    // h += attn Wo^T + LoRA: the GEMM accumulates into the residual stream.
    cu::gemm_xwt(blas, dtype_, attn_.get(), T, QD, QD, W(Target::o), H, QD, h_.get(), H, true, st);
    add_lora(l, Target::o, attn_.get(), QD, h_.get(), H);

    cu::rmsnorm(dtype_, h_.get(), weight(L.post_norm), T, H, s.rms_norm_eps, xn_.get(), st);
    cu::gemm_xwt(blas, dtype_, xn_.get(), T, H, H, W(Target::gate), I, H, g_.get(), I, false, st);
    add_lora(l, Target::gate, xn_.get(), H, g_.get(), I);
    cu::gemm_xwt(blas, dtype_, xn_.get(), T, H, H, W(Target::up), I, H, u_.get(), I, false, st);
    add_lora(l, Target::up, xn_.get(), H, u_.get(), I);
    cu::silu_mul(dtype_, g_.get(), u_.get(), Tz * I, g_.get(), st);
    cu::gemm_xwt(blas, dtype_, g_.get(), T, I, I, W(Target::down), H, I, h_.get(), H, true, st);
    add_lora(l, Target::down, g_.get(), I, h_.get(), H);
  }
  // Final norm and LM head on each entry's last token only (rows in entry order).
  cu::gather_rows(dtype_, h_.get(), H, d_last, E, H, last_.get(), H, st);
  cu::rmsnorm(dtype_, last_.get(), weight(final_norm_), E, H, s.rms_norm_eps, last_.get(), st);
  cu::gemm_xwt(blas, dtype_, last_.get(), E, H, H, weight(lm_head_), V, H, logits_.get(), V, false,
               st);
  cu::argmax_rows(dtype_, logits_.get(), E, V, next_.get(), st);
  LORASCHED_CUDA_CHECK(cudaMemcpyAsync(next_host_.get(), next_.get(), Ez * sizeof(int32_t),
                                       cudaMemcpyDeviceToHost, st));
  LORASCHED_CUDA_CHECK(cudaEventRecord(stop_.get(), st));
  const double seconds = elapsed(start_.get(), stop_.get());
  LORASCHED_CUDA_CHECK(cudaStreamSynchronize(st));
  return seconds;
}

// ---- weights ---------------------------------------------------------------------------------

std::vector<CostStep> CudaExecutor::switch_weights(AdapterId from, AdapterId to,
                                                   SwitchMethod method) {
  check_usable();
  LORASCHED_CHECK(from == merged_, "switch from {} but {} is merged", from, merged_);
  std::vector<CostStep> steps;
  if (from == to) return steps;
  if (to != api::kNoAdapter) (void)resident_adapter(to);  // checked before anything changes
  const size_t esize = cu::dtype_size(dtype_);
  cudaStream_t st = stream_.get();
  // The modules of an adapter, with the bytes merge / unmerge read and write (as the cpu
  // executor counts them: W read and written, A and B read).
  auto each_module = [&](const DeviceAdapter& a, auto&& f) {
    int64_t bytes = 0;
    for (size_t l = 0; l < layers_.size(); ++l)
      for (int t = 0; t < kNumTargets; ++t) {
        const cu::LoraAdapterRef& m = a.refs[l][t];
        if (m.rank == 0) continue;
        const int out = shape_.out_features(Target(t)), in = shape_.in_features(Target(t));
        f(l, t, m, out, in);
        bytes += static_cast<int64_t>(esize) *
                 (2 * static_cast<int64_t>(out) * in + static_cast<int64_t>(m.rank) * (out + in));
      }
    return bytes;
  };
  try {
    tables_valid_ = false;
    if (method == SwitchMethod::fused && from != api::kNoAdapter && to != api::kNoAdapter) {
      // One pass per projection: a module both adapters have is switched in place; one only the
      // old adapter has is unmerged, one only the new adapter has is merged.
      const DeviceAdapter& a = resident_adapter(from);
      const DeviceAdapter& b = resident_adapter(to);
      LORASCHED_CUDA_CHECK(cudaEventRecord(start_.get(), st));
      int64_t bytes = 0;
      for (size_t l = 0; l < layers_.size(); ++l)
        for (int t = 0; t < kNumTargets; ++t) {
          const cu::LoraAdapterRef& x = a.refs[l][t];
          const cu::LoraAdapterRef& y = b.refs[l][t];
          if (x.rank == 0 && y.rank == 0) continue;
          const int out = shape_.out_features(Target(t)), in = shape_.in_features(Target(t));
          void* W = weight(layers_[l].proj[t]);
          if (x.rank > 0 && y.rank > 0)
            cu::lora_switch(dtype_, W, out, in, x.A, x.B, x.rank, x.scale, y.A, y.B, y.rank,
                            y.scale, &residuals_[l][t], st);
          else if (x.rank > 0)
            cu::lora_unmerge(dtype_, W, out, in, x.A, x.B, x.rank, x.scale, &residuals_[l][t], st);
          else
            cu::lora_merge(dtype_, W, out, in, y.A, y.B, y.rank, y.scale, &residuals_[l][t], st);
          bytes +=
              static_cast<int64_t>(esize) * (2 * static_cast<int64_t>(out) * in +
                                             static_cast<int64_t>(x.rank + y.rank) * (out + in));
        }
      LORASCHED_CUDA_CHECK(cudaEventRecord(stop_.get(), st));
      steps.push_back(
          {EventKind::adapter_switch, to, elapsed(start_.get(), stop_.get()), bytes, from});
      merged_ = to;
      LORASCHED_CUDA_CHECK(cudaStreamSynchronize(st));
      return steps;
    }
    if (from != api::kNoAdapter) {
      const DeviceAdapter& a = resident_adapter(from);
      LORASCHED_CUDA_CHECK(cudaEventRecord(start_.get(), st));
      const int64_t bytes =
          each_module(a, [&](size_t l, int t, const cu::LoraAdapterRef& m, int out, int in) {
            cu::lora_unmerge(dtype_, weight(layers_[l].proj[t]), out, in, m.A, m.B, m.rank, m.scale,
                             &residuals_[l][t], st);
          });
      LORASCHED_CUDA_CHECK(cudaEventRecord(stop_.get(), st));
      steps.push_back({EventKind::unmerge, from, elapsed(start_.get(), stop_.get()), bytes});
      merged_ = api::kNoAdapter;
    }
    if (to != api::kNoAdapter) {
      const DeviceAdapter& a = resident_adapter(to);
      LORASCHED_CUDA_CHECK(cudaEventRecord(start_.get(), st));
      const int64_t bytes =
          each_module(a, [&](size_t l, int t, const cu::LoraAdapterRef& m, int out, int in) {
            cu::lora_merge(dtype_, weight(layers_[l].proj[t]), out, in, m.A, m.B, m.rank, m.scale,
                           &residuals_[l][t], st);
          });
      LORASCHED_CUDA_CHECK(cudaEventRecord(stop_.get(), st));
      steps.push_back({EventKind::merge, to, elapsed(start_.get(), stop_.get()), bytes});
      merged_ = to;
    }
    LORASCHED_CUDA_CHECK(cudaStreamSynchronize(st));
  } catch (const std::exception& e) {
    fail("weight switch (the weights may be half merged)", e);
  }
  return steps;
}

CostStep CudaExecutor::load_adapter(AdapterId adapter) {
  check_usable();
  LORASCHED_CHECK(adapter >= 0 && static_cast<size_t>(adapter) < host_->size(),
                  "load of unknown adapter {}", adapter);
  const AdapterImage& img = image(adapter);
  auto it = resident_.find(adapter);
  if (it == resident_.end()) {
    // Allocated outside the timed copy: in a real pool the blocks are already there.
    DeviceAdapter d;
    try {
      d.data.resize(std::max<size_t>(img.elems, 1));
    } catch (const std::exception& e) {
      (void)cudaGetLastError();
      runtime_error(fmt::format(
          "executor cuda: no device memory for adapter {} ({:.1f} MiB, {} resident): {}; lower "
          "[engine] kv_blocks / pool_gib / gpu_memory_utilization",
          adapter, static_cast<double>(img.elems * sizeof(uint16_t)) / kMiB, resident_.size(),
          e.what()));
    }
    d.refs.resize(layers_.size());
    for (size_t l = 0; l < layers_.size(); ++l)
      for (int t = 0; t < kNumTargets; ++t) {
        const ModuleSlice& sl = img.modules[l][t];
        if (sl.rank == 0) continue;
        d.refs[l][t] = {d.data.get() + sl.a, d.data.get() + sl.b, sl.rank, sl.scale};
      }
    it = resident_.emplace(adapter, std::move(d)).first;
  }
  tables_valid_ = false;
  double seconds = 0;
  try {
    cudaStream_t ls = load_stream_.get();
    LORASCHED_CUDA_CHECK(cudaEventRecord(load_start_.get(), ls));
    LORASCHED_CUDA_CHECK(cudaMemcpyAsync(it->second.data.get(), img.host.get(),
                                         img.elems * sizeof(uint16_t), cudaMemcpyHostToDevice, ls));
    LORASCHED_CUDA_CHECK(cudaEventRecord(load_stop_.get(), ls));
    seconds = elapsed(load_start_.get(), load_stop_.get());
    // Compute-stream work after this sees the adapter (it is complete already; explicit).
    LORASCHED_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), load_stop_.get(), 0));
  } catch (const std::exception& e) {
    fail("adapter load", e);
  }
  return {EventKind::adapter_load, adapter, seconds, img.payload_bytes};
}

void CudaExecutor::evict_adapter(AdapterId adapter) {
  check_usable();
  LORASCHED_CHECK(adapter != merged_, "evict of merged adapter {}", adapter);
  tables_valid_ = false;
  resident_.erase(adapter);  // nothing in flight: every operation waited for its work
}

// ---- swaps -----------------------------------------------------------------------------------

void CudaExecutor::ensure_pinned(cuda_exec::PinnedBuffer& buffer, size_t bytes) {
  if (buffer.bytes() >= bytes) return;
  buffer.release();
  buffer = cuda_exec::PinnedBuffer(std::max<size_t>(bytes, 4096));
}

cuda_exec::PinnedBuffer CudaExecutor::take_pinned(size_t bytes) {
  auto best = spare_pinned_.end();
  for (auto it = spare_pinned_.begin(); it != spare_pinned_.end(); ++it)
    if (it->bytes() >= bytes && (best == spare_pinned_.end() || it->bytes() < best->bytes()))
      best = it;
  if (best == spare_pinned_.end()) return cuda_exec::PinnedBuffer(std::max<size_t>(bytes, 1));
  cuda_exec::PinnedBuffer b = std::move(*best);
  spare_pinned_.erase(best);
  return b;
}

void CudaExecutor::give_pinned(cuda_exec::PinnedBuffer buffer) {
  if (buffer.get() == nullptr) return;
  if (spare_pinned_.size() >= kMaxSparePinned) {
    // Drop the smallest (the new one included).
    auto smallest =
        std::min_element(spare_pinned_.begin(), spare_pinned_.end(),
                         [](const auto& a, const auto& b) { return a.bytes() < b.bytes(); });
    if (smallest->bytes() >= buffer.bytes()) return;  // `buffer` is freed here
    *smallest = std::move(buffer);
    return;
  }
  spare_pinned_.push_back(std::move(buffer));
}

// Host layout: for each layer, K then V, each the blocks in order (block_elems each). Runs of
// consecutive block ids go in one copy.
void CudaExecutor::copy_blocks(std::span<const int32_t> blocks, void* host, bool to_host) {
  const size_t esize = cu::dtype_size(dtype_);
  const size_t block_elems = static_cast<size_t>(block_size_) *
                             static_cast<size_t>(shape_.num_kv_heads) *
                             static_cast<size_t>(shape_.head_dim);
  const size_t block_bytes = block_elems * esize;
  auto* h = static_cast<unsigned char*>(host);
  cudaStream_t st = stream_.get();
  for (int l = 0; l < shape_.num_layers; ++l)
    for (int kv = 0; kv < 2; ++kv) {
      auto* dev = reinterpret_cast<unsigned char*>(kv_part(l, kv));
      for (size_t i = 0; i < blocks.size();) {
        size_t j = i + 1;
        while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1) ++j;
        unsigned char* d = dev + static_cast<size_t>(blocks[i]) * block_bytes;
        const size_t bytes = (j - i) * block_bytes;
        if (to_host)
          LORASCHED_CUDA_CHECK(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, st));
        else
          LORASCHED_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, st));
        h += bytes;
        i = j;
      }
    }
}

CostStep CudaExecutor::swap_out(RequestId request, std::span<const int32_t> blocks) {
  check_usable();
  for (int32_t b : blocks)
    LORASCHED_CHECK(b >= 0 && b < kv_blocks_, "swap-out of request {}: KV block {} out of range",
                    request, b);
  const int64_t bytes = static_cast<int64_t>(blocks.size()) * 2 * shape_.num_layers * block_size_ *
                        shape_.num_kv_heads * shape_.head_dim *
                        static_cast<int64_t>(cu::dtype_size(dtype_));
  auto old = swapped_.find(request);
  if (old != swapped_.end()) {  // a newer copy replaces it
    give_pinned(std::move(old->second.host));
    swapped_.erase(old);
  }
  Swapped sw;
  sw.host = take_pinned(static_cast<size_t>(bytes));
  sw.blocks.assign(blocks.begin(), blocks.end());
  double seconds = 0;
  try {
    cudaStream_t st = stream_.get();
    LORASCHED_CUDA_CHECK(cudaEventRecord(start_.get(), st));
    copy_blocks(blocks, sw.host.get(), /*to_host=*/true);
    LORASCHED_CUDA_CHECK(cudaEventRecord(stop_.get(), st));
    seconds = elapsed(start_.get(), stop_.get());
  } catch (const std::exception& e) {
    fail("swap-out", e);
  }
  swapped_.emplace(request, std::move(sw));
  return {EventKind::preempt_swap, api::kNoAdapter, seconds, bytes};
}

CostStep CudaExecutor::swap_in(RequestId request, std::span<const int32_t> blocks) {
  check_usable();
  auto it = swapped_.find(request);
  LORASCHED_CHECK(it != swapped_.end(), "swap-in of request {} that was not swapped out", request);
  LORASCHED_CHECK(blocks.size() == it->second.blocks.size(),
                  "swap-in of request {} to {} blocks; {} were swapped out", request, blocks.size(),
                  it->second.blocks.size());
  for (int32_t b : blocks)
    LORASCHED_CHECK(b >= 0 && b < kv_blocks_, "swap-in of request {}: KV block {} out of range",
                    request, b);
  const int64_t bytes = static_cast<int64_t>(blocks.size()) * 2 * shape_.num_layers * block_size_ *
                        shape_.num_kv_heads * shape_.head_dim *
                        static_cast<int64_t>(cu::dtype_size(dtype_));
  double seconds = 0;
  try {
    cudaStream_t st = stream_.get();
    LORASCHED_CUDA_CHECK(cudaEventRecord(start_.get(), st));
    copy_blocks(blocks, it->second.host.get(), /*to_host=*/false);
    LORASCHED_CUDA_CHECK(cudaEventRecord(stop_.get(), st));
    seconds = elapsed(start_.get(), stop_.get());
  } catch (const std::exception& e) {
    fail("swap-in", e);
  }
  give_pinned(std::move(it->second.host));
  swapped_.erase(it);
  return {EventKind::swap_in, api::kNoAdapter, seconds, bytes};
}

void CudaExecutor::drop_swapped(RequestId request) {
  auto it = swapped_.find(request);
  if (it == swapped_.end()) return;
  give_pinned(std::move(it->second.host));
  swapped_.erase(it);
}

// Migration with KV transfer: the blocks' K and V of every layer, in copy_blocks' order
// (layer, K|V, block), through host memory (the replicas may share one device or not).
KvData CudaExecutor::export_kv(std::span<const int32_t> blocks) {
  check_usable();
  for (int32_t b : blocks)
    LORASCHED_CHECK(b >= 0 && b < kv_blocks_, "KV export: block {} out of range", b);
  KvData kv;
  kv.blocks = static_cast<int64_t>(blocks.size());
  kv.bytes.resize(blocks.size() * 2 * static_cast<size_t>(shape_.num_layers) *
                  static_cast<size_t>(block_size_) * static_cast<size_t>(shape_.num_kv_heads) *
                  static_cast<size_t>(shape_.head_dim) * cu::dtype_size(dtype_));
  try {
    copy_blocks(blocks, kv.bytes.data(), /*to_host=*/true);
    LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  } catch (const std::exception& e) {
    fail("KV export", e);
  }
  return kv;
}

void CudaExecutor::import_kv(std::span<const int32_t> blocks, const KvData& kv) {
  check_usable();
  const size_t want = blocks.size() * 2 * static_cast<size_t>(shape_.num_layers) *
                      static_cast<size_t>(block_size_) * static_cast<size_t>(shape_.num_kv_heads) *
                      static_cast<size_t>(shape_.head_dim) * cu::dtype_size(dtype_);
  LORASCHED_CHECK(kv.blocks == static_cast<int64_t>(blocks.size()) && kv.bytes.size() == want,
                  "KV import of {} blocks ({} bytes) into {} blocks ({} bytes)", kv.blocks,
                  kv.bytes.size(), blocks.size(), want);
  for (int32_t b : blocks)
    LORASCHED_CHECK(b >= 0 && b < kv_blocks_, "KV import: block {} out of range", b);
  try {
    // copy_blocks reads the host buffer as it is given; it only reads it in this direction.
    copy_blocks(blocks, const_cast<std::byte*>(kv.bytes.data()), /*to_host=*/false);
    LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  } catch (const std::exception& e) {
    fail("KV import", e);
  }
}

// ---- inspection ------------------------------------------------------------------------------

std::vector<float> CudaExecutor::last_logits() const {
  check_usable();
  const size_t n = static_cast<size_t>(last_entries_) * static_cast<size_t>(shape_.vocab_size);
  std::vector<uint16_t> bits(n);
  logits_.download(std::span<uint16_t>(bits), stream_.get());
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = cu::bits16_to_float(dtype_, bits[i]);
  return out;
}

std::vector<uint16_t> CudaExecutor::projection_bits(int layer, Target t) const {
  check_usable();
  LORASCHED_CHECK(layer >= 0 && layer < shape_.num_layers, "layer {} out of range", layer);
  const size_t n =
      static_cast<size_t>(shape_.out_features(t)) * static_cast<size_t>(shape_.in_features(t));
  std::vector<uint16_t> bits(n);
  LORASCHED_CUDA_CHECK(cudaMemcpyAsync(
      bits.data(), weight(layers_[static_cast<size_t>(layer)].proj[static_cast<int>(t)]),
      n * sizeof(uint16_t), cudaMemcpyDeviceToHost, stream_.get()));
  LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  return bits;
}

size_t CudaExecutor::device_bytes() const {
  size_t n = weights_.bytes() + kv_.bytes() + t_.bytes() + ints_.bytes() + next_.bytes();
  for (const auto* b : {&h_, &xn_, &q_, &k_, &v_, &attn_, &g_, &u_, &last_, &logits_})
    n += b->bytes();
  for (const auto& layer : residuals_)
    for (const auto& r : layer)
      n += r.ulps.bytes() + r.exception_index.bytes() + r.exception_value.bytes() +
           r.counter.bytes();
  for (const auto& [id, a] : resident_) n += a.data.bytes();
  return n;
}

}  // namespace lorasched
