// `lorasched`: run, sweep, validate, report, plugins (and more, see --help).
#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "core/cli/commands.hpp"
#include "core/common/error.hpp"
#include "core/common/log.hpp"

int main(int argc, char** argv) {
  using namespace lorasched;
  CLI::App app{"lorasched: a testbed for scheduling many LoRA adapters on one base LLM"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(kVersionText));

  RunOptions run_opts;
  auto add_run_options = [&](CLI::App* cmd) {
    cmd->add_option("file", run_opts.file, "experiment file (TOML)")->required();
    cmd->add_option("--set", run_opts.overrides,
                    "override a value: dotted.key=value (repeatable), e.g. --set workload.rate=4");
    cmd->add_option("-o,--output", run_opts.output, "results file (default: [run] output)");
    cmd->add_flag("-q,--quiet", run_opts.quiet, "no progress output and no warnings");
    cmd->add_option("-j,--jobs", run_opts.jobs,
                    "run sweep points in N worker processes (0: one per core; default 1)")
        ->check(CLI::Range(0, 4096));
    cmd->add_option("--shard", run_opts.shard,
                    "I/N: run only the points I, I+N, I+2N, ... into OUTPUT.shard-I-of-N.h5 "
                    "(lorasched merge joins the shards)");
    cmd->add_flag("--resume", run_opts.resume,
                  "run only the points that a killed or failed run did not complete");
    cmd->add_flag("--worker", run_opts.worker)->group("");  // internal (-j)
  };
  auto* run = app.add_subcommand(
      "run", "run an experiment (all points of its [sweep]) and print the results");
  add_run_options(run);
  auto* sweep = app.add_subcommand("sweep", "run every point of an experiment's [sweep]");
  add_run_options(sweep);

  MergeOptions merge_opts;
  auto* merge = app.add_subcommand(
      "merge", "join the results files of a sweep's shards (run --shard I/N) into one");
  merge->add_option("output", merge_opts.output, "results file to write (.h5)")->required();
  merge->add_option("shards", merge_opts.inputs, "the shards' results files")->required();

  SlurmOptions slurm_opts;
  auto* slurm = app.add_subcommand(
      "slurm", "write (and with --submit, submit) a Slurm array job for a sweep and its merge job");
  slurm->add_option("file", slurm_opts.file, "experiment file (TOML)")->required();
  slurm->add_option("--set", slurm_opts.overrides, "override a value: dotted.key=value");
  slurm->add_option("-o,--output", slurm_opts.output,
                    "merged results file (default: [run] output)");
  slurm->add_option("--dir", slurm_opts.dir,
                    "where the scripts and logs go (default: OUTPUT.slurm)");
  slurm->add_option("--partition", slurm_opts.partition, "sbatch --partition");
  slurm->add_option("--account", slurm_opts.account, "sbatch --account");
  slurm->add_option("--time", slurm_opts.time,
                    "sbatch --time of each array task (default 1:00:00)");
  slurm->add_option("--merge-time", slurm_opts.merge_time, "sbatch --time of the merge job");
  slurm->add_option("--mem", slurm_opts.mem, "sbatch --mem of each array task");
  slurm
      ->add_option("--cpus-per-task", slurm_opts.cpus_per_task,
                   "CPUs of each array task; it runs its points with -j this (default 1)")
      ->check(CLI::Range(1, 4096));
  slurm
      ->add_option("--max-concurrent", slurm_opts.max_concurrent,
                   "array tasks running at once (default: no limit)")
      ->check(CLI::Range(0, 1 << 20));
  slurm
      ->add_option("--shards", slurm_opts.shards,
                   "array tasks (default: one per --cpus-per-task points)")
      ->check(CLI::Range(0, 1 << 20));
  slurm->add_flag("--submit", slurm_opts.submit, "submit both jobs with sbatch, print their ids");

  ValidateOptions validate_opts;
  auto* validate =
      app.add_subcommand("validate", "check an experiment file and its plugins without running it");
  validate->add_option("file", validate_opts.file, "experiment file (TOML)")->required();
  validate->add_option("--set", validate_opts.overrides, "override a value: dotted.key=value");

  ReportOptions report_opts;
  auto* report = app.add_subcommand("report", "print the results table of a results file");
  report->add_option("file", report_opts.file, "results file (.h5)")->required();
  report->add_flag("--csv", report_opts.csv, "CSV instead of an aligned table");
  report
      ->add_option("--group-by", report_opts.group_by,
                   "group runs by sweep coordinates (variant, or a swept key such as "
                   "workload.rate): mean ± 95% CI over each group's runs")
      ->delimiter(',');

  PluginsOptions plugins_opts;
  auto* plugins = app.add_subcommand("plugins", "list the plugins found and their parameters");
  plugins->add_option("--describe", plugins_opts.describe, "show one plugin's parameters in full");
  plugins->add_option("--path", plugins_opts.paths, "extra directory to search (repeatable)");

  GenerateOptions gen_opts;
  auto* generate = app.add_subcommand(
      "generate", "greedy decoding with an HF model and PEFT adapters (the conformance path)");
  generate->add_option("--model", gen_opts.model, "HF Llama model directory")->required();
  generate->add_option("--adapter", gen_opts.adapters,
                       "PEFT adapter directory; the i-th pairs with the i-th prompt (repeatable)");
  generate
      ->add_option("--prompt-ids", gen_opts.prompt_ids, "comma-separated token ids (repeatable)")
      ->required();
  generate->add_option("--max-new-tokens", gen_opts.max_new_tokens, "tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  generate
      ->add_option("--mode", gen_opts.mode,
                   "unmerged: one mixed batch; merged: each adapter merged in turn")
      ->check(CLI::IsMember({"unmerged", "merged"}));
  generate->add_option(
      "--logits-out", gen_opts.logits_out,
      "write every step's logits as float32 .npy [prompts, steps, vocab] (NaN rows "
      "after a prompt stopped at its end-of-sequence token)");
  generate->add_flag("--ignore-eos", gen_opts.ignore_eos,
                     "do not stop a prompt at the model's end-of-sequence token "
                     "(eos_token_id of generation_config.json, else config.json)");

  ProfileOptions profile_opts;
  auto* profile =
      app.add_subcommand("profile",
                         "measure a cost-model profile of the cpu or cuda executor on this machine "
                         "(docs/costmodel.md)");
  profile->add_option("--model", profile_opts.model, "model preset to profile")
      ->check(CLI::IsMember({"tiny", "small"}));
  profile->add_option("--adapters-ranks", profile_opts.ranks, "adapter ranks, e.g. 8,16,64")
      ->delimiter(',');
  profile->add_option("--threads", profile_opts.threads, "BLAS threads (0 = all cores)")
      ->check(CLI::Range(0, 1024));
  profile
      ->add_option("--executor", profile_opts.executor,
                   "executor to profile: cpu, or cuda (needs a CUDA build and device)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  profile->add_flag("--quick", profile_opts.quick, "a small grid (seconds), for tests");
  profile->add_option("--repeats", profile_opts.repeats, "timed runs per point (median)")
      ->check(CLI::Range(1, 1000));
  profile->add_option("-o,--output", profile_opts.output, "profile file to write (.json)")
      ->required();

  NewPluginOptions new_plugin_opts;
  auto* new_plugin = app.add_subcommand(
      "new-plugin",
      "scaffold a working out-of-tree plugin: policy, CMake build, unit test, experiment");
  new_plugin
      ->add_option("--kind", new_plugin_opts.kind, "scheduler, threshold, migration or dispatcher")
      ->required();
  new_plugin
      ->add_option("--name", new_plugin_opts.name, "plugin name: lowercase letters, digits, '-'")
      ->required();
  new_plugin->add_option("dir", new_plugin_opts.dir, "directory to write (new or empty)")
      ->required();
  new_plugin->add_flag("--force", new_plugin_opts.force, "write into a non-empty directory");

  WorkloadOptions wl_opts;
  auto* workload = app.add_subcommand(
      "workload", "write an experiment's requests as an adapter trace CSV (replayable exactly)");
  workload->add_option("file", wl_opts.file, "experiment file (TOML)")->required();
  workload->add_option("--set", wl_opts.overrides, "override a value: dotted.key=value");
  workload->add_option("-o,--output", wl_opts.output, "CSV to write")->required();

  CapacityCmdOptions cap_opts;
  auto* capacity = app.add_subcommand(
      "capacity",
      "the largest offered rate each configuration keeps up with (served within 2% of offered "
      "over the measurement window), by bisection on the cost model");
  capacity->add_option("file", cap_opts.file, "experiment file (TOML)")->required();
  capacity->add_option("--set", cap_opts.overrides, "override a value: dotted.key=value");
  capacity->add_option("--seeds", cap_opts.seeds, "workload seeds per probed rate")
      ->check(CLI::Range(1, 100));

  BoundOptions bound_opts;
  auto* bound = app.add_subcommand(
      "bound",
      "lower bounds on the latency any worker-level policy can reach on an experiment's "
      "workloads, and with --exact the optimum of small instances (docs/bounds.md)");
  bound->add_option("file", bound_opts.file, "experiment file (TOML)")->required();
  bound->add_option("--set", bound_opts.overrides, "override a value: dotted.key=value");
  bound->add_option("-o,--output", bound_opts.output, "CSV to write")->required();
  bound->add_flag("--exact", bound_opts.exact,
                  "also solve small instances exactly (batch-independent timing)");
  bound->add_flag(
      "--milp", bound_opts.milp,
      "exact: solve the MILP with CBC instead of the branch and bound (tiny instances)");
  bound->add_flag("--no-mixed", bound_opts.no_mixed,
                  "exact: merged and unmerged iterations only (no mixed mode)");
  bound->add_option("--time-limit", bound_opts.time_limit_s, "seconds per exact solve")
      ->check(CLI::Range(0.1, 1e6));
  bound->add_flag("-q,--quiet", bound_opts.quiet, "no progress output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : static_cast<int>(ExitCode::input);
  }

  log::set_quiet(run_opts.quiet);
  try {
    if (*run) return cmd_run(run_opts, /*require_sweep=*/false);
    if (*sweep) return cmd_run(run_opts, /*require_sweep=*/true);
    if (*merge) return cmd_merge(merge_opts);
    if (*slurm) return cmd_slurm(slurm_opts);
    if (*validate) return cmd_validate(validate_opts);
    if (*generate) return cmd_generate(gen_opts);
    if (*workload) return cmd_workload(wl_opts);
    if (*report) return cmd_report(report_opts);
    if (*plugins) return cmd_plugins(plugins_opts);
    if (*new_plugin) return cmd_new_plugin(new_plugin_opts);
    if (*profile) return cmd_profile(profile_opts);
    if (*bound) return cmd_bound(bound_opts);
    if (*capacity) return cmd_capacity(cap_opts);
  } catch (const Error& e) {
    std::fflush(stdout);
    std::cerr << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "lorasched: internal error: " << e.what() << "\n";
    return static_cast<int>(ExitCode::runtime);
  }
  return 0;
}
