// lorasched's dLoRA against the dLoRA artifact, iteration by iteration, on small traces
// whose outcome is derived by hand from the artifact's code (vllm/core/scheduler.py,
// vllm/engine/llm_engine.py; docs/dlora-artifact.md). The runs use the
// `dlora-artifact` timing model: 15 ms per merged iteration, 27 ms per unmerged one, 20 ms
// per switch; prefill, loads and swaps free.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <cmath>
#include <fstream>

#include "core/cluster/simulation.hpp"

namespace lorasched {
namespace {

struct Outcome {
  RecordVector<IterationRecord> iterations;
  std::vector<std::vector<int64_t>> batches;  // request ids per iteration, batch order
  RecordVector<RequestRecord> requests;
  RecordVector<EventRecord> events;
};

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "lorasched-equivalence";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// Runs `policy` on the adapter trace rows "arrival,adapter,prompt,output".
Outcome run(const std::string& name, const std::string& rows, int adapters,
            const std::string& scheduler, const std::string& engine_extra = "",
            const std::string& scheduler_extra = "") {
  const std::string trace = temp_path(name + ".csv");
  {
    std::ofstream f(trace);
    f << "arrival_s,adapter,prompt_tokens,output_tokens\n" << rows;
  }
  const std::string text =
      fmt::format(R"(
[run]
name = "{0}"
[model]
preset = "llama2-7b"
[adapters]
count = {1}
ranks = [16]
[workload]
arrival = "adapter-trace"
trace = "{2}"
popularity = "trace"
[engine]
unified_pool = false
preemption = "swap"
switch = "unmerge-merge"
{4}
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
[scheduler]
plugin = "{3}"
{5}
[threshold]
plugin = "dlora-adaptive"
estimate = "constants"
[metrics]
log_batches = true
)",
                  name, adapters, trace, scheduler, engine_extra, scheduler_extra);
  auto exps = parse_experiments(text, name + ".toml");
  PluginRegistry registry(plugin_search_path());
  Simulation sim(exps.at(0), registry);
  RunResult r = sim.run();
  Outcome o;
  o.iterations = r.records.iterations;
  o.requests = r.records.requests;
  o.events = r.records.events;
  o.batches.resize(o.iterations.size());
  for (const auto& b : r.records.batches)
    o.batches.at(static_cast<size_t>(b.iteration)).push_back(b.request);
  return o;
}

std::vector<int64_t> ids(int64_t from, int64_t to) {  // [from, to]
  std::vector<int64_t> v;
  for (int64_t i = from; i <= to; ++i) v.push_back(i);
  return v;
}

#define EXPECT_TIME(a, b) EXPECT_NEAR((a), (b), 1e-9)

TEST(ArtifactEquivalence, LoneRequestIsMerged) {
  // |Q| = 1 so n_max = 1 >= alpha (1.0) x |fcfs| (1): A2 merges adapter 1 (switch 20 ms, the
  // worker starts with all adapters active), then A1 keeps it merged (1 >= beta x 1).
  // Times: 0 -> 0.035 (first token) -> 0.050 -> 0.065 (third and last token).
  auto o = run("lone", "0.0,1,10,3\n", 4, "dlora");
  ASSERT_EQ(o.iterations.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(o.iterations[i].mode, 1) << i;
    EXPECT_EQ(o.iterations[i].merged_adapter, 1) << i;
    EXPECT_EQ(o.batches[i], std::vector<int64_t>{0}) << i;
    EXPECT_TIME(o.iterations[i].duration, 0.015);
    EXPECT_DOUBLE_EQ(o.iterations[i].alpha, 1.0);  // the first A2 has num_iters = 0: no update
    EXPECT_DOUBLE_EQ(o.iterations[i].beta, 0.015 / 0.027);
  }
  EXPECT_TIME(o.iterations[0].switch_time, 0.020);
  EXPECT_TIME(o.iterations[1].switch_time, 0.0);
  EXPECT_TIME(o.requests[0].first_token, 0.035);
  EXPECT_TIME(o.requests[0].finish, 0.065);
}

TEST(ArtifactEquivalence, HotAdapterMergesAndWaitingGoesBeforeReady) {
  // Two requests of adapter 1 then twenty of adapter 0, all at t = 0 (ids in that order),
  // 3 output tokens each. B = 16.
  // It 0: fcfs = ids 0..15, map[0] = 20 >= 1.0 x 16: A2 merges adapter 0, batch = its first
  //   16 (ids 2..17): switch 20 ms + 15 ms -> 0.035.
  // It 1: queued = waiting [0, 1, 18..21] then ready [2..17] (equal arrivals keep the
  //   order waiting, ready); map[0] = [18..21, 2..17] = 20 >= beta x 16: A1, all 20
  //   listed; admission takes 18..21 (prefill) and 2..13, then stops at B = 16 -> 0.050.
  std::string rows = "0.0,1,8,3\n0.0,1,8,3\n";
  for (int i = 0; i < 20; ++i) rows += "0.0,0,8,3\n";
  auto o = run("hot", rows, 2, "dlora");
  ASSERT_GE(o.iterations.size(), 2u);
  EXPECT_EQ(o.iterations[0].mode, 1);
  EXPECT_EQ(o.iterations[0].merged_adapter, 0);
  EXPECT_EQ(o.batches[0], ids(2, 17));
  EXPECT_TIME(o.iterations[0].start + o.iterations[0].switch_time + o.iterations[0].duration,
              0.035);
  std::vector<int64_t> want = ids(18, 21);
  for (auto i : ids(2, 13)) want.push_back(i);
  EXPECT_EQ(o.iterations[1].mode, 1);
  EXPECT_EQ(o.batches[1], want);
  EXPECT_TIME(o.iterations[1].start, 0.035);
  EXPECT_TIME(o.iterations[1].switch_time, 0.0);
  // Adapter 1's two requests wait until adapter 0's queue falls below beta x |fcfs|, then
  // run unmerged after a 20 ms unmerge; every request finishes exactly once.
  for (const auto& r : o.requests)
    EXPECT_EQ(r.status, static_cast<int8_t>(RequestStatus::finished));
  EXPECT_GT(o.requests[0].first_token, o.requests[2].finish);
}

TEST(ArtifactEquivalence, TwoAlternatingAdaptersStayUnmerged) {
  // Adapters 0 and 1 alternate (ids 0..7), all at t = 0: n_max = 4 < 1.0 x 8: A3 runs the
  // FCFS batch unmerged, 27 ms per iteration, no switch; 2 output tokens -> two iterations.
  std::string rows;
  for (int i = 0; i < 8; ++i) rows += fmt::format("0.0,{},16,2\n", i % 2);
  auto o = run("alternate", rows, 2, "dlora");
  ASSERT_EQ(o.iterations.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(o.iterations[i].mode, 0);
    EXPECT_EQ(o.batches[i], ids(0, 7));
    EXPECT_TIME(o.iterations[i].duration, 0.027);
    EXPECT_TIME(o.iterations[i].switch_time, 0.0);
  }
  for (const auto& r : o.requests) EXPECT_TIME(r.finish, 0.054);
}

TEST(ArtifactEquivalence, ArrivalAtIterationStartJoinsIt) {
  // A request arriving exactly when an iteration starts is admitted to it; one arriving
  // 1 us later waits for the next. Adapter 0 twice: merged (A2 then A1).
  auto o = run("boundary", "0.0,0,8,2\n0.035,0,8,1\n0.035001,0,8,1\n", 1, "dlora");
  ASSERT_GE(o.iterations.size(), 3u);
  EXPECT_EQ(o.batches[0], std::vector<int64_t>{0});
  EXPECT_EQ(o.batches[1], (std::vector<int64_t>{0, 1}));  // oldest arrival first
  EXPECT_EQ(o.batches[2], std::vector<int64_t>{2});
}

TEST(ArtifactEquivalence, FcfsBaselineNeverSwitches) {
  // `fcfs` (unmerged-fcfs): every iteration unmerged at 27 ms, never a merge.
  std::string rows;
  for (int i = 0; i < 6; ++i) rows += fmt::format("{},{},8,2\n", 0.01 * i, i % 3);
  auto o = run("fcfs", rows, 3, "unmerged-fcfs");
  for (const auto& it : o.iterations) {
    EXPECT_EQ(it.mode, 0);
    EXPECT_TIME(it.duration, 0.027);
    EXPECT_TIME(it.switch_time, 0.0);
  }
  for (const auto& e : o.events) EXPECT_NE(e.kind, static_cast<int8_t>(EventKind::merge));
}

TEST(ArtifactEquivalence, MergeBaselineSwitchesToTheOldestRequestsAdapter) {
  // `merge` (merged-only): adapter of the oldest queued request, all its requests.
  // t=0: only id 0 (adapter 0) -> merge 0: 20 + 15 ms -> 0.035 (id 0 done: 1 token).
  // t=0.035: ids 1 (a1, t=0.01) and 2 (a0, t=0.02) waiting; oldest is id 1 -> re-merge
  // onto adapter 1 (one switch, 20 ms) + 15 ms -> 0.070; then id 2: switch back -> 0.105.
  auto o = run("merge", "0.0,0,8,1\n0.01,1,8,1\n0.02,0,8,1\n", 2, "merged-only");
  ASSERT_EQ(o.iterations.size(), 3u);
  EXPECT_EQ(o.iterations[0].merged_adapter, 0);
  EXPECT_EQ(o.iterations[1].merged_adapter, 1);
  EXPECT_EQ(o.iterations[2].merged_adapter, 0);
  EXPECT_TIME(o.requests[0].finish, 0.035);
  EXPECT_TIME(o.requests[1].finish, 0.070);
  EXPECT_TIME(o.requests[2].finish, 0.105);
}

TEST(ArtifactEquivalence, CreditPriorityServesTheStarvedAdapter) {
  // credit_unit = 1 (the artifact's is 10000, which no run of this size can reach):
  // adapters start at 1, enter credit priority at 2, keep it down to 1.5. Two requests of
  // adapter 1 (ids 0, 1) and twenty of adapter 0 (ids 2..21), all at t = 0, B = 4.
  // It 0: fcfs = [0,1,2,3], map[0] = 20 >= 4: A2 merges adapter 0, batch [2,3,4,5] (the
  //   positional credit transfer nets zero) -> 0.035.
  // Its 1-3: A1 lists all 20 of adapter 0 (waiting 6.. before ready 2..5); admission
  //   prefills the next four waiting each time ([6..9], [10..13], [14..17]); |batch| 20 !=
  //   |fcfs| 4, so the two skipped requests of adapter 1 move batch_credit_cost / 2 each,
  //   1/(0.5556 x 4) in all: credit 1.45, 1.9, 2.35 (< 1.5, then not yet qualified < 2).
  // It 4: 2.35 >= 2: adapter 1's [0, 1] first, then FCFS fills: [0, 1, 18, 19], unmerged
  //   (case C), after a 20 ms unmerge: start 0.080, end 0.127.
  std::string rows = "0.0,1,8,8\n0.0,1,8,8\n";
  for (int i = 0; i < 20; ++i) rows += "0.0,0,8,8\n";
  auto o = run("credit", rows, 2, "dlora", "max_batch_size = 4", "credit_unit = 1.0");
  ASSERT_GE(o.iterations.size(), 5u);
  const std::vector<std::vector<int64_t>> merged = {ids(2, 5), ids(6, 9), ids(10, 13), ids(14, 17)};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(o.iterations[i].mode, 1) << i;
    EXPECT_EQ(o.iterations[i].merged_adapter, 0) << i;
    EXPECT_EQ(o.batches[i], merged[i]) << i;
  }
  EXPECT_EQ(o.iterations[4].mode, 0);
  EXPECT_EQ(o.batches[4], (std::vector<int64_t>{0, 1, 18, 19}));
  EXPECT_TIME(o.iterations[4].start, 0.080);
  EXPECT_TIME(o.iterations[4].switch_time, 0.020);
  EXPECT_TIME(o.requests[0].first_token, 0.127);
}

TEST(ArtifactEquivalence, SwapUnderMemoryPressure) {
  // One adapter (N = 1: the worker's active list is [0] from the start, A1 every
  // iteration, merged, 15 ms; the first merge costs 20 ms, so iteration k ends at
  // 0.020 + 0.015 (k + 1)). Three requests r0, r1, r2 of 32 prompt tokens and 50 output
  // tokens in a pool of 10 KV blocks (watermark int(0.01 x 10) = 0). At iteration k a
  // running request's context is 32 + k tokens, ceil(ctx / 16) blocks; a ready request
  // needs one free block to be admitted (can_append_slot), else the last ready request
  // is swapped out, or itself when no other is ready.
  //  it 0:  prefill 3 x 2 blocks, free 4.      it 1: third blocks, free 1.
  //  it 17: ctx 49: r0 takes the last block; r1 finds none: r2 (last ready) swapped out
  //         (3 blocks), r1 takes one; free 2. r2 skipped (swap-out in this call).
  //  it 33: ctx 65: r0, r1 take their fifth blocks, free 0.
  //  it 34: r0 finds none free: r1 swapped out (5 blocks), free 5.
  //  it 35: r2 swaps in (free 5 - (3 + 1) >= 0) and takes a fourth block, free 1; r1 can't.
  //  it 49: r0 (ctx 81) takes a sixth block, free 0; r2 finds none, no other ready
  //         request: r2 swaps itself out. r0 finishes (0.770), freeing 6.
  //  it 50: r1 swaps in (5), then r2 (4): free 1.
  //  it 52: r2 (ctx 65) takes its fifth block, free 0.  it 53: r1 finds none: r2 out.
  //  it 65: r1 has its 50 tokens (1.010).  it 66: r2 swaps in; 16 tokens left: it 81 (1.250).
  auto o = run("swap", "0.0,0,32,50\n0.0,0,32,50\n0.0,0,32,50\n", 1, "dlora", "kv_blocks = 10");
  ASSERT_EQ(o.iterations.size(), 82u);
  EXPECT_EQ(o.batches[16], (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(o.batches[17], (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(o.batches[34], std::vector<int64_t>{0});
  EXPECT_EQ(o.batches[35], (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(o.batches[49], std::vector<int64_t>{0});
  EXPECT_EQ(o.batches[50], (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(o.batches[53], std::vector<int64_t>{1});
  EXPECT_EQ(o.batches[66], std::vector<int64_t>{2});
  EXPECT_TIME(o.requests[0].finish, 0.770);
  EXPECT_TIME(o.requests[1].finish, 1.010);
  EXPECT_TIME(o.requests[2].finish, 1.250);
  // (time, kind, request) of every swap, in order.
  std::vector<std::tuple<double, int, int64_t>> swaps;
  for (const auto& e : o.events)
    if (e.kind == static_cast<int8_t>(EventKind::preempt_swap) ||
        e.kind == static_cast<int8_t>(EventKind::swap_in))
      swaps.emplace_back(e.time, e.kind, e.request);
  const int out = static_cast<int>(EventKind::preempt_swap),
            in = static_cast<int>(EventKind::swap_in);
  const std::vector<std::tuple<double, int, int64_t>> want = {
      {0.275, out, 2}, {0.530, out, 1}, {0.545, in, 2},  {0.755, out, 2},
      {0.770, in, 1},  {0.770, in, 2},  {0.815, out, 2}, {1.010, in, 2}};
  ASSERT_EQ(swaps.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TIME(std::get<0>(swaps[i]), std::get<0>(want[i])) << i;
    EXPECT_EQ(std::get<1>(swaps[i]), std::get<1>(want[i])) << i;
    EXPECT_EQ(std::get<2>(swaps[i]), std::get<2>(want[i])) << i;
  }
  EXPECT_EQ(o.requests[1].preemptions, 1);
  EXPECT_EQ(o.requests[2].preemptions, 3);
}

TEST(ArtifactEquivalence, ReliefUnderKvPressureIsRecorded) {
  // Where lorasched departs from the artifact on purpose (docs/policies.md, "Relief"). Two
  // adapters, B = 4, a pool of 6 KV blocks (watermark 0). r0, r1 of adapter 1 arrive at 0
  // (32-token prompts = 2 blocks, 4 output tokens); r2..r5 of adapter 0 at 0.040 (32 tokens,
  // 2 output tokens). A running request of context c holds ceil(c / 16) blocks.
  //  it 0 (0): A2 merges adapter 1 (2 >= 1.0 x 2; num_iters 0: no update): r0, r1 prefill
  //        (4 blocks, free 2); merge 20 ms + 15 ms -> 0.035.
  //  it 1 (0.035): A1 (2 >= 0.5556 x 2); r0, r1 (context 33) take a third block: free 0 -> 0.050.
  //  it 2 (0.050): queue r0, r1 (ready) then r2..r5: fcfs = [r0, r1, r2, r3]; A1 fails
  //        (2 < 0.5556 x 4); A2 merges adapter 0 (4 >= 1.0 x 4) after scoring the merged period
  //        (n 2, Cm 4, Cu 4: 4 / 0.050 > 4 / 0.054, alpha 1.0 -> 0.95); plan [r2..r5]. Each
  //        needs 2 blocks, free 0: nothing is admitted. The artifact returns this empty
  //        schedule and spins; lorasched relieves: a `relief` event for r2 (needs 2 blocks,
  //        1 victim), then r1, the last ready request, swapped out (free 3). Admission again:
  //        r2 (free 1); r3..r5 do not fit. Switch 1 -> 0 (10 + 10 ms) + 15 ms -> 0.085.
  //  it 3 (0.085): A1 (map[0] = [r3, r4, r5, r2] = 4 >= 0.5556 x 4): only r2 fits (its third
  //        block, free 0) -> 0.100, r2 done (frees 3).
  //  it 4: A1 (3): r3 prefills (free 1) -> 0.115.   it 5: A1 (3): r3's third block -> 0.130,
  //        r3 done (free 3).
  //  it 6 (0.130): A1 fails (2 < 2.22), A2 fails (2 < 0.95 x 4): A3 unmerged [r0, r1, r4, r5]
  //        (the merged period scored: alpha 0.95 -> 0.90): r0 runs (context 34, 3 blocks held);
  //        r1 (swapped) needs 3 + 1 > 3 free: skipped; r4 prefills (free 1); r5 does not fit.
  //        Unmerge 20 ms + 27 ms -> 0.177.
  //  it 7: A3 [r0, r1, r5, r4]: r0 (context 35), r4's third block (free 0) -> 0.204: r0 and
  //        r4 done (free 6).
  //  it 8 (0.204): A3 [r1, r5]: r1 swapped in (3 blocks), r5 prefills -> 0.231.
  //  it 9: r1, r5 -> 0.258, both done.
  std::string rows = "0.0,1,32,4\n0.0,1,32,4\n";
  for (int i = 0; i < 4; ++i) rows += "0.040,0,32,2\n";
  auto o = run("relief", rows, 2, "dlora",
               "max_batch_size = 4\nkv_blocks = 6\nmax_adapters_per_batch = 2");
  ASSERT_EQ(o.iterations.size(), 10u);
  const std::vector<std::vector<int64_t>> batches = {{0, 1}, {0, 1}, {2},    {2},    {3},
                                                     {3},    {0, 4}, {0, 4}, {1, 5}, {1, 5}};
  const std::vector<int> modes = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  const std::vector<int> merged = {1, 1, 0, 0, 0, 0, -1, -1, -1, -1};
  const std::vector<double> starts = {0.0,   0.035, 0.050, 0.085, 0.100,
                                      0.115, 0.130, 0.177, 0.204, 0.231};
  for (size_t i = 0; i < batches.size(); ++i) {
    EXPECT_EQ(o.batches[i], batches[i]) << i;
    EXPECT_EQ(o.iterations[i].mode, modes[i]) << i;
    EXPECT_EQ(o.iterations[i].merged_adapter, merged[i]) << i;
    EXPECT_TIME(o.iterations[i].start, starts[i]);
  }
  EXPECT_DOUBLE_EQ(o.iterations[3].alpha, 0.95);
  EXPECT_DOUBLE_EQ(o.iterations[7].alpha, 0.90);
  const std::vector<double> finish = {0.204, 0.258, 0.100, 0.130, 0.204, 0.258};
  for (size_t i = 0; i < finish.size(); ++i) EXPECT_TIME(o.requests[i].finish, finish[i]);
  EXPECT_EQ(o.requests[1].preemptions, 1);

  // Every relief, preemption and swap, in order: (time, kind, request, value, value2).
  struct Ev {
    double time;
    EventKind kind;
    int64_t request;
    double value, value2;
  };
  std::vector<Ev> got;
  for (const auto& e : o.events) {
    const auto k = static_cast<EventKind>(e.kind);
    if (k == EventKind::relief || k == EventKind::preempt_swap || k == EventKind::swap_in ||
        k == EventKind::preempt_recompute)
      got.push_back({e.time, k, e.request, e.value, e.value2});
  }
  const std::vector<Ev> want = {{0.050, EventKind::relief, 2, 2.0, 1.0},
                                {0.050, EventKind::preempt_swap, 1, NAN, NAN},
                                {0.204, EventKind::swap_in, 1, NAN, NAN}};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TIME(got[i].time, want[i].time);
    EXPECT_EQ(got[i].kind, want[i].kind) << i;
    EXPECT_EQ(got[i].request, want[i].request) << i;
    if (want[i].kind == EventKind::relief) {
      EXPECT_EQ(got[i].value, want[i].value);
      EXPECT_EQ(got[i].value2, want[i].value2);
    }
  }
  for (const auto& r : o.requests)
    EXPECT_EQ(r.status, static_cast<int8_t>(RequestStatus::finished));
}

}  // namespace
}  // namespace lorasched
