// The profiler drives any Executor through its interface (run, switch_weights,
// load_adapter, swap_out/in) and times what the executor reports, so the cpu and the cuda
// executor are profiled the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/exec/executor.hpp"
#include "core/exec/profile.hpp"

namespace lorasched {

// What the profiler runs on: an executor holding the model and, in its host memory, the
// adapters listed (adapters[i].id is the id to pass to load_adapter), with a pool of
// `kv_blocks` blocks of `block_size` tokens.
struct ProfileTarget {
  Executor* executor = nullptr;
  ModelShape shape;
  int element_bytes = 4;
  int32_t block_size = 16;
  int64_t block_bytes = 0;
  int64_t kv_blocks = 0;
  std::vector<AdapterInfo> adapters;  // at least profile_adapters_per_rank() of each grid rank
};

// Runs the grid on the target (loads the adapters it needs first). `log` gets one line per
// part. The result has no machine, date or memory figures (the caller knows them).
Profile run_profile(const ProfileTarget& target, const ProfileGrid& grid,
                    const std::function<void(std::string_view)>& log = {});

}  // namespace lorasched
