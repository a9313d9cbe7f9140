// The worker-level scheduling problem on small instances, solved exactly: one replica, a
// handful of adapters and requests, iteration times that do not depend on the batch (dLoRA's
// artifact timing: 15 ms merged, 27 ms unmerged, 20 ms per weight switch). docs/bounds.md
// states the model, its differences from the engine and the MILP.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lorasched::bound {

// Seconds. An iteration is "fast" (merged: the weights hold adapter m and every request of
// the batch is m's) or "slow" (unmerged: clean weights, any requests; or mixed: adapter m
// stays merged and requests of any adapter run, the others through a second LoRA pass).
// Any change of the weights (none -> m, m -> none, m -> m') costs `switch_cost` before the
// iteration that needs it.
struct Timing {
  double merged = 0.015;
  double unmerged = 0.027;
  double mixed = 0.027;
  double switch_cost = 0.020;
};

struct SmallRequest {
  double arrival = 0;
  int32_t adapter = 0;  // 0 .. num_adapters-1
  int32_t tokens = 1;   // iterations it must take part in (the first is its prefill)
};

struct SmallInstance {
  std::vector<SmallRequest> requests;
  int32_t num_adapters = 1;
  int32_t max_batch = 4;
  Timing timing;
  bool allow_mixed = true;  // slow iterations may keep an adapter merged
};

// What is minimised: the sum over requests of (finish - arrival) / tokens ("per-token", the
// study's headline metric times the number of requests) or of (finish - arrival) ("request").
enum class Objective { per_token, request };
const char* to_string(Objective o);
double weight(const SmallRequest& r, Objective o);

constexpr int32_t kClean = -1;  // weights hold no adapter

struct Slot {
  int32_t state = kClean;      // adapter merged into the weights during the iteration, or kClean
  bool fast = false;           // merged iteration (only `state`'s requests)
  std::vector<int32_t> batch;  // request indices
};

// A schedule as a sequence of iterations; times follow from it (evaluate()).
struct Schedule {
  std::vector<Slot> slots;
};

struct Evaluation {
  bool feasible = false;
  std::string problem;        // why not, when infeasible
  std::vector<double> start;  // per slot: when it starts (its switch first, then the batch)
  std::vector<double> end;
  std::vector<double> finish;  // per request
  double objective = 0;        // sum of weight * (finish - arrival)
};

// Checks a schedule against the model's rules and times it as early as it can run: each
// iteration starts when the previous one ended or its last request arrived, whichever is later.
Evaluation evaluate(const SmallInstance& inst, const Schedule& s, Objective o);

// Two simple schedules for incumbents: unmerged FCFS (merge = false), or merged on the
// adapter with the most arrived requests, its oldest B of them (merge = true).
Schedule greedy_schedule(const SmallInstance& inst, bool merge);

struct MilpOptions {
  double time_limit_s = 60;
  // Iteration slots of the formulation; 0: the total number of tokens (always enough).
  int32_t slots = 0;
};

struct MilpResult {
  std::string status;    // optimal | feasible (limit reached) | time limit | infeasible | error
  Schedule schedule;     // the best schedule found (empty without one)
  double objective = 0;  // evaluate(schedule).objective: the schedule's exact value
  double bound = 0;      // CBC's proven lower bound on the optimum
  int64_t variables = 0, constraints = 0, nodes = 0;
  double seconds = 0;
};

// The exact optimum by a MILP over iteration slots with continuous start times (docs/bounds.md).
MilpResult solve_milp(const SmallInstance& inst, Objective o, const MilpOptions& opts = {});

}  // namespace lorasched::bound
