// Bad experiment files, as a user meets them: `lorasched run FILE` (and `validate FILE`) on
// a file with one fault each. Every row states the exit code, text the message must hold,
// and where the message must point: "@@" in a row's file text marks the expected
// FILE:LINE:COL (several marks: any of them). A failing row must leave no results file,
// neither NAME.h5 nor NAME.h5.partial.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace lorasched::test {
namespace {

// The head every row shares: results go to out/bad.h5 (relative to the working directory).
const std::string kRun = "[run]\nname = \"bad\"\noutput = \"out/bad.h5\"\n";
const std::string kCost = "[cluster]\nexecutor = \"costmodel\"\ncostmodel = \"dlora-artifact\"\n";
const std::string kWork = "[workload]\nnum_requests = 10\n";
const std::string kBase = kRun + kCost + kWork;

enum class Where {
  marks,      // FILE:LINE:COL of one of the @@ marks
  file_only,  // "FILE: " (the fault has no single line, e.g. the pool size)
  prefix,     // the message starts with `prefix`
  anywhere,   // no position promised (plugin lookup failures)
};

struct Row {
  std::string name;
  std::string text;  // file text with @@ marks; empty: no file is written
  int exit_code = 2;
  std::vector<std::string> message;  // substrings (compared with runs of spaces collapsed)
  Where where = Where::marks;
  std::vector<std::string> extra_args = {};
  std::string prefix = {};
  std::string file = "exp.toml";
};

// gtest prints a parameter in test logs; the row's name is enough.
void PrintTo(const Row& row, std::ostream* os) { *os << row.name; }

struct Pos {
  int line, col;
};

// Removes the @@ marks and returns their 1-based line and column in the cleaned text.
std::string strip_marks(const std::string& marked, std::vector<Pos>& marks) {
  std::string out;
  int line = 1, col = 1;
  for (size_t i = 0; i < marked.size();) {
    if (marked.compare(i, 2, "@@") == 0) {
      marks.push_back({line, col});
      i += 2;
      continue;
    }
    out.push_back(marked[i]);
    if (marked[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
    ++i;
  }
  return out;
}

std::string collapse_spaces(const std::string& s) {
  return std::regex_replace(s, std::regex(" {2,}"), " ");
}

std::vector<Row> rows() {
  std::vector<Row> r;
  // ---- TOML syntax --------------------------------------------------------------------------
  r.push_back(
      {"toml_syntax_error", kBase + "[engine@@\nmax_batch_size = 4\n", 2, {"table header"}});
  r.push_back({"toml_unterminated_string", kBase + "[engine]\npreemption = \"swap@@\n", 2, {}});
  // ---- unknown keys -------------------------------------------------------------------------
  r.push_back({"unknown_key_top_level",
               kBase + "[@@schedular]\nplugin = \"dlora\"\n",
               2,
               {"unknown key 'schedular' at the top level", "(did you mean 'scheduler'?)"}});
  r.push_back({"unknown_key_top_level_value",
               "@@colour = \"red\"\n" + kBase,
               2,
               {"unknown key 'colour' at the top level"}});
  r.push_back({"unknown_key_engine",
               kBase + "[engine]\n@@max_batch_sise = 4\n",
               2,
               {"unknown key 'max_batch_sise' in [engine]", "(did you mean 'max_batch_size'?)"}});
  r.push_back(
      {"unknown_key_popularity",
       kRun + kCost +
           "[workload]\nnum_requests = 10\n[workload.popularity]\nkind = \"zipf\"\n"
           "@@hot_cuont = 2\n",
       2,
       {"unknown key 'hot_cuont' in [workload.popularity]", "(did you mean 'hot_count'?)"}});
  r.push_back({"unknown_key_inline_popularity",
               kRun + kCost +
                   "[workload]\nnum_requests = 10\npopularity = { kind = \"zipf\", @@ss = 1.1 }\n",
               2,
               {"unknown key 'ss' in [workload.popularity]", "(did you mean 's'?)"}});
  // ---- wrong types --------------------------------------------------------------------------
  r.push_back({"type_string_for_integer",
               kBase + "[engine]\nmax_batch_size = @@\"8\"\n",
               2,
               {"[engine] max_batch_size must be an integer, got a string"}});
  r.push_back({"type_float_for_integer",
               kBase + "[engine]\nmax_batch_size = @@8.5\n",
               2,
               {"[engine] max_batch_size must be an integer, got a number"}});
  r.push_back({"type_table_for_number",
               kBase + "[engine]\nwatermark = @@{ value = 0.1 }\n",
               2,
               {"[engine] watermark must be a number, got a table"}});
  r.push_back({"type_string_for_number",
               kRun + kCost + "[workload]\nnum_requests = 10\nrate = @@\"fast\"\n",
               2,
               {"[workload] rate must be a number, got a string"}});
  r.push_back({"type_integer_for_bool",
               kBase + "[metrics]\nlog_batches = @@1\n",
               2,
               {"[metrics] log_batches must be true or false, got an integer"}});
  // ---- out of range -------------------------------------------------------------------------
  r.push_back({"range_max_batch_size_zero",
               kBase + "[engine]\nmax_batch_size = @@0\n",
               2,
               {"[engine] max_batch_size must be >= 1 and <= 65536 (got 0)"}});
  r.push_back({"range_rate_zero",
               kRun + kCost + "[workload]\nnum_requests = 10\nrate = @@0\n",
               2,
               {"[workload] rate must be > 0", "(got 0)"}});
  r.push_back({"range_slo_per_token_zero",
               kBase + "[metrics]\nslo_per_token_s = @@0\n",
               2,
               {"[metrics] slo_per_token_s must be > 0", "(got 0)"}});
  r.push_back({"range_warmup_negative",
               kBase + "[metrics]\nwarmup_s = @@-1\n",
               2,
               {"[metrics] warmup_s must be >= 0", "(got -1)"}});
  r.push_back({"range_watermark",
               kBase + "[engine]\nwatermark = @@0.9\n",
               2,
               {"[engine] watermark must be >= 0 and <= 0.5 (got 0.9)"}});
  r.push_back({"range_negative_seed",
               "[run]\nname = \"bad\"\noutput = \"out/bad.h5\"\nseed = @@-1\n" + kCost + kWork,
               2,
               {"[run] seed must be >= 0 (got -1)"}});
  r.push_back({"range_num_requests_zero",
               kRun + kCost + "[workload]\nnum_requests = @@0\n",
               2,
               {"[workload] num_requests must be >= 1"}});
  // ---- choices ------------------------------------------------------------------------------
  r.push_back({"choice_executor",
               kRun + "[cluster]\nexecutor = @@\"gpu\"\n" + kWork,
               2,
               {"[cluster] executor must be one of cpu, costmodel, cuda, got \"gpu\"",
                "(did you mean 'cpu'?)"}});
  r.push_back(
      {"choice_arrival",
       kRun + kCost + "[workload]\nnum_requests = 10\narrival = @@\"poison\"\n",
       2,
       {"[workload] arrival must be one of", "got \"poison\"", "(did you mean 'poisson'?)"}});
  r.push_back({"choice_preemption",
               kBase + "[engine]\npreemption = @@\"swapp\"\n",
               2,
               {"[engine] preemption must be one of recompute, swap", "(did you mean 'swap'?)"}});
  r.push_back({"choice_migration_kv",
               kRun + kCost + "migration_kv = @@\"transfr\"\n" + kWork,
               2,
               {"[cluster] migration_kv must be one of recompute, transfer",
                "(did you mean 'transfer'?)"}});
  r.push_back({"choice_adapter_source",
               kBase + "[adapters]\nsource = @@\"pefts\"\n",
               2,
               {"[adapters] source must be one of synthetic, peft", "(did you mean 'peft'?)"}});
  r.push_back({"choice_switch",
               kBase + "[engine]\nswitch = @@\"fuse\"\n",
               2,
               {"[engine] switch must be one of fused, unmerge-merge", "(did you mean 'fused'?)"}});
  r.push_back(
      {"choice_costmodel_lora",
       kRun + "[cluster]\nexecutor = \"costmodel\"\ncostmodel = \"llama2-7b@a100-80gb\"\n" +
           "costmodel_lora = @@\"sgvm\"\n[model]\npreset = \"llama2-7b\"\n" + kWork,
       2,
       {"[cluster] costmodel_lora must be one of artifact, sgmv", "(did you mean 'sgmv'?)"}});
  // ---- the cost model's knobs ---------------------------------------------------------------
  r.push_back({"costmodel_lora_without_preset",
               kRun + kCost + "costmodel_lora = @@\"sgmv\"\n" + kWork,
               2,
               {"[cluster] costmodel_lora", "hardware presets"}});
  r.push_back({"costmodel_scale_ratio_below_one",
               kRun + kCost + "costmodel_scale = { unmerged_ratio = @@0.9 }\n" + kWork,
               2,
               {"unmerged_ratio must be >= 1 and <= 100 (got 0.9)"}});
  r.push_back({"costmodel_scale_unknown_key",
               kRun + kCost +
                   "costmodel_scale = { unmerged_ratio = 1.2, @@switch_iteration = 1.0 }\n" + kWork,
               2,
               {"unknown key 'switch_iteration'", "(did you mean 'switch_iterations'?)"}});
  r.push_back(
      {"costmodel_scale_with_cpu",
       kRun + "[cluster]\nexecutor = \"cpu\"\ncostmodel_scale = @@{ switch_iterations = 1.0 }\n" +
           kWork,
       2,
       {"[cluster] costmodel_scale", "only used with executor = \"costmodel\""}});
  // ---- files --------------------------------------------------------------------------------
  r.push_back({"missing_trace_file",
               kRun + kCost + "[workload]\narrival = \"trace\"\ntrace = @@\"no/such/trace.csv\"\n",
               2,
               {"'no/such/trace.csv' does not exist"}});
  r.push_back({"missing_experiment_file",
               "",
               2,
               {"experiment file does not exist"},
               Where::prefix,
               {},
               "missing.toml: ",
               "missing.toml"});
  // ---- plugins ------------------------------------------------------------------------------
  r.push_back({"plugin_not_found",
               kBase + "[scheduler]\nplugin = \"nope\"\n",
               3,
               {"no scheduler plugin 'nope'", "liblorasched-scheduler-nope.so", "dlora"},
               Where::anywhere});
  r.push_back({"plugin_not_found_did_you_mean",
               kBase + "[scheduler]\nplugin = \"dlroa\"\n",
               3,
               {"no scheduler plugin 'dlroa'", "(did you mean 'dlora'?)"},
               Where::anywhere});
  r.push_back({"plugin_threshold_not_found",
               kBase + "[threshold]\nplugin = \"fixd\"\n",
               3,
               {"no threshold plugin 'fixd'", "(did you mean 'fixed'?)"},
               Where::anywhere});
  r.push_back(
      {"plugin_unknown_parameter",
       kBase + "[scheduler]\nplugin = \"dlora\"\nmerge_tim = @@0.1\n",
       2,
       {"unknown parameter 'merge_tim' for scheduler 'dlora'", "(did you mean 'merge_time'?)"}});
  r.push_back({"plugin_parameter_for_parameterless_plugin",
               kBase + "[scheduler]\nplugin = \"unmerged-fcfs\"\nalpha = @@1.0\n",
               2,
               {"unknown parameter 'alpha' for scheduler 'unmerged-fcfs'"}});
  r.push_back({"plugin_parameter_wrong_type",
               kBase + "[scheduler]\nplugin = \"dlora\"\nmerge_time = @@\"fast\"\n",
               2,
               {"[scheduler] merge_time must be a real, got \"fast\""}});
  r.push_back({"plugin_parameter_out_of_range",
               kBase + "[scheduler]\nplugin = \"dlora\"\nmerge_time = @@100.0\n",
               2,
               {"[scheduler] merge_time = 100", "out of range for scheduler 'dlora'"}});
  r.push_back({"plugin_parameter_negative",
               kBase + "[threshold]\nplugin = \"fixed\"\nalpha = @@-1.0\n",
               2,
               {"[threshold] alpha = -1", "out of range for threshold 'fixed'"}});
  r.push_back(
      {"plugin_parameter_choice",
       kBase + "[scheduler]\nplugin = \"merged-only\"\nswitch_rule = @@\"drian\"\n",
       2,
       {"[scheduler] switch_rule must be one of oldest, drain", "(did you mean 'drain'?)"}});
  r.push_back({"plugin_parameters_without_plugin",
               kBase + "@@[threshold]\nalpha = 0.5\n",
               2,
               {"[threshold] sets parameters but no plugin = \"name\""}});
  // The factory refuses beta >= alpha (std::invalid_argument): bad input at the plugin's table
  // (lorasched/plugin/export.hpp), so the message must point into the experiment file.
  r.push_back({"threshold_beta_not_below_alpha",
               kBase + "@@[threshold]\nplugin = @@\"fixed\"\nalpha = 0.5\nbeta = 0.9\n",
               2,
               {"must be below alpha"}});
  // ---- sweeps and --set ---------------------------------------------------------------------
  r.push_back({"sweep_bad_value",
               kBase + "[sweep]\n\"engine.max_batch_size\" = [4, @@0]\n",
               2,
               {"[engine] max_batch_size must be >= 1"}});
  r.push_back({"sweep_bad_plugin_value",
               kBase + "[sweep]\n\"scheduler.plugin\" = [\"dlora\", @@7]\n",
               2,
               {"[scheduler] plugin must be a string, got an integer"}});
  r.push_back({"sweep_not_an_array",
               kBase + "[sweep]\n\"engine.max_batch_size\" = @@4\n",
               2,
               {"[sweep] engine.max_batch_size must be an array"}});
  r.push_back({"set_bad_value",
               kBase,
               2,
               {"[engine] max_batch_size must be >= 1"},
               Where::prefix,
               {"--set", "engine.max_batch_size=0"},
               "--set engine.max_batch_size=0: "});
  r.push_back({"set_wrong_type",
               kBase,
               2,
               {"[engine] max_batch_size must be an integer, got a string"},
               Where::prefix,
               {"--set", "engine.max_batch_size=abc"},
               "--set engine.max_batch_size=abc: "});
  r.push_back({"set_unknown_key",
               kBase,
               2,
               {"unknown key 'max_batch_sise' in [engine]", "(did you mean 'max_batch_size'?)"},
               Where::prefix,
               {"--set", "engine.max_batch_sise=4"},
               "--set engine.max_batch_sise=4: "});
  r.push_back({"set_without_equals",
               kBase,
               2,
               {"expected key=value"},
               Where::prefix,
               {"--set", "engine.max_batch_size"},
               "--set engine.max_batch_size: "});
  // ---- resources ----------------------------------------------------------------------------
  r.push_back(
      {"pool_too_small_for_largest_adapter",
       kRun + kCost + kWork + "[adapters]\ncount = 4\nranks = [8, 64]\n[engine]\nkv_blocks = 4\n",
       2,
       {"cannot hold the largest adapter", "kv_blocks"},
       Where::file_only});
  r.push_back({"kv_blocks_and_pool_gib",
               kBase + "@@[engine]\nkv_blocks = 64\npool_gib = 1.0\n",
               2,
               {"set kv_blocks or pool_gib, not both"}});
  r.push_back({"costmodel_without_model",
               kRun + "@@[cluster]\nexecutor = \"costmodel\"\n" + kWork,
               2,
               {"needs costmodel = "}});
  return r;
}

class BadExperiment : public testing::TestWithParam<Row> {};

// `lorasched <command> FILE` in a scratch directory: exit code, message, position, files.
void check_row(const Row& row, const std::string& command) {
  SCOPED_TRACE("lorasched " + command + " (" + row.name + ")");
  ScratchDir dir;
  std::vector<Pos> marks;
  const std::string text = strip_marks(row.text, marks);
  if (!row.text.empty()) write_text(dir / row.file, text);
  std::vector<std::string> args = {command, row.file};
  args.insert(args.end(), row.extra_args.begin(), row.extra_args.end());
  const ProcessResult r = run_lorasched(args, dir.path());
  ASSERT_EQ(r.signal, 0) << r.describe();
  EXPECT_EQ(r.exit_code, row.exit_code) << r.describe();

  // The message: the last line of stderr (progress lines may come before it).
  std::string err = r.err;
  while (!err.empty() && err.back() == '\n') err.pop_back();
  const std::string last =
      err.substr(err.rfind('\n') == std::string::npos ? 0 : err.rfind('\n') + 1);
  const std::string msg = collapse_spaces(last);
  EXPECT_FALSE(msg.empty()) << r.describe();
  for (const auto& part : row.message)
    EXPECT_NE(msg.find(collapse_spaces(part)), std::string::npos)
        << "message lacks \"" << part << "\"\n"
        << r.describe();
  EXPECT_EQ(msg.find("internal error"), std::string::npos) << r.describe();

  switch (row.where) {
    case Where::marks: {
      ASSERT_FALSE(marks.empty()) << "row has no @@ mark";
      bool any = false;
      std::string wanted;
      for (const Pos& p : marks) {
        const std::string prefix =
            row.file + ":" + std::to_string(p.line) + ":" + std::to_string(p.col) + ": ";
        wanted += (wanted.empty() ? "" : " or ") + prefix;
        any = any || msg.rfind(prefix, 0) == 0;
      }
      EXPECT_TRUE(any) << "message should start with " << wanted << "\n" << r.describe();
      break;
    }
    case Where::file_only:
      EXPECT_EQ(msg.rfind(row.file + ": ", 0), 0u) << r.describe();
      break;
    case Where::prefix:
      EXPECT_EQ(msg.rfind(row.prefix, 0), 0u) << "message should start with " << row.prefix << "\n"
                                              << r.describe();
      break;
    case Where::anywhere:
      break;
  }
  // Nothing may be left under a results name, final or partial.
  EXPECT_TRUE(results_files(dir.path()).empty())
      << "results file left behind: " << results_files(dir.path()).front();
  EXPECT_FALSE(fs::exists(dir / "out")) << "output directory created for a failing run";
  EXPECT_FALSE(fs::exists(dir / "results"));
}

TEST_P(BadExperiment, Run) { check_row(GetParam(), "run"); }
TEST_P(BadExperiment, Validate) { check_row(GetParam(), "validate"); }

INSTANTIATE_TEST_SUITE_P(Rows, BadExperiment, testing::ValuesIn(rows()),
                         [](const testing::TestParamInfo<Row>& p) { return p.param.name; });

// Range messages read "must be >= 1 and <= 65536", with single spaces (the table above
// compares with spaces collapsed so this one fault shows here only).
TEST(BadExperimentText, RangeMessageHasSingleSpaces) {
  ScratchDir dir;
  write_text(dir / "exp.toml", kBase + "[engine]\nmax_batch_size = 0\n");
  const ProcessResult r = run_lorasched({"validate", "exp.toml"}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("must be >= 1 and <= 65536 (got 0)"), std::string::npos) << r.describe();
}

// The same fault in a file given by an absolute path names that path.
TEST(BadExperimentText, AbsolutePathIsNamed) {
  ScratchDir dir;
  const fs::path file = dir / "abs.toml";
  std::vector<Pos> marks;
  write_text(file, strip_marks(kBase + "[engine]\nmax_batch_size = @@0\n", marks));
  const ProcessResult r = run_lorasched({"run", file.string()}, fs::temp_directory_path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  const std::string where = file.string() + ":" + std::to_string(marks.at(0).line) + ":" +
                            std::to_string(marks.at(0).col) + ": ";
  EXPECT_NE(r.err.find(where), std::string::npos) << r.describe();
}

// The first bad point of a sweep stops everything before any run: no results, even for the
// good points before it.
TEST(BadExperimentText, SweepWithOneBadPointRunsNothing) {
  ScratchDir dir;
  write_text(dir / "exp.toml",
             kBase + "[sweep]\n\"scheduler.plugin\" = [\"unmerged-fcfs\", \"dlora\", \"nope\"]\n");
  const ProcessResult r = run_lorasched({"run", "exp.toml"}, dir.path());
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  EXPECT_NE(r.err.find("no scheduler plugin 'nope'"), std::string::npos) << r.describe();
  EXPECT_TRUE(results_files(dir.path()).empty());
  EXPECT_EQ(r.out.find("results:"), std::string::npos) << r.describe();
}

}  // namespace
}  // namespace lorasched::test
