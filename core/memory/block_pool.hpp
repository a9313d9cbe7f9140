// The paged memory pool of one replica. KV-cache blocks and adapter weights share it
// (S-LoRA's unified paging): an adapter occupies ceil(bytes / block_bytes) blocks while it
// is resident. Host swap space for preempted KV caches is counted beside it.
#pragma once

#include <cstdint>
#include <vector>

namespace lorasched {

class BlockPool {
 public:
  // total_blocks device blocks of block_bytes each; watermark_blocks kept free at admission
  // of new prompts (vLLM's 1%); host_blocks of swap space.
  BlockPool(int64_t total_blocks, int64_t block_bytes, int64_t watermark_blocks,
            int64_t host_blocks);

  int64_t total() const { return total_; }
  int64_t free() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t used() const { return total_ - free(); }
  int64_t block_bytes() const { return block_bytes_; }
  int64_t watermark() const { return watermark_; }
  int64_t adapter_blocks() const { return adapter_blocks_; }
  int64_t kv_blocks_used() const { return used() - adapter_blocks_; }

  int32_t allocate();  // one block; the pool must not be empty
  void release(int32_t block);
  std::vector<int32_t> allocate_adapter(int64_t bytes);  // blocks for an adapter's weights
  void release_adapter(const std::vector<int32_t>& blocks);
  int64_t blocks_for_bytes(int64_t bytes) const {
    return (bytes + block_bytes_ - 1) / block_bytes_;
  }

  // Asks the CPU to fetch the free list's end, which the next allocate() reads (a replica's
  // step reads it when a request crosses a block; in a large cluster it is out of cache).
  void prefetch() const {
    if (!free_list_.empty()) __builtin_prefetch(free_list_.data() + free_list_.size() - 1);
  }

  int64_t host_free() const { return host_total_ - host_used_; }
  bool host_allocate(int64_t n);
  void host_release(int64_t n);

 private:
  int64_t total_, block_bytes_, watermark_, host_total_, host_used_ = 0, adapter_blocks_ = 0;
  std::vector<int32_t> free_list_;
  std::vector<uint8_t> in_use_;
};

}  // namespace lorasched
