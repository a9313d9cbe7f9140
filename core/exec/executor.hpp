// The executor runs one replica's iterations and weight switches and says how long each
// took: measured (cpu, cuda) or predicted (costmodel). Policies cannot tell them apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/metrics/records.hpp"
#include "lorasched/plugin/types.hpp"

namespace lorasched {

// One request's part of an iteration.
struct ExecEntry {
  api::RequestId request = 0;
  api::AdapterId adapter = 0;
  bool prefill = false;        // whole context (prompt, or prompt + generated when recomputed)
  int32_t new_tokens = 0;      // tokens run now (context length at prefill, 1 at decode)
  int32_t context_tokens = 0;  // tokens in its KV cache after this iteration
  std::span<const int32_t> block_table;
  std::span<const int32_t> tokens;  // the new token ids (real executors only)
};

struct ExecBatch {
  int32_t replica = 0;
  api::Mode mode = api::Mode::unmerged;
  api::AdapterId merged_adapter = api::kNoAdapter;
  std::vector<ExecEntry> entries;
};

struct IterationResult {
  double seconds = 0;
  // The same batch's execution at merged speed (no LoRA pass: the base weights alone, as
  // with one adapter merged), where the executor can tell without running it again: the
  // cost model prices it; cpu and cuda measure and leave NaN. iterations.merged_duration,
  // the summary's unmerged_overhead_time (docs/results-format.md).
  double merged_seconds = std::numeric_limits<double>::quiet_NaN();
  std::vector<int32_t> next_tokens;  // one per entry (real executors; empty otherwise)
};

// A request's KV cache read out of one replica's executor, to be written into another's
// (migration with [cluster] migration_kv = "transfer", as ggml's backend get/set tensor):
// opaque to the caller, moved as is between executors of one run (same model, same element
// type). `bytes` is empty for executors that keep no KV contents (costmodel).
struct KvData {
  int64_t blocks = 0;
  std::vector<std::byte> bytes;
};

// A cost paid outside the batch itself (merge, unmerge, fused switch, adapter load, swap).
struct CostStep {
  EventKind kind = EventKind::merge;
  api::AdapterId adapter = api::kNoAdapter;
  double seconds = 0;
  int64_t bytes = 0;
  api::AdapterId from = api::kNoAdapter;  // adapter_switch: the adapter switched away from
};

// How a change of the merged adapter from a to b (both set) is done: dLoRA's artifact unmerges a
// and merges b (two passes over every target weight, an unmerge and a merge step); the fused
// switch makes one pass, W += s_b B_b A_b - s_a B_a A_a (one adapter_switch step). Merging into
// clean weights and unmerging to them are one pass either way. [engine] switch.
enum class SwitchMethod : uint8_t { unmerge_merge = 0, fused = 1 };

class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::string name() const = 0;    // "cpu", "costmodel", "cuda"
  virtual std::string device() const = 0;  // what it runs on / models
  virtual bool needs_tokens() const = 0;   // real executors compute with token ids

  virtual IterationResult run(const ExecBatch& batch) = 0;
  // Changes which adapter is merged into the base weights (kNoAdapter = none), as the steps it
  // took: the unmerge of `from` and the merge of `to`, or with both set and method = fused one
  // adapter_switch step. Either way the base weights restore bit-exactly later (real executors).
  virtual std::vector<CostStep> switch_weights(api::AdapterId from, api::AdapterId to,
                                               SwitchMethod method) = 0;
  // Copies an adapter's weights from host memory into the replica's pool.
  virtual CostStep load_adapter(api::AdapterId adapter) = 0;
  virtual void evict_adapter(api::AdapterId adapter) = 0;
  // KV cache of a preempted request to host memory and back (to new blocks).
  virtual CostStep swap_out(api::RequestId request, std::span<const int32_t> blocks) = 0;
  virtual CostStep swap_in(api::RequestId request, std::span<const int32_t> blocks) = 0;
  // Forget a swapped request's host copy (it finished elsewhere or was migrated).
  virtual void drop_swapped(api::RequestId /*request*/) {}
  // The KV cache held in these device blocks (they stay allocated), and its writing into
  // blocks of this executor (as many as were exported).
  virtual KvData export_kv(std::span<const int32_t> blocks) = 0;
  virtual void import_kv(std::span<const int32_t> blocks, const KvData& kv) = 0;
};

}  // namespace lorasched
