// The host side of one iteration on a device executor: where each request's new tokens go.
// Entries are grouped by adapter in order of first appearance (so each adapter's tokens form
// one run of rows, Punica's SGMV segment), and every per-token and per-sequence array the
// kernels read is filled in, with every index checked before any device work. Pure C++: the
// cuda executor uploads it, and tests check it without a GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "core/exec/executor.hpp"
#include "lorasched/kernels/types.hpp"

namespace lorasched {

// A run of consecutive rows that share one adapter slot.
struct SlotSegment {
  int32_t start = 0;
  int32_t len = 0;
  int32_t slot = 0;
};

struct BatchLayout {
  int32_t tokens = 0;                       // rows of the iteration (T)
  std::vector<api::AdapterId> slots;        // slot -> adapter (kNoAdapter possible), group order
  std::vector<int32_t> token_ids;           // per row
  std::vector<int32_t> positions;           // per row: position in its sequence
  std::vector<int32_t> kv_slots;            // per row: block_id * block_size + offset
  std::vector<int32_t> last_row;            // per entry (entry order): its last row
  std::vector<kernels::AttentionSeq> seqs;  // per entry, in row order
  std::vector<SlotSegment> segments;        // runs of rows sharing a slot, in row order
};

// The layout of `batch` for a KV pool of kv_blocks blocks of block_size tokens and a
// vocabulary of `vocab` tokens. Throws (LORASCHED_CHECK) naming the request when an entry has
// no tokens, other than new_tokens token ids, a context shorter than its new tokens, a block
// table too short or with blocks outside the pool, or a token outside the vocabulary; and for
// a batch of 2^28 tokens or more. The block_table pointers of `seqs` point into the batch's
// entries, which must outlive the layout's use.
BatchLayout layout_batch(const ExecBatch& batch, int32_t block_size, int64_t kv_blocks,
                         int32_t vocab);

}  // namespace lorasched
