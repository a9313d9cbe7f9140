// A request's runtime state inside the engine.
#pragma once

#include <cstdint>
#include <vector>

#include "core/metrics/records.hpp"
#include "core/workload/workload.hpp"
#include "lorasched/plugin/views.hpp"

namespace lorasched {

struct Request {
  RequestSpec spec;
  api::RequestState state = api::RequestState::waiting;
  int32_t generated = 0;             // output tokens produced so far
  std::vector<int32_t> block_table;  // device KV blocks (in position order)
  int32_t host_blocks = 0;           // KV blocks held in host memory while swapped
  std::vector<int32_t> tokens;       // prompt + generated token ids (real executors only)
  int32_t queue_slot = -1;           // its node in its replica's queue, -1 when in none
  RequestRecord record;

  int32_t context_tokens() const { return spec.prompt_tokens + generated; }
  bool done() const { return state == api::RequestState::finished; }
};

}  // namespace lorasched
