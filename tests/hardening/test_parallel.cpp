// Sweeps beyond one process (docs/user-guide.md, "Running sweeps in parallel"): `run -j N`
// and `run --shard I/N` + `merge` give the serial run's results (every field but the
// wall-clock ones); merge refuses duplicates, mismatches and gaps clearly; a signal to a
// `run -j` leaves nothing under the final name, and `--resume` then runs only the rest.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "core/metrics/h5.hpp"
#include "hardening/hardening_util.hpp"
#include "tests/common/record_compare.hpp"

namespace lorasched::test {
namespace {

std::string trace_text(int requests) {
  std::string s = "arrival_s,adapter,prompt_tokens,output_tokens\n";
  char row[96];
  for (int i = 0; i < requests; ++i) {
    std::snprintf(row, sizeof(row), "%.3f,%d,%d,%d\n", i / 40.0, (i * 7) % 8, 16 + i % 64,
                  4 + (i * 5) % 24);
    s += row;
  }
  return s;
}

// Five points: three schedulers x seeds, on the cost model (deterministic).
const char* kExperiment = R"([run]
name = "par"
output = "out/par.h5"
[adapters]
count = 8
[workload]
arrival = "adapter-trace"
trace = "trace.csv"
[engine]
kv_blocks = 2048
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
[sweep]
"scheduler.plugin" = ["unmerged-fcfs", "merged-only", "dlora"]
"run.seed" = [1, 2]
)";

class Parallel : public testing::Test {
 protected:
  void SetUp() override {
    write_text(dir_ / "exp.toml", kExperiment);
    write_text(dir_ / "trace.csv", trace_text(1500));
  }

  ProcessResult lorasched(const std::vector<std::string>& args) {
    return run_lorasched(args, dir_.path(), {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  }

  // The serial run, once per test.
  const std::vector<StoredRun>& serial() {
    if (serial_.empty()) {
      const ProcessResult r = lorasched({"run", "exp.toml", "-q", "-o", "out/serial.h5"});
      EXPECT_EQ(r.exit_code, 0) << r.describe();
      serial_ = read_results(dir_ / "out/serial.h5");
    }
    return serial_;
  }

  // Every run of `file` equals the serial run's but for the documented wall-clock fields
  // (run attributes host and wall_seconds, summary wall_seconds, iterations.decision_wall_us).
  void expect_like_serial(const fs::path& file) {
    SCOPED_TRACE(file.string());
    const auto& want = serial();
    const auto got = read_results(dir_ / file);
    ASSERT_EQ(got.size(), want.size());
    auto stable = [](RunAttributes a) {
      a.host.clear();
      std::erase_if(a.extra, [](const auto& kv) { return kv.first == "wall_seconds"; });
      return a;
    };
    for (size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE(want[i].group);
      EXPECT_EQ(got[i].group, want[i].group);
      EXPECT_EQ(stable(got[i].attrs), stable(want[i].attrs));
      expect_same_records(got[i].records, want[i].records);
      expect_same_summary(got[i].summary, want[i].summary);
    }
    const ResultsHeader a = read_results_header(dir_ / file);
    const ResultsHeader b = read_results_header(dir_ / "out/serial.h5");
    ASSERT_TRUE(a.provenance && b.provenance);
    EXPECT_EQ(*a.provenance, *b.provenance);
  }

  ScratchDir dir_;
  std::vector<StoredRun> serial_;
};

TEST_F(Parallel, JobsGiveTheSerialResults) {
  ASSERT_EQ(serial().size(), 6u);
  const ProcessResult r = lorasched({"run", "exp.toml", "-j", "2", "-o", "out/j2.h5"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  // One display: each point once started and once done, then the table.
  EXPECT_TRUE(contains(r.out, "run.seed=2 scheduler.plugin=dlora")) << r.out;
  EXPECT_TRUE(contains(r.out, "results: out/j2.h5")) << r.out;
  expect_like_serial("out/j2.h5");
  EXPECT_FALSE(fs::exists(dir_ / "out/j2.h5.parts")) << "the per-point files stay behind";
  EXPECT_FALSE(fs::exists(dir_ / "out/j2.h5.partial"));
}

TEST_F(Parallel, ShardsMergeIntoTheSerialResults) {
  for (int i = 0; i < 3; ++i) {
    const std::string shard = std::to_string(i) + "/3";
    const ProcessResult r = lorasched({"run", "exp.toml", "-q", "--shard", shard});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    // Points i and i + 3.
    EXPECT_EQ(read_results(dir_ / ("out/par.shard-" + std::to_string(i) + "-of-3.h5")).size(), 2u);
  }
  const ProcessResult m = lorasched({"merge", "out/merged.h5", "out/par.shard-2-of-3.h5",
                                     "out/par.shard-0-of-3.h5", "out/par.shard-1-of-3.h5"});
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  expect_like_serial("out/merged.h5");

  // A shard given twice.
  ProcessResult bad = lorasched({"merge", "out/bad.h5", "out/par.shard-0-of-3.h5",
                                 "out/par.shard-1-of-3.h5", "out/par.shard-0-of-3.h5"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err,
                       "sweep point 000 (run.seed=1 scheduler.plugin=unmerged-fcfs) is "
                       "in both out/par.shard-0-of-3.h5 and out/par.shard-0-of-3.h5"))
      << bad.err;
  // A shard missing: its points are listed by label.
  bad = lorasched({"merge", "out/bad.h5", "out/par.shard-0-of-3.h5", "out/par.shard-2-of-3.h5"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err,
                       "2 of the sweep's 6 points are in none of the 2 files: 001 "
                       "(run.seed=2 scheduler.plugin=unmerged-fcfs), 004 "
                       "(run.seed=1 scheduler.plugin=dlora)"))
      << bad.err;
  // A shard of another experiment (other --set overrides).
  ASSERT_EQ(lorasched({"run", "exp.toml", "-q", "--shard", "1/3", "--set", "engine.kv_blocks=4096",
                       "-o", "out/other.h5"})
                .exit_code,
            0);
  bad = lorasched({"merge", "out/bad.h5", "out/par.shard-0-of-3.h5", "out/other.shard-1-of-3.h5",
                   "out/par.shard-2-of-3.h5"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err,
                       "out/par.shard-0-of-3.h5 and out/other.shard-1-of-3.h5 are not "
                       "shards of the same sweep: the --set overrides differ"))
      << bad.err;
  // A file without provenance is refused, not guessed at; a bad --shard is bad input.
  EXPECT_FALSE(fs::exists(dir_ / "out/bad.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "out/bad.h5.partial"));
  bad = lorasched({"run", "exp.toml", "-q", "--shard", "3/3"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "--shard '3/3': expected I/N with 0 <= I < N")) << bad.err;
}

// The scripts of `lorasched slurm` run by bash as Slurm would run them (the #SBATCH lines
// are comments to bash): each array task with its SLURM_ARRAY_TASK_ID, then the merge
// script. scripts/slurm-test does the same through a real Slurm, in CI.
TEST_F(Parallel, SlurmScriptsRunTheShardsAndTheMerge) {
  const ProcessResult w = lorasched({"slurm", "exp.toml", "--shards", "3", "--max-concurrent", "2",
                                     "--partition", "cpu", "--time", "0:20:00"});
  ASSERT_EQ(w.exit_code, 0) << w.describe();
  const fs::path dir = dir_ / "out/par.h5.slurm";
  const std::string array = slurp(dir / "array.sbatch");
  const std::string merge = slurp(dir / "merge.sbatch");
  for (const char* line :
       {"#SBATCH --array=0-2%2\n", "#SBATCH --partition=cpu\n", "#SBATCH --time=0:20:00\n",
        "#SBATCH --cpus-per-task=1\n", "--shard \"${SLURM_ARRAY_TASK_ID}/3\"", "--resume"})
    EXPECT_TRUE(contains(array, line)) << line << "\n" << array;
  EXPECT_TRUE(contains(merge, "par.shard-2-of-3.h5")) << merge;
  EXPECT_TRUE(contains(w.out, "sbatch --dependency=afterok:")) << w.out;
  for (int i = 0; i < 3; ++i) {
    const ProcessResult t = run_process("/bin/bash", {(dir / "array.sbatch").string()}, dir_.path(),
                                        {{"SLURM_ARRAY_TASK_ID", std::to_string(i)},
                                         {"SLURM_CPUS_PER_TASK", "1"},
                                         {"LORASCHED_PLUGIN_PATH", std::nullopt}});
    ASSERT_EQ(t.exit_code, 0) << t.describe();
  }
  const ProcessResult m = run_process("/bin/bash", {(dir / "merge.sbatch").string()}, dir_.path(),
                                      {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  expect_like_serial("out/par.h5");
}

TEST_F(Parallel, SignalLeavesNoFileAndResumeRunsTheRest) {
  // Longer points, so that the signal lands while workers run.
  write_text(dir_ / "trace.csv", trace_text(12000));
  serial();
  Child c(lorasched_binary(), {"run", "exp.toml", "-j", "2", "-o", "out/sig.h5"}, dir_.path(),
          dir_ / "capture");
  // Wait for the first completed point, then stop the parent alone: it must stop its workers.
  const bool reached = wait_until([&] { return contains(c.err(), ": done in") || !c.running(); });
  ASSERT_TRUE(reached) << c.err();
  ASSERT_TRUE(c.running()) << "the run ended before the signal; make the points longer\n"
                           << c.err();
  ::kill(c.pid(), SIGINT);
  EXPECT_EQ(c.wait(), -1) << "should end by the signal\n" << c.err();
  EXPECT_TRUE(contains(c.err(), "stopped by signal 2")) << c.err();
  EXPECT_FALSE(fs::exists(dir_ / "out/sig.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "out/sig.h5.partial"));
  size_t parts = 0;
  for (const auto& f : fs::directory_iterator(dir_ / "out/sig.h5.parts")) {
    EXPECT_EQ(f.path().extension(), ".h5") << "left behind: " << f.path();
    ++parts;
  }
  EXPECT_GE(parts, 1u);
  EXPECT_LT(parts, 6u);
  // No worker is left running: none of them may still write into the parts.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  size_t later = 0;
  for ([[maybe_unused]] const auto& f : fs::directory_iterator(dir_ / "out/sig.h5.parts")) ++later;
  EXPECT_EQ(later, parts);

  const ProcessResult r = lorasched({"run", "exp.toml", "-j", "2", "--resume", "-o", "out/sig.h5"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "--resume: " + std::to_string(parts) + " of 6 points done before, " +
                                  std::to_string(6 - parts) + " to run"))
      << r.err;
  // The serial results of the same experiment (trace replaced before the serial run).
  const auto got = read_results(dir_ / "out/sig.h5");
  ASSERT_EQ(got.size(), serial().size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(got[i].group);
    expect_same_records(got[i].records, serial()[i].records);
    expect_same_summary(got[i].summary, serial()[i].summary);
  }
  EXPECT_FALSE(fs::exists(dir_ / "out/sig.h5.parts"));
}

}  // namespace
}  // namespace lorasched::test
