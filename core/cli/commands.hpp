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
  int jobs = 1;         // worker processes running sweep points at once (0: one per core)
  std::string shard;    // "I/N": only the points I, I+N, I+2N, ... (into its own file)
  bool resume = false;  // reuse the points a killed or failed run left complete
  bool worker = false;  // internal (-j): run the points named on stdin into -o DIR
};
// `lorasched merge`: shards of one sweep into one results file.
struct MergeOptions {
  std::string output;
  std::vector<std::string> inputs;
};
int cmd_merge(const MergeOptions& opts);

// `lorasched slurm` (core/cli/slurm.cpp): an sbatch array job (one task per shard) and a
// merge job that depends on it.
struct SlurmOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string output;                  // the merged results file (default: [run] output)
  std::string dir;                     // where the scripts and logs go (default: OUTPUT.slurm/)
  std::string partition;               // sbatch --partition ("": the cluster's default)
  std::string account;                 // sbatch --account ("": none)
  std::string time = "1:00:00";        // sbatch --time of each array task
  std::string merge_time = "0:30:00";  // sbatch --time of the merge job
  std::string mem;                     // sbatch --mem per task ("": the cluster's default)
  int cpus_per_task = 1;               // each task runs its points with -j this
  int max_concurrent = 0;              // array tasks at once (%K); 0: no limit
  int shards = 0;                      // array tasks; 0: one per cpus_per_task points
  bool submit = false;                 // run sbatch and print the job ids
};
int cmd_slurm(const SlurmOptions& opts);
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

// `lorasched bound` (core/cli/bound.cpp): lower bounds, and with `exact` the optimum of small
// instances, for every workload of an experiment (docs/bounds.md); CSV, one row per method.
struct BoundOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string output;  // CSV
  bool exact = false;  // also solve small instances exactly (batch-independent timing only)
  bool milp = false;   // exactly with CBC's MILP instead of the branch and bound
  bool no_mixed = false;
  double time_limit_s = 60;  // per exact solve
  bool quiet = false;
};
int cmd_bound(const BoundOptions& opts);

// `lorasched capacity` (core/cli/capacity.cpp): the largest offered rate each configuration
// of an experiment keeps up with, as CSV on stdout.
struct CapacityCmdOptions {
  std::string file;
  std::vector<std::string> overrides;
  int seeds = 3;
};
int cmd_capacity(const CapacityCmdOptions& opts);

int cmd_generate(const GenerateOptions& opts);
// Writes an experiment's workload (its first sweep point) as an adapter trace CSV.
int cmd_workload(const WorkloadOptions& opts);
int cmd_run(const RunOptions& opts, bool require_sweep);
int cmd_validate(const ValidateOptions& opts);
int cmd_report(const ReportOptions& opts);
int cmd_plugins(const PluginsOptions& opts);

}  // namespace lorasched
