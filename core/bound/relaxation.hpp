// A lower bound on the latency any worker-level policy can reach on a full trace, for one
// replica under a cost model (docs/bounds.md, "Full traces"). Every output token is relaxed
// into a unit job on one machine that serves tokens no faster than the best batch the cost
// model allows (R_max tokens per second), released no earlier than its request's previous
// token could exist; the mean-busy-time relaxation of that machine problem (Goemans 1997) is
// solved exactly by preemptive weighted-shortest-processing-time, and per-request chain
// lengths turn token times back into finish times.
#pragma once

#include <cstdint>
#include <vector>

namespace lorasched {
class CostModel;
}

namespace lorasched::bound {

struct TraceRequest {
  double arrival = 0;
  int32_t prompt_tokens = 1;
  int32_t output_tokens = 1;
};

// What the relaxation needs to know about the hardware (seconds, tokens per second).
struct TokenTimes {
  double t_min = 0;           // no iteration is shorter (a lone decode at context 1)
  double rate_max = 0;        // no iteration makes tokens faster (tokens / its duration)
  std::vector<double> first;  // per request: no iteration holding its prefill is shorter
};

// From a cost model whose iteration time never decreases when a batch grows in any feature
// (the presets and the dLoRA-artifact model: docs/bounds.md): floors for a batch limit of
// `max_batch`, prefills of the requests' prompt lengths.
TokenTimes token_times(const CostModel& model, int32_t max_batch,
                       const std::vector<TraceRequest>& requests);

struct RelaxationResult {
  // Lower bounds on the sum over weighted requests of (finish - arrival) / output tokens and
  // of (finish - arrival); divide by `weighted` for means.
  double per_token_sum = 0;
  double request_sum = 0;
  int64_t weighted = 0;  // requests counted (those in the window)
  int64_t tokens = 0;    // unit jobs of the relaxation
};

// `counted[i]` says whether request i's latency is in the objective (a measurement window);
// every request's tokens still take the machine. Empty: all count.
RelaxationResult token_relaxation(const std::vector<TraceRequest>& requests, const TokenTimes& t,
                                  const std::vector<bool>& counted = {});

// The relaxation's core, exposed for tests: the minimum over preemptive one-machine schedules
// of sum_j weight_j * M_j (M_j: mean busy time of job j, every job needing `p` seconds of
// processing, released at release_j), reached by always running the released job of largest
// weight.
double min_weighted_mean_busy_time(const std::vector<double>& release,
                                   const std::vector<double>& weight, double p);
// The same with job j needing p[j] (the released job of largest weight / p runs).
double min_weighted_mean_busy_time(const std::vector<double>& release,
                                   const std::vector<double>& weight, const std::vector<double>& p);

}  // namespace lorasched::bound
