// `lorasched bound`: lower bounds (and, on small instances, the exact optimum) of the latency
// any worker-level policy can reach on an experiment's workloads (docs/bounds.md).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "core/bound/relaxation.hpp"
#include "core/bound/search.hpp"
#include "core/bound/worker.hpp"
#include "core/cli/capacity.hpp"
#include "core/cli/commands.hpp"
#include "core/cluster/parts.hpp"
#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/config/experiment.hpp"
#include "core/exec/costmodel.hpp"
#include "core/exec/costmodel_factory.hpp"

namespace fs = std::filesystem;

namespace lorasched {

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The artifact-style timing the exact formulation needs: iteration times that do not depend
// on the batch, one switch price for every change of the weights. Read from the cost model
// itself, so the bound follows whatever the engine's runs are priced with.
bound::Timing batch_independent_timing(const CostModel& model, const std::vector<AdapterInfo>& ad,
                                       SwitchMethod method, const std::string& where) {
  auto probe = [&](api::Mode mode) {
    double first = NAN;
    for (int32_t b : {1, 3, 16}) {
      for (int64_t ctx : {1, 700}) {
        BatchFeatures f;
        f.mode = mode;
        f.entries = b;
        f.decode_seqs = b;
        f.decode_context = b * ctx;
        if (mode != api::Mode::merged) {
          f.distinct_adapters = std::min<int32_t>(b, 2);
          f.lora_passes = 1;
          f.lora_segments = f.distinct_adapters;
          f.lora_tokens = b;
          f.lora_token_rank = 16 * b;
          f.lora_adapter_rank = 16 * f.distinct_adapters;
        }
        const double t = model.iteration(f);
        if (std::isnan(first)) first = t;
        if (t != first)
          throw InputError(fmt::format(
              "{}: the exact bound needs iteration times that do not depend on the batch "
              "(costmodel = \"dlora-artifact\"); this cost model gives {} s and {} s for two "
              "{} batches",
              where, first, t, api::to_string(mode)));
      }
    }
    return first;
  };
  bound::Timing t;
  t.merged = probe(api::Mode::merged);
  t.unmerged = probe(api::Mode::unmerged);
  t.mixed = probe(api::Mode::mixed);
  auto steps = [&](const AdapterInfo* from, const AdapterInfo* to) {
    double s = 0;
    for (const CostStep& c : model.switch_steps(from, to, method)) s += c.seconds;
    return s;
  };
  const AdapterInfo* a = &ad.at(0);
  const AdapterInfo* b = ad.size() > 1 ? &ad.at(1) : a;
  t.switch_cost = steps(nullptr, a);
  for (double s : {steps(a, nullptr), steps(a, b), steps(nullptr, b), steps(b, nullptr)})
    if (std::abs(s - t.switch_cost) > 1e-12)
      throw InputError(
          fmt::format("{}: the exact bound needs one price for every weight switch (costmodel = "
                      "\"dlora-artifact\"); this cost model gives {} s and {} s",
                      where, t.switch_cost, s));
  return t;
}

struct Instance {
  std::string point;  // the sweep point without its variant
  uint64_t seed = 0;
  std::vector<std::string> variants;
  std::vector<RequestSpec> requests;
  const Experiment* e = nullptr;
};

}  // namespace

int cmd_bound(const BoundOptions& opts) {
  auto exps = load_experiments(opts.file, opts.overrides);
  PluginRegistry registry(plugin_search_path({}));
  std::vector<size_t> all(exps.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  resolve_loads(exps, registry, all, opts.quiet);

  // Variants that differ only in their policies share a workload: one bound each.
  std::vector<Instance> instances;
  std::map<std::string, size_t> by_key;
  for (const auto& e : exps) {
    if (e.cluster.executor != ExecutorKind::costmodel)
      throw InputError(
          fmt::format("{}: bound needs [cluster] executor = \"costmodel\"", opts.file));
    if (e.cluster.replicas != 1)
      throw InputError(fmt::format("{}: bound is for one replica ([cluster] replicas = {})",
                                   opts.file, e.cluster.replicas));
    std::vector<std::string> point;
    std::string variant;
    for (const auto& [k, v] : e.coords) {
      if (k == "variant")
        variant = v;
      else
        point.push_back(k + "=" + v);
    }
    Instance inst;
    inst.point = fmt::format("{}", fmt::join(point, " "));
    inst.seed = e.run.seed;
    inst.requests = generate_workload(e.workload, e.adapters.count, e.run.seed);
    inst.e = &e;
    std::string key =
        fmt::format("{}|{}|{}|{}|{}|{}|{}|{}", e.cluster.costmodel, e.model.preset,
                    e.engine.max_batch_size, e.engine.max_model_len, e.engine.max_batched_tokens,
                    e.adapters.count, fmt::join(e.adapters.ranks, ","), inst.point);
    for (const auto& r : inst.requests)
      key += fmt::format(";{:a},{},{},{}", r.arrival, r.adapter, r.prompt_tokens, r.output_tokens);
    auto [it, fresh] = by_key.emplace(key, instances.size());
    if (fresh) instances.push_back(std::move(inst));
    if (!variant.empty()) instances[it->second].variants.push_back(variant);
  }

  // Rows are collected first: a failure half way (bad input found late) leaves no file.
  std::ostringstream out;
  out << "point,seed,variants,requests,tokens,method,per_token_mean_bound,per_token_mean_best,"
         "per_token_status,request_mean_bound,request_mean_best,request_status,seconds,variables\n";
  for (const Instance& inst : instances) {
    const Experiment& e = *inst.e;
    Simulation sim(e, registry, /*dry_run=*/true);
    const auto model = make_cost_model(e.cluster.costmodel, sim.shape(), cost_model_options(e));
    const int32_t prompt_limit = std::min(e.engine.max_model_len, e.engine.max_batched_tokens);
    std::vector<bound::TraceRequest> trace;
    for (const auto& r : inst.requests) {
      if (r.prompt_tokens > prompt_limit) continue;  // the engine ignores it
      // The engine stops a request once its context passes max_model_len.
      const int32_t cap = std::max(1, e.engine.max_model_len - r.prompt_tokens + 1);
      trace.push_back({r.arrival, r.prompt_tokens, std::min(r.output_tokens, cap)});
    }
    const double n = static_cast<double>(trace.size());
    int64_t tokens = 0;
    for (const auto& r : trace) tokens += r.output_tokens;
    const std::string head = fmt::format(
        "{},{},{},{},{}", csv_field(inst.point), inst.seed,
        csv_field(fmt::format("{}", fmt::join(inst.variants, ";"))), trace.size(), tokens);

    const auto t0 = std::chrono::steady_clock::now();
    const bound::TokenTimes tt = bound::token_times(*model, e.engine.max_batch_size, trace);
    const bound::RelaxationResult relax = bound::token_relaxation(trace, tt);
    const double relax_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out << fmt::format("{},relaxation,{:.9g},,,{:.9g},,,{:.3f},\n", head, relax.per_token_sum / n,
                       relax.request_sum / n, relax_s);

    if (opts.exact) {
      const std::string where = fmt::format("{} [{}]", opts.file, inst.point);
      bound::SmallInstance si;
      si.num_adapters = e.adapters.count;
      si.max_batch = e.engine.max_batch_size;
      si.allow_mixed = !opts.no_mixed;
      si.timing = batch_independent_timing(*model, sim.adapters(), switch_method(e), where);
      for (size_t i = 0, k = 0; i < inst.requests.size(); ++i) {
        if (inst.requests[i].prompt_tokens > prompt_limit) continue;
        si.requests.push_back({trace[k].arrival, inst.requests[i].adapter, trace[k].output_tokens});
        ++k;
      }
      // Both solvers share the model (core/bound/worker.hpp); the branch and bound proves
      // optima of the study's instance sizes in seconds where CBC needs hours.
      struct Solved {
        std::string status, best;
        double bound = 0, seconds = 0;
        int64_t size = 0;  // MILP columns, or search nodes
      };
      auto solve = [&](bound::Objective o) {
        Solved r;
        if (opts.milp) {
          bound::MilpOptions mo;
          mo.time_limit_s = opts.time_limit_s;
          const bound::MilpResult m = bound::solve_milp(si, o, mo);
          r.status = m.status;
          r.bound = m.bound / n;
          if (!m.schedule.slots.empty()) r.best = fmt::format("{:.9g}", m.objective / n);
          r.seconds = m.seconds;
          r.size = m.variables;
        } else {
          bound::SearchOptions so;
          so.time_limit_s = opts.time_limit_s;
          const bound::SearchResult m = bound::solve_search(si, o, so);
          r.status = m.proven ? "optimal" : "limit";
          r.bound = m.bound / n;
          r.best = fmt::format("{:.9g}", m.objective / n);
          r.seconds = m.seconds;
          r.size = m.nodes;
        }
        return r;
      };
      const Solved tok = solve(bound::Objective::per_token);
      const Solved req = solve(bound::Objective::request);
      out << fmt::format("{},{},{:.9g},{},{},{:.9g},{},{},{:.3f},{}\n", head,
                         opts.milp ? "exact-milp" : "exact", tok.bound, tok.best, tok.status,
                         req.bound, req.best, req.status, tok.seconds + req.seconds, tok.size);
      if (!opts.quiet)
        fmt::print(stderr,
                   "{} seed {}: exact per-token {} s ({}, {:.1f} s), request {} s ({}, {:.1f} s)\n",
                   inst.point.empty() ? "run" : inst.point, inst.seed, tok.best, tok.status,
                   tok.seconds, req.best, req.status, req.seconds);
    }
  }
  const fs::path out_path(opts.output);
  const fs::path partial = out_path.string() + ".partial";
  if (out_path.has_parent_path()) fs::create_directories(out_path.parent_path());
  {
    std::ofstream f(partial);
    f << out.str();
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(partial, ec);
      throw InputError(fmt::format("{}: cannot write", partial.string()));
    }
  }
  fs::rename(partial, out_path);
  fmt::print("{}: {} instance(s) -> {}\n", opts.file, instances.size(), out_path.string());
  return 0;
}

}  // namespace lorasched
