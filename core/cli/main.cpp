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
  };
  auto* run = app.add_subcommand(
      "run", "run an experiment (all points of its [sweep]) and print the results");
  add_run_options(run);
  auto* sweep = app.add_subcommand("sweep", "run every point of an experiment's [sweep]");
  add_run_options(sweep);

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : static_cast<int>(ExitCode::input);
  }

  log::set_quiet(run_opts.quiet);
  try {
    if (*run) return cmd_run(run_opts, /*require_sweep=*/false);
    if (*sweep) return cmd_run(run_opts, /*require_sweep=*/true);
    if (*validate) return cmd_validate(validate_opts);
    if (*generate) return cmd_generate(gen_opts);
    if (*workload) return cmd_workload(wl_opts);
    if (*report) return cmd_report(report_opts);
    if (*plugins) return cmd_plugins(plugins_opts);
    if (*new_plugin) return cmd_new_plugin(new_plugin_opts);
    if (*profile) return cmd_profile(profile_opts);
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
