// The subcommands of `lorasched`, callable from tests as functions returning exit codes.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace lorasched {

extern const char* const kVersionText;  // "lorasched 0.1.0 (git <rev>)"

struct RunOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string output;
  bool quiet = false;
};
struct ValidateOptions {
  std::string file;
  std::vector<std::string> overrides;
};
struct ReportOptions {
  std::string file;
  bool csv = false;
  std::vector<std::string> group_by;  // sweep coordinates: mean ± 95% CI per group
};
struct PluginsOptions {
  std::string describe;
  std::vector<std::string> paths;
};

struct GenerateOptions {
  std::string model;                    // HF model directory
  std::vector<std::string> adapters;    // PEFT adapter directories, paired with prompts
  std::vector<std::string> prompt_ids;  // "1,2,3" per prompt
  int max_new_tokens = 16;
  std::string mode = "unmerged";
  std::string logits_out;
  bool ignore_eos = false;  // run max_new_tokens steps even past an end-of-sequence token
};

// `lorasched profile` (core/cli/profile.cpp).
struct ProfileOptions {
  std::string model = "tiny";  // tiny | small
  std::vector<int> ranks = {8, 16, 64};
  int threads = 0;               // BLAS threads (0 = all cores, as [cluster] threads)
  bool quick = false;            // a small grid (seconds), for tests
  int repeats = 0;               // timed runs per point (0 = the grid's default)
  std::string output;            // FILE.json
  std::string executor = "cpu";  // cpu | cuda
};
int cmd_profile(const ProfileOptions& opts);

// The fidelity section of `report`: for each costmodel run of the file with a cpu run of the
// same workload, the error of its headline figures (core/cli/profile.cpp).
struct StoredRun;
void print_fidelity(std::ostream& out, const std::vector<StoredRun>& runs);

// `lorasched new-plugin` (core/cli/new_plugin.cpp): scaffolds an out-of-tree plugin in `dir`.
struct NewPluginOptions {
  std::string kind;  // scheduler | threshold | migration | dispatcher
  std::string name;  // lowercase letters, digits, '-'
  std::string dir;   // must be empty or new unless force
  bool force = false;
};
int cmd_new_plugin(const NewPluginOptions& opts);

struct WorkloadOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string output;
};

int cmd_generate(const GenerateOptions& opts);
// Writes an experiment's workload (its first sweep point) as an adapter trace CSV.
int cmd_workload(const WorkloadOptions& opts);
int cmd_run(const RunOptions& opts, bool require_sweep);
int cmd_validate(const ValidateOptions& opts);
int cmd_report(const ReportOptions& opts);
int cmd_plugins(const PluginsOptions& opts);

}  // namespace lorasched
