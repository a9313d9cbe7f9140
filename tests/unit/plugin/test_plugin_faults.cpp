// Deliberately broken plugins (tests/fixtures/plugins) against the loader, the engine and the
// CLI: every fault is a PluginError (exit code 3) naming the file or the plugin and the
// fault, never a crash, and a failed run leaves no final results file.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/config/experiment.hpp"
#include "core/plugin/loader.hpp"
#include "lorasched/plugin/testkit.hpp"

namespace lorasched::test {
namespace {

const fs::path kDir = LORASCHED_TEST_PLUGIN_DIR;

fs::path lib(const std::string& name) { return kDir / ("liblorasched-scheduler-" + name + ".so"); }

// Runs `f`, expects a PluginError (exit code 3, not an InputError) whose text holds every
// part of `parts`; returns the text.
template <class F>
std::string expect_plugin_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const PluginError& e) {
    EXPECT_EQ(e.code(), ExitCode::plugin);
    const std::string what = e.what();
    for (const auto& p : parts)
      EXPECT_NE(what.find(p), std::string::npos) << "lacks \"" << p << "\": " << what;
    return what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected PluginError, got another exception: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected PluginError, nothing thrown";
  return {};
}

api::CreateArgs create_args(const api::PluginInfo& info,
                            const std::map<std::string, api::ParamValue>& params = {}) {
  api::CreateArgs args;
  args.params = testkit::params_for(info, params);
  args.seed = 1;
  args.replica = 0;
  args.num_adapters = 4;
  args.limits.max_adapters_per_batch = 2;
  return args;
}

// ---- the loader --------------------------------------------------------------------------------

TEST(Loader, FixturesWereBuilt) {
  for (const char* n :
       {"empty", "bad-version", "throwing-factory", "plan-throws", "invalid-plan", "garbage"})
    EXPECT_TRUE(fs::exists(lib(n))) << lib(n);
}

TEST(Loader, MissingFile) {
  expect_plugin_error([] { PluginRegistry::open(lib("does-not-exist")); },
                      {lib("does-not-exist").string(), "does not exist"});
}

TEST(Loader, LibraryExportingNothing) {
  expect_plugin_error([] { PluginRegistry::open(lib("empty")); },
                      {lib("empty").string(), "does not export 'lorasched_plugin_api_version'"});
  PluginRegistry registry({kDir});
  expect_plugin_error([&] { registry.find(api::PluginKind::scheduler, "empty"); },
                      {lib("empty").string(), "does not export"});
}

TEST(Loader, WrongApiVersion) {
  expect_plugin_error([] { PluginRegistry::open(lib("bad-version")); },
                      {lib("bad-version").string(), "plugin API version 999",
                       "needs version " + std::to_string(api::kApiVersion)});
  PluginRegistry registry({kDir});
  expect_plugin_error([&] { registry.find(api::PluginKind::scheduler, "bad-version"); },
                      {lib("bad-version").string(), "999"});
}

// A file named like a plugin that is not one: the message says what is wrong with it, not
// Boost.DLL's "Bad file descriptor".
TEST(Loader, NotASharedLibrary) {
  const std::vector<std::string> parts = {lib("garbage").string(), "could not be loaded",
                                          "not a shared library (no ELF header"};
  EXPECT_EQ(expect_plugin_error([] { PluginRegistry::open(lib("garbage")); }, parts)
                .find("Bad file descriptor"),
            std::string::npos);
  PluginRegistry registry({kDir});
  expect_plugin_error([&] { registry.find(api::PluginKind::scheduler, "garbage"); }, parts);
  // By path, as an experiment file may name it.
  expect_plugin_error([&] { registry.find(api::PluginKind::scheduler, lib("garbage").string()); },
                      parts);
}

// An ELF file dlopen refuses: the reason is dlopen's own (here a relocatable object, as a .o
// renamed by mistake: the ELF type patched to ET_REL).
TEST(Loader, ElfFileDlopenRefusesGivesDlopensReason) {
  ScratchDir dir;
  std::string bytes = slurp(lib("empty"));
  ASSERT_GT(bytes.size(), 64u);
  ASSERT_EQ(bytes.substr(0, 4),
            "\x7f"
            "ELF");
  bytes[16] = 1;  // e_type (little-endian u16 at offset 16): ET_REL
  bytes[17] = 0;
  const fs::path obj = dir / "liblorasched-scheduler-object.so";
  write_text(obj, bytes);
  const std::string what = expect_plugin_error([&] { PluginRegistry::open(obj); },
                                               {obj.string(), "could not be loaded: "});
  EXPECT_EQ(what.find("Bad file descriptor"), std::string::npos) << what;
  EXPECT_EQ(what.find("no ELF header"), std::string::npos) << what;
  EXPECT_NE(what.find("ET_DYN"), std::string::npos)
      << what;  // glibc's "only ET_DYN and ET_EXEC..."
  // A directory named like a plugin.
  fs::create_directories(dir / "liblorasched-scheduler-dir.so");
  expect_plugin_error([&] { PluginRegistry::open(dir / "liblorasched-scheduler-dir.so"); },
                      {"is a directory"});
}

TEST(Loader, FactoryThrowsIsAPluginFaultNotBadInput) {
  PluginRegistry registry({kDir});
  auto l = registry.find(api::PluginKind::scheduler, "throwing-factory");
  ASSERT_TRUE(l);
  const std::string what =
      expect_plugin_error([&] { (void)instantiate<api::Scheduler>(l, create_args(l->info)); },
                          {"scheduler 'throwing-factory'", lib("throwing-factory").string(),
                           "failed at creation", "factory exploded on purpose"});
  // The factory's std::runtime_error is not std::invalid_argument: no "bad parameters" path.
  try {
    (void)instantiate<api::Scheduler>(l, create_args(l->info));
  } catch (const PluginArgumentError& e) {
    ADD_FAILURE() << "a runtime_error in the factory was reported as bad parameters: " << e.what();
  } catch (const PluginError&) {
  }
}

TEST(Loader, WrongKindIsRefused) {
  PluginRegistry registry({kDir});
  auto l = registry.find(api::PluginKind::threshold, lib("plan-throws").string());
  ASSERT_TRUE(l);
  expect_plugin_error(
      [&] { (void)instantiate<api::Threshold>(l, create_args(l->info)); },
      {"scheduler 'plan-throws'", "is a scheduler plugin, but a threshold was asked for"});
}

TEST(Loader, PlanThrowsComesBackAsAnErrorValue) {
  PluginRegistry registry({kDir});
  auto l = registry.find(api::PluginKind::scheduler, "plan-throws");
  auto s = instantiate<api::Scheduler>(l, create_args(l->info));
  testkit::ReplicaBuilder b(4);
  b.add(0, 0.0).add(1, 0.1);
  auto r = s->checked_plan(b.view());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("plan exploded on purpose"), std::string::npos) << r.error();
}

struct InvalidCase {
  std::string fault;
  std::string expected;  // validate_plan's text
};

const std::vector<InvalidCase> kInvalid = {
    {"unknown-request", "plan lists request 987654321, which is not queued on replica 0"},
    {"merged-other-adapter", "merged plan on adapter 0 lists request 1 of adapter 1"},
    {"too-many-adapters", "unmerged plan holds requests of 3 adapters, over the limit of 2"},
    {"duplicate", "plan lists request 0 twice"},
};

TEST(Loader, InvalidPlansAreCaughtByValidatePlan) {
  PluginRegistry registry({kDir});
  auto l = registry.find(api::PluginKind::scheduler, "invalid-plan");
  for (const auto& c : kInvalid) {
    SCOPED_TRACE(c.fault);
    auto s = instantiate<api::Scheduler>(l, create_args(l->info, {{"fault", c.fault}}));
    testkit::ReplicaBuilder b(4);
    b.add(0, 0.0).add(1, 0.1).add(2, 0.2);
    api::ReplicaLimits limits;
    limits.max_adapters_per_batch = 2;
    b.limits(limits);
    auto r = s->checked_plan(b.view());
    ASSERT_TRUE(r.is_ok()) << r.error();
    const api::Status st = api::validate_plan(b.view(), r.value());
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find(c.expected), std::string::npos) << st.message();
  }
}

TEST(Loader, ScanListsLoadableAndReportsBrokenLibraries) {
  PluginRegistry registry({kDir});
  const auto libs = registry.scan();
  std::vector<std::string> names;
  for (const auto& x : libs) names.push_back(x->info.name);
  for (const char* n : {"throwing-factory", "plan-throws", "invalid-plan"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  for (const char* n : {"empty", "bad-version", "garbage"})
    EXPECT_EQ(std::find(names.begin(), names.end(), n), names.end()) << n;
  std::string problems;
  for (const auto& p : registry.scan_problems()) problems += p + "\n";
  for (const char* n : {"empty", "bad-version", "garbage"})
    EXPECT_NE(problems.find(lib(n).string()), std::string::npos) << n << " not reported:\n"
                                                                 << problems;
}

// ---- the engine -------------------------------------------------------------------------------

std::string experiment_text(const std::string& scheduler_table) {
  return R"([run]
name = "faulty"
seed = 7
[adapters]
count = 4
[workload]
rate = 50.0
num_requests = 40
prompt = 16
output = 4
[engine]
max_adapters_per_batch = 2
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
)" + scheduler_table;
}

TEST(Engine, PlanThrowsStopsTheRunWithAPluginError) {
  const auto exps =
      parse_experiments(experiment_text("[scheduler]\nplugin = \"plan-throws\"\n"), "test.toml");
  PluginRegistry registry(plugin_search_path({kDir}));
  Simulation sim(exps.at(0), registry);
  expect_plugin_error([&] { sim.run(); }, {"scheduler 'plan-throws'", lib("plan-throws").string(),
                                           "failed to plan", "plan exploded on purpose"});
}

TEST(Engine, FactoryThrowsFailsBeforeAnyWork) {
  const auto exps = parse_experiments(
      experiment_text("[scheduler]\nplugin = \"throwing-factory\"\n"), "test.toml");
  PluginRegistry registry(plugin_search_path({kDir}));
  expect_plugin_error([&] { Simulation sim(exps.at(0), registry, /*dry_run=*/true); },
                      {"scheduler 'throwing-factory'", "factory exploded on purpose"});
}

TEST(Engine, InvalidPlansStopTheRunWithAPluginError) {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"unknown-request", "which is not queued on replica 0"},
      {"merged-other-adapter", "merged plan on adapter"},
      {"too-many-adapters", "over the limit of 2 adapters per batch"},
      {"duplicate", "twice"}};
  for (const auto& [fault, text] : expected) {
    SCOPED_TRACE(fault);
    const auto exps = parse_experiments(
        experiment_text("[scheduler]\nplugin = \"invalid-plan\"\nfault = \"" + fault + "\"\n"),
        "test.toml");
    PluginRegistry registry(plugin_search_path({kDir}));
    Simulation sim(exps.at(0), registry);
    expect_plugin_error([&] { sim.run(); },
                        {"scheduler 'invalid-plan'", lib("invalid-plan").string(),
                         "returned an invalid plan", text});
  }
}

// ---- the CLI ------------------------------------------------------------------------------------

struct CliCase {
  std::string name;
  std::string plugin;  // what [scheduler] plugin says: a name or a path
  std::string params;  // more lines of [scheduler]
  std::vector<std::string> message;
  bool fails_during_run;  // after the results file was opened (a failed .partial may remain)
};

void PrintTo(const CliCase& c, std::ostream* os) { *os << c.name; }

std::vector<CliCase> cli_cases() {
  return {
      {"empty", "empty", "", {lib("empty").string(), "does not export"}, false},
      {"bad_version", "bad-version", "", {lib("bad-version").string(), "API version 999"}, false},
      {"garbage",
       "garbage",
       "",
       {lib("garbage").string(), "could not be loaded", "not a shared library"},
       false},
      {"garbage_by_path",
       lib("garbage").string(),
       "",
       {lib("garbage").string(), "could not be loaded", "not a shared library"},
       false},
      {"throwing_factory",
       "throwing-factory",
       "",
       {"scheduler 'throwing-factory'", "failed at creation", "factory exploded on purpose"},
       false},
      {"plan_throws",
       "plan-throws",
       "",
       {"scheduler 'plan-throws'", "failed to plan", "plan exploded on purpose"},
       true},
      {"invalid_plan_unknown_request",
       "invalid-plan",
       "fault = \"unknown-request\"\n",
       {"scheduler 'invalid-plan'", "invalid plan", "request 987654321, which is not queued"},
       true},
      {"invalid_plan_merged_other_adapter",
       "invalid-plan",
       "fault = \"merged-other-adapter\"\n",
       {"scheduler 'invalid-plan'", "invalid plan", "merged plan on adapter", "of adapter"},
       true},
      {"invalid_plan_too_many_adapters",
       "invalid-plan",
       "fault = \"too-many-adapters\"\n",
       {"scheduler 'invalid-plan'", "invalid plan", "over the limit of 2 adapters per batch"},
       true},
      {"invalid_plan_duplicate",
       "invalid-plan",
       "fault = \"duplicate\"\n",
       {"scheduler 'invalid-plan'", "invalid plan", "twice"},
       true},
      {"invalid_plan_by_path",
       lib("invalid-plan").string(),
       "fault = \"duplicate\"\n",
       {"scheduler 'invalid-plan'", lib("invalid-plan").string(), "twice"},
       true},
  };
}

class BrokenPluginCli : public testing::TestWithParam<CliCase> {};

TEST_P(BrokenPluginCli, ExitsThreeAndLeavesNoResults) {
  const CliCase& c = GetParam();
  ScratchDir dir;
  std::string text = experiment_text("[scheduler]\nplugin = \"" + c.plugin + "\"\n" + c.params);
  text = "[plugins]\npaths = [\"" + kDir.string() + "\"]\n" + text;
  // [run] output: out/faulty.h5
  text.replace(text.find("seed = 7"), 8, "seed = 7\noutput = \"out/faulty.h5\"");
  write_text(dir / "exp.toml", text);
  const ProcessResult r =
      run_lorasched({"run", "exp.toml"}, dir.path(), {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  ASSERT_EQ(r.signal, 0) << r.describe();
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  for (const auto& part : c.message)
    EXPECT_NE(r.err.find(part), std::string::npos) << "lacks " << part << "\n" << r.describe();
  EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "out/faulty.h5")) << "final results file after a failed run";
  const fs::path partial = dir / "out/faulty.h5.partial";
  if (fs::exists(partial)) {
    EXPECT_TRUE(c.fails_during_run) << "a .partial was created before the plugin was checked";
    EXPECT_EQ(root_string_attr(partial, "status"), "failed");
    const auto error = root_string_attr(partial, "error");
    ASSERT_TRUE(error.has_value());
    EXPECT_NE(r.err.find(*error), std::string::npos) << "stored error: " << *error << "\n"
                                                     << r.describe();
  }
  for (const auto& f : results_files(dir.path()))
    EXPECT_EQ(f, partial) << "unexpected results file";

  // validate finds the faults it can find without running (all but plan-time ones).
  const ProcessResult v = run_lorasched({"validate", "exp.toml"}, dir.path(),
                                        {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  EXPECT_EQ(v.exit_code, c.fails_during_run ? 0 : 3) << v.describe();
}

INSTANTIATE_TEST_SUITE_P(Faults, BrokenPluginCli, testing::ValuesIn(cli_cases()),
                         [](const testing::TestParamInfo<CliCase>& p) { return p.param.name; });

// `lorasched plugins --path DIR` lists the usable plugins there and warns about the broken
// ones (naming their files) without failing.
TEST(PluginsCommand, WarnsAboutBrokenLibraries) {
  ScratchDir dir;
  const ProcessResult r = run_lorasched({"plugins", "--path", kDir.string()}, dir.path(),
                                        {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  for (const char* n : {"plan-throws", "invalid-plan", "throwing-factory", "dlora"})
    EXPECT_NE(r.out.find(n), std::string::npos) << n << "\n" << r.describe();
  for (const char* n : {"empty", "bad-version", "garbage"})
    EXPECT_NE(r.err.find("warning: plugin " + lib(n).string()), std::string::npos) << n << "\n"
                                                                                   << r.describe();
}

// A migration policy unit-tested with the test kit sees the link the simulator gives it by
// default ([cluster] link_gbps: dLoRA's 32 GiB/s), unless the test sets another.
TEST(Testkit, ClusterBuilderLinkDefaultsToTheSimulatorsAndCanBeSet) {
  testkit::ClusterBuilder c(2, 3);
  EXPECT_DOUBLE_EQ(c.view().link_bandwidth, ClusterSection{}.link_gbps * 1e9);
  EXPECT_DOUBLE_EQ(c.view().link_bandwidth, 34359738368.0);  // 2^35 B/s
  c.link_bandwidth(1e9).kv_block_bytes(4096);
  EXPECT_EQ(c.view().link_bandwidth, 1e9);
  EXPECT_EQ(c.view().kv_block_bytes, 4096);
}

}  // namespace
}  // namespace lorasched::test
