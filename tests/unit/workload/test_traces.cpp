// Azure LLM trace replay, trace-sampled lengths, and the adapter trace round trip.
#include <cmath>
#include <set>
#include <utility>

#include <gtest/gtest.h>

#include "core/common/error.hpp"
#include "core/workload/workload.hpp"
#include "tests/unit/workload/workload_test_util.hpp"

namespace lorasched {
namespace {

using test::fixture;
using test::read_file;
using test::write_file;

constexpr size_t kFixtureRows = 300;

WorkloadSpec azure_replay() {
  WorkloadSpec s;
  s.arrival = "trace";
  s.trace = fixture("azure_code_300.csv");
  s.prompt.kind = "from-trace";
  s.output.kind = "from-trace";
  return s;
}

TEST(Trace, ReplaysTimesAndLengths) {
  const auto reqs = generate_workload(azure_replay(), 4, 1);
  ASSERT_EQ(reqs.size(), kFixtureRows);
  // 2023-11-16 18:17:03.9799600,4808,10 / 18:17:04.0319600,3180,8 / 04.0781490,110,27
  EXPECT_EQ(reqs[0].arrival, 0.0);
  EXPECT_NEAR(reqs[1].arrival, 0.052, 1e-12);
  EXPECT_NEAR(reqs[2].arrival, 0.098189, 1e-12);
  EXPECT_NEAR(reqs.back().arrival, 216.838239, 1e-9);  // 18:20:40.8181990
  EXPECT_EQ(reqs[0].prompt_tokens, 4808);
  EXPECT_EQ(reqs[0].output_tokens, 10);
  EXPECT_EQ(reqs[2].prompt_tokens, 110);
  EXPECT_EQ(reqs[2].output_tokens, 27);
  int64_t prompt_sum = 0, output_sum = 0;
  for (const auto& r : reqs) prompt_sum += r.prompt_tokens, output_sum += r.output_tokens;
  EXPECT_EQ(prompt_sum, 627529);
  EXPECT_EQ(output_sum, 7126);
  std::set<int32_t> adapters;
  for (const auto& r : reqs) adapters.insert(r.adapter);
  EXPECT_EQ(adapters.size(), 4u);  // popularity (uniform) assigns adapters
}

TEST(Trace, TimeScaleTargetRateAndStart) {
  const auto base = generate_workload(azure_replay(), 1, 1);
  WorkloadSpec s = azure_replay();
  s.time_scale = 2.5;
  const auto scaled = generate_workload(s, 1, 1);
  ASSERT_EQ(scaled.size(), base.size());
  for (size_t i = 0; i < base.size(); ++i)
    EXPECT_DOUBLE_EQ(scaled[i].arrival, 2.5 * base[i].arrival);

  s = azure_replay();
  s.target_rate = 4.0;
  const auto rated = generate_workload(s, 1, 1);
  ASSERT_EQ(rated.size(), base.size());
  const double rate =
      static_cast<double>(rated.size() - 1) / (rated.back().arrival - rated.front().arrival);
  EXPECT_NEAR(rate, 4.0, 1e-9);

  s = azure_replay();
  s.trace_start_s = 100.0;
  const auto late = generate_workload(s, 1, 1);
  size_t skipped = 0;
  while (base[skipped].arrival < 100.0) ++skipped;
  ASSERT_EQ(late.size(), base.size() - skipped);
  for (size_t i = 0; i < late.size(); ++i) {
    EXPECT_NEAR(late[i].arrival, base[skipped + i].arrival - 100.0, 1e-9);
    EXPECT_EQ(late[i].prompt_tokens, base[skipped + i].prompt_tokens);
  }
  EXPECT_GE(late.front().arrival, 0.0);
}

TEST(Trace, NumRequestsDurationAndTargetRateOnTheCut) {
  WorkloadSpec s = azure_replay();
  s.num_requests = 50;
  EXPECT_EQ(generate_workload(s, 1, 1).size(), 50u);
  s.target_rate = 10.0;  // the rate of the 50 requests kept
  const auto r = generate_workload(s, 1, 1);
  EXPECT_NEAR(49.0 / (r.back().arrival - r.front().arrival), 10.0, 1e-9);
  s = azure_replay();
  s.duration_s = 30.0;
  const auto d = generate_workload(s, 1, 1);
  EXPECT_LT(d.back().arrival, 30.0);
  const auto all = generate_workload(azure_replay(), 1, 1);
  EXPECT_GE(all[d.size()].arrival, 30.0);
}

TEST(Trace, ClippingZeroOutputsAndOverrides) {
  const auto path = write_file("zero.csv",
                               "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                               "2023-11-16 23:59:59.5,900,0\r\n"
                               "2023-11-17 00:00:00,20,300\r\n"
                               "2023-11-17 00:00:01.0000001,0,7");  // no final newline
  WorkloadSpec s = azure_replay();
  s.trace = path;
  s.max_prompt_tokens = 512;
  s.max_output_tokens = 256;
  const auto reqs = generate_workload(s, 2, 1);
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_DOUBLE_EQ(reqs[1].arrival, 0.5);  // across midnight
  EXPECT_NEAR(reqs[2].arrival, 1.5000001, 1e-12);
  EXPECT_EQ(reqs[0].prompt_tokens, 512);
  EXPECT_EQ(reqs[0].output_tokens, 1);  // GeneratedTokens 0 -> 1
  EXPECT_EQ(reqs[1].output_tokens, 256);
  EXPECT_EQ(reqs[2].prompt_tokens, 1);  // ContextTokens 0 -> 1

  s.prompt = {"fixed", 64, 1, 1, 0, 0, {}};  // anything but from-trace overrides the row
  s.output = {"uniform", 0, 3, 4, 0, 0, {}};
  for (const auto& r : generate_workload(s, 2, 1)) {
    EXPECT_EQ(r.prompt_tokens, 64);
    EXPECT_TRUE(r.output_tokens == 3 || r.output_tokens == 4);
  }
}

TEST(TraceLengths, SameFileKeepsRowsTogether) {
  const auto path = fixture("azure_conv_300.csv");
  std::set<std::pair<int32_t, int32_t>> rows, prompts_only, outputs_only;
  {
    WorkloadSpec s = azure_replay();
    s.trace = path;
    for (const auto& r : generate_workload(s, 1, 1))
      rows.insert({r.prompt_tokens, r.output_tokens});
  }
  WorkloadSpec s;
  s.num_requests = 2000;
  s.prompt = {"trace", 0, 1, 1, 0, 0, path};
  s.output = {"trace", 0, 1, 1, 0, 0, path};
  const auto joint = generate_workload(s, 1, 4);
  std::set<std::pair<int32_t, int32_t>> seen;
  for (const auto& r : joint) {
    EXPECT_TRUE(rows.count({r.prompt_tokens, r.output_tokens}))
        << r.prompt_tokens << "," << r.output_tokens;
    seen.insert({r.prompt_tokens, r.output_tokens});
  }
  EXPECT_GT(seen.size(), 200u);  // samples most rows

  // Different files: prompt from one, output from the other, independently.
  s.output.trace = fixture("azure_code_300.csv");
  std::set<int32_t> code_outputs, conv_prompts;
  for (const auto& r : generate_workload(azure_replay(), 1, 1))
    code_outputs.insert(r.output_tokens);
  for (const auto& r : rows) conv_prompts.insert(r.first);
  int joint_pairs = 0;
  for (const auto& r : generate_workload(s, 1, 4)) {
    EXPECT_TRUE(conv_prompts.count(r.prompt_tokens));
    EXPECT_TRUE(code_outputs.count(r.output_tokens));
    joint_pairs += rows.count({r.prompt_tokens, r.output_tokens}) > 0;
  }
  EXPECT_LT(joint_pairs, 100);
}

TEST(AdapterTrace, RoundTripIsBitExact) {
  WorkloadSpec g;
  g.arrival = "gamma";
  g.rate = 3.7;
  g.cv = 1.3;
  g.num_requests = 2000;
  g.popularity.kind = "zipf";
  g.prompt = {"lognormal", 0, 1, 8000, 500, 1.2, {}};
  g.output = {"uniform", 0, 1, 700, 0, 0, {}};
  const auto reqs = generate_workload(g, 16, 77);
  const auto path = test::scratch_dir() / "roundtrip.csv";
  write_adapter_trace(path, reqs);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));

  WorkloadSpec r;
  r.arrival = "adapter-trace";
  r.trace = path;
  r.popularity.kind = "trace";
  r.prompt.kind = "from-trace";
  r.output.kind = "from-trace";
  const auto back = generate_workload(r, 16, 999);  // the seed plays no part
  ASSERT_EQ(back.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(back[i].id, reqs[i].id);
    EXPECT_EQ(back[i].arrival, reqs[i].arrival) << i;  // bit-exact
    EXPECT_EQ(back[i].adapter, reqs[i].adapter);
    EXPECT_EQ(back[i].prompt_tokens, reqs[i].prompt_tokens);
    EXPECT_EQ(back[i].output_tokens, reqs[i].output_tokens);
  }
  // Written again: byte-identical.
  const auto path2 = test::scratch_dir() / "roundtrip2.csv";
  write_adapter_trace(path2, back);
  EXPECT_EQ(read_file(path), read_file(path2));

  // Defaults (popularity "uniform", lengths "fixed") also replay the file's columns.
  WorkloadSpec d;
  d.arrival = "adapter-trace";
  d.trace = path;
  const auto same = generate_workload(d, 16, 1);
  EXPECT_EQ(same.back().arrival, reqs.back().arrival);
  EXPECT_EQ(same.back().adapter, reqs.back().adapter);
  EXPECT_EQ(same.back().prompt_tokens, reqs.back().prompt_tokens);

  // Rescaled only when asked; clipped by max_*.
  d.time_scale = 2.0;
  d.max_output_tokens = 10;
  const auto scaled = generate_workload(d, 16, 1);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(scaled[i].arrival, 2.0 * reqs[i].arrival);
    EXPECT_EQ(scaled[i].output_tokens, std::min(reqs[i].output_tokens, 10));
  }
}

TEST(AdapterTrace, ExactTextIsKept) {
  const auto path = write_file("exact.csv",
                               "arrival_s,adapter,prompt_tokens,output_tokens\n"
                               "0.1,2,5,6\n0.1,0,7,8\n1e-3,1,1,1\n");
  WorkloadSpec s;
  s.arrival = "adapter-trace";
  s.trace = path;
  EXPECT_THROW(generate_workload(s, 3, 1), InputError);  // 1e-3 < 0.1: decreasing
  const auto ok = write_file("exact2.csv",
                             "arrival_s,adapter,prompt_tokens,output_tokens\n"
                             "0.1,2,5,6\n0.1,0,7,8\n0.30000000000000004,1,1,1\n");
  s.trace = ok;
  const auto reqs = generate_workload(s, 3, 1);
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].arrival, 0.1);
  EXPECT_EQ(reqs[1].adapter, 0);
  EXPECT_EQ(reqs[2].arrival, 0.1 + 0.2);
}

}  // namespace
}  // namespace lorasched
