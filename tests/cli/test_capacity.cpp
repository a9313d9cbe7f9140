// `lorasched capacity` and `workload.load`: the capacity of a configuration whose ceiling can
// be derived by hand, and the load resolved from it; bad input refused.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace lorasched::test {
namespace {

// dLoRA's artifact timing: every unmerged iteration takes 27 ms whatever the batch. With
// unmerged FCFS, batch limit 4 and 4 output tokens per request, the replica completes at most
// 4 requests every 4 iterations: 4 / (4 x 0.027) = 37.04 req/s. Nearly periodic arrivals
// (Gamma CV 0.05) keep up just below that and fall behind just above it.
const double kCeiling = 4.0 / (4 * 0.027);

std::string experiment(const std::string& workload_extra) {
  return R"([run]
name = "cap"
output = "out/cap.h5"
[model]
preset = "llama2-7b"
[adapters]
count = 2
ranks = [16]
[workload]
arrival = "gamma"
cv = 0.05
num_requests = 400
prompt = { kind = "fixed", value = 16 }
output = { kind = "fixed", value = 4 }
)" + workload_extra +
         R"(
[engine]
max_batch_size = 4
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
[scheduler]
plugin = "unmerged-fcfs"
)";
}

double capacity_of(const std::string& csv) {
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  std::getline(in, line);
  // "point",scheduler,capacity_rps,seeds,runs
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string c;
  while (std::getline(ss, c, ',')) cells.push_back(c);
  return cells.size() >= 3 ? std::stod(cells[2]) : -1;
}

TEST(Capacity, FindsTheHandDerivedCeiling) {
  ScratchDir dir;
  write_text(dir / "cap.toml", experiment("rate = 10.0"));
  const auto r = run_lorasched({"capacity", "cap.toml"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const double cap = capacity_of(r.out);
  EXPECT_GT(cap, 0.93 * kCeiling) << r.out;
  EXPECT_LT(cap, 1.02 * kCeiling) << r.out;
}

TEST(Capacity, LoadIsAFractionOfIt) {
  ScratchDir dir;
  write_text(dir / "cap.toml", experiment("load = 0.5"));
  const auto c = run_lorasched({"capacity", "cap.toml"}, dir.path());
  ASSERT_EQ(c.exit_code, 0) << c.describe();
  const double cap = capacity_of(c.out);
  const auto r = run_lorasched({"run", "cap.toml"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::string tag = "capacity under unmerged-fcfs: ";
  const auto at = r.err.find(tag);
  ASSERT_NE(at, std::string::npos) << r.describe();
  EXPECT_NEAR(std::stod(r.err.substr(at + tag.size())), cap, 1e-3 * cap) << r.describe();
  EXPECT_TRUE(fs::exists(dir / "out/cap.h5"));
}

TEST(Capacity, RateAndLoadTogetherAreRefused) {
  ScratchDir dir;
  write_text(dir / "cap.toml", experiment("rate = 10.0\nload = 0.5"));
  const auto r = run_lorasched({"run", "cap.toml"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("cap.toml:"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("not both"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "out/cap.h5"));
}

// A replayed trace has no `rate`: load sets its target_rate (the trace's time axis rescaled).
// Periodic arrivals, one adapter per request in turn, the same 16-token prompts and 4-token
// outputs: the same hand-derived ceiling as above.
std::string trace_experiment(const std::string& workload_extra) {
  std::string text = experiment("");
  const std::string gamma = "arrival = \"gamma\"\ncv = 0.05\n";
  text.replace(text.find(gamma), gamma.size(),
               "arrival = \"adapter-trace\"\ntrace = \"arrivals.csv\"\n" + workload_extra + "\n");
  return text;
}

void write_periodic_trace(const fs::path& file) {
  std::string csv = "arrival_s,adapter,prompt_tokens,output_tokens\n";
  for (int i = 0; i < 400; ++i) csv += std::to_string(i) + "," + std::to_string(i % 2) + ",16,4\n";
  write_text(file, csv);
}

TEST(Capacity, LoadSetsATraceReplaysRate) {
  ScratchDir dir;
  write_periodic_trace(dir / "arrivals.csv");
  write_text(dir / "cap.toml", trace_experiment("load = 0.5"));
  const auto r = run_lorasched({"run", "cap.toml"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::string tag = "capacity under unmerged-fcfs: ";
  const auto at = r.err.find(tag);
  ASSERT_NE(at, std::string::npos) << r.describe();
  const double cap = std::stod(r.err.substr(at + tag.size()));
  EXPECT_GT(cap, 0.93 * kCeiling) << r.describe();
  EXPECT_LT(cap, 1.02 * kCeiling) << r.describe();
  // At half the capacity the replica keeps up: it serves what is offered.
  const auto rep = run_lorasched({"report", "out/cap.h5", "--csv"}, dir.path());
  ASSERT_EQ(rep.exit_code, 0) << rep.describe();
  EXPECT_NE(rep.out.find("400"), std::string::npos) << rep.out;
}

TEST(Capacity, TargetRateAndLoadTogetherAreRefused) {
  ScratchDir dir;
  write_periodic_trace(dir / "arrivals.csv");
  write_text(dir / "cap.toml", trace_experiment("target_rate = 5.0\nload = 0.5"));
  const auto r = run_lorasched({"run", "cap.toml"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("cap.toml:"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("set target_rate or load, not both"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "out/cap.h5"));
}

TEST(Capacity, NeedsTheCostModel) {
  ScratchDir dir;
  std::string text = experiment("rate = 10.0");
  text.replace(text.find("executor = \"costmodel\""), 22, "executor = \"cpu\"");
  write_text(dir / "cap.toml", text);
  const auto r = run_lorasched({"capacity", "cap.toml"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("costmodel"), std::string::npos) << r.describe();
}

}  // namespace
}  // namespace lorasched::test
