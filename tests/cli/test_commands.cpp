// The `lorasched` subcommands on good input and on bad results files: validate, run (-o),
// report, plugins, --help. Each test runs the binary in its own scratch directory.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "lorasched/plugin/types.hpp"

namespace lorasched::test {
namespace {

const std::string kGood = R"([run]
name = "good"
seed = 3
output = "out/good.h5"
[adapters]
count = 4
ranks = [8, 16]
[workload]
arrival = "poisson"
rate = 20.0
num_requests = 30
prompt = { kind = "uniform", min = 8, max = 64 }
output = { kind = "uniform", min = 2, max = 16 }
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
)";

// Hermetic plugin lookup: only the build tree (and what a test adds).
const std::vector<std::pair<std::string, std::optional<std::string>>> kNoEnvPath = {
    {"LORASCHED_PLUGIN_PATH", std::nullopt}};

TEST(Validate, GoodFilePrintsOkAndWritesNothing) {
  ScratchDir dir;
  write_text(dir / "good.toml", kGood);
  const auto r = run_lorasched({"validate", "good.toml"}, dir.path(), kNoEnvPath);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("good.toml: ok (1 run)"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("30 requests"), std::string::npos) << r.describe();
  EXPECT_TRUE(results_files(dir.path()).empty());
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(Validate, SweepCountsEveryPoint) {
  ScratchDir dir;
  write_text(
      dir / "sweep.toml",
      kGood + "[sweep]\n\"workload.rate\" = [5.0, 10.0]\n\"engine.max_batch_size\" = [4, 8, 16]\n");
  const auto r = run_lorasched({"validate", "sweep.toml"}, dir.path(), kNoEnvPath);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("sweep.toml: ok (6 runs)"), std::string::npos) << r.describe();
  EXPECT_TRUE(results_files(dir.path()).empty());
}

TEST(Validate, QuickstartIsValidAndWritesNothing) {
  ScratchDir dir;
  const fs::path quickstart = source_dir() / "experiments/quickstart.toml";
  const auto r = run_lorasched({"validate", quickstart.string()}, dir.path(), kNoEnvPath);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find(": ok ("), std::string::npos) << r.describe();
  EXPECT_TRUE(results_files(dir.path()).empty());
  EXPECT_FALSE(fs::exists(dir / "results"));
}

TEST(Run, GoodFileWritesOnlyTheFinalResults) {
  ScratchDir dir;
  write_text(dir / "good.toml", kGood);
  const auto r = run_lorasched({"run", "-q", "good.toml"}, dir.path(), kNoEnvPath);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("results: out/good.h5"), std::string::npos) << r.describe();
  const auto files = results_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files.front(), dir / "out/good.h5");
  EXPECT_EQ(root_string_attr(dir / "out/good.h5", "status"), "complete");
  EXPECT_TRUE(r.err.empty()) << "-q should print no progress\n" << r.describe();

  const auto rep = run_lorasched({"report", "out/good.h5"}, dir.path());
  EXPECT_EQ(rep.exit_code, 0) << rep.describe();
  EXPECT_NE(rep.out.find("requests"), std::string::npos) << rep.describe();
  const auto csv = run_lorasched({"report", "--csv", "out/good.h5"}, dir.path());
  EXPECT_EQ(csv.exit_code, 0) << csv.describe();
  EXPECT_EQ(csv.out.rfind("run,requests,", 0), 0u) << csv.describe();
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 2) << csv.describe();
}

TEST(Run, OutputOptionOverridesTheFile) {
  ScratchDir dir;
  write_text(dir / "good.toml", kGood);
  const auto r =
      run_lorasched({"run", "-q", "good.toml", "-o", "elsewhere/x.h5"}, dir.path(), kNoEnvPath);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const auto files = results_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files.front(), dir / "elsewhere/x.h5");
}

// A run that fails after it started (no request can ever fit the KV pool) exits 2 and leaves
// only NAME.h5.partial with status "failed" and the error; `report` refuses that file.
TEST(Run, RuntimeFailureLeavesFailedPartialOnly) {
  ScratchDir dir;
  write_text(dir / "stuck.toml", R"([run]
name = "stuck"
output = "out/stuck.h5"
[workload]
num_requests = 5
prompt = 200
output = 4
[engine]
kv_blocks = 4
unified_pool = false
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
)");
  const auto r = run_lorasched({"run", "-q", "stuck.toml"}, dir.path(), kNoEnvPath);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("cannot finish"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "out/stuck.h5"));
  ASSERT_TRUE(fs::exists(dir / "out/stuck.h5.partial")) << r.describe();
  EXPECT_EQ(root_string_attr(dir / "out/stuck.h5.partial", "status"), "failed");
  const auto error = root_string_attr(dir / "out/stuck.h5.partial", "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("cannot finish"), std::string::npos) << *error;

  const auto rep = run_lorasched({"report", "out/stuck.h5.partial"}, dir.path());
  EXPECT_EQ(rep.exit_code, 2) << rep.describe();
  EXPECT_NE(rep.err.find("out/stuck.h5.partial"), std::string::npos) << rep.describe();
  EXPECT_NE(rep.err.find("failed"), std::string::npos) << rep.describe();
}

// A failed rerun leaves the previous complete NAME.h5 untouched (only a successful run
// replaces it); the next successful run removes the stale .partial.
TEST(Run, FailedRerunKeepsThePreviousResults) {
  ScratchDir dir;
  write_text(dir / "exp.toml", kGood);
  ASSERT_EQ(run_lorasched({"run", "-q", "exp.toml"}, dir.path(), kNoEnvPath).exit_code, 0);
  const std::string before = slurp(dir / "out/good.h5");
  ASSERT_FALSE(before.empty());
  // Same output, but every request is too long for its pool: fails after the run started.
  write_text(dir / "exp.toml",
             kGood + "[engine]\nkv_blocks = 2\nunified_pool = false\nmax_model_len = 8192\n");
  const auto failed = run_lorasched({"run", "-q", "exp.toml", "--set", "workload.prompt=200"},
                                    dir.path(), kNoEnvPath);
  EXPECT_EQ(failed.exit_code, 2) << failed.describe();
  EXPECT_EQ(slurp(dir / "out/good.h5"), before) << "a failed run changed the previous results";
  EXPECT_EQ(root_string_attr(dir / "out/good.h5.partial", "status"), "failed");
  write_text(dir / "exp.toml", kGood);
  ASSERT_EQ(run_lorasched({"run", "-q", "exp.toml"}, dir.path(), kNoEnvPath).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "out/good.h5.partial")) << "stale .partial left after a good run";
  EXPECT_EQ(root_string_attr(dir / "out/good.h5", "status"), "complete");
}

TEST(Report, MissingFile) {
  ScratchDir dir;
  const auto r = run_lorasched({"report", "nothing-here.h5"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("nothing-here.h5"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.describe();
}

TEST(Report, PartialFileIsRefusedEvenWhenReadable) {
  ScratchDir dir;
  write_text(dir / "good.toml", kGood);
  ASSERT_EQ(run_lorasched({"run", "-q", "good.toml"}, dir.path(), kNoEnvPath).exit_code, 0);
  fs::copy_file(dir / "out/good.h5", dir / "out/copy.h5.partial");
  const auto r = run_lorasched({"report", "out/copy.h5.partial"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("out/copy.h5.partial"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find(".partial"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("rerun"), std::string::npos) << r.describe();
}

TEST(Report, TextFileIsNotHdf5) {
  ScratchDir dir;
  write_text(dir / "notes.h5", "this is not HDF5\n");
  const auto r = run_lorasched({"report", "notes.h5"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("notes.h5 is not an HDF5 file"), std::string::npos) << r.describe();
}

TEST(Report, ForeignHdf5File) {
  ScratchDir dir;
  {
    H5::H5File f((dir / "foreign.h5").string(), H5F_ACC_TRUNC);
    f.createGroup("/something");
  }
  const auto r = run_lorasched({"report", "foreign.h5"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("foreign.h5"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("not a lorasched results file"), std::string::npos) << r.describe();
}

// The section of `lorasched plugins` output that lists one kind ("schedulers:" ...).
std::string section(const std::string& out, const std::string& header) {
  const size_t start = out.find(header + ":\n");
  if (start == std::string::npos) return {};
  std::istringstream in(out.substr(start + header.size() + 2));
  std::string line, body;
  while (std::getline(in, line) && !line.empty() && line[0] == ' ') body += line + "\n";
  return body;
}

TEST(Plugins, ListsEveryBuiltinUnderItsKind) {
  ScratchDir dir;
  const auto r = run_lorasched({"plugins"}, dir.path(), kNoEnvPath);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"schedulers", {"unmerged-fcfs", "merged-only", "dlora"}},
      {"thresholds", {"fixed", "dlora-adaptive"}},
      {"migrations", {"none"}},
      {"dispatchers", {"least-loaded"}}};
  for (const auto& [kind, names] : expected) {
    const std::string body = section(r.out, kind);
    EXPECT_FALSE(body.empty()) << "no section " << kind << "\n" << r.describe();
    for (const auto& n : names)
      EXPECT_NE(body.find("  " + n + " "), std::string::npos) << kind << " lacks " << n << "\n"
                                                              << r.describe();
  }
  EXPECT_NE(r.out.find("searched: "), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find((fs::path(LORASCHED_BINARY_DIR) / "plugins").string()), std::string::npos);
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << "the build tree holds a broken plugin\n"
                                                      << r.describe();
}

TEST(Plugins, DescribeDloraShowsItsParameters) {
  ScratchDir dir;
  const auto r = run_lorasched({"plugins", "--describe", "dlora"}, dir.path(), kNoEnvPath);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("scheduler 'dlora'"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("api version: " + std::to_string(lorasched::api::kApiVersion)),
            std::string::npos)
      << r.describe();
  EXPECT_NE(r.out.find("liblorasched-scheduler-dlora.so"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("merge_time (real in [1e-06, 10], default 0.015)"), std::string::npos)
      << r.describe();
  EXPECT_NE(r.out.find("unmerge_time (real in [1e-06, 10], default 0.027)"), std::string::npos)
      << r.describe();
  // Only dlora is described.
  EXPECT_EQ(r.out.find("merged-only"), std::string::npos) << r.describe();
}

TEST(Plugins, DescribeParameterlessPlugin) {
  ScratchDir dir;
  const auto r = run_lorasched({"plugins", "--describe", "unmerged-fcfs"}, dir.path(), kNoEnvPath);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("no parameters"), std::string::npos) << r.describe();
}

TEST(Plugins, DescribeUnknownPluginExits3) {
  ScratchDir dir;
  const auto r = run_lorasched({"plugins", "--describe", "nope"}, dir.path(), kNoEnvPath);
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  EXPECT_NE(r.err.find("no plugin named 'nope'"), std::string::npos) << r.describe();
}

TEST(Help, ExitsZeroAndListsSubcommands) {
  ScratchDir dir;
  const auto r = run_lorasched({"--help"}, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  for (const char* cmd : {"run", "sweep", "validate", "report", "plugins"})
    EXPECT_NE(r.out.find(std::string("  ") + cmd + " "), std::string::npos) << cmd << "\n"
                                                                            << r.describe();
  const auto sub = run_lorasched({"run", "--help"}, dir.path());
  EXPECT_EQ(sub.exit_code, 0) << sub.describe();
  EXPECT_NE(sub.out.find("--set"), std::string::npos) << sub.describe();
}

TEST(Help, BadCommandLinesExit2) {
  ScratchDir dir;
  for (const std::vector<std::string>& args : {std::vector<std::string>{},
                                               {"frobnicate"},
                                               {"run"},
                                               {"report"},
                                               {"run", "a.toml", "--bogus"}}) {
    const auto r = run_lorasched(args, dir.path());
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << "lorasched " << joined << "\n" << r.describe();
    EXPECT_FALSE(r.err.empty()) << joined;
  }
}

TEST(Sweep, RequiresASweepTable) {
  ScratchDir dir;
  write_text(dir / "good.toml", kGood);
  const auto r = run_lorasched({"sweep", "good.toml"}, dir.path(), kNoEnvPath);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("has no [sweep] table"), std::string::npos) << r.describe();
  EXPECT_TRUE(results_files(dir.path()).empty());
}

// `lorasched generate` stops each prompt at the model's end-of-sequence token as HF's
// generate() does (tests/fixtures/hf-tiny "eos": what transformers produced), and runs the full
// --max-new-tokens with --ignore-eos.
TEST(Generate, StopsAtEndOfSequenceUnlessIgnored) {
  const fs::path fixtures = source_dir() / "tests/fixtures/hf-tiny";
  std::ifstream in(fixtures / "expected.json");
  const auto expected = nlohmann::json::parse(in);
  auto ids = [](const nlohmann::json& tokens) {
    std::string s;
    for (const auto& t : tokens) {
      if (!s.empty()) s += ',';
      s += std::to_string(t.get<int>());
    }
    return s;
  };
  auto lines = [&](const nlohmann::json& generated) {
    std::string out;
    for (const auto& g : generated) {
      out += ids(g);
      out += '\n';
    }
    return out;
  };
  std::vector<std::string> args = {"generate", "--max-new-tokens",
                                   std::to_string(expected["max_new_tokens"].get<int>())};
  for (const auto& p : expected["prompts"]) args.insert(args.end(), {"--prompt-ids", ids(p)});
  ScratchDir dir;
  for (const auto& [name, want] : expected["eos"].items()) {
    auto a = args;
    a.insert(a.end(), {"--model", (fixtures / name).string()});
    const auto stopped = run_lorasched(a, dir.path());
    EXPECT_EQ(stopped.exit_code, 0) << stopped.describe();
    EXPECT_EQ(stopped.out, lines(want["generated"])) << name;
    a.push_back("--ignore-eos");
    const auto full = run_lorasched(a, dir.path());
    EXPECT_EQ(full.exit_code, 0) << full.describe();
    EXPECT_EQ(full.out, lines(expected["base"]["generated"])) << name << " --ignore-eos";
  }
}

}  // namespace
}  // namespace lorasched::test
