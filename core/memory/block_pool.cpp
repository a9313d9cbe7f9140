#include "core/memory/block_pool.hpp"

#include "core/common/error.hpp"

namespace lorasched {

BlockPool::BlockPool(int64_t total_blocks, int64_t block_bytes, int64_t watermark_blocks,
                     int64_t host_blocks)
    : total_(total_blocks),
      block_bytes_(block_bytes),
      watermark_(watermark_blocks),
      host_total_(host_blocks) {
  LORASCHED_CHECK(total_blocks > 0 && total_blocks < (int64_t(1) << 31), "pool of {} blocks",
                  total_blocks);
  LORASCHED_CHECK(block_bytes > 0, "block of {} bytes", block_bytes);
  free_list_.reserve(static_cast<size_t>(total_blocks));
  // Hand out low block ids first (pop from the back).
  for (int64_t b = total_blocks - 1; b >= 0; --b) free_list_.push_back(static_cast<int32_t>(b));
  in_use_.assign(static_cast<size_t>(total_blocks), 0);
}

int32_t BlockPool::allocate() {
  LORASCHED_CHECK(!free_list_.empty(), "allocate from a full pool of {} blocks", total_);
  const int32_t b = free_list_.back();
  free_list_.pop_back();
  in_use_[static_cast<size_t>(b)] = 1;
  return b;
}

void BlockPool::release(int32_t block) {
  LORASCHED_CHECK(block >= 0 && block < total_ && in_use_[static_cast<size_t>(block)],
                  "release of block {} that is not in use", block);
  in_use_[static_cast<size_t>(block)] = 0;
  free_list_.push_back(block);
}

std::vector<int32_t> BlockPool::allocate_adapter(int64_t bytes) {
  const int64_t n = blocks_for_bytes(bytes);
  LORASCHED_CHECK(n <= free(), "adapter of {} blocks does not fit in {} free blocks", n, free());
  std::vector<int32_t> blocks;
  blocks.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) blocks.push_back(allocate());
  adapter_blocks_ += n;
  return blocks;
}

void BlockPool::release_adapter(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) release(b);
  adapter_blocks_ -= static_cast<int64_t>(blocks.size());
}

bool BlockPool::host_allocate(int64_t n) {
  if (n > host_free()) return false;
  host_used_ += n;
  return true;
}

void BlockPool::host_release(int64_t n) {
  LORASCHED_CHECK(n <= host_used_, "host release of {} blocks, {} in use", n, host_used_);
  host_used_ -= n;
}

}  // namespace lorasched
