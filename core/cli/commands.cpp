#include "core/cli/commands.hpp"
#include "core/cli/capacity.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/peft_adapter.hpp"
#include "core/cli/sweep.hpp"
#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/common/log.hpp"
#include "core/config/experiment.hpp"
#include "core/config/plugin_params.hpp"
#include "core/metrics/h5.hpp"
#include "core/metrics/summary.hpp"
#include "core/metrics/table.hpp"
#include "core/model/generate.hpp"

namespace fs = std::filesystem;

namespace lorasched {

const char* const kVersionText = "lorasched " LORASCHED_VERSION " (git " LORASCHED_GIT_REV ")";

namespace {

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::vector<fs::path> extra_plugin_dirs(const std::vector<Experiment>& exps) {
  std::vector<fs::path> dirs;
  for (const auto& e : exps)
    for (const auto& p : e.plugin_paths)
      if (std::find(dirs.begin(), dirs.end(), p) == dirs.end()) dirs.push_back(p);
  return dirs;
}

// A progress line on a terminal (rewritten in place), a few plain lines otherwise.
// A worker of `run -j` (worker = true) instead writes "@progress DONE TOTAL T" lines on stdout
// for its parent's display, one per percent.
class Progress {
 public:
  Progress(bool quiet, size_t runs, bool worker = false)
      : quiet_(quiet), tty_(!worker && isatty(STDERR_FILENO) != 0), worker_(worker), runs_(runs) {}
  void start(size_t index, const std::string& label) {
    if (worker_) return;
    index_ = index;
    label_ = label.empty() ? "run" : label;
    last_pct_ = -1;
    if (!quiet_ && !tty_) fmt::print(stderr, "[{}/{}] {}: started\n", index_ + 1, runs_, label_);
  }
  void update(int64_t done, int64_t total, double t) {
    if (quiet_) return;
    const int pct = total ? static_cast<int>(100 * done / total) : 100;
    if (worker_) {
      if (pct != last_pct_) {
        fmt::print("@progress {} {} {}\n", done, total, t);
        std::fflush(stdout);
      }
    } else if (tty_) {
      const int width = 30;
      const int filled = pct * width / 100;
      fmt::print(stderr, "\r[{}/{}] {} [{}{}] {:3d}% {}/{} requests, t={:.1f}s   ", index_ + 1,
                 runs_, label_, std::string(static_cast<size_t>(filled), '#'),
                 std::string(static_cast<size_t>(width - filled), '.'), pct, done, total, t);
    } else if (pct / 25 > last_pct_ / 25 && pct < 100) {
      fmt::print(stderr, "[{}/{}] {}: {}% ({}/{} requests, t={:.1f}s)\n", index_ + 1, runs_, label_,
                 pct, done, total, t);
    }
    last_pct_ = pct;
  }
  void finish(double wall) {
    if (quiet_ || worker_) return;
    if (tty_) fmt::print(stderr, "\n");
    fmt::print(stderr, "[{}/{}] {}: done in {:.1f}s\n", index_ + 1, runs_, label_, wall);
  }

 private:
  bool quiet_, tty_, worker_;
  size_t runs_, index_ = 0;
  std::string label_;
  int last_pct_ = -1;
};

// Under the summary table: what its columns measure.
constexpr const char* kWindowNote =
    "(latency, TTFT and %SLO: requests arriving in the measurement window; req/s, tok/s: "
    "served within it; docs/results-format.md)";

// Groups runs by the values of `keys` among their sweep coordinates, in first-seen order.
std::vector<RunGroup> group_runs(
    const std::vector<std::pair<std::vector<std::pair<std::string, std::string>>, Summary>>& runs,
    const std::vector<std::string>& keys) {
  std::vector<RunGroup> groups;
  for (const auto& [coords, summary] : runs) {
    std::vector<std::string> parts;
    for (const auto& k : keys) {
      auto it =
          std::find_if(coords.begin(), coords.end(), [&](const auto& c) { return c.first == k; });
      parts.push_back(k == "variant" ? (it == coords.end() ? "-" : it->second)
                                     : k + "=" + (it == coords.end() ? "-" : it->second));
    }
    const std::string label = fmt::format("{}", fmt::join(parts, " "));
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const RunGroup& x) { return x.label == label; });
    if (g == groups.end()) {
      groups.push_back({label, {}});
      g = groups.end() - 1;
    }
    g->runs.push_back(summary);
  }
  return groups;
}

// Runs scripts/plot.py on a results file when python3 with h5py and matplotlib is there.
void plot_results(const fs::path& results) {
  const fs::path script = fs::path(LORASCHED_SOURCE_DIR) / "scripts/plot.py";
  if (!fs::exists(script) || !fs::exists("/usr/bin/python3")) {
    fmt::print("plots skipped: {} or /usr/bin/python3 not found\n", script.string());
    return;
  }
  const std::string cmd =
      fmt::format("/usr/bin/python3 '{}' '{}'", script.string(), results.string());
  if (std::system(cmd.c_str()) != 0) fmt::print("plots skipped: {} failed\n", script.string());
}

}  // namespace

namespace {

// Runs `points` of `exps` one after another in this process into the results file `output`;
// returns each point's (label, summary).
std::vector<std::pair<std::string, Summary>> run_points(
    const RunOptions& opts, const std::vector<Experiment>& exps, const std::vector<size_t>& points,
    const fs::path& output, const FileProvenance& provenance, PluginRegistry& registry) {
  ResultsWriter writer(output);
  std::vector<std::pair<std::string, Summary>> table;
  Progress progress(opts.quiet, points.size(), /*worker=*/opts.worker);
  try {
    writer.set_provenance(provenance);
    for (size_t i = 0; i < points.size(); ++i) {
      const Experiment& e = exps[points[i]];
      progress.start(i, e.label);
      RunResult result;
      try {
        Simulation sim(e, registry);
        result = sim.run([&](int64_t d, int64_t t, double now) { progress.update(d, t, now); });
      } catch (const Error& err) {
        if (e.label.empty()) throw;
        throw Error(err.code(), fmt::format("{} [sweep point: {}]", err.what(), e.label));
      }
      progress.finish(result.wall_seconds);
      SummaryOptions summary_options = e.metrics.summary;
      summary_options.max_batch_size = e.engine.max_batch_size;
      Summary summary = summarize(result.records, summary_options);
      if (summary.window_requests == 0 && summary.requests > 0)
        log::warn(
            "{}: no request arrived in the measurement window [{}, {}] s ([metrics] "
            "warmup_s, cooldown_s): its latency and SLO figures are NaN",
            point_label(e), summary.window_start, summary.window_end);
      summary.wall_seconds = result.wall_seconds;
      RunAttributes attrs;
      attrs.label = e.label;
      attrs.experiment_path = e.path.string();
      attrs.experiment_toml = e.text;
      attrs.version = LORASCHED_VERSION;
      attrs.git_revision = LORASCHED_GIT_REV;
      attrs.plugins = result.plugins;
      attrs.seed = e.run.seed;
      attrs.executor = result.executor;
      attrs.device = result.device;
      attrs.host = host_name();
      attrs.extra = {{"overrides", fmt::format("{}", fmt::join(opts.overrides, " "))},
                     {"wall_seconds", fmt::format("{:.3f}", result.wall_seconds)}};
      if (e.file_text != e.text) attrs.extra.emplace_back("experiment_file_toml", e.file_text);
      if (e.workload.load)  // the rate workload.load resolved to (core/cli/capacity.cpp)
        attrs.extra.emplace_back("workload_rate_resolved", fmt::format("{:.17g}", offered_rate(e.workload)));
      for (const auto& [key, value] : e.coords) attrs.extra.emplace_back("sweep." + key, value);
      writer.write_run(point_group(static_cast<size_t>(e.index)), attrs, result.records, summary,
                       e.metrics.log_batches);
      table.emplace_back(point_label(e), summary);
    }
  } catch (const Error& err) {
    writer.fail(err.what());
    throw;
  } catch (const std::exception& err) {
    writer.fail(err.what());
    throw;
  }
  writer.commit();
  return table;
}

}  // namespace

int cmd_run(const RunOptions& opts, bool require_sweep) {
  auto exps = load_experiments(opts.file, opts.overrides);
  if (require_sweep && exps.size() == 1 && exps.front().label.empty())
    throw InputError(fmt::format("{}: has no [sweep] table; use `lorasched run`", opts.file));
  if (opts.jobs < 0)
    throw InputError(fmt::format("-j {}: give 1 or more, or 0 for one per core", opts.jobs));
  const Shard shard = parse_shard(opts.shard);
  if (shard.count > 1 && static_cast<size_t>(shard.count) > exps.size())
    throw InputError(
        fmt::format("--shard {}: the sweep has only {} points", opts.shard, exps.size()));
  PluginRegistry registry(plugin_search_path(extra_plugin_dirs(exps)));
  fs::path output = opts.output.empty() ? exps.front().run.output : fs::path(opts.output);

  if (opts.worker) {
    // A worker of `run -j` (sweep.cpp): point numbers on stdin, one results file per point
    // in the directory -o, "@done K" on stdout after each. Its parent validated the points.
    const FileProvenance provenance = make_provenance(exps, opts.overrides, "");
    for (std::string line; std::getline(std::cin, line);) {
      size_t k = 0;
      try {
        k = std::stoul(line);
      } catch (const std::exception&) {
        throw InputError(fmt::format("--worker: '{}' is not a point number", line));
      }
      if (k >= exps.size())
        throw InputError(fmt::format("--worker: point {} of a sweep of {}", k, exps.size()));
      resolve_loads(exps, registry, {k}, /*quiet=*/true);  // the parent's capacities
      run_points(opts, exps, {k}, output / (point_group(k) + ".h5"), provenance, registry);
      fmt::print("@done {}\n", k);
      std::fflush(stdout);
    }
    return 0;
  }

  const std::vector<size_t> points = shard_points(exps.size(), shard);
  // workload.load -> rate (capacity runs on the cost model), passed on to -j workers.
  resolve_loads(exps, registry, points, opts.quiet);
  setenv(kCapacityMemoEnv, capacity_memo_text().c_str(), 1);
  // Validate every point before any work starts.
  for (size_t p : points) Simulation(exps[p], registry, /*dry_run=*/true);
  std::string shard_text;
  if (!opts.shard.empty()) {
    output = shard_output(output, shard);
    shard_text = fmt::format("{}/{}", shard.index, shard.count);
  }
  const FileProvenance provenance = make_provenance(exps, opts.overrides, shard_text);
  const int jobs = opts.jobs == 0
                       ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()))
                       : opts.jobs;

  std::vector<std::pair<std::string, Summary>> table;
  if ((jobs > 1 && points.size() > 1) || opts.resume) {
    ParallelRun pr;
    pr.file = opts.file;
    pr.overrides = opts.overrides;
    pr.exps = &exps;
    pr.points = points;
    pr.output = output;
    pr.provenance = provenance;
    pr.jobs = jobs;
    pr.resume = opts.resume;
    pr.quiet = opts.quiet;
    run_parallel(pr);
    const ResultsHeader h = read_results_header(output);
    std::map<std::string, Summary> by_group;
    for (size_t i = 0; i < h.runs.size(); ++i) by_group[h.runs[i].first] = h.summaries[i];
    for (size_t p : points) table.emplace_back(point_label(exps[p]), by_group.at(point_group(p)));
  } else {
    table = run_points(opts, exps, points, output, provenance, registry);
  }
  print_summary_table(std::cout, table, /*csv=*/false);
  fmt::print("{}\n\nWhere the busy time went:\n", kWindowNote);
  print_busy_table(std::cout, table);
  const ReportSection& report = exps.front().report;
  if (!report.group_by.empty()) {
    std::vector<std::pair<std::vector<std::pair<std::string, std::string>>, Summary>> coords;
    for (size_t i = 0; i < points.size(); ++i)
      coords.emplace_back(exps[points[i]].coords, table[i].second);
    fmt::print("\n");
    print_group_table(std::cout, group_runs(coords, report.group_by), /*csv=*/false);
  }
  fmt::print("results: {}\n", output.string());
  if (report.plot) plot_results(output);
  return 0;
}

int cmd_merge(const MergeOptions& opts) {
  if (opts.inputs.empty()) throw InputError("merge: give the shards' results files to merge");
  struct Input {
    std::string path;
    ResultsHeader header;
  };
  std::vector<Input> inputs;
  for (const auto& path : opts.inputs) {
    Input in{path, read_results_header(path)};
    if (!in.header.provenance)
      throw InputError(fmt::format(
          "{}: has no record of the experiment it came from (root attribute "
          "experiment_file_toml): only files written by `lorasched run` of this version can be "
          "merged",
          path));
    if (!inputs.empty()) {
      const std::string why =
          provenance_mismatch(*inputs.front().header.provenance, *in.header.provenance);
      if (!why.empty())
        throw InputError(fmt::format("{} and {} are not shards of the same sweep: {}",
                                     inputs.front().path, path, why));
    }
    inputs.push_back(std::move(in));
  }
  const FileProvenance& first = *inputs.front().header.provenance;

  std::map<std::string, std::pair<std::string, std::string>> where;  // group -> (file, label)
  std::vector<std::pair<std::string, fs::path>> runs;
  for (const auto& in : inputs)
    for (const auto& [group, label] : in.header.runs) {
      if (auto it = where.find(group); it != where.end())
        throw InputError(
            fmt::format("sweep point {} ({}) is in both {} and {}: give each shard once", group,
                        label.empty() ? "-" : label, it->second.first, in.path));
      where[group] = {in.path, label};
      runs.emplace_back(group, in.path);
    }
  std::vector<std::string> missing;
  for (int64_t i = 0; i < first.points; ++i)
    if (!where.count(point_group(static_cast<size_t>(i))))
      missing.push_back(point_group(static_cast<size_t>(i)));
  if (!missing.empty()) {
    // Name the missing points by their labels when the experiment text still parses here.
    std::vector<std::string> names = missing;
    try {
      std::vector<std::string> overrides;
      if (!first.overrides.empty()) {
        std::string o;
        for (char c : first.overrides + "\n") {
          if (c == '\n') {
            overrides.push_back(o);
            o.clear();
          } else {
            o += c;
          }
        }
      }
      const auto exps = parse_experiments(first.experiment_file_toml, "experiment", overrides);
      for (auto& n : names) n += " (" + point_label(exps.at(std::stoul(n))) + ")";
    } catch (const std::exception&) {
    }
    throw InputError(fmt::format(
        "{} of the sweep's {} points are in none of the {} files: {}; run their shards (`lorasched "
        "run FILE --shard I/N --resume`) and merge again",
        missing.size(), first.points, inputs.size(), fmt::join(names, ", ")));
  }
  std::sort(runs.begin(), runs.end());
  FileProvenance merged = first;
  merged.shard = "";
  write_merged(opts.output, merged, runs);
  fmt::print("merged {} runs from {} files: {}\n", runs.size(), inputs.size(), opts.output);
  return 0;
}

int cmd_generate(const GenerateOptions& opts) {
  if (opts.prompt_ids.empty()) throw InputError("generate: give at least one --prompt-ids 1,2,3");
  if (opts.adapters.size() > opts.prompt_ids.size())
    throw InputError(
        fmt::format("generate: {} adapters for {} prompts: each adapter pairs with one prompt",
                    opts.adapters.size(), opts.prompt_ids.size()));
  const ModelWeights weights = load_hf_model(opts.model);
  std::vector<LoraAdapterWeights> adapters;
  adapters.reserve(opts.adapters.size());
  for (const auto& dir : opts.adapters) adapters.push_back(load_peft_adapter(dir, weights.shape));
  std::vector<GenerateRequest> requests;
  for (size_t i = 0; i < opts.prompt_ids.size(); ++i) {
    GenerateRequest r;
    const std::string& text = opts.prompt_ids[i];
    size_t start = 0;
    while (start <= text.size()) {
      size_t comma = text.find(',', start);
      if (comma == std::string::npos) comma = text.size();
      const std::string item = text.substr(start, comma - start);
      try {
        size_t used = 0;
        const long v = std::stol(item, &used);
        if (used != item.size()) throw std::invalid_argument(item);
        r.prompt.push_back(static_cast<int32_t>(v));
      } catch (const std::exception&) {
        throw InputError(
            fmt::format("generate: --prompt-ids '{}': '{}' is not a token id", text, item));
      }
      start = comma + 1;
    }
    r.adapter = i < adapters.size() ? &adapters[i] : nullptr;
    requests.push_back(std::move(r));
  }
  const bool merged = opts.mode == "merged";
  // HF's generate() stops a sequence at its end-of-sequence token; so does lorasched's.
  const std::vector<int32_t> eos =
      opts.ignore_eos ? std::vector<int32_t>{} : read_eos_token_ids(opts.model);
  const auto result = greedy_generate(weights, requests, opts.max_new_tokens, merged,
                                      !opts.logits_out.empty(), eos);
  for (const auto& t : result.tokens) fmt::print("{}\n", fmt::join(t, ","));
  if (!opts.logits_out.empty()) write_logits_npy(opts.logits_out, result);
  return 0;
}

int cmd_workload(const WorkloadOptions& opts) {
  const auto exps = load_experiments(opts.file, opts.overrides);
  const Experiment& e = exps.front();
  const auto requests = generate_workload(e.workload, e.adapters.count, e.run.seed);
  write_adapter_trace(opts.output, requests);
  fmt::print("{}: {} requests of {} adapters -> {}\n", opts.file, requests.size(), e.adapters.count,
             opts.output);
  return 0;
}

int cmd_validate(const ValidateOptions& opts) {
  const auto exps = load_experiments(opts.file, opts.overrides);
  PluginRegistry registry(plugin_search_path(extra_plugin_dirs(exps)));
  for (const auto& e : exps) {
    Simulation sim(e, registry, /*dry_run=*/true);
    fmt::print(
        "{}: {} requests, {} replica(s) x {} adapters, model {}, executor {}, pool {} KV blocks, "
        "scheduler {}\n",
        e.label.empty() ? e.run.name : e.label, sim.num_requests(), e.cluster.replicas,
        e.adapters.count, sim.shape().name, to_string(e.cluster.executor), sim.pool_blocks(),
        e.scheduler.name);
  }
  fmt::print("{}: ok ({} run{})\n", opts.file, exps.size(), exps.size() == 1 ? "" : "s");
  return 0;
}

int cmd_report(const ReportOptions& opts) {
  const auto runs = read_results(opts.file);
  if (!opts.group_by.empty()) {
    std::vector<std::pair<std::vector<std::pair<std::string, std::string>>, Summary>> coords;
    for (const auto& r : runs) {
      std::vector<std::pair<std::string, std::string>> c;
      for (const auto& [k, v] : r.attrs.extra)
        if (k.rfind("sweep.", 0) == 0) c.emplace_back(k.substr(6), v);
      coords.emplace_back(c, r.summary);
    }
    for (const auto& g : opts.group_by) {
      const bool known = std::any_of(coords.begin(), coords.end(), [&](const auto& run) {
        return std::any_of(run.first.begin(), run.first.end(),
                           [&](const auto& c) { return c.first == g; });
      });
      if (!known)
        throw InputError(
            fmt::format("{}: --group-by {}: no run has that sweep coordinate", opts.file, g));
    }
    print_group_table(std::cout, group_runs(coords, opts.group_by), opts.csv);
    return 0;
  }
  std::vector<std::pair<std::string, Summary>> table;
  for (const auto& r : runs)
    table.emplace_back(r.attrs.label.empty() ? r.group : r.attrs.label, r.summary);
  print_summary_table(std::cout, table, opts.csv);
  if (!opts.csv) {
    fmt::print("{}\n\nWhere the busy time went:\n", kWindowNote);
    print_busy_table(std::cout, table);
  }
  if (!opts.csv) print_fidelity(std::cout, runs);  // only when a file holds cpu + costmodel runs
  return 0;
}

int cmd_plugins(const PluginsOptions& opts) {
  std::vector<fs::path> extra(opts.paths.begin(), opts.paths.end());
  PluginRegistry registry(plugin_search_path(extra));
  const auto libs = registry.scan();
  bool found = opts.describe.empty();
  for (api::PluginKind kind : {api::PluginKind::scheduler, api::PluginKind::threshold,
                               api::PluginKind::migration, api::PluginKind::dispatcher}) {
    bool header = false;
    for (const auto& lib : libs) {
      if (lib->info.kind != kind) continue;
      if (!opts.describe.empty() && lib->info.name != opts.describe) continue;
      found = true;
      if (!header && opts.describe.empty()) fmt::print("{}s:\n", api::to_string(kind));
      header = true;
      if (!opts.describe.empty()) {
        fmt::print("{} '{}': {}\n  file: {}\n  api version: {}\n", api::to_string(kind),
                   lib->info.name, lib->info.summary, lib->path.string(), lib->info.api_version);
        if (lib->info.params.empty()) fmt::print("  no parameters\n");
        for (const auto& p : lib->info.params)
          fmt::print("  {} ({})\n      {}\n", p.name, describe_param(p), p.help);
        continue;
      }
      fmt::print("  {:<18} {}\n", lib->info.name, lib->info.summary);
      for (const auto& p : lib->info.params)
        fmt::print("      {:<22} {}: {}\n", p.name, describe_param(p), p.help);
    }
  }
  for (const auto& p : registry.scan_problems()) log::warn(p);
  if (!found) {
    std::vector<std::string> dirs;
    for (const auto& d : registry.search_path()) dirs.push_back(d.string());
    throw PluginError(
        fmt::format("no plugin named '{}' in {}", opts.describe, fmt::join(dirs, ", ")));
  }
  if (opts.describe.empty()) {
    std::vector<std::string> dirs;
    for (const auto& d : registry.search_path()) dirs.push_back(d.string());
    fmt::print("searched: {}\n", fmt::join(dirs, ", "));
  }
  return 0;
}

}  // namespace lorasched
