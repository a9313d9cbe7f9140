// The plugin SDK as a researcher meets it (docs/plugin-guide.md): `lorasched new-plugin`
// writes exactly the files tests/sdk compiled and tested from the same templates, refuses bad
// input with exit code 2; the scaffolded plugins describe their parameters, have them checked
// at their line, and run next to dlora; a plugin built for the previous plugin API version is
// refused with exit code 3, naming the file and both versions; `cmake --install` lays out the
// SDK (plugin API and test kit headers only, CMake package) and the installed binary finds the
// built-in plugins in the install tree. The out-of-tree build against the install is
// scripts/sdk-check (run by .ci/run).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "core/common/error.hpp"
#include "core/plugin/loader.hpp"
#include "lorasched/plugin/api.hpp"

namespace lorasched::test {
namespace {

const fs::path kScaffold = LORASCHED_SDK_SCAFFOLD_DIR;
const fs::path kOldApiDir = LORASCHED_SDK_OLD_API_DIR;
const std::vector<std::string> kKinds = {"scheduler", "threshold", "migration", "dispatcher"};

// No plugin directories from the environment of whoever runs the tests.
ProcessResult lorasched(const std::vector<std::string>& args, const fs::path& cwd) {
  return run_lorasched(args, cwd, {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Relative path -> contents of every file under `dir`, but its build/ and results/.
std::map<std::string, std::string> files_under(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string rel = fs::relative(it->path(), dir).string();
    if (it->is_directory() && (rel == "build" || rel == "results")) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out[rel] = slurp(it->path());
  }
  return out;
}

std::vector<std::string> keys(const std::map<std::string, std::string>& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

// 1-based line of the first line of `text` holding `part`, 0 if none.
int line_of(const std::string& text, const std::string& part) {
  int line = 1;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(part) != std::string::npos) return line;
    ++line;
    start = end + 1;
  }
  return 0;
}

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "no \"" << from << "\" in the experiment";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// A scratch copy of a scaffold's experiment, its build/ pointing at the plugin built in tree.
void stage_experiment(const fs::path& scratch, const std::string& kind, const std::string& text) {
  write_text(scratch / "experiment.toml", text);
  fs::create_directory_symlink(kScaffold / ("sdk-" + kind) / "build", scratch / "build");
}

std::string scaffold_experiment(const std::string& kind) {
  return slurp(kScaffold / ("sdk-" + kind) / "experiment.toml");
}

// ---- lorasched new-plugin ---------------------------------------------------------------------

class NewPlugin : public testing::TestWithParam<std::string> {};

TEST_P(NewPlugin, WritesTheFilesTestedInTree) {
  const std::string kind = GetParam();
  ScratchDir s;
  const auto r =
      lorasched({"new-plugin", "--kind", kind, "--name", "sdk-" + kind, "plugin"}, s.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "cmake -S . -B build")) << r.out;
  const auto written = files_under(s / "plugin");
  const auto expected = files_under(kScaffold / ("sdk-" + kind));
  ASSERT_EQ(keys(written), keys(expected));
  for (const auto& [name, text] : expected)
    EXPECT_EQ(written.at(name), text) << name << " differs from the CMake rendering";
  EXPECT_TRUE(written.count("experiment.toml"));
  EXPECT_TRUE(written.count("CMakeLists.txt"));
  EXPECT_TRUE(written.count("sdk_" + kind + ".hpp"));
  EXPECT_TRUE(written.count("test_sdk_" + kind + ".cpp"));
}

INSTANTIATE_TEST_SUITE_P(Kinds, NewPlugin, testing::ValuesIn(kKinds));

TEST(NewPluginInput, RefusesAnUnknownKind) {
  ScratchDir s;
  const auto r = lorasched({"new-plugin", "--kind", "schedular", "--name", "x", "p"}, s.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "--kind 'schedular'")) << r.err;
  EXPECT_TRUE(contains(r.err, "did you mean 'scheduler'")) << r.err;
  EXPECT_FALSE(fs::exists(s / "p"));
}

TEST(NewPluginInput, RefusesBadNames) {
  ScratchDir s;
  for (const std::string name :
       {"MySched", "1st", "my_sched", "my--sched", "my-", "-my", "my sched", "", "my.sched"}) {
    const auto r = lorasched({"new-plugin", "--kind", "scheduler", "--name", name, "p"}, s.path());
    EXPECT_EQ(r.exit_code, 2) << "'" << name << "': " << r.describe();
    EXPECT_TRUE(contains(r.err, "--name")) << r.err;
    EXPECT_FALSE(fs::exists(s / "p")) << name;
  }
  for (const std::string name : {"a", "my-sched", "sjf2", "x-1-y"}) {
    const auto r = lorasched({"new-plugin", "--kind", "scheduler", "--name", name, name}, s.path());
    EXPECT_EQ(r.exit_code, 0) << "'" << name << "': " << r.describe();
  }
}

TEST(NewPluginInput, RefusesANonEmptyDirectoryUnlessForced) {
  ScratchDir s;
  write_text(s / "p" / "notes.txt", "mine");
  auto r = lorasched({"new-plugin", "--kind", "dispatcher", "--name", "p2c", "p"}, s.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "is not empty")) << r.err;
  EXPECT_FALSE(fs::exists(s / "p" / "CMakeLists.txt"));
  r = lorasched({"new-plugin", "--kind", "dispatcher", "--name", "p2c", "--force", "p"}, s.path());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(fs::exists(s / "p" / "CMakeLists.txt"));
  EXPECT_EQ(slurp(s / "p" / "notes.txt"), "mine");
}

TEST(NewPluginInput, RefusesAFileForADirectory) {
  ScratchDir s;
  write_text(s / "p", "a file");
  const auto r =
      lorasched({"new-plugin", "--kind", "scheduler", "--name", "x", "--force", "p"}, s.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "not a directory")) << r.err;
}

TEST(NewPluginInput, RefusesTheNameOfAPluginItWouldNotLoad) {
  // A built-in scheduler called dlora comes first in the search path: the new one would never load.
  ScratchDir s;
  const auto r = lorasched({"new-plugin", "--kind", "scheduler", "--name", "dlora", "p"}, s.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "there is a scheduler plugin 'dlora' already")) << r.err;
  EXPECT_FALSE(fs::exists(s / "p"));
}

TEST(NewPluginInput, MissingArgumentsAreBadInput) {
  ScratchDir s;
  const auto r = lorasched({"new-plugin", "--kind", "scheduler", "p"}, s.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
}

// ---- the scaffolded plugins -------------------------------------------------------------------

TEST(ScaffoldedPlugins, DescribeShowsTheirParameters) {
  ScratchDir s;
  const auto r = lorasched({"plugins", "--path", (kScaffold / "sdk-scheduler" / "build").string(),
                            "--describe", "sdk-scheduler"},
                           s.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "scheduler 'sdk-scheduler'")) << r.out;
  EXPECT_TRUE(contains(r.out, "merge_share (real in [0, 1], default 0.5)")) << r.out;
  EXPECT_TRUE(contains(r.out, "api version: " + std::to_string(api::kApiVersion))) << r.out;
  const auto t = lorasched({"plugins", "--path", (kScaffold / "sdk-threshold" / "build").string(),
                            "--describe", "sdk-threshold"},
                           s.path());
  ASSERT_EQ(t.exit_code, 0) << t.describe();
  EXPECT_TRUE(contains(t.out, "stay_ratio (real in [0, 1], default 0.5)")) << t.out;
}

class ScaffoldExperiment : public testing::TestWithParam<std::string> {};

TEST_P(ScaffoldExperiment, RunsNextToDlora) {
  const std::string kind = GetParam();
  ScratchDir s;
  stage_experiment(s.path(), kind, scaffold_experiment(kind));
  const auto r = lorasched({"run", "-q", "experiment.toml"}, s.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "sdk-" + kind)) << r.out;
  EXPECT_TRUE(contains(r.out, "dlora")) << r.out;
  EXPECT_TRUE(fs::exists(s / "results" / ("sdk-" + kind + ".h5")));
}

INSTANTIATE_TEST_SUITE_P(Kinds, ScaffoldExperiment, testing::ValuesIn(kKinds));

TEST(ScaffoldedPlugins, ParametersAreCheckedAtTheirLine) {
  {
    ScratchDir s;
    const std::string text =
        replace_once(scaffold_experiment("scheduler"), "merge_share = 0.5", "merge_share = 2.0");
    stage_experiment(s.path(), "scheduler", text);
    const auto r = lorasched({"validate", "experiment.toml"}, s.path());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    const std::string where =
        "experiment.toml:" + std::to_string(line_of(text, "merge_share = 2.0")) + ":";
    EXPECT_TRUE(contains(r.err, where)) << where << " not in " << r.err;
    EXPECT_TRUE(contains(r.err, "merge_share")) << r.err;
  }
  {
    ScratchDir s;
    const std::string text =
        replace_once(scaffold_experiment("scheduler"), "merge_share = 0.5", "merge_shar = 0.5");
    stage_experiment(s.path(), "scheduler", text);
    const auto r = lorasched({"validate", "experiment.toml"}, s.path());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    const std::string where =
        "experiment.toml:" + std::to_string(line_of(text, "merge_shar = 0.5")) + ":";
    EXPECT_TRUE(contains(r.err, where)) << where << " not in " << r.err;
    EXPECT_TRUE(contains(r.err, "did you mean 'merge_share'")) << r.err;
  }
  {
    // A value the specs allow but the constructor refuses (std::invalid_argument): exit 2 too.
    ScratchDir s;
    const std::string text =
        replace_once(scaffold_experiment("threshold"), "stay_ratio = 0.5", "stay_ratio = 1.0");
    stage_experiment(s.path(), "threshold", text);
    const auto r = lorasched({"validate", "experiment.toml"}, s.path());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, "stay_ratio must be below 1")) << r.err;
  }
}

// ---- the plugin API version -------------------------------------------------------------------

const fs::path kOldApi = kOldApiDir / "liblorasched-scheduler-old-api.so";
const std::string kOldVersionText =
    "plugin API version " + std::to_string(LORASCHED_SDK_PREVIOUS_API_VERSION);
const std::string kNeedsText = "needs version " + std::to_string(api::kApiVersion);

TEST(ApiVersion, TheFixtureIsThePreviousVersion) {
  static_assert(LORASCHED_SDK_PREVIOUS_API_VERSION == api::kApiVersion - 1);
  EXPECT_TRUE(fs::exists(kOldApi)) << kOldApi;
}

TEST(ApiVersion, TheLoaderRefusesThePreviousVersion) {
  try {
    PluginRegistry::open(kOldApi);
    ADD_FAILURE() << "a plugin of the previous API version was loaded";
  } catch (const PluginError& e) {
    EXPECT_EQ(e.code(), ExitCode::plugin);
    const std::string what = e.what();
    EXPECT_TRUE(contains(what, kOldApi.string())) << what;
    EXPECT_TRUE(contains(what, kOldVersionText)) << what;
    EXPECT_TRUE(contains(what, kNeedsText)) << what;
  }
}

TEST(ApiVersion, TheCliRefusesItWithExitCode3) {
  ScratchDir s;
  write_text(s / "old.toml",
             "[run]\nname = \"old\"\noutput = \"results/old.h5\"\n"
             "[model]\npreset = \"llama2-7b\"\n"
             "[workload]\nnum_requests = 10\n"
             "[cluster]\nexecutor = \"costmodel\"\ncostmodel = \"dlora-artifact\"\n"
             "[plugins]\npaths = [\"" +
                 kOldApiDir.string() +
                 "\"]\n"
                 "[scheduler]\nplugin = \"old-api\"\n");
  for (const char* cmd : {"run", "validate"}) {
    const auto r = lorasched({cmd, "old.toml"}, s.path());
    EXPECT_EQ(r.exit_code, 3) << cmd << ": " << r.describe();
    EXPECT_EQ(r.signal, 0);
    EXPECT_TRUE(contains(r.err, kOldApi.string())) << r.err;
    EXPECT_TRUE(contains(r.err, kOldVersionText)) << r.err;
    EXPECT_TRUE(contains(r.err, kNeedsText)) << r.err;
  }
  EXPECT_TRUE(results_files(s.path()).empty());
}

TEST(ApiVersion, PluginsListsTheRestAndWarns) {
  ScratchDir s;
  const auto r = lorasched({"plugins", "--path", kOldApiDir.string()}, s.path());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "dlora")) << r.out;
  EXPECT_TRUE(contains(r.err, "warning: plugin " + kOldApi.string())) << r.err;
  EXPECT_TRUE(contains(r.err, kOldVersionText)) << r.err;
}

TEST(ApiVersion, ThePackageAdvertisesIt) {
  const std::string config =
      slurp(fs::path(LORASCHED_BINARY_DIR) / "cmake" / "loraschedConfig.cmake");
  EXPECT_TRUE(
      contains(config, "set(LORASCHED_API_VERSION " + std::to_string(api::kApiVersion) + ")"))
      << config;
}

// ---- the install tree -------------------------------------------------------------------------

std::set<std::string> headers_under(const fs::path& dir) {
  std::set<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.insert(fs::relative(e.path(), dir).string());
  return out;
}

TEST(Install, LaysOutTheSdkAndFindsTheBuiltInPlugins) {
  ScratchDir s;
  const fs::path prefix = s / "prefix";
  const auto inst =
      run_process(LORASCHED_SDK_CMAKE_COMMAND,
                  {"--install", LORASCHED_BINARY_DIR, "--prefix", prefix.string()}, s.path());
  ASSERT_EQ(inst.exit_code, 0) << inst.describe();

  // Headers: the plugin API and the test kit, nothing else.
  std::set<std::string> expected = headers_under(source_dir() / "core" / "plugin" / "api");
  for (const auto& h : headers_under(source_dir() / "core" / "plugin" / "testkit"))
    expected.insert(h);
  EXPECT_EQ(headers_under(prefix / "include"), expected);
  EXPECT_TRUE(expected.count("lorasched/plugin/testkit.hpp"));

  const fs::path cmake_dir = prefix / "lib" / "cmake" / "lorasched";
  for (const char* f : {"loraschedConfig.cmake", "loraschedConfigVersion.cmake",
                        "loraschedTargets.cmake", "loraschedAddPlugin.cmake"})
    EXPECT_TRUE(fs::exists(cmake_dir / f)) << f;
  EXPECT_TRUE(fs::exists(prefix / "share" / "doc" / "lorasched" / "plugin-guide.md"));

  const fs::path dlora =
      prefix / "lib" / "lorasched" / "plugins" / "liblorasched-scheduler-dlora.so";
  ASSERT_TRUE(fs::exists(dlora));
  const auto r = run_process(prefix / "bin" / "lorasched", {"plugins", "--describe", "dlora"},
                             s.path(), {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "file: " + dlora.string())) << r.out;
}

}  // namespace
}  // namespace lorasched::test
