// `lorasched slurm`: a sweep as a Slurm array job (one task per shard, `run --shard I/N
// --resume`) and a merge job that runs after it (`lorasched merge`). Slurm is the engine;
// this only writes its batch scripts and, with --submit, hands them to sbatch.
#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "core/cli/commands.hpp"
#include "core/cli/sweep.hpp"
#include "core/common/error.hpp"
#include "core/config/experiment.hpp"

namespace fs = std::filesystem;

namespace lorasched {

namespace {

// One shell word: single-quoted, a ' inside written as '\''.
std::string sh(const std::string& s) {
  std::string out(1, '\'');
  for (char c : s) {
    if (c == '\'')
      out.append("'\\''");
    else
      out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string self_exe() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(ExitCode::runtime, "cannot find this program's path (/proc/self/exe)");
  return p.string();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw Error(ExitCode::runtime, fmt::format("{}: cannot write", path.string()));
  fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add);
}

// Runs `command` through the shell; its stdout, or Error naming it with its output.
std::string run_capture(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) throw Error(ExitCode::runtime, fmt::format("cannot run: {}", command));
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (status != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    throw Error(ExitCode::runtime, fmt::format("{} failed ({}): {}", command,
                                               code == 127 ? "not found: is Slurm's sbatch on PATH?"
                                                           : fmt::format("exit code {}", code),
                                               out));
  }
  return out;
}

// The job id in sbatch --parsable's answer "ID" or "ID;CLUSTER".
std::string job_id(const std::string& answer) {
  std::string id;
  for (char c : answer) {
    if (c >= '0' && c <= '9')
      id += c;
    else if (!id.empty())
      break;
  }
  if (id.empty()) throw Error(ExitCode::runtime, fmt::format("sbatch answered '{}'", answer));
  return id;
}

}  // namespace

int cmd_slurm(const SlurmOptions& opts) {
  const auto exps = load_experiments(opts.file, opts.overrides);
  const size_t points = exps.size();
  if (opts.cpus_per_task < 1)
    throw InputError(fmt::format("--cpus-per-task {}: give 1 or more", opts.cpus_per_task));
  if (opts.max_concurrent < 0)
    throw InputError(
        fmt::format("--max-concurrent {}: give 0 (no limit) or more", opts.max_concurrent));
  const size_t per_task = static_cast<size_t>(opts.cpus_per_task);
  size_t shards =
      opts.shards > 0 ? static_cast<size_t>(opts.shards) : (points + per_task - 1) / per_task;
  if (shards > points)
    throw InputError(fmt::format("--shards {}: the sweep has only {} points", opts.shards, points));

  // The jobs run in this directory (--chdir), so relative paths (the experiment's, those
  // inside it) resolve as they do here; the program and the results get absolute paths.
  const fs::path cwd = fs::current_path();
  const fs::path output =
      fs::absolute(opts.output.empty() ? exps.front().run.output : fs::path(opts.output));
  const fs::path dir =
      fs::absolute(opts.dir.empty() ? fs::path(output.string() + ".slurm") : fs::path(opts.dir));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Error(ExitCode::runtime, fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  const std::string exe = self_exe();
  const std::string name = exps.front().run.name.empty() ? "sweep" : exps.front().run.name;

  std::string common;
  if (!opts.partition.empty()) common += fmt::format("#SBATCH --partition={}\n", opts.partition);
  if (!opts.account.empty()) common += fmt::format("#SBATCH --account={}\n", opts.account);
  common += fmt::format("#SBATCH --chdir={}\n", cwd.string());

  // The experiment path as given (the jobs run in this directory): the runs record it, as
  // a local run would.
  std::string run_cmd = fmt::format("{} run {}", sh(exe), sh(opts.file));
  for (const auto& o : opts.overrides) run_cmd += fmt::format(" --set {}", sh(o));
  run_cmd += fmt::format(
      " -o {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\" -j "
      "\"${{SLURM_CPUS_PER_TASK:-1}}\" --resume -q",
      sh(output.string()), shards);
  const std::string array = fmt::format(
      "#!/bin/bash\n"
      "# Written by `lorasched slurm`: {} sweep points of {} in {} array tasks (shards); each\n"
      "# task runs its points with -j (its CPUs) and --resume (a requeued task redoes only\n"
      "# what is missing). The merge job ({}) joins the shards afterwards.\n"
      "#SBATCH --job-name=lorasched-{}\n"
      "#SBATCH --array=0-{}{}\n"
      "#SBATCH --cpus-per-task={}\n"
      "#SBATCH --time={}\n"
      "{}"
      "{}"
      "#SBATCH --output={}/shard-%a.log\n"
      "set -euo pipefail\n"
      "exec {}\n",
      points, opts.file, shards, (dir / "merge.sbatch").string(), name, shards - 1,
      opts.max_concurrent > 0 ? fmt::format("%{}", opts.max_concurrent) : std::string(),
      opts.cpus_per_task, opts.time,
      opts.mem.empty() ? std::string() : fmt::format("#SBATCH --mem={}\n", opts.mem), common,
      dir.string(), run_cmd);

  std::string merge_cmd = fmt::format("{} merge {}", sh(exe), sh(output.string()));
  for (size_t i = 0; i < shards; ++i)
    merge_cmd += fmt::format(
        " {}",
        sh(shard_output(output, Shard{static_cast<int>(i), static_cast<int>(shards)}).string()));
  const std::string merge = fmt::format(
      "#!/bin/bash\n"
      "# Written by `lorasched slurm`: joins the shards of the array job into {}.\n"
      "# Submit it with --dependency=afterok:<array job id>.\n"
      "#SBATCH --job-name=lorasched-{}-merge\n"
      "#SBATCH --cpus-per-task=1\n"
      "#SBATCH --time={}\n"
      "{}"
      "#SBATCH --output={}/merge.log\n"
      "set -euo pipefail\n"
      "exec {}\n",
      output.string(), name, opts.merge_time, common, dir.string(), merge_cmd);

  const fs::path array_path = dir / "array.sbatch", merge_path = dir / "merge.sbatch";
  write_file(array_path, array);
  write_file(merge_path, merge);
  fmt::print("wrote {} ({} points in {} array tasks) and {}\n", array_path.string(), points, shards,
             merge_path.string());
  if (!opts.submit) {
    fmt::print(
        "submit both with:\n  id=$(sbatch --parsable {}) && sbatch "
        "--dependency=afterok:${{id%%;*}} {}\n",
        sh(array_path.string()), sh(merge_path.string()));
    return 0;
  }
  const std::string array_id = job_id(run_capture("sbatch --parsable " + sh(array_path.string())));
  const std::string merge_id = job_id(run_capture(fmt::format(
      "sbatch --parsable --dependency=afterok:{} {}", array_id, sh(merge_path.string()))));
  fmt::print("array job {} ({} tasks), merge job {} (after it); results: {}\n", array_id, shards,
             merge_id, output.string());
  return 0;
}

}  // namespace lorasched
