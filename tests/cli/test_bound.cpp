// `lorasched bound`: the exact optimum of a hand-solved instance through the command line, and
// bad input (a cost model the exact bound cannot take, several replicas) refused with exit 2
// and no CSV.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace lorasched::test {
namespace {

// Requests 0 and 1 (adapters 0 and 1, one token each) arrive together; with batch limit 2 one
// unmerged iteration serves both: 27 ms each. Request 2 (adapter 0, 3 tokens) arrives 1 s later
// on an idle replica: a 20 ms merge then 3 x 15 ms = 65 ms beats 3 x 27 = 81 ms unmerged.
// Request mean (27 + 27 + 65) / 3 ms; per-token mean (27 + 27 + 65 / 3) / 3 ms.
const std::string kTrace =
    "arrival_s,adapter,prompt_tokens,output_tokens\n0,0,16,1\n0,1,16,1\n1,0,16,3\n";

std::string experiment(const std::string& costmodel, int replicas) {
  return R"([run]
name = "tiny"
output = "out/tiny.h5"
[model]
preset = "llama2-7b"
[adapters]
count = 2
ranks = [16]
[workload]
arrival = "adapter-trace"
trace = "tiny.csv"
popularity = { kind = "trace" }
prompt = { kind = "from-trace" }
output = { kind = "from-trace" }
[engine]
max_batch_size = 2
[cluster]
executor = "costmodel"
costmodel = ")" +
         costmodel + R"("
replicas = )" +
         std::to_string(replicas) + R"(
[scheduler]
plugin = "unmerged-fcfs"
)";
}

std::vector<std::map<std::string, std::string>> read_csv(const fs::path& path) {
  std::istringstream in(slurp(path));
  std::string line;
  std::vector<std::string> head;
  std::vector<std::map<std::string, std::string>> rows;
  auto split = [](const std::string& l) {
    std::vector<std::string> out;
    std::stringstream ss(l);
    std::string cell;
    while (std::getline(ss, cell, ',')) out.push_back(cell);
    if (!l.empty() && l.back() == ',') out.emplace_back();
    return out;
  };
  if (std::getline(in, line)) head = split(line);
  while (std::getline(in, line)) {
    const auto cells = split(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < head.size() && i < cells.size(); ++i) row[head[i]] = cells[i];
    rows.push_back(row);
  }
  return rows;
}

TEST(Bound, ExactOptimumOfAHandSolvedInstance) {
  ScratchDir dir;
  write_text(dir / "tiny.csv", kTrace);
  write_text(dir / "tiny.toml", experiment("dlora-artifact", 1));
  const auto r = run_lorasched({"bound", "tiny.toml", "--exact", "-q", "-o", "b.csv"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const auto rows = read_csv(dir / "b.csv");
  ASSERT_EQ(rows.size(), 2u) << slurp(dir / "b.csv");
  const auto& relax = rows[0];
  const auto& exact = rows[1];
  EXPECT_EQ(relax.at("method"), "relaxation");
  EXPECT_EQ(exact.at("method"), "exact");
  EXPECT_EQ(exact.at("requests"), "3");
  EXPECT_EQ(exact.at("per_token_status"), "optimal");
  EXPECT_EQ(exact.at("request_status"), "optimal");
  const double per_token = (0.027 + 0.027 + 0.065 / 3) / 3;
  const double request = (0.027 + 0.027 + 0.065) / 3;
  EXPECT_NEAR(std::stod(exact.at("per_token_mean_best")), per_token, 1e-8);
  EXPECT_NEAR(std::stod(exact.at("request_mean_best")), request, 1e-8);
  EXPECT_LE(std::stod(relax.at("per_token_mean_bound")), per_token + 1e-12);
  EXPECT_LE(std::stod(relax.at("request_mean_bound")), request + 1e-12);
  EXPECT_GT(std::stod(relax.at("request_mean_bound")), 0.0);

  // The CBC formulation agrees on this instance.
  const auto m =
      run_lorasched({"bound", "tiny.toml", "--exact", "--milp", "-q", "-o", "m.csv"}, dir.path());
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  const auto mrows = read_csv(dir / "m.csv");
  ASSERT_EQ(mrows.size(), 2u);
  EXPECT_EQ(mrows[1].at("method"), "exact-milp");
  EXPECT_NEAR(std::stod(mrows[1].at("per_token_mean_best")), per_token, 1e-8);
  EXPECT_NEAR(std::stod(mrows[1].at("request_mean_best")), request, 1e-8);
}

TEST(Bound, ExactRefusesABatchDependentCostModel) {
  ScratchDir dir;
  write_text(dir / "tiny.csv", kTrace);
  write_text(dir / "tiny.toml", experiment("llama2-7b@a100-80gb", 1));
  const auto r = run_lorasched({"bound", "tiny.toml", "--exact", "-o", "b.csv"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("dlora-artifact"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "b.csv"));
  EXPECT_FALSE(fs::exists(dir / "b.csv.partial"));
  // Without --exact the relaxation takes any cost model.
  const auto ok = run_lorasched({"bound", "tiny.toml", "-o", "b.csv"}, dir.path());
  EXPECT_EQ(ok.exit_code, 0) << ok.describe();
  EXPECT_EQ(read_csv(dir / "b.csv").size(), 1u);
}

TEST(Bound, RefusesSeveralReplicas) {
  ScratchDir dir;
  write_text(dir / "tiny.csv", kTrace);
  write_text(dir / "tiny.toml", experiment("dlora-artifact", 2));
  const auto r = run_lorasched({"bound", "tiny.toml", "-o", "b.csv"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("one replica"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "b.csv"));
}

}  // namespace
}  // namespace lorasched::test
