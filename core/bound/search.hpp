// The exact optimum of the worker-level problem (core/bound/worker.hpp) by branch and bound
// over schedules: the same model as the MILP, solved by a search that scales to the study's
// small instances where CBC's LP bound is too weak (docs/bounds.md, "Solving it").
#pragma once

#include <cstdint>

#include "core/bound/worker.hpp"

namespace lorasched::bound {

struct SearchOptions {
  int64_t max_nodes = 20'000'000;  // stop (unproven) after this many expanded nodes
  double time_limit_s = 600;
};

struct SearchResult {
  bool proven = false;   // the search finished: `schedule` is optimal
  Schedule schedule;     // the best schedule found
  double objective = 0;  // its exact value (evaluate())
  double bound = 0;      // a proven lower bound on the optimum (== objective when proven)
  int64_t nodes = 0;
  double seconds = 0;
};

// Starts from `incumbent` when given (any feasible schedule, e.g. a policy's), else from
// greedy schedules.
SearchResult solve_search(const SmallInstance& inst, Objective o, const SearchOptions& opts = {},
                          const Schedule* incumbent = nullptr);

}  // namespace lorasched::bound
