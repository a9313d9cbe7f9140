// Kill safety (docs/hardening.md): `lorasched run` on a 3-point sweep is SIGKILLed at several
// points (during validation, mid-run, between runs, near the end, and at fixed delays); after
// each kill the final results name exists only for a run that completed, a .partial may
// exist and is refused by `lorasched report` (exit 2), and a rerun succeeds and leaves one
// complete file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "hardening/hardening_util.hpp"

namespace lorasched::test {
namespace {

constexpr int kRequests = 12000;

std::string trace_text() {
  std::string s = "arrival_s,adapter,prompt_tokens,output_tokens\n";
  char row[96];
  for (int i = 0; i < kRequests; ++i) {
    std::snprintf(row, sizeof(row), "%.2f,%d,%d,%d\n", i / 100.0, i % 8, 16 + i % 64, 4 + i % 12);
    s += row;
  }
  return s;
}

const char* kExperiment = R"([run]
name = "kill"
output = "out/kill.h5"
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
"run.seed" = [1, 2, 3]
)";

// True when `err` holds a progress line "[k/3] run.seed=k: NN% ..." of run k (mid-run).
bool mid_run(const std::string& err, int k) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "[%d/3] run.seed=%d: ", k, k);
  const std::string head = buf;
  for (size_t p = err.find(head); p != std::string::npos; p = err.find(head, p + 1)) {
    const size_t d = p + head.size();
    if (d < err.size() && err[d] >= '0' && err[d] <= '9') return true;
  }
  return false;
}

class KillSafety : public testing::Test {
 protected:
  void SetUp() override {
    write_text(dir_ / "exp.toml", kExperiment);
    write_text(dir_ / "trace.csv", trace_text());
  }

  fs::path final_file() const { return dir_ / "out/kill.h5"; }
  fs::path partial_file() const { return dir_ / "out/kill.h5.partial"; }

  Child start() {
    return Child(lorasched_binary(), {"run", "exp.toml"}, dir_.path(),
                 dir_ / ("capture" + std::to_string(count_++)));
  }

  // What must hold after any kill.
  void check_after_kill(const std::string& where) {
    SCOPED_TRACE(where);
    if (fs::exists(final_file())) {
      // Only a run that got as far as the rename: it must be complete.
      EXPECT_EQ(root_string_attr(final_file(), "status"), "complete");
      EXPECT_FALSE(fs::exists(partial_file())) << "both a final file and a .partial";
      const ProcessResult r = run_lorasched({"report", "out/kill.h5"}, dir_.path());
      EXPECT_EQ(r.exit_code, 0) << r.describe();
      fs::remove(final_file());  // the next kill starts from no final file
      return;
    }
    if (fs::exists(partial_file())) {
      const auto status = root_string_attr(partial_file(), "status");
      // A file killed in the middle of an HDF5 write may not open at all. If it opens, it is
      // "incomplete", or "complete" when the kill fell between the commit marking it complete
      // and the rename (no two file-system steps are atomic together); either way it is not
      // under the final name, and report refuses it below.
      if (status) {
        EXPECT_TRUE(*status == "incomplete" || *status == "complete") << *status;
      }
      const ProcessResult r = run_lorasched({"report", "out/kill.h5.partial"}, dir_.path());
      EXPECT_EQ(r.signal, 0) << r.describe();
      EXPECT_EQ(r.exit_code, 2) << r.describe();
      EXPECT_TRUE(contains(r.err, "kill.h5.partial is an incomplete run (.partial)")) << r.err;
      EXPECT_TRUE(contains(r.err, "rerun it")) << r.err;
    }
    const ProcessResult r = run_lorasched({"report", "out/kill.h5"}, dir_.path());
    EXPECT_EQ(r.signal, 0) << r.describe();
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, fs::exists(partial_file()) ? "an incomplete run" : "no such file"))
        << r.err;
  }

  // Starts a run, waits until `ready` holds for its stderr, kills it; returns its stderr.
  // `may_end`: the run may have ended by itself before the kill (after its last point).
  std::string kill_when(const std::string& where,
                        const std::function<bool(const std::string&)>& ready,
                        bool may_end = false) {
    Child c = start();
    std::string err;
    const bool reached = wait_until([&] {
      err = c.err();
      return ready(err) || !c.running();
    });
    EXPECT_TRUE(reached) << where << ": never reached\n" << err;
    EXPECT_TRUE(ready(c.err())) << where << ": the run ended early\n" << c.err() << c.out();
    const bool killed = c.kill_now();
    if (!may_end) {
      EXPECT_TRUE(killed) << where << ": the run ended before the kill\n" << c.err();
    }
    check_after_kill(where);
    return c.err();
  }

  ScratchDir dir_;
  int count_ = 0;
};

TEST_F(KillSafety, KilledAnywhereLeavesNoFinalFileAndARerunCompletes) {
  // 1. During validation: the trace is a FIFO nobody writes, so the first point's dry run
  //    blocks reading it, before the results file is created.
  fs::rename(dir_ / "trace.csv", dir_ / "trace.real");
  ASSERT_EQ(::mkfifo((dir_ / "trace.csv").c_str(), 0644), 0);
  {
    Child c = start();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ASSERT_TRUE(c.running()) << c.err();
    EXPECT_TRUE(c.kill_now());
    EXPECT_FALSE(contains(c.err(), "started")) << c.err();
    EXPECT_TRUE(lorasched::test::results_files(dir_.path()).empty())
        << "validation must not create a results file";
    check_after_kill("validation");
  }
  fs::remove(dir_ / "trace.csv");
  fs::rename(dir_ / "trace.real", dir_ / "trace.csv");

  // 2. Mid-run, in the first run (the .partial exists from its start on).
  kill_when("first run", [](const std::string& e) { return mid_run(e, 1); });
  EXPECT_TRUE(fs::exists(partial_file()));
  // 3. Between runs: right after the first run's "done".
  kill_when("between runs",
            [](const std::string& e) { return contains(e, "[1/3] run.seed=1: done"); });
  EXPECT_TRUE(fs::exists(partial_file()));
  // 4. Mid-run, in the second run, after the first was written.
  kill_when("second run", [](const std::string& e) { return mid_run(e, 2); });
  EXPECT_TRUE(fs::exists(partial_file()));
  // 5. At the very end: after the last run's "done" (writing, committing, or done).
  kill_when(
      "end", [](const std::string& e) { return contains(e, "[3/3] run.seed=3: done"); },
      /*may_end=*/true);
  // 6. At fixed delays from the start.
  for (const int ms : {30, 120, 400, 900}) {
    Child c = start();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    c.kill_now();
    check_after_kill("after " + std::to_string(ms) + " ms");
  }

  // The rerun completes: one complete file, no .partial, readable by report.
  const ProcessResult r = run_lorasched({"run", "exp.toml", "-q"}, dir_.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(fs::exists(final_file()));
  EXPECT_FALSE(fs::exists(partial_file()));
  EXPECT_EQ(root_string_attr(final_file(), "status"), "complete");
  const ProcessResult rep = run_lorasched({"report", "out/kill.h5", "--csv"}, dir_.path());
  EXPECT_EQ(rep.exit_code, 0) << rep.describe();
  for (const char* label : {"run.seed=1", "run.seed=2", "run.seed=3"})
    EXPECT_TRUE(contains(rep.out, label)) << rep.out;
}

// A sweep killed while the complete file of an earlier one exists leaves that file as it was
// (the new results replace it only at the commit's rename).
TEST_F(KillSafety, KillDoesNotTouchAnEarlierCompleteFile) {
  const ProcessResult first = run_lorasched({"run", "exp.toml", "-q"}, dir_.path());
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  const auto before = fs::last_write_time(final_file());
  const auto size = fs::file_size(final_file());
  Child c = start();
  wait_until([&] { return mid_run(c.err(), 2) || !c.running(); });
  EXPECT_TRUE(c.kill_now()) << c.err();
  ASSERT_TRUE(fs::exists(final_file()));
  EXPECT_EQ(fs::last_write_time(final_file()), before);
  EXPECT_EQ(fs::file_size(final_file()), size);
  EXPECT_EQ(root_string_attr(final_file(), "status"), "complete");
  EXPECT_TRUE(fs::exists(partial_file()));
  const ProcessResult rep = run_lorasched({"report", "out/kill.h5"}, dir_.path());
  EXPECT_EQ(rep.exit_code, 0) << rep.describe();
}

}  // namespace
}  // namespace lorasched::test
