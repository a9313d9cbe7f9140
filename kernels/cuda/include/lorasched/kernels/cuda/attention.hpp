// Paged KV cache write and causal paged attention (decode and prefill in one batch, GQA).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lorasched/kernels/cuda/common.hpp"
#include "lorasched/kernels/types.hpp"

namespace lorasched::kernels::cuda {

// One layer's cache in device memory, in the storage dtype of the calls:
// k and v each [num_blocks, block_size, num_kv_heads, head_dim] (types.hpp PagedKvLayer).
struct PagedKvCache {
  void* k = nullptr;
  void* v = nullptr;
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// The query rows and block tables of one attention call, uploaded to the device. Built from
// the types.hpp AttentionSeq list (host block tables of ceil(context_len / block_size) ids,
// validated against num_blocks).
class AttentionPlan {
 public:
  static AttentionPlan build(std::span<const AttentionSeq> seqs, int block_size, int num_blocks,
                             cudaStream_t stream = nullptr);

  struct Query {  // one query row: its row in q/out, its position, its block table offset
    int32_t row = 0;
    int32_t pos = 0;
    int32_t table_offset = 0;
  };
  int num_queries() const { return static_cast<int>(queries_.size()); }
  int rows_needed() const { return rows_needed_; }  // q / out must have at least this many rows
  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  const Query* device_queries() const { return dev_queries_.get(); }
  const int32_t* device_tables() const { return dev_tables_.get(); }

 private:
  std::vector<Query> queries_;
  DeviceBuffer<Query> dev_queries_;
  DeviceBuffer<int32_t> dev_tables_;
  int rows_needed_ = 0;
  int block_size_ = 0;
  int num_blocks_ = 0;
};

// Head dims up to this are supported by paged_attention (any value, not only powers of 2).
inline constexpr int kMaxAttentionHeadDim = 256;

// Writes `tokens` new keys / values ([tokens, num_kv_heads, head_dim] each, `dtype`) at
// device slots[i] = block_id * block_size + offset; kPaddingSlot (-1) is skipped. Any other
// slot outside [0, num_blocks * block_size) is refused: the kernel writes nothing for it and
// fails a device-side assertion (printing the token and slot), so the next synchronising CUDA
// call returns cudaErrorAssert. (The slots live on the device: checking them on the host would
// cost a copy and a synchronisation per layer.)
void paged_kv_write(DType dtype, const PagedKvCache& kv, const void* k, const void* v, int tokens,
                    const int32_t* slots, cudaStream_t stream = nullptr);

// out = causal softmax(scale * q K^T) V for every query row of the plan, grouped-query
// attention (num_heads % num_kv_heads == 0). q, out: [rows, num_heads, head_dim] in `dtype`,
// fp32 softmax and accumulation. Rows not in the plan are not written.
void paged_attention(DType dtype, const void* q, int num_heads, const PagedKvCache& kv,
                     const AttentionPlan& plan, float scale, void* out,
                     cudaStream_t stream = nullptr);

}  // namespace lorasched::kernels::cuda
