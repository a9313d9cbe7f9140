#include "core/config/experiment.hpp"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "core/common/error.hpp"
#include "core/common/strings.hpp"
#include "core/config/toml_reader.hpp"

namespace fs = std::filesystem;

namespace lorasched {

namespace {

const std::vector<std::string> kPluginTables = {"scheduler", "threshold", "migration",
                                                "dispatcher"};

toml::table parse_text(const std::string& text, const std::string& file) {
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw InputError(fmt::format("{}:{}:{}: {}", file, e.source().begin.line,
                                 e.source().begin.column, e.description()));
  }
}

SourcePos node_pos(const toml::node& n, const std::string& file) {
  const auto& s = n.source();
  return {file, static_cast<int>(s.begin.line), static_cast<int>(s.begin.column)};
}

std::vector<std::string> split_dotted(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Sets `value` at the dotted path in `root`, creating tables on the way.
void set_dotted(toml::table& root, const std::string& dotted, const toml::node& value,
                const SourcePos& pos) {
  auto parts = split_dotted(dotted);
  toml::table* t = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i].empty())
      throw InputError(fmt::format("{}: '{}' is not a valid key", pos.str(), dotted));
    toml::node* n = t->get(parts[i]);
    if (!n) {
      t->insert_or_assign(parts[i], toml::table{});
      n = t->get(parts[i]);
    }
    if (!n->is_table())
      throw InputError(
          fmt::format("{}: cannot set '{}': '{}' is not a table", pos.str(), dotted, parts[i]));
    t = n->as_table();
  }
  value.visit([&](const auto& v) { t->insert_or_assign(parts.back(), v); });
}

// Records the source of every leaf under `node` (keyed by its dotted path) so values that
// are copied into an experiment keep pointing at the line that set them.
void collect_origins(const toml::node& node, const std::string& dotted, const std::string& file,
                     std::vector<std::pair<std::string, SourcePos>>& out) {
  if (auto t = node.as_table()) {
    for (const auto& [k, v] : *t)
      collect_origins(v,
                      dotted.empty() ? std::string(k.str()) : dotted + "." + std::string(k.str()),
                      file, out);
  } else {
    out.emplace_back(dotted, node_pos(node, file));
  }
}

std::string value_text(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  std::ostringstream os;
  n.visit([&](const auto& v) { os << v; });
  return os.str();
}

// ---- sweep ------------------------------------------------------------------------------------

struct Axis {
  std::string key;                 // dotted path of the value it sets
  std::vector<std::string> where;  // its keys inside [sweep] (a key may itself hold dots)
  size_t count = 0;
};

struct SweepShape {
  std::vector<Axis> axes;
  size_t variants = 0;  // 0: no variants
};

void collect_axes(const toml::table& t, const std::vector<std::string>& prefix,
                  const std::string& file, std::vector<Axis>& axes) {
  for (const auto& [k, v] : t) {
    std::vector<std::string> where = prefix;
    where.emplace_back(k.str());
    const std::string key = join(where, ".");
    if (prefix.empty() && k.str() == "variants") continue;
    if (auto sub = v.as_table()) {
      collect_axes(*sub, where, file, axes);
    } else if (auto arr = v.as_array()) {
      if (arr->empty())
        throw InputError(fmt::format("{}: [sweep] {} must list at least one value",
                                     node_pos(v, file).str(), key));
      axes.push_back({key, where, arr->size()});
    } else {
      throw InputError(fmt::format("{}: [sweep] {} must be an array of values to sweep",
                                   node_pos(v, file).str(), key));
    }
  }
}

const toml::node* sweep_value(const toml::table& sweep, const Axis& axis, size_t i) {
  const toml::node* n = &sweep;
  for (const auto& part : axis.where) n = n->as_table()->get(part);
  return n->as_array()->get(i);
}

// Sets every leaf of a variant's table into root, keeping the leaf's position.
void apply_leaves(toml::table& root, const toml::node& node, const std::vector<std::string>& path,
                  const std::string& file,
                  std::vector<std::pair<std::string, SourcePos>>& origins) {
  if (auto t = node.as_table()) {
    for (const auto& [k, v] : *t) {
      std::vector<std::string> sub = path;
      sub.emplace_back(k.str());
      apply_leaves(root, v, sub, file, origins);
    }
    return;
  }
  const std::string dotted = join(path, ".");
  set_dotted(root, dotted, node, node_pos(node, file));
  origins.emplace_back(dotted, node_pos(node, file));
}

SweepShape sweep_shape(const toml::table& root, const std::string& file) {
  SweepShape shape;
  const toml::node* s = root.get("sweep");
  if (!s) return shape;
  const toml::table* sweep = s->as_table();
  if (!sweep)
    throw InputError(fmt::format("{}: [sweep] must be a table", node_pos(*s, file).str()));
  collect_axes(*sweep, {}, file, shape.axes);
  if (const toml::node* v = sweep->get("variants")) {
    const toml::array* arr = v->as_array();
    if (!arr || arr->empty() || !arr->is_array_of_tables())
      throw InputError(fmt::format(
          "{}: [sweep] variants must be a non-empty array of tables ([[sweep.variants]])",
          node_pos(*v, file).str()));
    shape.variants = arr->size();
  }
  return shape;
}

// ---- sections ---------------------------------------------------------------------------------

struct Ctx {
  PositionHints hints;
  std::string file;
};

LengthSpec read_length_spec(TableReader& parent, const char* key, LengthSpec spec, const Ctx& ctx) {
  const toml::node* n = parent.node(key);
  if (!n) {
    parent.consume(key);
    return spec;
  }
  if (n->is_integer()) {
    spec.kind = "fixed";
    spec.value = static_cast<int32_t>(parent.get_int(key, spec.value, 1, 1 << 20));
    spec.min = spec.max = spec.value;
    return spec;
  }
  const toml::table* t = parent.opt_table(key);
  TableReader r(*t, std::string("workload.") + key, ctx.hints);
  spec.kind =
      r.get_string("kind", spec.kind, {"fixed", "uniform", "lognormal", "trace", "from-trace"});
  spec.value = static_cast<int32_t>(r.get_int("value", spec.value, 1, 1 << 20));
  spec.min =
      static_cast<int32_t>(r.get_int("min", spec.kind == "fixed" ? spec.value : 1, 1, 1 << 20));
  spec.max =
      static_cast<int32_t>(r.get_int("max", spec.kind == "fixed" ? spec.value : 4096, 1, 1 << 20));
  spec.median = r.get_real("median", spec.median, 0, 1 << 20, true);
  spec.sigma = r.get_real("sigma", spec.sigma, 0, 10);
  if (auto p = r.opt_path("trace")) spec.trace = *p;
  if (spec.min > spec.max)
    r.fail_table(
        fmt::format("[workload.{}] min ({}) must be <= max ({})", key, spec.min, spec.max));
  if (spec.kind == "trace" && spec.trace.empty())
    r.fail_table(fmt::format(
        "[workload.{}] kind = \"trace\" needs trace = \"path to an Azure LLM trace\"", key));
  r.finish();
  return spec;
}

void check_file(TableReader& r, const std::string& key, const fs::path& p, const char* what) {
  std::error_code ec;
  if (!fs::exists(p, ec)) {
    const toml::node* n = r.node(key);
    throw InputError(fmt::format("{}: {}: {} '{}' does not exist",
                                 n ? r.pos_of(*n, key).str() : r.table_pos().str(), r.where(key),
                                 what, p.string()));
  }
}

void read_workload(TableReader& root, Experiment& e, const Ctx& ctx) {
  WorkloadSpec& w = e.workload;
  const toml::table* t = root.opt_table("workload");
  toml::table empty;
  TableReader r(t ? *t : empty, "workload", ctx.hints);
  w.arrival = r.get_string("arrival", w.arrival,
                           {"poisson", "gamma", "trace", "adapter-trace", "artifact"});
  w.rate = r.get_real("rate", w.rate, 0, 1e9, true);
  if (auto v = r.opt_real("load", 0, 100, true)) {
    // A fraction of the capacity (`lorasched capacity`), resolved to a rate before the run.
    if (r.has("rate")) {
      const toml::node* n = r.node("load");
      throw InputError(fmt::format("{}: {}: set rate or load, not both",
                                   n ? r.pos_of(*n, "load").str() : r.table_pos().str(),
                                   r.where("load")));
    }
    if (w.arrival != "poisson" && w.arrival != "gamma" && w.arrival != "artifact" &&
        w.arrival != "trace" && w.arrival != "adapter-trace") {
      const toml::node* n = r.node("load");
      throw InputError(fmt::format(
          "{}: {}: load needs arrival = \"poisson\", \"gamma\", \"artifact\" or a trace (a "
          "rate to set), not \"{}\"",
          n ? r.pos_of(*n, "load").str() : r.table_pos().str(), r.where("load"), w.arrival));
    }
    for (const char* k : {"target_rate", "time_scale"}) {
      if (!r.has(k)) continue;
      const toml::node* n = r.node("load");
      throw InputError(fmt::format("{}: {}: set {} or load, not both (load sets the trace's rate)",
                                   n ? r.pos_of(*n, "load").str() : r.table_pos().str(),
                                   r.where("load"), k));
    }
    w.load = v;
  }
  w.load_reference = r.get_string("load_reference", w.load_reference);
  w.cv = r.get_real("cv", w.cv, 0, 1e3, true);
  if (auto p = r.opt_path("trace")) {
    w.trace = *p;
    check_file(r, "trace", w.trace, "trace file");
  }
  w.time_scale = r.get_real("time_scale", w.time_scale, 0, 1e9, true);
  if (auto v = r.opt_real("target_rate", 0, 1e9, true)) w.target_rate = v;
  w.trace_start_s = r.get_real("trace_start_s", w.trace_start_s, 0, 1e12);
  if (auto v = r.opt_int("max_prompt_tokens", 1, 1 << 20))
    w.max_prompt_tokens = static_cast<int32_t>(*v);
  if (auto v = r.opt_int("max_output_tokens", 1, 1 << 20))
    w.max_output_tokens = static_cast<int32_t>(*v);
  if (auto v = r.opt_int("num_requests", 1, 1e9)) w.num_requests = *v;
  if (auto v = r.opt_real("duration_s", 0, 1e12, true)) w.duration_s = v;

  if (const toml::node* pn = r.node("popularity"); pn && pn->is_string()) {
    w.popularity.kind =
        r.get_string("popularity", "uniform", {"uniform", "zipf", "drifting", "trace"});
  } else if (const toml::table* pt = r.opt_table("popularity")) {
    TableReader p(*pt, "workload.popularity", ctx.hints);
    w.popularity.kind =
        p.get_string("kind", w.popularity.kind, {"uniform", "zipf", "drifting", "trace"});
    w.popularity.zipf_s = p.get_real("s", w.popularity.zipf_s, 0, 100);
    w.popularity.hot_count =
        static_cast<int32_t>(p.get_int("hot_count", w.popularity.hot_count, 1, 1e6));
    w.popularity.hot_share = p.get_real("hot_share", w.popularity.hot_share, 0, 1);
    w.popularity.drift_period_s =
        p.get_real("drift_period_s", w.popularity.drift_period_s, 0, 1e12, true);
    p.finish();
  }
  // Replayed traces bring their own lengths unless the file says otherwise.
  if (w.arrival == "trace" || w.arrival == "adapter-trace") {
    w.prompt.kind = "from-trace";
    w.output.kind = "from-trace";
  }
  w.prompt = read_length_spec(r, "prompt", w.prompt, ctx);
  w.output = read_length_spec(r, "output", w.output, ctx);
  for (const LengthSpec* ls : {&w.prompt, &w.output})
    if (!ls->trace.empty())
      check_file(r, ls == &w.prompt ? "prompt" : "output", ls->trace, "length trace");

  if (const toml::table* at = r.opt_table("artifact")) {
    TableReader a(*at, "workload.artifact", ctx.hints);
    ArtifactSpec& s = w.artifact;
    if (auto p = a.opt_path("function_counts")) {
      s.function_counts = *p;
      check_file(a, "function_counts", s.function_counts, "function counts file");
    }
    s.num_functions = static_cast<int32_t>(a.get_int("num_functions", s.num_functions, 1, 1e7));
    s.function_popularity =
        a.get_string("function_popularity", s.function_popularity, {"lognormal", "zipf"});
    s.function_sigma = a.get_real("function_sigma", s.function_sigma, 0, 20);
    s.function_zipf_s = a.get_real("function_zipf_s", s.function_zipf_s, 0, 20);
    s.intensity_sigma = a.get_real("intensity_sigma", s.intensity_sigma, 0, 10);
    s.num_bins = static_cast<int32_t>(a.get_int("num_bins", s.num_bins, 1, 1e6));
    s.bin_minutes = a.get_real("bin_minutes", s.bin_minutes, 0, 1e6, true);
    s.interval_minutes = a.get_real("interval_minutes", s.interval_minutes, 0, 1e9, true);
    s.map_stride = static_cast<int32_t>(a.get_int("map_stride", s.map_stride, 1, 1e7));
    s.rate_share = a.get_string("rate_share", s.rate_share, {"interval", "window"});
    s.quota = a.get_string("quota", s.quota, {"even", "invocations"});
    s.gaps = a.get_string("gaps", s.gaps, {"independent", "numpy-reseed"});
    a.finish();
  }
  r.finish();

  const bool needs_trace = w.arrival == "trace" || w.arrival == "adapter-trace";
  if (needs_trace && w.trace.empty())
    r.fail_table(fmt::format("[workload] arrival = \"{}\" needs trace = \"path\"", w.arrival));
  if (!needs_trace && !w.num_requests && !w.duration_s)
    r.fail_table(
        fmt::format("[workload] arrival = \"{}\" needs num_requests or duration_s", w.arrival));
  if (w.popularity.kind == "trace" && w.arrival != "adapter-trace")
    r.fail_table("[workload] popularity = \"trace\" needs arrival = \"adapter-trace\"");
  if (w.popularity.kind == "drifting" && w.popularity.hot_count > e.adapters.count)
    r.fail_table(
        fmt::format("[workload.popularity] hot_count ({}) exceeds the number of adapters ({})",
                    w.popularity.hot_count, e.adapters.count));
  for (const LengthSpec* ls : {&w.prompt, &w.output})
    if (ls->kind == "from-trace" && w.arrival != "trace" && w.arrival != "adapter-trace")
      r.fail_table(
          "[workload] length kind \"from-trace\" needs arrival = \"trace\" or \"adapter-trace\"");
}

PluginConfig read_plugin(TableReader& root, const std::string& name, PluginConfig def,
                         const Ctx& ctx) {
  const toml::table* t = root.opt_table(name);
  if (!t) return def;
  PluginConfig pc = def;
  pc.pos = SourcePos{ctx.file, static_cast<int>(t->source().begin.line),
                     static_cast<int>(t->source().begin.column)};
  TableReader r(*t, name, ctx.hints);
  if (const toml::node* n = r.node("plugin")) {
    pc.pos = r.pos_of(*n, "plugin");
    pc.name = r.get_string("plugin", pc.name);
    if (pc.name.empty()) r.fail_at(*n, "plugin", "must name a plugin");
  } else if (def.name.empty()) {
    r.fail_table(fmt::format("[{}] needs plugin = \"name\"", name));
  } else if (!t->empty()) {
    // Parameters without a plugin name would silently apply to the default plugin.
    r.fail_table(fmt::format("[{}] sets parameters but no plugin = \"name\"", name));
  }
  for (const auto& [k, v] : *t) {
    const std::string key(k.str());
    if (key == "plugin") continue;
    auto pv = to_param_value(v);
    if (!pv) r.fail_at(v, key, "must be a number, boolean or string (plugin parameter)");
    // String parameters expand ${NAME} like paths (e.g. a per-run trace for an oracle).
    if (auto* str = std::get_if<std::string>(&*pv)) *str = r.expand(v, key, *str);
    pc.params.push_back({key, *pv, r.pos_of(v, key)});
    r.consume(key);
  }
  r.finish();
  return pc;
}

Experiment read_experiment(const toml::table& root, const Ctx& ctx) {
  Experiment e;
  e.path = ctx.file;
  TableReader r(root, "", ctx.hints);

  toml::table empty;
  {
    const toml::table* t = r.opt_table("run");
    TableReader s(t ? *t : empty, "run", ctx.hints);
    e.run.name = s.get_string("name", fs::path(ctx.file).stem().string());
    if (e.run.name.empty()) s.fail_table("[run] name must not be empty");
    e.run.seed = static_cast<uint64_t>(s.get_int("seed", 1, 0, 9e18));
    e.run.output = s.opt_path("output").value_or("results/" + e.run.name + ".h5");
    if (e.run.output.extension() != ".h5") {
      if (const toml::node* n = s.node("output")) s.fail_at(*n, "output", "must end in .h5");
      // Derived from the name (e.g. name = "a/": results/a/.h5 has no extension).
      s.fail_table(
          fmt::format("[run] name \"{}\" gives the results file '{}', which does not "
                      "end in .h5: choose another name or set output = \"...h5\"",
                      e.run.name, e.run.output.string()));
    }
    s.finish();
  }
  {
    const toml::table* t = r.opt_table("model");
    TableReader s(t ? *t : empty, "model", ctx.hints);
    e.model.preset = s.get_string("preset", e.model.preset,
                                  {"tiny", "small", "llama2-7b", "llama2-13b", "llama2-70b"});
    if (auto p = s.opt_path("path")) {
      e.model.path = *p;
      check_file(s, "path", e.model.path / "config.json", "model directory (config.json)");
    }
    e.model.seed = static_cast<uint64_t>(s.get_int("seed", 0, 0, 9e18));
    s.finish();
  }
  {
    const toml::table* t = r.opt_table("adapters");
    TableReader s(t ? *t : empty, "adapters", ctx.hints);
    e.adapters.source = s.get_enum("source", e.adapters.source, kAdapterSources);
    e.adapters.count = static_cast<int32_t>(s.get_int("count", e.adapters.count, 1, 1e6));
    if (auto v = s.opt_int_list("ranks", 1, 4096)) {
      e.adapters.ranks.clear();
      for (auto x : *v) e.adapters.ranks.push_back(static_cast<int32_t>(x));
    }
    e.adapters.lora_alpha = s.get_real("lora_alpha", 0, 0, 1e6);
    e.adapters.use_rslora = s.get_bool("use_rslora", false);
    if (auto v = s.opt_path_list("paths")) {
      for (const auto& p : *v) {
        e.adapters.paths.emplace_back(p);
        check_file(s, "paths", fs::path(p) / "adapter_config.json", "PEFT adapter directory");
      }
    }
    if (e.adapters.source == AdapterSource::peft) {
      if (e.adapters.paths.empty())
        s.fail_table("[adapters] source = \"peft\" needs paths = [\"dir\", ...]");
      if (s.has("count") && e.adapters.count != static_cast<int32_t>(e.adapters.paths.size()))
        s.fail_at(*s.node("count"), "count", "must equal the number of paths (or be left out)");
      e.adapters.count = static_cast<int32_t>(e.adapters.paths.size());
    } else if (!e.adapters.paths.empty()) {
      s.fail_at(*s.node("paths"), "paths", "needs source = \"peft\"");
    }
    s.finish();
  }
  read_workload(r, e, ctx);
  {
    const toml::table* t = r.opt_table("engine");
    TableReader s(t ? *t : empty, "engine", ctx.hints);
    EngineSection& engine = e.engine;
    engine.max_batch_size =
        static_cast<int32_t>(s.get_int("max_batch_size", engine.max_batch_size, 1, 65536));
    engine.max_batched_tokens = static_cast<int32_t>(
        s.get_int("max_batched_tokens", engine.max_batched_tokens, 1, 1 << 24));
    engine.block_size = static_cast<int32_t>(s.get_int("block_size", engine.block_size, 1, 4096));
    engine.max_model_len =
        static_cast<int32_t>(s.get_int("max_model_len", engine.max_model_len, 2, 1 << 24));
    engine.max_adapters_per_batch =
        static_cast<int32_t>(s.get_int("max_adapters_per_batch", 0, 0, 1e6));
    engine.watermark = s.get_real("watermark", engine.watermark, 0, 0.5);
    engine.preemption = s.get_enum("preemption", engine.preemption, kPreemptions);
    if (auto v = s.opt_int("kv_blocks", 1, 1e12)) engine.kv_blocks = *v;
    if (auto v = s.opt_real("pool_gib", 0, 1e6, true)) engine.pool_gib = v;
    if (engine.kv_blocks && engine.pool_gib)
      s.fail_table("[engine] set kv_blocks or pool_gib, not both");
    engine.gpu_memory_utilization =
        s.get_real("gpu_memory_utilization", engine.gpu_memory_utilization, 0, 1, true);
    engine.swap_blocks = s.get_int("swap_blocks", engine.swap_blocks, 0, 1e12);
    engine.unified_pool = s.get_bool("unified_pool", engine.unified_pool);
    engine.weight_switch = s.get_enum("switch", engine.weight_switch, kWeightSwitches);
    s.finish();
  }
  {
    const toml::table* t = r.opt_table("cluster");
    TableReader s(t ? *t : empty, "cluster", ctx.hints);
    ClusterSection& c = e.cluster;
    c.replicas = static_cast<int32_t>(s.get_int("replicas", c.replicas, 1, 1e5));
    c.executor = s.get_enum("executor", c.executor, kExecutorKinds);
    c.threads = static_cast<int32_t>(s.get_int("threads", c.threads, 0, 4096));
    c.costmodel = s.get_string("costmodel", c.costmodel);
    c.costmodel_lora = s.get_enum("costmodel_lora", c.costmodel_lora, kCostModelLoras);
    if (s.has("costmodel_lora") && c.costmodel.find('@') == std::string::npos)
      s.fail_at(*s.node("costmodel_lora"), "costmodel_lora",
                "prices the hardware presets' unmerged path (costmodel = \"<model>@<gpu>\")");
    if (const toml::table* st = s.opt_table("costmodel_scale")) {
      TableReader sc(*st, "cluster.costmodel_scale", ctx.hints);
      c.costmodel_scale.unmerged_ratio = sc.opt_real("unmerged_ratio", 1, 100);
      c.costmodel_scale.switch_iterations = sc.opt_real("switch_iterations", 0, 1e4, true);
      sc.finish();
      if (c.executor != ExecutorKind::costmodel)
        s.fail_at(*s.node("costmodel_scale"), "costmodel_scale",
                  "is only used with executor = \"costmodel\"");
    }
    c.migration_interval_s =
        s.get_real("migration_interval_s", c.migration_interval_s, 0, 1e9, true);
    c.migration_kv = s.get_enum("migration_kv", c.migration_kv, kMigrationKvs);
    c.link_gbps = s.get_real("link_gbps", c.link_gbps, 0, 1e6, true);
    if (c.executor == ExecutorKind::costmodel && c.costmodel.empty())
      s.fail_table(
          "[cluster] executor = \"costmodel\" needs costmodel = \"<preset or profile file>\"");
    if (c.executor != ExecutorKind::costmodel && !c.costmodel.empty())
      s.fail_at(*s.node("costmodel"), "costmodel", "is only used with executor = \"costmodel\"");
    s.finish();
  }
  {
    const toml::table* t = r.opt_table("metrics");
    TableReader s(t ? *t : empty, "metrics", ctx.hints);
    e.metrics.log_batches = s.get_bool("log_batches", false);
    SummaryOptions& m = e.metrics.summary;
    m.warmup_s = s.get_real("warmup_s", m.warmup_s, 0, 1e12);
    m.cooldown_s = s.get_real("cooldown_s", m.cooldown_s, 0, 1e12);
    m.slo_per_token_s = s.get_real("slo_per_token_s", m.slo_per_token_s, 0, 1e6, true);
    s.finish();
  }
  {
    const toml::table* t = r.opt_table("report");
    TableReader s(t ? *t : empty, "report", ctx.hints);
    if (auto v = s.opt_string_list("group_by")) e.report.group_by = *v;
    e.report.plot = s.get_bool("plot", false);
    s.finish();
  }
  {
    const toml::table* t = r.opt_table("plugins");
    TableReader s(t ? *t : empty, "plugins", ctx.hints);
    if (auto v = s.opt_path_list("paths"))
      for (const auto& p : *v) e.plugin_paths.emplace_back(p);
    s.finish();
  }
  e.scheduler = read_plugin(r, "scheduler", e.scheduler, ctx);
  e.threshold = read_plugin(r, "threshold", e.threshold, ctx);
  e.migration = read_plugin(r, "migration", e.migration, ctx);
  e.dispatcher = read_plugin(r, "dispatcher", e.dispatcher, ctx);
  r.consume("sweep");
  r.finish();
  return e;
}

void apply_overrides(toml::table& root, const std::vector<std::string>& overrides,
                     std::vector<std::pair<std::string, SourcePos>>& origins) {
  for (const auto& o : overrides) {
    const size_t eq = o.find('=');
    SourcePos pos{"--set " + o, 0, 0};
    if (eq == std::string::npos || eq == 0)
      throw InputError(fmt::format("{}: expected key=value", pos.str()));
    const std::string key = o.substr(0, eq);
    const std::string value = o.substr(eq + 1);
    // The sweep's points come from the file's [sweep] (read before overrides apply).
    if (key == "sweep" || key.rfind("sweep.", 0) == 0)
      throw InputError(
          fmt::format("{}: the sweep cannot be set from the command line; edit the "
                      "file's [sweep] table",
                      pos.str()));
    toml::table holder;
    try {
      holder = toml::parse("v = " + value);
    } catch (const toml::parse_error&) {
      holder = toml::table{};
      holder.insert_or_assign("v", value);
    }
    set_dotted(root, key, *holder.get("v"), pos);
    origins.emplace_back(key, pos);
  }
}

}  // namespace

std::vector<Experiment> parse_experiments(const std::string& text, const std::string& file,
                                          const std::vector<std::string>& overrides) {
  toml::table probe = parse_text(text, file);
  SweepShape shape = sweep_shape(probe, file);
  // A --set of a swept key pins that axis: the override wins over the sweep's values, and
  // stays a coordinate of every run (so [report] group_by still finds it).
  std::vector<std::pair<std::string, std::string>> pinned;
  for (const auto& o : overrides) {
    const std::string key = o.substr(0, o.find('='));
    const auto before = shape.axes.size();
    shape.axes.erase(std::remove_if(shape.axes.begin(), shape.axes.end(),
                                    [&](const Axis& a) { return a.key == key; }),
                     shape.axes.end());
    if (shape.axes.size() != before) pinned.emplace_back(key, o.substr(o.find('=') + 1));
  }

  std::vector<Experiment> out;
  const size_t num_variants = std::max<size_t>(shape.variants, 1);
  std::vector<size_t> idx(shape.axes.size(), 0);
  int32_t index = 0;
  for (size_t variant = 0; variant < num_variants; ++variant) {
    std::fill(idx.begin(), idx.end(), 0);
    while (true) {
      Ctx ctx;
      ctx.file = file;
      ctx.hints.file = file;
      toml::table root = parse_text(text, file);
      apply_overrides(root, overrides, ctx.hints.origins);
      std::vector<std::string> label;
      std::vector<std::pair<std::string, std::string>> coords = pinned;
      if (root.contains("sweep")) {
        toml::table sweep_src = parse_text(text, file);  // positions of the sweep entries
        const toml::table& src = *sweep_src.get("sweep")->as_table();
        if (shape.variants) {
          const toml::table& vt = *src.get("variants")->as_array()->get(variant)->as_table();
          std::string vname = fmt::format("variant{}", variant);
          for (const auto& [k, v] : vt) {
            const std::string key(k.str());
            if (key == "name") {
              if (!v.is_string())
                throw InputError(fmt::format("{}: [[sweep.variants]] name must be a string",
                                             node_pos(v, file).str()));
              vname = v.as_string()->get();
              continue;
            }
            // A plugin table in a variant replaces the base table (its parameters belong
            // to that plugin); other tables are merged key by key.
            const bool replace =
                std::find(kPluginTables.begin(), kPluginTables.end(), key) != kPluginTables.end();
            if (replace) {
              set_dotted(root, key, v, node_pos(v, file));
              collect_origins(v, key, file, ctx.hints.origins);
            } else {
              apply_leaves(root, v, {key}, file, ctx.hints.origins);
            }
          }
          label.push_back(vname);
          coords.emplace_back("variant", vname);
        }
        for (size_t a = 0; a < shape.axes.size(); ++a) {
          const toml::node* v = sweep_value(src, shape.axes[a], idx[a]);
          set_dotted(root, shape.axes[a].key, *v, node_pos(*v, file));
          ctx.hints.origins.emplace_back(shape.axes[a].key, node_pos(*v, file));
          label.push_back(shape.axes[a].key + "=" + value_text(*v));
          coords.emplace_back(shape.axes[a].key, value_text(*v));
        }
      }
      Experiment e = read_experiment(root, ctx);
      e.file_text = text;
      if (shape.axes.empty() && shape.variants == 0 && overrides.empty()) {
        e.text = text;
      } else {
        // The point's own file: running it reproduces this point alone.
        root.erase("sweep");
        std::ostringstream os;
        os << "# " << file << (label.empty() ? "" : ", sweep point: " + join(label, " "))
           << (overrides.empty() ? "" : ", --set " + join(overrides, " --set ")) << "\n"
           << toml::toml_formatter(root, toml::toml_formatter::default_flags &
                                             ~toml::format_flags::allow_literal_strings)
           << "\n";
        e.text = os.str();
      }
      e.label = join(label, " ");
      e.coords = coords;
      for (const auto& g : e.report.group_by) {
        const bool known =
            std::any_of(coords.begin(), coords.end(), [&](const auto& c) { return c.first == g; });
        if (!known && !coords.empty())
          throw InputError(
              fmt::format("{}: [report] group_by names '{}', which is not a sweep "
                          "coordinate (variant or a swept key)",
                          file, g));
      }
      e.index = index++;
      out.push_back(std::move(e));
      // next point of the cross product
      size_t a = 0;
      for (; a < idx.size(); ++a) {
        if (++idx[a] < shape.axes[a].count) break;
        idx[a] = 0;
      }
      if (a == idx.size()) break;
    }
  }
  return out;
}

std::vector<Experiment> load_experiments(const fs::path& file,
                                         const std::vector<std::string>& overrides) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(file, ec))
      throw InputError(fmt::format("{}: experiment file does not exist", file.string()));
    throw InputError(fmt::format("{}: cannot read experiment file", file.string()));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_experiments(ss.str(), file.string(), overrides);
}

}  // namespace lorasched
