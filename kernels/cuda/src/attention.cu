// Paged KV write and causal paged attention (one kernel for decode and prefill rows).
//
// paged_attention: one block per (query row, head), kWarps warps. Warp w walks the keys
// w*kKeys, w*kKeys + kWarps*kKeys, ... up to the row's position, kKeys keys per step (their
// loads are independent, for memory-level parallelism); lane l holds head dims l + 32 e.
// Each warp keeps an online softmax (running max m, sum l, fp32 accumulator), and the warps'
// states are merged in shared memory at the end. The head dim is a runtime value up to
// 32 * EPL, EPL in {2, 4, 8} dispatched from head_dim (so any head_dim <= 256 works).

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "device.cuh"
#include "lorasched/kernels/cuda/attention.hpp"

// paged_kv_write refuses an out-of-range slot with a device-side assertion, which must stay on
// in release builds (NDEBUG): assert() follows NDEBUG as of the last inclusion of <cassert>.
#undef NDEBUG
#include <cassert>

namespace lorasched::kernels::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kKeys = 4;

template <typename T, int EPL>
__global__ void __launch_bounds__(kWarps * 32)
    paged_attention_kernel(const T* __restrict__ q, int num_heads, int num_kv_heads, int head_dim,
                           int block_size, const T* __restrict__ kc, const T* __restrict__ vc,
                           const AttentionPlan::Query* __restrict__ queries,
                           const int32_t* __restrict__ tables, float scale, T* __restrict__ out) {
  const AttentionPlan::Query query = queries[blockIdx.x];
  const int head = static_cast<int>(blockIdx.y);
  const int kv_head = head / (num_heads / num_kv_heads);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int32_t* table = tables + query.table_offset;
  const int64_t q_base = (static_cast<int64_t>(query.row) * num_heads + head) * head_dim;

  float qv[EPL];
#pragma unroll
  for (int e = 0; e < EPL; ++e) {
    const int d = lane + 32 * e;
    qv[e] = d < head_dim ? dev::to_float(q[q_base + d]) : 0.0f;
  }

  const float neg_inf = -__int_as_float(0x7f800000);  // -inf
  float m = neg_inf;                                  // running max of the scaled scores
  float l = 0.0f;                                     // running sum of exp(score - m)
  float acc[EPL];
#pragma unroll
  for (int e = 0; e < EPL; ++e) acc[e] = 0.0f;

  for (int k0 = warp * kKeys; k0 <= query.pos; k0 += kWarps * kKeys) {
    int64_t base[kKeys];
    bool valid[kKeys];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int kp = k0 + u;
      valid[u] = kp <= query.pos;
      base[u] = 0;
      if (valid[u]) {
        const int64_t slot =
            static_cast<int64_t>(table[kp / block_size]) * block_size + kp % block_size;
        base[u] = (slot * num_kv_heads + kv_head) * head_dim;
      }
    }
    float s[kKeys];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      float part = 0.0f;
      if (valid[u]) {
#pragma unroll
        for (int e = 0; e < EPL; ++e) {
          const int d = lane + 32 * e;
          if (d < head_dim) part = fmaf(qv[e], dev::to_float(kc[base[u] + d]), part);
        }
      }
      s[u] = part;
    }
    float mx = m;
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      s[u] = valid[u] ? dev::warp_sum(s[u]) * scale : neg_inf;
      mx = fmaxf(mx, s[u]);
    }
    // valid[0] holds (k0 <= pos), so mx is finite; exp(-inf - mx) = 0 for a fresh state.
    const float corr = expf(m - mx);
    l *= corr;
#pragma unroll
    for (int e = 0; e < EPL; ++e) acc[e] *= corr;
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      if (!valid[u]) continue;
      const float p = expf(s[u] - mx);
      l += p;
#pragma unroll
      for (int e = 0; e < EPL; ++e) {
        const int d = lane + 32 * e;
        if (d < head_dim) acc[e] = fmaf(p, dev::to_float(vc[base[u] + d]), acc[e]);
      }
    }
    m = mx;
  }

  // Merge the warps' states.
  __shared__ float s_m[kWarps];
  __shared__ float s_l[kWarps];
  __shared__ float s_acc[kWarps][EPL * 32];
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < EPL; ++e) s_acc[warp][lane + 32 * e] = acc[e];
  __syncthreads();
  if (warp != 0) return;
  float gm = neg_inf;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) gm = fmaxf(gm, s_m[w]);
  float weight[kWarps];
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = s_m[w] == neg_inf ? 0.0f : expf(s_m[w] - gm);  // warps that saw no key
    total += s_l[w] * weight[w];
  }
  const float inv = 1.0f / total;
#pragma unroll
  for (int e = 0; e < EPL; ++e) {
    const int d = lane + 32 * e;
    if (d >= head_dim) continue;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += s_acc[w][d] * weight[w];
    out[q_base + d] = dev::from_float<T>(o * inv);
  }
}

template <typename T>
__global__ void paged_kv_write_kernel(T* __restrict__ kc, T* __restrict__ vc,
                                      const T* __restrict__ k, const T* __restrict__ v,
                                      const int32_t* __restrict__ slots, int64_t num_slots,
                                      int row_elems) {
  const int token = static_cast<int>(blockIdx.x);
  const int32_t slot = slots[token];
  if (slot == kPaddingSlot) return;
  if (slot < 0 || slot >= num_slots) {
    // A caller's bug that would drop this key/value: stop the kernel with a device-side assert
    // (cudaErrorAssert at the next synchronisation, the slot printed), write nothing.
    if (threadIdx.x == 0) {
      printf("paged_kv_write: token %d has slot %d, outside [0, %lld) and not the padding slot\n",
             token, slot, static_cast<long long>(num_slots));
      assert(slot >= 0 && slot < num_slots && "paged_kv_write: slot out of range");
    }
    return;
  }
  const int64_t src = static_cast<int64_t>(token) * row_elems;
  const int64_t dst = static_cast<int64_t>(slot) * row_elems;
  for (int i = threadIdx.x; i < row_elems; i += blockDim.x) {
    kc[dst + i] = k[src + i];
    vc[dst + i] = v[src + i];
  }
}

#define LORASCHED_DISPATCH_HEAD_DIM(HEAD_DIM, EPL, ...)                                           \
  if ((HEAD_DIM) <= 64) {                                                                         \
    constexpr int EPL = 2;                                                                        \
    __VA_ARGS__;                                                                                  \
  } else if ((HEAD_DIM) <= 128) {                                                                 \
    constexpr int EPL = 4;                                                                        \
    __VA_ARGS__;                                                                                  \
  } else if ((HEAD_DIM) <= kMaxAttentionHeadDim) {                                                \
    constexpr int EPL = 8;                                                                        \
    __VA_ARGS__;                                                                                  \
  } else {                                                                                        \
    throw std::invalid_argument("paged_attention: head_dim " + std::to_string(HEAD_DIM) + " > " + \
                                std::to_string(kMaxAttentionHeadDim));                            \
  }

void validate_cache(const PagedKvCache& kv, const char* what) {
  if (kv.k == nullptr || kv.v == nullptr) {
    throw std::invalid_argument(std::string(what) + ": null cache");
  }
  if (kv.num_blocks <= 0 || kv.block_size <= 0 || kv.num_kv_heads <= 0 || kv.head_dim <= 0) {
    throw std::invalid_argument(std::string(what) + ": bad cache shape");
  }
}

}  // namespace

AttentionPlan AttentionPlan::build(std::span<const AttentionSeq> seqs, int block_size,
                                   int num_blocks, cudaStream_t stream) {
  if (block_size <= 0 || num_blocks <= 0) {
    throw std::invalid_argument("AttentionPlan: bad block_size / num_blocks");
  }
  AttentionPlan plan;
  plan.block_size_ = block_size;
  plan.num_blocks_ = num_blocks;
  std::vector<int32_t> tables;
  for (const auto& s : seqs) {
    if (s.q_len < 0 || s.q_start < 0 || s.q_len > s.context_len) {
      throw std::invalid_argument("AttentionPlan: need 0 <= q_len <= context_len, q_start >= 0");
    }
    if (s.q_len == 0) continue;
    const int64_t nblocks = (static_cast<int64_t>(s.context_len) + block_size - 1) / block_size;
    if (s.block_table == nullptr) throw std::invalid_argument("AttentionPlan: null block table");
    if (tables.size() + static_cast<size_t>(nblocks) >
        static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      throw std::invalid_argument("AttentionPlan: block tables too large");
    }
    const auto offset = static_cast<int32_t>(tables.size());
    for (int64_t b = 0; b < nblocks; ++b) {
      const int32_t id = s.block_table[b];
      if (id < 0 || id >= num_blocks) {
        throw std::invalid_argument("AttentionPlan: block id " + std::to_string(id) +
                                    " outside [0, " + std::to_string(num_blocks) + ")");
      }
      tables.push_back(id);
    }
    if (static_cast<int64_t>(s.q_start) + s.q_len > std::numeric_limits<int32_t>::max()) {
      throw std::invalid_argument("AttentionPlan: rows out of range");
    }
    for (int32_t j = 0; j < s.q_len; ++j) {
      plan.queries_.push_back({s.q_start + j, s.context_len - s.q_len + j, offset});
    }
    plan.rows_needed_ = std::max(plan.rows_needed_, s.q_start + s.q_len);
  }
  plan.dev_queries_.ensure(plan.queries_.size());
  plan.dev_queries_.upload(std::span<const Query>(plan.queries_), stream);
  plan.dev_tables_.ensure(tables.size());
  plan.dev_tables_.upload(std::span<const int32_t>(tables), stream);
  return plan;
}

void paged_kv_write(DType dtype, const PagedKvCache& kv, const void* k, const void* v, int tokens,
                    const int32_t* slots, cudaStream_t stream) {
  validate_cache(kv, "paged_kv_write");
  if (tokens < 0) throw std::invalid_argument("paged_kv_write: negative tokens");
  if (tokens == 0) return;
  if (k == nullptr || v == nullptr || slots == nullptr) {
    throw std::invalid_argument("paged_kv_write: null pointer");
  }
  const int64_t row_elems = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  if (row_elems > std::numeric_limits<int>::max()) {
    throw std::invalid_argument("paged_kv_write: row too large");
  }
  const int64_t num_slots = static_cast<int64_t>(kv.num_blocks) * kv.block_size;
  LORASCHED_DISPATCH_DTYPE("paged_kv_write", dtype, T, {
    paged_kv_write_kernel<T><<<static_cast<unsigned>(tokens), 128, 0, stream>>>(
        static_cast<T*>(kv.k), static_cast<T*>(kv.v), static_cast<const T*>(k),
        static_cast<const T*>(v), slots, num_slots, static_cast<int>(row_elems));
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

void paged_attention(DType dtype, const void* q, int num_heads, const PagedKvCache& kv,
                     const AttentionPlan& plan, float scale, void* out, cudaStream_t stream) {
  validate_cache(kv, "paged_attention");
  if (num_heads <= 0 || num_heads % kv.num_kv_heads != 0) {
    throw std::invalid_argument(
        "paged_attention: num_heads must be a positive multiple of "
        "num_kv_heads");
  }
  if (num_heads > 65535) throw std::invalid_argument("paged_attention: too many heads");
  if (plan.block_size() != kv.block_size || plan.num_blocks() != kv.num_blocks) {
    throw std::invalid_argument("paged_attention: plan built for another cache geometry");
  }
  if (plan.num_queries() == 0) return;
  if (q == nullptr || out == nullptr) throw std::invalid_argument("paged_attention: null pointer");
  const dim3 grid(static_cast<unsigned>(plan.num_queries()), static_cast<unsigned>(num_heads));
  LORASCHED_DISPATCH_DTYPE("paged_attention", dtype, T, {
    LORASCHED_DISPATCH_HEAD_DIM(kv.head_dim, EPL, {
      paged_attention_kernel<T, EPL><<<grid, kWarps * 32, 0, stream>>>(
          static_cast<const T*>(q), num_heads, kv.num_kv_heads, kv.head_dim, kv.block_size,
          static_cast<const T*>(kv.k), static_cast<const T*>(kv.v), plan.device_queries(),
          plan.device_tables(), scale, static_cast<T*>(out));
    });
  });
  LORASCHED_CUDA_CHECK_LAUNCH();
}

}  // namespace lorasched::kernels::cuda
