// Capacity: the largest offered rate a configuration keeps up with, by bisection on the cost
// model (docs/user-guide.md, "Load against capacity"); `lorasched capacity`, and
// `workload.load` resolved into a rate before a run.
#include "core/cli/capacity.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>

#include "core/cli/commands.hpp"
#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/metrics/summary.hpp"

namespace lorasched {

namespace {

// What decides a configuration's capacity under a fixed scheduler: the point's own TOML
// without its policies, seed, rate, load, outputs and sweep (FNV-1a of the canonical text).
uint64_t capacity_key(const Experiment& e, const std::string& scheduler) {
  toml::table t;
  try {
    t = toml::parse(e.text, e.path.string());
  } catch (const toml::parse_error&) {
    t = toml::table{};
  }
  for (const char* k : {"scheduler", "threshold", "sweep", "report", "plugins"}) t.erase(k);
  if (auto* run = t["run"].as_table()) {
    run->erase("seed");
    run->erase("output");
    run->erase("name");
  }
  if (auto* w = t["workload"].as_table()) {
    w->erase("rate");
    w->erase("target_rate");
    w->erase("load");
    w->erase("load_reference");
  }
  std::ostringstream s;
  s << t << "\nscheduler=" << scheduler << "\n";
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s.str()) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Capacities found in this process, and those a `run -j` parent found for its workers.
std::map<uint64_t, double>& memo() {
  static std::map<uint64_t, double> m = [] {
    std::map<uint64_t, double> init;
    if (const char* env = std::getenv(kCapacityMemoEnv)) {
      std::istringstream in(env);
      std::string item;
      while (std::getline(in, item, ';')) {
        const auto eq = item.find('=');
        if (eq == std::string::npos) continue;
        init[std::stoull(item.substr(0, eq), nullptr, 16)] = std::stod(item.substr(eq + 1));
      }
    }
    return init;
  }();
  return m;
}

}  // namespace

double served_fraction(const Experiment& e, PluginRegistry& registry, double rate, int seeds) {
  double sum = 0;
  for (int s = 1; s <= seeds; ++s) {
    Experiment x = e;
    set_offered_rate(x.workload, rate);
    x.workload.load.reset();
    x.run.seed = static_cast<uint64_t>(s);
    Simulation sim(x, registry);
    const RunResult result = sim.run();
    const Summary sm = summarize(result.records, x.metrics.summary);
    const double f =
        sm.window_offered_rps > 0 ? sm.window_throughput_rps / sm.window_offered_rps : 0.0;
    sum += std::isfinite(f) ? f : 0.0;
  }
  return sum / seeds;
}

CapacityResult find_capacity(const Experiment& e, PluginRegistry& registry,
                             const CapacityOptions& opts) {
  if (e.cluster.executor != ExecutorKind::costmodel)
    throw InputError(fmt::format(
        "{}: capacity needs [cluster] executor = \"costmodel\" (it runs the configuration "
        "dozens of times)",
        e.path.string()));
  CapacityResult out;
  auto keeps_up = [&](double rate) {
    const double f = served_fraction(e, registry, rate, opts.seeds);
    out.probes.emplace_back(rate, f);
    out.runs += opts.seeds;
    return f >= 1.0 - opts.tolerance;
  };
  double lo = 0, hi = 0;
  double r = offered_rate(e.workload) > 0 ? offered_rate(e.workload) : 1.0;
  if (keeps_up(r)) {
    lo = r;
    for (int i = 0; i < 40 && hi == 0; ++i) {
      if (keeps_up(2 * lo))
        lo *= 2;
      else
        hi = 2 * lo;
    }
  } else {
    hi = r;
    for (int i = 0; i < 40 && lo == 0; ++i) {
      if (keeps_up(hi / 2))
        lo = hi / 2;
      else
        hi /= 2;
    }
  }
  if (lo == 0 || hi == 0)
    throw Error(ExitCode::runtime,
                fmt::format("{}: no capacity found between {} and {} req/s", e.path.string(),
                            r / std::pow(2.0, 40), r * std::pow(2.0, 40)));
  while (hi - lo > opts.precision * hi) {
    const double mid = 0.5 * (lo + hi);
    if (keeps_up(mid))
      lo = mid;
    else
      hi = mid;
  }
  out.rate = lo;
  return out;
}

void resolve_loads(std::vector<Experiment>& exps, PluginRegistry& registry,
                   const std::vector<size_t>& points, bool quiet) {
  for (size_t p : points) {
    Experiment& e = exps[p];
    if (!e.workload.load) continue;
    const uint64_t key = capacity_key(e, e.workload.load_reference);
    auto it = memo().find(key);
    if (it == memo().end()) {
      Experiment ref = e;
      ref.scheduler = PluginConfig{"scheduler", e.workload.load_reference, {}, {}};
      ref.threshold = PluginConfig{"threshold", "fixed", {}, {}};
      const CapacityResult c = find_capacity(ref, registry, {});
      if (!quiet)
        fmt::print(stderr, "capacity under {}: {:.4g} req/s ({} runs){}\n",
                   e.workload.load_reference, c.rate, c.runs,
                   e.label.empty() ? "" : fmt::format(" [{}]", e.label));
      it = memo().emplace(key, c.rate).first;
    }
    set_offered_rate(e.workload, *e.workload.load * it->second);
  }
}

std::string capacity_memo_text() {
  std::string s;
  for (const auto& [k, v] : memo()) s += fmt::format("{:x}={:.17g};", k, v);
  return s;
}

int cmd_capacity(const CapacityCmdOptions& opts) {
  auto exps = load_experiments(opts.file, opts.overrides);
  PluginRegistry registry(plugin_search_path({}));
  CapacityOptions co;
  co.seeds = opts.seeds;
  // One configuration per distinct point (seeds and loads share their capacity).
  std::map<uint64_t, bool> done;
  fmt::print("point,scheduler,capacity_rps,seeds,runs\n");
  for (const Experiment& e : exps) {
    const uint64_t key = capacity_key(e, e.scheduler.name + "/" + e.threshold.name);
    if (done[key]) continue;
    done[key] = true;
    std::vector<std::string> point;
    for (const auto& [k, v] : e.coords)
      if (k != "run.seed" && k != "workload.load") point.push_back(k + "=" + v);
    const CapacityResult c = find_capacity(e, registry, co);
    fmt::print("\"{}\",{},{:.6g},{},{}\n", fmt::join(point, " "), e.scheduler.name, c.rate,
               co.seeds, c.runs);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace lorasched
