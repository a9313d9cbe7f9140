// The rows a run records: one per request, per iteration, per event, per batch slot, and the
// headline figures computed from them.
//
// The schema is written once, in the field tables below (X-macros). They generate the C++
// structs, and fields.hpp turns them into the field descriptions that drive the HDF5 compound
// types (h5.cpp), the summary attributes, the field-by-field comparisons of the tests and the
// check of docs/results-format.md against the code (tests/unit/metrics/test_schema.cpp). To
// add a field: add one line to its table and its row to docs/results-format.md.
#pragma once

#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/metrics/record_vector.hpp"

namespace lorasched {

inline constexpr double kNoTime = std::numeric_limits<double>::quiet_NaN();

// The named values of an int8 enum field (HDF5 enum types with these names and values).
enum class FieldEnum : int8_t { none, status, mode, kind };

// Whether a field is deterministic data (same experiment and seed -> same value) or a
// wall-clock measurement of the host (left out of the determinism comparisons).
enum class FieldClock : bool { deterministic, wall };

// clang-format off

// ---- enums ---------------------------------------------------------------------------------
// X(name, value, meaning)

#define LORASCHED_REQUEST_STATUS(X)                                                                \
  X(unfinished, 0, "still running when the run ended (duration limit)")                            \
  X(finished, 1, "generated all its output tokens")                                                \
  X(ignored, 2, "prompt longer than the replica's prompt limit (never ran, as in vLLM)")           \
  X(length_capped, 3, "prompt + output reached the model's maximum length")

#define LORASCHED_ITERATION_MODE(X)                                                                \
  X(unmerged, 0, "base weights clean, every adapter through the unmerged path")                    \
  X(merged, 1, "one adapter merged into the base weights, only its requests")                      \
  X(mixed, 2, "one adapter merged, other adapters' requests beside it, unmerged")

#define LORASCHED_EVENT_KINDS(X)                                                                   \
  X(merge, 0, "adapter merged into the base weights")                                              \
  X(unmerge, 1, "adapter unmerged")                                                                \
  X(adapter_load, 2, "adapter weights loaded to the device")                                       \
  X(adapter_evict, 3, "adapter weights evicted")                                                   \
  X(preempt_swap, 4, "KV swapped out to host memory")                                              \
  X(preempt_recompute, 5, "KV dropped, request recomputed later")                                  \
  X(swap_in, 6, "swapped KV brought back")                                                         \
  X(migrate_request, 7, "request moved from `replica` to `other_replica`")                         \
  X(migrate_adapter, 8, "adapter copied to `other_replica` (placement change)")                    \
  X(threshold_change, 9, "value = new alpha, value2 = new beta")                                   \
  X(migration_decision, 10, "duration = solve time, value = objective, value2 = bound")            \
  X(warning, 11, "something the run recovered from; see `adapter`/`request`")                      \
  X(request_ignored, 12, "request refused (prompt too long)")                                      \
  /* The plan's first waiting or swapped request could not get KV blocks, so ready requests */     \
  /* the plan does not run were preempted for it (not in dLoRA's artifact: docs/policies.md). */   \
  /* request = that request, value = the blocks it needs, value2 = requests preempted (the */      \
  /* preempt events right after this one on the same replica). */                                  \
  X(relief, 13, "ready requests preempted to give a blocked request KV blocks")                    \
  /* [engine] switch = "fused": `adapter` merged in place of the adapter whose id is `value`, */   \
  /* in one pass over the weights (counted as one merge and one unmerge in the summary). */        \
  X(adapter_switch, 14, "fused switch: `adapter` merged in place of adapter `value`")

// ---- record fields -------------------------------------------------------------------------
// X(C++ type, name, default, enum, unit, clock), in file order. Units as in the docs ("" for
// none); times are seconds of virtual time.

#define LORASCHED_REQUEST_FIELDS(X)                                                                \
  X(int64_t, id, 0, none, "", deterministic)                                                       \
  X(int32_t, adapter, 0, none, "", deterministic)                                                  \
  X(int32_t, replica, -1, none, "", deterministic)          /* the last one if migrated */         \
  X(double, arrival, kNoTime, none, "s", deterministic)                                            \
  X(double, first_scheduled, kNoTime, none, "s", deterministic) /* start of its 1st iteration */   \
  X(double, first_token, kNoTime, none, "s", deterministic) /* end of its prefill iteration */     \
  X(double, finish, kNoTime, none, "s", deterministic)      /* end of its last token's */          \
  X(int32_t, prompt_tokens, 0, none, "tokens", deterministic)                                      \
  X(int32_t, output_tokens, 0, none, "tokens", deterministic) /* tokens generated */               \
  X(double, queueing_delay, kNoTime, none, "s", deterministic) /* first_scheduled - arrival */     \
  X(double, exec_time, 0, none, "s", deterministic) /* (switch + execution) of its iterations */   \
  X(int32_t, migrations, 0, none, "", deterministic)                                               \
  X(int32_t, preemptions, 0, none, "", deterministic)                                              \
  X(int8_t, status, 0, status, "", deterministic)           /* RequestStatus */

#define LORASCHED_ITERATION_FIELDS(X)                                                              \
  X(int32_t, replica, 0, none, "", deterministic)                                                  \
  X(int64_t, iteration, 0, none, "", deterministic)                                                \
  X(double, start, 0, none, "s", deterministic)       /* switches included */                      \
  X(double, switch_time, 0, none, "s", deterministic) /* merge/unmerge/loads/swaps before it */    \
  X(double, duration, 0, none, "s", deterministic)    /* execution of the batch */                 \
  X(double, merged_duration, kNoTime, none, "s", deterministic) /* at merged speed; NaN: unknown */ \
  X(int8_t, mode, 0, mode, "", deterministic)         /* IterationMode */                          \
  X(int32_t, merged_adapter, -1, none, "", deterministic)                                          \
  X(int32_t, batch_size, 0, none, "requests", deterministic)                                       \
  X(int32_t, prefill_tokens, 0, none, "tokens", deterministic)                                     \
  X(int32_t, decode_tokens, 0, none, "tokens", deterministic)                                      \
  X(int32_t, distinct_adapters, 0, none, "", deterministic)                                        \
  X(int32_t, queued, 0, none, "requests", deterministic)   /* queued when it was planned */        \
  X(int64_t, kv_blocks_used, 0, none, "blocks", deterministic) /* KV + adapters, admitted */       \
  X(double, alpha, kNoTime, none, "", deterministic)  /* thresholds in force (NaN: none) */        \
  X(double, beta, kNoTime, none, "", deterministic)                                                \
  X(double, decision_wall_us, 0, none, "µs", wall)     /* the scheduler's decision */

#define LORASCHED_EVENT_FIELDS(X)                                                                  \
  X(double, time, 0, none, "s", deterministic)        /* when the event began */                   \
  X(int32_t, replica, -1, none, "", deterministic)                                                 \
  X(int8_t, kind, 0, kind, "", deterministic)         /* EventKind */                              \
  X(int32_t, adapter, -1, none, "", deterministic)                                                 \
  X(int64_t, request, -1, none, "", deterministic)                                                 \
  X(double, duration, 0, none, "s", deterministic)    /* cost; stalls the replica unless noted */  \
  X(int64_t, bytes, 0, none, "bytes", deterministic)  /* moved or touched */                       \
  X(int32_t, other_replica, -1, none, "", deterministic)                                           \
  X(double, value, kNoTime, none, "", deterministic)                                               \
  X(double, value2, kNoTime, none, "", deterministic)

// One row per request per iteration when [metrics] log_batches = true.
#define LORASCHED_BATCH_FIELDS(X)                                                                  \
  X(int64_t, iteration, 0, none, "", deterministic)                                                \
  X(int32_t, replica, 0, none, "", deterministic)                                                  \
  X(int64_t, request, 0, none, "", deterministic)                                                  \
  X(int32_t, position, 0, none, "", deterministic)    /* index in the batch, admission order */

// The summary attributes, same columns (no enums). Definitions in docs/results-format.md and
// metrics/summary.cpp.
#define LORASCHED_SUMMARY_FIELDS(X)                                                                \
  X(int64_t, requests, 0, none, "", deterministic)                                                 \
  X(int64_t, finished, 0, none, "", deterministic)                                                 \
  X(int64_t, ignored, 0, none, "", deterministic)                                                  \
  X(int64_t, unfinished, 0, none, "", deterministic)                                               \
  X(double, makespan, 0, none, "s", deterministic)                                                 \
  X(double, throughput_rps, 0, none, "req/s", deterministic)                                       \
  X(double, throughput_tokens, 0, none, "tokens/s", deterministic)                                 \
  X(double, latency_mean, kNoTime, none, "s", deterministic)                                       \
  X(double, latency_p50, kNoTime, none, "s", deterministic)                                        \
  X(double, latency_p90, kNoTime, none, "s", deterministic)                                        \
  X(double, latency_p99, kNoTime, none, "s", deterministic)                                        \
  X(double, per_token_latency_mean, kNoTime, none, "s/token", deterministic)                       \
  X(double, per_token_latency_p90, kNoTime, none, "s/token", deterministic)                        \
  X(double, ttft_mean, kNoTime, none, "s", deterministic)                                          \
  X(double, ttft_p90, kNoTime, none, "s", deterministic)                                           \
  X(double, queueing_mean, kNoTime, none, "s", deterministic)                                      \
  X(double, queueing_p90, kNoTime, none, "s", deterministic)                                       \
  X(double, window_start, kNoTime, none, "s", deterministic)  /* [metrics] warmup_s */             \
  X(double, window_end, kNoTime, none, "s", deterministic)    /* last arrival - cooldown_s */      \
  X(int64_t, window_requests, 0, none, "", deterministic)     /* arriving in the window */         \
  X(int64_t, window_completed, 0, none, "", deterministic)                                         \
  X(double, window_offered_rps, kNoTime, none, "req/s", deterministic)                             \
  X(double, window_throughput_rps, kNoTime, none, "req/s", deterministic)                          \
  X(double, window_throughput_tokens, kNoTime, none, "tokens/s", deterministic)                    \
  X(double, slo_attainment_dlora, kNoTime, none, "", deterministic) /* 0.5 s per output token */   \
  X(double, slo_per_token_s, kNoTime, none, "s/token", deterministic) /* [metrics] */              \
  X(double, slo_attainment, kNoTime, none, "", deterministic)                                      \
  X(int64_t, iterations, 0, none, "", deterministic)                                               \
  X(int64_t, merged_iterations, 0, none, "", deterministic)                                        \
  X(int64_t, merges, 0, none, "", deterministic)                                                   \
  X(int64_t, unmerges, 0, none, "", deterministic)                                                 \
  X(int64_t, adapter_loads, 0, none, "", deterministic)                                            \
  X(int64_t, adapter_evictions, 0, none, "", deterministic)                                        \
  X(int64_t, preemptions, 0, none, "", deterministic)                                              \
  X(int64_t, migrations, 0, none, "", deterministic)                                               \
  X(int64_t, threshold_changes, 0, none, "", deterministic)                                        \
  X(double, switch_time_total, 0, none, "s", deterministic)                                        \
  X(double, busy_time, 0, none, "s", deterministic)        /* the split of busy time: */          \
  X(double, switch_stall_time, 0, none, "s", deterministic) /* merge/unmerge events */            \
  X(double, adapter_load_time, 0, none, "s", deterministic)                                        \
  X(double, swap_time, 0, none, "s", deterministic)        /* preempt_swap + swap_in events */    \
  X(double, unmerged_overhead_time, 0, none, "s", deterministic) /* over merged speed */          \
  X(double, empty_slot_time, 0, none, "s", deterministic)  /* merged batches below the limit */   \
  X(double, batch_mean_unmerged, kNoTime, none, "requests", deterministic)                         \
  X(double, batch_mean_merged, kNoTime, none, "requests", deterministic)                           \
  X(double, batch_mean_mixed, kNoTime, none, "requests", deterministic)                            \
  X(double, wall_seconds, 0, none, "s", wall)  /* set by the caller, not by summarize() */

// clang-format on

#define LORASCHED_ENUM_VALUE(name, value, meaning) name = value,
#define LORASCHED_ENUM_NAME(name, value, meaning) #name,
#define LORASCHED_RECORD_MEMBER(type, name, init, ...) type name = init;

enum class RequestStatus : int8_t { LORASCHED_REQUEST_STATUS(LORASCHED_ENUM_VALUE) };
enum class IterationMode : int8_t { LORASCHED_ITERATION_MODE(LORASCHED_ENUM_VALUE) };
enum class EventKind : int8_t { LORASCHED_EVENT_KINDS(LORASCHED_ENUM_VALUE) };

inline constexpr const char* kRequestStatusNames[] = {
    LORASCHED_REQUEST_STATUS(LORASCHED_ENUM_NAME)};
inline constexpr const char* kIterationModeNames[] = {
    LORASCHED_ITERATION_MODE(LORASCHED_ENUM_NAME)};
inline constexpr const char* kEventKindNames[] = {LORASCHED_EVENT_KINDS(LORASCHED_ENUM_NAME)};
inline constexpr int kNumEventKinds = static_cast<int>(std::size(kEventKindNames));

struct RequestRecord {
  LORASCHED_REQUEST_FIELDS(LORASCHED_RECORD_MEMBER)
};
struct IterationRecord {
  LORASCHED_ITERATION_FIELDS(LORASCHED_RECORD_MEMBER)
};
struct EventRecord {
  LORASCHED_EVENT_FIELDS(LORASCHED_RECORD_MEMBER)
};
struct BatchLogRecord {
  LORASCHED_BATCH_FIELDS(LORASCHED_RECORD_MEMBER)
};
// Headline figures of one run (computed from the records; see metrics/summary.hpp).
struct Summary {
  LORASCHED_SUMMARY_FIELDS(LORASCHED_RECORD_MEMBER)
};

#undef LORASCHED_ENUM_VALUE
#undef LORASCHED_ENUM_NAME
#undef LORASCHED_RECORD_MEMBER

// Everything one run produced, in memory, before it is written.
struct RunRecords {
  RecordVector<RequestRecord> requests;
  RecordVector<IterationRecord> iterations;
  RecordVector<EventRecord> events;
  RecordVector<BatchLogRecord> batches;
};

}  // namespace lorasched
