#include <sys/wait.h>
#include <unistd.h>

#include <H5Cpp.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/common/error.hpp"
#include "core/metrics/fields.hpp"
#include "core/metrics/h5.hpp"
#include "core/metrics/summary.hpp"
#include "tests/common/record_compare.hpp"

namespace lorasched {
namespace {

namespace fs = std::filesystem;

// ---- fixtures ------------------------------------------------------------------------------

class H5Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           fmt::format("lorasched-test-metrics-{}-{}", ::getpid(), info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

// Every field distinct and derived from (run, row), some times NaN.
RunRecords make_records(int run, size_t requests, size_t iterations, size_t events,
                        size_t batches) {
  RunRecords r;
  for (size_t i = 0; i < requests; ++i) {
    RequestRecord q;
    const double k = double(i) + 1000.0 * run;
    q.id = int64_t(i) + (int64_t(1) << 40);
    q.adapter = int32_t(i % 97) + run;
    q.replica = int32_t(i % 3);
    q.arrival = 0.5 * k;
    q.first_scheduled = 0.5 * k + 0.01;
    q.first_token = (i % 5 == 4) ? kNoTime : 0.5 * k + 0.02;
    q.finish = (i % 5 == 4) ? kNoTime : 0.5 * k + 1.0 / 3.0;
    q.prompt_tokens = int32_t(100 + i);
    q.output_tokens = int32_t(1 + i % 50);
    q.queueing_delay = (i % 7 == 6) ? kNoTime : 0.01;
    q.exec_time = 0.25 * k;
    q.migrations = int32_t(i % 2);
    q.preemptions = int32_t(i % 4);
    q.status = int8_t(i % 4);
    r.requests.push_back(q);
  }
  for (size_t i = 0; i < iterations; ++i) {
    IterationRecord it;
    it.replica = int32_t(i % 2);
    it.iteration = int64_t(i) * 3 + run;
    it.start = 0.1 * double(i);
    it.switch_time = 0.001 * double(i % 10);
    it.duration = 0.02 + 1e-9 * double(i);
    it.mode = int8_t(i % 2);
    it.merged_adapter = (i % 2) ? int32_t(i % 13) : -1;
    it.batch_size = int32_t(i % 33);
    it.prefill_tokens = int32_t(i * 7);
    it.decode_tokens = int32_t(i * 5);
    it.distinct_adapters = int32_t(i % 9);
    it.queued = int32_t(i % 17);
    it.kv_blocks_used = int64_t(i) * 1000 + (int64_t(1) << 35);
    it.alpha = (i % 3 == 0) ? kNoTime : 0.5;
    it.beta = (i % 3 == 0) ? kNoTime : 1.5 + double(i);
    it.decision_wall_us = 12.5 + double(i);
    r.iterations.push_back(it);
  }
  for (size_t i = 0; i < events; ++i) {
    EventRecord e;
    e.time = 0.3 * double(i);
    e.replica = int32_t(i % 4);
    e.kind = int8_t(i % kNumEventKinds);
    e.adapter = int32_t(i) - 1;
    e.request = int64_t(i) * 11;
    e.duration = 1e-3 * double(i);
    e.bytes = int64_t(i) << 30;
    e.other_replica = int32_t(i % 4) - 1;
    e.value = (i % 2) ? kNoTime : double(i);
    e.value2 = -double(i);
    r.events.push_back(e);
  }
  for (size_t i = 0; i < batches; ++i) {
    BatchLogRecord b;
    b.iteration = int64_t(i / 4);
    b.replica = int32_t(i % 2);
    b.request = int64_t(i) * 3 + run;
    b.position = int32_t(i % 4);
    r.batches.push_back(b);
  }
  return r;
}

RunAttributes make_attrs(int run) {
  RunAttributes a;
  a.label = fmt::format("scheduler.plugin=dlora workload.rate={}", run + 1);
  a.experiment_path = "experiments/dlora.toml";
  a.experiment_toml = "[workload]\nrate = 2\n# µ ✓ unicode\n" + std::string(100000, 'x');
  a.version = "0.1.0";
  a.git_revision = "0123456789ab";
  a.plugins = {{"scheduler", "dlora api=1 path=/x/liblorasched-scheduler-dlora.so"},
               {"dispatcher", "round_robin api=1 path=builtin"}};
  a.seed = run == 0 ? ~uint64_t(0) : uint64_t(run);
  a.executor = "sim";
  a.device = "cost-profile a100";
  a.host = "testhost";
  a.extra = {{"zeta", "last letter first"}, {"sweep.point", std::to_string(run)}};
  return a;
}

// Every field of every table, wall-clock ones included (they round-trip too).
void expect_equal(const RunRecords& a, const RunRecords& b) {
  test::expect_same_records(a, b, test::Fields::all);
}
void expect_equal(const Summary& a, const Summary& b) {
  test::expect_same_summary(a, b, test::Fields::all);
}

std::string error_of(const fs::path& p) {
  try {
    read_results(p);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string root_attr(const fs::path& p, const char* name) {
  H5::H5File f(p.string(), H5F_ACC_RDONLY);
  H5::Attribute a = f.openGroup("/").openAttribute(name);
  std::string v;
  a.read(a.getStrType(), v);
  return v;
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// ---- round trip ----------------------------------------------------------------------------

TEST_F(H5Test, RoundTripSeveralRuns) {
  const fs::path path = dir_ / "sub" / "dir" / "sweep.h5";  // parents created
  struct Run {
    std::string group;
    RunAttributes attrs;
    RunRecords records;
    bool log_batches;
  };
  std::vector<Run> runs{
      {"000", make_attrs(0), make_records(0, 5000, 300, 70, 1200), true},  // > one chunk
      {"001", make_attrs(1), make_records(1, 20, 10, 26, 40), false},      // no batch log
      {"002", make_attrs(2), make_records(2, 0, 0, 0, 0), true},           // empty datasets
      {"003", RunAttributes{}, make_records(3, 0, 0, 0, 0), false},        // empty everything
  };
  {
    ResultsWriter w(path);
    for (auto& r : runs) {
      Summary s = summarize(r.records);
      s.wall_seconds = 1.5;
      w.write_run(r.group, r.attrs, r.records, s, r.log_batches);
    }
    w.commit();
  }
  const auto stored = read_results(path);
  ASSERT_EQ(stored.size(), runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    SCOPED_TRACE(runs[i].group);
    EXPECT_EQ(stored[i].group, runs[i].group);
    EXPECT_EQ(stored[i].attrs, runs[i].attrs);  // plugins and extras in written order
    RunRecords expected = runs[i].records;
    if (!runs[i].log_batches) expected.batches.clear();
    expect_equal(stored[i].records, expected);
    Summary s = summarize(runs[i].records);
    s.wall_seconds = 1.5;
    expect_equal(stored[i].summary, s);
  }
  EXPECT_TRUE(std::isnan(stored[2].summary.latency_mean));
}

// Rows whose every field (found through the field table, so a field added later is filled
// too) holds a value that differs between fields and rows; enum fields cycle through their
// values, every fourth double is NaN.
template <class Record>
std::vector<Record> every_field_rows(size_t n) {
  std::vector<Record> rows(n);
  for (size_t i = 0; i < n; ++i) {
    int k = 0;
    RecordTable<Record>::for_each([&](const FieldInfo& f, auto member) {
      using T = std::remove_reference_t<decltype(rows[i].*member)>;
      ++k;
      if (f.enumeration != FieldEnum::none)
        rows[i].*member = static_cast<T>((i + size_t(k)) % enum_names(f.enumeration).size());
      else if constexpr (std::is_same_v<T, double>)
        rows[i].*member = (i % 4 == 3) ? kNoTime : 0.25 * double(i) + 1e-3 * k;
      else
        rows[i].*member = static_cast<T>(int64_t(i) * 31 + k);
    });
  }
  return rows;
}

TEST_F(H5Test, EveryFieldOfTheFieldTablesRoundTrips) {
  RunRecords records;
  auto table = [](const auto& rows) {
    using Row = typename std::decay_t<decltype(rows)>::value_type;
    return RecordVector<Row>(rows.begin(), rows.end());
  };
  records.requests = table(every_field_rows<RequestRecord>(9));
  records.iterations = table(every_field_rows<IterationRecord>(9));
  records.events = table(every_field_rows<EventRecord>(2 * size_t(kNumEventKinds)));
  records.batches = table(every_field_rows<BatchLogRecord>(9));
  Summary summary = every_field_rows<Summary>(3)[1];
  const fs::path path = dir_ / "fields.h5";
  {
    ResultsWriter w(path);
    w.write_run("000", make_attrs(0), records, summary, /*log_batches=*/true);
    w.commit();
  }
  const auto stored = read_results(path);
  ASSERT_EQ(stored.size(), 1u);
  expect_equal(stored[0].records, records);
  expect_equal(stored[0].summary, summary);
}

TEST_F(H5Test, FinalNameAppearsOnlyAtCommit) {
  const fs::path path = dir_ / "run.h5";
  write_text(path, "old results");  // replaced at commit, not before
  ResultsWriter w(path);
  EXPECT_EQ(w.partial_path(), dir_ / "run.h5.partial");
  EXPECT_TRUE(fs::exists(w.partial_path()));
  EXPECT_EQ(root_attr(w.partial_path(), "status"), "incomplete");
  w.write_run("000", make_attrs(0), make_records(0, 3, 3, 3, 3), Summary{}, false);
  EXPECT_EQ(fs::file_size(path), std::string("old results").size());
  w.commit();
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(w.partial_path()));
  EXPECT_EQ(root_attr(path, "status"), "complete");
  EXPECT_EQ(root_attr(path, "format"), "lorasched-results");
  EXPECT_EQ(read_results(path).size(), 1u);
}

TEST_F(H5Test, StalePartialIsTruncated) {
  const fs::path path = dir_ / "run.h5";
  write_text(dir_ / "run.h5.partial", "garbage from a killed run");
  ResultsWriter w(path);
  w.commit();
  EXPECT_TRUE(read_results(path).empty());
}

TEST_F(H5Test, FailLeavesOnlyPartial) {
  const fs::path path = dir_ / "run.h5";
  {
    ResultsWriter w(path);
    w.write_run("000", make_attrs(0), make_records(0, 3, 3, 3, 3), Summary{}, true);
    w.fail("plugin dlora: invalid decision");
    w.fail("twice is harmless");
  }
  EXPECT_FALSE(fs::exists(path));
  const fs::path partial = dir_ / "run.h5.partial";
  ASSERT_TRUE(fs::exists(partial));
  EXPECT_EQ(root_attr(partial, "status"), "failed");
  EXPECT_EQ(root_attr(partial, "error"), "plugin dlora: invalid decision");
  std::string msg = error_of(partial);
  EXPECT_NE(msg.find(partial.string() + " is an incomplete run (.partial)"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("plugin dlora: invalid decision"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rerun it"), std::string::npos) << msg;
  msg = error_of(path);
  EXPECT_NE(msg.find(path.string() + ": no such file, but"), std::string::npos) << msg;
}

TEST_F(H5Test, DestructorLeavesIncompletePartial) {
  const fs::path path = dir_ / "run.h5";
  {
    ResultsWriter w(path);
    w.write_run("000", make_attrs(0), make_records(0, 3, 3, 3, 3), Summary{}, false);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(root_attr(dir_ / "run.h5.partial", "status"), "incomplete");
}

TEST_F(H5Test, KilledWriterLeavesReadableEarlierRuns) {
  const fs::path path = dir_ / "killed.h5";
  const RunRecords records = make_records(0, 100, 50, 20, 10);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      ResultsWriter w(path);
      w.write_run("000", make_attrs(0), records, summarize(records), false);
      ::_exit(0);  // killed: no close, no commit, no HDF5 atexit cleanup
    } catch (...) {
      ::_exit(1);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(fs::exists(path));
  const fs::path partial = dir_ / "killed.h5.partial";
  EXPECT_EQ(root_attr(partial, "status"), "incomplete");
  H5::H5File f(partial.string(), H5F_ACC_RDONLY);
  H5::DataSet ds = f.openDataSet("/runs/000/requests");
  hsize_t n = 0;
  ds.getSpace().getSimpleExtentDims(&n);
  EXPECT_EQ(n, 100u);
  EXPECT_NE(error_of(partial).find("incomplete run (.partial) (status incomplete)"),
            std::string::npos)
      << error_of(partial);
}

// ---- refusals ------------------------------------------------------------------------------

TEST_F(H5Test, RefusesBadFiles) {
  // Missing.
  std::string msg = error_of(dir_ / "missing.h5");
  EXPECT_EQ(msg, (dir_ / "missing.h5").string() + ": no such file");
  // Not HDF5.
  write_text(dir_ / "text.h5", "hello\n");
  msg = error_of(dir_ / "text.h5");
  EXPECT_EQ(msg, (dir_ / "text.h5").string() +
                     " is not an HDF5 file (expected a lorasched results file)");
  // HDF5 but not ours.
  { H5::H5File f((dir_ / "other.h5").string(), H5F_ACC_TRUNC); }
  msg = error_of(dir_ / "other.h5");
  EXPECT_NE(msg.find((dir_ / "other.h5").string() + " is not a lorasched results file"),
            std::string::npos)
      << msg;
  // Complete format, status incomplete (a .partial renamed by hand).
  {
    ResultsWriter w(dir_ / "inc.h5");
    w.write_run("000", make_attrs(0), make_records(0, 1, 1, 1, 1), Summary{}, false);
  }
  fs::rename(dir_ / "inc.h5.partial", dir_ / "inc.h5");
  msg = error_of(dir_ / "inc.h5");
  EXPECT_EQ(msg, (dir_ / "inc.h5").string() +
                     " is not a complete results file (status \"incomplete\"): the run was "
                     "killed or failed; rerun it");
  // HDF5, cut short (a copy interrupted, a disk filled up).
  {
    ResultsWriter w(dir_ / "full.h5");
    w.write_run("000", make_attrs(0), make_records(0, 2000, 100, 100, 0), Summary{}, false);
    w.commit();
  }
  fs::copy_file(dir_ / "full.h5", dir_ / "cut.h5");
  fs::resize_file(dir_ / "cut.h5", fs::file_size(dir_ / "cut.h5") / 2);
  msg = error_of(dir_ / "cut.h5");
  EXPECT_NE(msg.find((dir_ / "cut.h5").string() + ": cannot read the results file: "),
            std::string::npos)
      << msg;
  // A .partial that is not there.
  EXPECT_EQ(error_of(dir_ / "gone.h5.partial"),
            (dir_ / "gone.h5.partial").string() + ": no such file");
  // A directory.
  fs::create_directories(dir_ / "d.h5");
  EXPECT_EQ(error_of(dir_ / "d.h5"), (dir_ / "d.h5").string() + ": not a file");
  // Every refusal is an InputError: exit code 2.
  try {
    read_results(dir_ / "text.h5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::input);
  }
}

TEST_F(H5Test, RefusesNewerFormatVersion) {
  {
    ResultsWriter w(dir_ / "v.h5");
    w.commit();
  }
  {
    H5::H5File f((dir_ / "v.h5").string(), H5F_ACC_RDWR);
    H5::Attribute a = f.openGroup("/").openAttribute("format_version");
    int64_t v = 2;
    a.write(H5::PredType::NATIVE_INT64, &v);
  }
  EXPECT_NE(error_of(dir_ / "v.h5").find("results format version 2"), std::string::npos);
}

TEST_F(H5Test, WriterErrors) {
  write_text(dir_ / "file", "x");
  try {
    ResultsWriter w(dir_ / "file" / "run.h5");  // parent is a file
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::runtime);
    EXPECT_NE(std::string(e.what()).find("run.h5"), std::string::npos) << e.what();
  }
  ResultsWriter w(dir_ / "run.h5");
  RunRecords bad = make_records(0, 1, 0, 0, 0);
  bad.requests[0].status = 9;
  EXPECT_THROW(w.write_run("000", {}, bad, Summary{}, false), InternalError);
  w.write_run("001", {}, {}, Summary{}, false);
  EXPECT_THROW(w.write_run("001", {}, {}, Summary{}, false), InternalError);
  RunAttributes clash;
  clash.extra = {{"label", "x"}};
  EXPECT_THROW(w.write_run("002", clash, {}, Summary{}, false), InternalError);
  w.commit();
  EXPECT_THROW(w.write_run("003", {}, {}, Summary{}, false), InternalError);
  EXPECT_THROW(w.commit(), InternalError);
}

// ---- h5py sees names -----------------------------------------------------------------------

TEST_F(H5Test, H5pySeesFieldAndEnumNames) {
  const char* python = "/usr/bin/python3";
  if (!fs::exists(python) ||
      std::system(fmt::format("{} -c 'import h5py, numpy' >/dev/null 2>&1", python).c_str()) != 0)
    GTEST_SKIP() << "no /usr/bin/python3 with h5py and numpy";
  const fs::path path = dir_ / "py.h5";
  const RunRecords records = make_records(0, 200, 40, 26, 30);
  {
    ResultsWriter w(path);
    w.write_run("000", make_attrs(0), records, summarize(records), true);
    w.commit();
  }
  const fs::path script = dir_ / "check.py";
  write_text(script, R"PY(
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["status"] == "complete", f.attrs["status"]
assert f.attrs["format"] == "lorasched-results"
assert int(f.attrs["format_version"]) == 1
run = f["runs/000"]
assert run.attrs["label"] == "scheduler.plugin=dlora workload.rate=1"
assert run.attrs["plugin.scheduler"].startswith("dlora api=1")
assert int(run.attrs["seed"]) == 2**64 - 1
assert "µ" in run.attrs["experiment_toml"]
assert list(run.attrs)[:3] == ["label", "experiment_path", "experiment_toml"], list(run.attrs)
req = run["requests"]
assert req.dtype.names == ("id", "adapter", "replica", "arrival", "first_scheduled",
    "first_token", "finish", "prompt_tokens", "output_tokens", "queueing_delay", "exec_time",
    "migrations", "preemptions", "status"), req.dtype.names
assert req.compression == "gzip" and req.shuffle and req.chunks is not None
assert h5py.check_enum_dtype(req.dtype["status"]) == {
    "unfinished": 0, "finished": 1, "ignored": 2, "length_capped": 3}
it = run["iterations"]
assert it.dtype.names[:7] == ("replica", "iteration", "start", "switch_time", "duration", "merged_duration", "mode")
assert h5py.check_enum_dtype(it.dtype["mode"]) == {"unmerged": 0, "merged": 1, "mixed": 2}
ev = run["events"]
kinds = h5py.check_enum_dtype(ev.dtype["kind"])
assert kinds["merge"] == 0 and kinds["migrate_request"] == 7 and kinds["request_ignored"] == 12
assert kinds["relief"] == 13
assert len(kinds) == 15
assert ev.dtype.names == ("time", "replica", "kind", "adapter", "request", "duration", "bytes",
    "other_replica", "value", "value2"), ev.dtype.names
assert run["batches"].dtype.names == ("iteration", "replica", "request", "position")
r = req[:]
done = ((r["status"] == 1) | (r["status"] == 3)) & np.isfinite(r["finish"])
lat = r["finish"][done] - r["arrival"][done]
s = run["summary"].attrs
assert np.percentile(lat, 90) == s["latency_p90"], (np.percentile(lat, 90), s["latency_p90"])
assert np.percentile(lat, 99) == s["latency_p99"]
assert np.percentile(lat, 50) == s["latency_p50"]
assert abs(np.mean(lat / r["output_tokens"][done]) - s["per_token_latency_mean"]) < 1e-12
assert int(s["requests"]) == 200
assert np.isnan(r["first_token"][4])
print("ok")
)PY");
  const fs::path log = dir_ / "check.log";
  int rc = std::system(
      fmt::format("{} {} {} >{} 2>&1", python, script.string(), path.string(), log.string())
          .c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(rc, 0) << text.str();
  EXPECT_EQ(text.str(), "ok\n");
}

}  // namespace
}  // namespace lorasched
