// Scheduler `dlora`: dLoRA's dynamic cross-adapter batching (Wu et al., OSDI'24,
// Algorithm 1), as its public artifact implements it: LLMServe/dLoRA-artifact,
// vllm/core/scheduler.py, Scheduler._credit_schedule and _adjust_credit. Rule for rule,
// constant for constant and tie for tie; the alpha/beta updates of
// _adjust_merge_threshold live in the threshold plugin (`dlora-adaptive` is the
// artifact's AIMD; `fixed` holds them). docs/policies.md lists every departure.
//
// Per iteration, with B the batch limit and the queue in FCFS order:
//  1. credit pass: adapters whose credit crossed the right threshold (or stays above the
//     left one after qualifying) are served first, unmerged;
//  2. otherwise stay merged on the merged adapter while its queue >= beta x |FCFS batch|,
//     else merge the adapter with the most queued requests if >= alpha x |FCFS batch|,
//     else run the FCFS batch unmerged;
//  3. credits move between adapters whenever the batch differs from the FCFS batch.
#include "dlora_core.hpp"

namespace {

lorasched::api::PluginInfo info() {
  return {lorasched::api::kApiVersion, lorasched::api::PluginKind::scheduler, "dlora",
          "dLoRA (OSDI'24) dynamic cross-adapter batching with credits, as in its artifact",
          lorasched::plugins::dlora_params()};
}

}  // namespace

LORASCHED_PLUGIN(lorasched::plugins::DloraCore, info)
