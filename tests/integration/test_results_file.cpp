// End to end: `lorasched run` on a small sweep, then the results file read back with the
// metrics reader (read_results) and with h5py, and plotted with scripts/plot.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "core/cli/commands.hpp"
#include "core/config/experiment.hpp"
#include "core/metrics/h5.hpp"
#include "core/metrics/summary.hpp"

namespace lorasched::test {
namespace {

const std::vector<std::pair<std::string, std::optional<std::string>>> kEnv = {
    {"LORASCHED_PLUGIN_PATH", std::nullopt}};

// 2 sweep points x 40 requests on the real cpu executor (tiny model), dLoRA with adaptive
// thresholds, every batch logged.
const std::string kCpuSweep = R"([run]
name = "sweep"
seed = 5
output = "out/sweep.h5"
[adapters]
count = 4
ranks = [4, 8]
[workload]
arrival = "poisson"
rate = 20.0
num_requests = 40
popularity = { kind = "zipf", s = 1.1 }
prompt = { kind = "uniform", min = 8, max = 32 }
output = { kind = "uniform", min = 2, max = 12 }
[engine]
max_batch_size = 8
kv_blocks = 128
[cluster]
executor = "cpu"
threads = 1
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[metrics]
log_batches = true
[sweep]
"workload.rate" = [20.0, 80.0]
)";

// The same shape on the costmodel executor (fast): for the plot and attribute checks.
std::string costmodel_sweep() {
  std::string t = kCpuSweep;
  t.replace(t.find("executor = \"cpu\"\nthreads = 1"), 28,
            "executor = \"costmodel\"\ncostmodel = \"dlora-artifact\"");
  t.replace(t.find("kv_blocks = 128\n"), 16, "");
  return t;
}

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

int64_t count_kind(const RunRecords& r, EventKind k) {
  return std::count_if(r.events.begin(), r.events.end(),
                       [&](const EventRecord& e) { return e.kind == static_cast<int8_t>(k); });
}

TEST(ResultsFile, CpuSweepReadsBackConsistently) {
  ScratchDir dir;
  write_text(dir / "exp.toml", kCpuSweep);
  const ProcessResult r = run_lorasched({"run", "-q", "exp.toml"}, dir.path(), kEnv);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path file = dir / "out/sweep.h5";
  ASSERT_EQ(results_files(dir.path()), std::vector<fs::path>{file});
  EXPECT_NE(r.out.find("workload.rate=20.0"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("workload.rate=80.0"), std::string::npos) << r.describe();

  const auto runs = read_results(file);
  ASSERT_EQ(runs.size(), 2u);
  const std::vector<std::string> labels = {"workload.rate=20.0", "workload.rate=80.0"};
  for (size_t k = 0; k < runs.size(); ++k) {
    const StoredRun& run = runs[k];
    SCOPED_TRACE(run.group);
    // ---- attributes ----
    EXPECT_EQ(run.group, k == 0 ? "000" : "001");
    EXPECT_EQ(run.attrs.label, labels[k]);
    EXPECT_EQ(run.attrs.experiment_path, "exp.toml");
    EXPECT_NE(run.attrs.experiment_toml.find("plugin = \"dlora-adaptive\""), std::string::npos);
    EXPECT_EQ("lorasched " + run.attrs.version + " (git " + run.attrs.git_revision + ")",
              std::string(kVersionText));
    EXPECT_FALSE(run.attrs.git_revision.empty());
    EXPECT_EQ(run.attrs.seed, 5u);
    EXPECT_EQ(run.attrs.executor, "cpu");
    EXPECT_FALSE(run.attrs.device.empty());
    EXPECT_EQ(run.attrs.host, hostname());
    std::set<std::string> kinds;
    for (const auto& [kind, desc] : run.attrs.plugins) {
      kinds.insert(kind);
      const std::regex shape("^([a-z0-9-]+) api=" + std::to_string(api::kApiVersion) +
                             " path=(/.+\\.so)$");
      std::smatch m;
      ASSERT_TRUE(std::regex_match(desc, m, shape)) << kind << ": " << desc;
      EXPECT_TRUE(fs::exists(m[2].str())) << desc;
      EXPECT_NE(m[2].str().find("liblorasched-" + kind + "-" + m[1].str() + ".so"),
                std::string::npos)
          << desc;
      if (kind == "scheduler") {
        EXPECT_EQ(m[1].str(), "dlora");
      } else if (kind == "threshold") {
        EXPECT_EQ(m[1].str(), "dlora-adaptive");
      }
    }
    EXPECT_EQ(kinds, (std::set<std::string>{"scheduler", "threshold", "migration", "dispatcher"}));

    // ---- datasets ----
    const RunRecords& rec = run.records;
    ASSERT_EQ(rec.requests.size(), 40u);
    int64_t finished = 0, batch_rows = 0, merged_its = 0;
    for (size_t i = 0; i < rec.requests.size(); ++i) {
      EXPECT_EQ(rec.requests[i].id, static_cast<int64_t>(i));
      const auto st = static_cast<RequestStatus>(rec.requests[i].status);
      finished += st == RequestStatus::finished || st == RequestStatus::length_capped;
    }
    EXPECT_EQ(finished, 40);
    for (const auto& it : rec.iterations) {
      batch_rows += it.batch_size;
      merged_its += it.mode == 1;
    }
    EXPECT_FALSE(rec.iterations.empty());
    EXPECT_EQ(static_cast<int64_t>(rec.batches.size()), batch_rows);

    // ---- summary: consistent with the records ----
    const Summary& s = run.summary;
    EXPECT_EQ(s.requests, 40);
    EXPECT_EQ(s.finished, finished);
    EXPECT_EQ(s.unfinished, 0);
    EXPECT_EQ(s.iterations, static_cast<int64_t>(rec.iterations.size()));
    EXPECT_EQ(s.merged_iterations, merged_its);
    // A fused switch merges one adapter and unmerges another.
    const int64_t fused = count_kind(rec, EventKind::adapter_switch);
    EXPECT_EQ(s.merges, count_kind(rec, EventKind::merge) + fused);
    EXPECT_EQ(s.unmerges, count_kind(rec, EventKind::unmerge) + fused);
    EXPECT_EQ(s.adapter_loads, count_kind(rec, EventKind::adapter_load));
    EXPECT_EQ(s.preemptions, count_kind(rec, EventKind::preempt_swap) +
                                 count_kind(rec, EventKind::preempt_recompute));
    EXPECT_EQ(s.threshold_changes, count_kind(rec, EventKind::threshold_change));
    EXPECT_GT(s.wall_seconds, 0);
    // Recomputed from the records and the experiment's keys: [engine] max_batch_size = 8
    // (empty_slot_time), the default [metrics] window and SLO.
    SummaryOptions options;
    options.max_batch_size = 8;
    const Summary again = summarize(rec, options);
    for (const auto& field : summary_fields()) {
      if (std::string(field.name) == "wall_seconds") continue;
      std::visit(
          [&](auto member) {
            const double a = static_cast<double>(s.*member), b = static_cast<double>(again.*member);
            EXPECT_TRUE(a == b || (std::isnan(a) && std::isnan(b)))
                << "summary " << field.name << ": stored " << a << ", recomputed " << b;
          },
          field.member);
    }
  }
  // dLoRA on the skewed, slow sweep point switches modes at least once.
  EXPECT_GT(runs[0].summary.merges, 0);

  // ---- the same file through h5py, against docs/results-format.md ----
  if (!python_has({"h5py", "numpy"}))
    GTEST_SKIP() << "python3 with h5py not available: h5py check skipped";
  const ProcessResult py =
      run_process("/usr/bin/python3",
                  {(source_dir() / "tests/integration/check_results_h5py.py").string(),
                   file.string(), "2", "40"},
                  dir.path());
  EXPECT_EQ(py.exit_code, 0) << py.describe();
  EXPECT_NE(py.out.find("OK"), std::string::npos) << py.describe();
}

// docs/results-format.md: experiment_toml is "the full experiment text the run used (sweep
// overrides applied)", so each sweep point's stored text describes that point alone.
TEST(ResultsFile, ExperimentTomlIsTheSweepPointsOwnText) {
  ScratchDir dir;
  write_text(dir / "exp.toml", costmodel_sweep());
  const ProcessResult r = run_lorasched({"run", "-q", "exp.toml"}, dir.path(), kEnv);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const auto runs = read_results(dir / "out/sweep.h5");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_NE(runs[0].attrs.experiment_toml, runs[1].attrs.experiment_toml)
      << "both sweep points store the same text";
  const double rates[] = {20.0, 80.0};
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto exps = parse_experiments(runs[k].attrs.experiment_toml, "stored.toml");
    ASSERT_FALSE(exps.empty());
    for (const auto& e : exps)
      EXPECT_DOUBLE_EQ(e.workload.rate, rates[k])
          << "run " << runs[k].group << " stored a text that runs another point (" << exps.size()
          << " points)";
  }
}

bool is_png(const fs::path& p) {
  const std::string head = slurp(p).substr(0, 8);
  return head == std::string("\x89PNG\r\n\x1a\n", 8);
}

TEST(PlotScript, WritesThePngsAndRefusesPartialFiles) {
  if (!python_has({"h5py", "numpy", "matplotlib"}))
    GTEST_SKIP() << "python3 with h5py, numpy and matplotlib not available";
  ScratchDir dir;
  write_text(dir / "exp.toml", costmodel_sweep());
  const ProcessResult r = run_lorasched({"run", "-q", "exp.toml"}, dir.path(), kEnv);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::string plot = (source_dir() / "scripts/plot.py").string();

  const ProcessResult p =
      run_process("/usr/bin/python3", {plot, "out/sweep.h5", "--out", "plots"}, dir.path());
  ASSERT_EQ(p.exit_code, 0) << p.describe();
  for (const char* png : {"latency_cdf.png", "timeline.png", "throughput.png"}) {
    EXPECT_TRUE(fs::exists(dir / "plots" / png)) << png << "\n" << p.describe();
    if (fs::exists(dir / "plots" / png)) {
      EXPECT_TRUE(is_png(dir / "plots" / png)) << png;
    }
  }

  // Default output directory: results/<file stem>/ under the working directory.
  const ProcessResult d = run_process("/usr/bin/python3", {plot, "out/sweep.h5"}, dir.path());
  ASSERT_EQ(d.exit_code, 0) << d.describe();
  EXPECT_TRUE(fs::exists(dir / "results/sweep/latency_cdf.png")) << d.describe();
  EXPECT_TRUE(fs::exists(dir / "results/sweep/timeline.png")) << d.describe();

  // One run (no rate sweep): no throughput plot.
  write_text(dir / "one.toml", costmodel_sweep().substr(0, costmodel_sweep().find("[sweep]")));
  ASSERT_EQ(
      run_lorasched({"run", "-q", "one.toml", "-o", "out/one.h5"}, dir.path(), kEnv).exit_code, 0);
  const ProcessResult o =
      run_process("/usr/bin/python3", {plot, "out/one.h5", "--out", "one"}, dir.path());
  ASSERT_EQ(o.exit_code, 0) << o.describe();
  EXPECT_TRUE(fs::exists(dir / "one/timeline.png"));
  EXPECT_FALSE(fs::exists(dir / "one/throughput.png"));

  // A .partial is refused with a clear message, and nothing is written.
  fs::copy_file(dir / "out/sweep.h5", dir / "out/copy.h5.partial");
  const ProcessResult q = run_process(
      "/usr/bin/python3", {plot, "out/copy.h5.partial", "--out", "partial"}, dir.path());
  EXPECT_EQ(q.exit_code, 2) << q.describe();
  EXPECT_NE(q.err.find("out/copy.h5.partial"), std::string::npos) << q.describe();
  EXPECT_NE(q.err.find(".partial"), std::string::npos) << q.describe();
  EXPECT_FALSE(fs::exists(dir / "partial"));
  // Not HDF5 either.
  write_text(dir / "notes.h5", "plain text\n");
  const ProcessResult t =
      run_process("/usr/bin/python3", {plot, "notes.h5", "--out", "notes"}, dir.path());
  EXPECT_EQ(t.exit_code, 2) << t.describe();
  EXPECT_NE(t.err.find("not an HDF5 file"), std::string::npos) << t.describe();
}

}  // namespace
}  // namespace lorasched::test
