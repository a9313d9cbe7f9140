// A request's runtime state inside the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/metrics/records.hpp"
#include "core/workload/workload.hpp"
#include "lorasched/plugin/views.hpp"

namespace lorasched {

// Laid out by use. The first cache line holds what an iteration reads and writes of every
// request it plans, admits or commits; the second its KV block table and token ids; the
// record, written when something happens for the first or the last time, comes after. With
// hundreds of replicas taking turns, a replica's requests are out of cache when its step
// comes, and each line a request spreads over is a miss (docs/performance.md).
struct alignas(64) Request {
  // ---- first line
  RequestSpec spec;
  api::RequestState state = api::RequestState::waiting;
  bool scheduled = false;   // record.first_scheduled is set
  bool has_token = false;   // record.first_token is set
  int32_t generated = 0;    // output tokens produced so far
  int32_t queue_slot = -1;  // its node in its replica's queue, -1 when in none
  int32_t host_blocks = 0;  // KV blocks held in host memory while swapped
  double exec_time = 0;     // (switch + execution) of its iterations so far: record.exec_time
  // ---- second line
  std::vector<int32_t> block_table;  // device KV blocks (in position order)
  std::vector<int32_t> tokens;       // prompt + generated token ids (real executors only)
  // ---- cold
  RequestRecord record;  // but exec_time: result() gives the record with it

  // What a step reads of a request: the lines a replica prefetches for it.
  static constexpr size_t kHotBytes = 128;

  int32_t context_tokens() const { return spec.prompt_tokens + generated; }
  bool done() const { return state == api::RequestState::finished; }
  // Its record as the results hold it, also while unfinished.
  RequestRecord result() const {
    RequestRecord out = record;
    out.exec_time = exec_time;
    return out;
  }
};
static_assert(offsetof(Request, exec_time) + sizeof(double) <= 64, "the first line overflows");
static_assert(offsetof(Request, tokens) + sizeof(std::vector<int32_t>) <= Request::kHotBytes,
              "the second line overflows");

}  // namespace lorasched
