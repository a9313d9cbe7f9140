// Workload generation: arrivals, adapter popularity, lengths, and the adapter trace writer.
// The algorithms and every rule about which setting wins are in docs/workloads.md.
#include "core/workload/workload.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/workload/artifact.hpp"
#include "core/workload/checks.hpp"
#include "core/workload/trace_io.hpp"

namespace lorasched {

namespace fs = std::filesystem;
using workload_detail::LlmTraceRow;

namespace {

// Independent random streams, one per aspect of the workload, so that changing e.g. the
// length model does not reshuffle the arrivals or the adapters.
enum Stream : uint64_t {
  kArrivalStream = 1,
  kAdapterStream = 2,
  kPromptStream = 3,
  kOutputStream = 4,
  kJointRowStream = 5,  // one trace row for both lengths
};

constexpr std::string_view kArrivalKinds = "poisson, gamma, trace, adapter-trace, artifact";
constexpr std::string_view kPopularityKinds = "uniform, zipf, drifting, trace";
constexpr std::string_view kLengthKinds = "fixed, uniform, lognormal, trace, from-trace";

bool one_of(std::string_view s, std::initializer_list<std::string_view> kinds) {
  return std::find(kinds.begin(), kinds.end(), s) != kinds.end();
}

using workload_detail::bad;
using workload_detail::require_non_negative;
using workload_detail::require_positive;

void validate_length(const LengthSpec& s, std::string_view name, const std::string& arrival) {
  if (!one_of(s.kind, {"fixed", "uniform", "lognormal", "trace", "from-trace"}))
    bad(fmt::format("unknown {} length kind '{}' (valid: {})", name, s.kind, kLengthKinds));
  if (arrival == "adapter-trace") {
    // The file's columns are authoritative; "fixed" is the untouched default.
    if (s.kind != "fixed" && s.kind != "from-trace")
      bad(
          fmt::format("{} length kind '{}' cannot be used with arrival 'adapter-trace', whose "
                      "lengths come from the file (use 'from-trace')",
                      name, s.kind));
    return;
  }
  if (s.kind == "from-trace" && arrival != "trace")
    bad(fmt::format("{} length kind 'from-trace' needs arrival 'trace' (got '{}')", name, arrival));
  if (s.kind == "fixed" && s.value < 1)
    bad(fmt::format("{}.value must be >= 1 (got {})", name, s.value));
  if (s.kind == "uniform" || s.kind == "lognormal") {
    if (s.min < 1) bad(fmt::format("{}.min must be >= 1 (got {})", name, s.min));
    if (s.max < s.min)
      bad(fmt::format("{}.max ({}) must be >= {}.min ({})", name, s.max, name, s.min));
  }
  if (s.kind == "lognormal") {
    require_positive(s.median, fmt::format("{}.median", name));
    require_non_negative(s.sigma, fmt::format("{}.sigma", name));
  }
  if (s.kind == "trace" && s.trace.empty())
    bad(fmt::format("{} length kind 'trace' needs a trace file ({}.trace)", name, name));
}

void validate(const WorkloadSpec& spec, int32_t num_adapters) {
  if (num_adapters < 1) bad(fmt::format("num_adapters must be >= 1 (got {})", num_adapters));
  const std::string& arrival = spec.arrival;
  if (!one_of(arrival, {"poisson", "gamma", "trace", "adapter-trace", "artifact"}))
    bad(fmt::format("unknown arrival kind '{}' (valid: {})", arrival, kArrivalKinds));
  if (spec.num_requests && *spec.num_requests < 1)
    bad(fmt::format("num_requests must be >= 1 (got {})", *spec.num_requests));
  if (spec.duration_s) require_positive(*spec.duration_s, "duration_s");
  if (spec.max_prompt_tokens && *spec.max_prompt_tokens < 1)
    bad(fmt::format("max_prompt_tokens must be >= 1 (got {})", *spec.max_prompt_tokens));
  if (spec.max_output_tokens && *spec.max_output_tokens < 1)
    bad(fmt::format("max_output_tokens must be >= 1 (got {})", *spec.max_output_tokens));

  const bool is_trace = arrival == "trace" || arrival == "adapter-trace";
  if (arrival == "poisson" || arrival == "gamma" || arrival == "artifact")
    require_positive(spec.rate, "rate");
  if (arrival == "gamma" || arrival == "artifact") require_positive(spec.cv, "cv");
  if ((arrival == "poisson" || arrival == "gamma") && !spec.num_requests && !spec.duration_s)
    bad(fmt::format("arrival '{}' needs num_requests or duration_s", arrival));
  if (arrival == "artifact" && !spec.num_requests)
    bad("arrival 'artifact' needs num_requests (the artifact's --num-prompts)");
  if (is_trace) {
    if (spec.trace.empty()) bad(fmt::format("arrival '{}' needs a trace file (trace)", arrival));
    require_positive(spec.time_scale, "time_scale");
    if (spec.target_rate) {
      require_positive(*spec.target_rate, "target_rate");
      if (spec.time_scale != 1.0)
        bad("set time_scale or target_rate, not both (target_rate fixes the time scale)");
    }
    require_non_negative(spec.trace_start_s, "trace_start_s");
  }

  const PopularitySpec& p = spec.popularity;
  if (!one_of(p.kind, {"uniform", "zipf", "drifting", "trace"}))
    bad(fmt::format("unknown popularity kind '{}' (valid: {})", p.kind, kPopularityKinds));
  if (p.kind == "trace" && arrival != "adapter-trace")
    bad(fmt::format("popularity 'trace' needs arrival 'adapter-trace' (got '{}')", arrival));
  if (arrival == "adapter-trace" && p.kind != "trace" && p.kind != "uniform")
    bad(
        fmt::format("popularity '{}' cannot be used with arrival 'adapter-trace', whose adapters "
                    "come from the file (use 'trace')",
                    p.kind));
  if (arrival == "artifact" && p.kind != "uniform")
    bad(
        fmt::format("popularity '{}' cannot be used with arrival 'artifact', whose adapters come "
                    "from its function-to-adapter mapping",
                    p.kind));
  if (p.kind == "zipf") require_non_negative(p.zipf_s, "popularity.zipf_s");
  if (p.kind == "drifting") {
    if (p.hot_count < 1 || p.hot_count > num_adapters)
      bad(fmt::format("popularity.hot_count must be in [1, num_adapters = {}] (got {})",
                      num_adapters, p.hot_count));
    if (!std::isfinite(p.hot_share) || p.hot_share < 0 || p.hot_share > 1)
      bad(fmt::format("popularity.hot_share must be in [0, 1] (got {})", p.hot_share));
    require_positive(p.drift_period_s, "popularity.drift_period_s");
  }

  validate_length(spec.prompt, "prompt", arrival);
  validate_length(spec.output, "output", arrival);
  if (arrival == "artifact") workload_detail::validate_artifact(spec.artifact);
}

// ---- arrivals ---------------------------------------------------------------------------------

std::vector<RequestSpec> renewal_arrivals(const WorkloadSpec& spec, uint64_t seed) {
  Rng rng(seed, kArrivalStream);
  const bool poisson = spec.arrival == "poisson";
  const double shape = 1.0 / (spec.cv * spec.cv);
  const double scale = spec.cv * spec.cv / spec.rate;
  std::vector<RequestSpec> reqs;
  if (spec.num_requests)
    reqs.reserve(static_cast<size_t>(std::min<int64_t>(*spec.num_requests, 1 << 24)));
  double t = 0;
  while (!spec.num_requests || static_cast<int64_t>(reqs.size()) < *spec.num_requests) {
    t += poisson ? rng.exponential(spec.rate) : rng.gamma(shape, scale);
    if (spec.duration_s && t >= *spec.duration_s) break;
    RequestSpec r;
    r.arrival = t;
    reqs.push_back(r);
  }
  return reqs;
}

// trace_start_s, num_requests, time_scale / target_rate, duration_s, in that order.
void apply_trace_window(std::vector<RequestSpec>& reqs, const WorkloadSpec& spec) {
  const std::string name = spec.trace.string();
  const double start = spec.trace_start_s;
  if (start > 0) {
    const auto first =
        std::lower_bound(reqs.begin(), reqs.end(), start,
                         [](const RequestSpec& r, double t) { return r.arrival < t; });
    reqs.erase(reqs.begin(), first);
    for (auto& r : reqs) r.arrival -= start;
    if (reqs.empty())
      throw InputError(
          fmt::format("trace '{}' has no requests at or after trace_start_s = {}", name, start));
  }
  if (spec.num_requests && static_cast<int64_t>(reqs.size()) > *spec.num_requests)
    reqs.resize(static_cast<size_t>(*spec.num_requests));
  double factor = spec.time_scale;
  if (spec.target_rate) {
    const double span = reqs.back().arrival - reqs.front().arrival;
    if (reqs.size() < 2 || !(span > 0))
      throw InputError(fmt::format(
          "trace '{}': target_rate needs at least two requests at different times", name));
    const double observed = static_cast<double>(reqs.size() - 1) / span;
    factor = observed / *spec.target_rate;
  }
  if (factor != 1.0)
    for (auto& r : reqs) r.arrival *= factor;
  if (spec.duration_s) {
    const auto end = std::lower_bound(reqs.begin(), reqs.end(), *spec.duration_s,
                                      [](const RequestSpec& r, double t) { return r.arrival < t; });
    reqs.erase(end, reqs.end());
    if (reqs.empty())
      throw InputError(
          fmt::format("trace '{}' has no requests before duration_s = {}", name, *spec.duration_s));
  }
}

// ---- popularity -------------------------------------------------------------------------------

void assign_adapters(std::vector<RequestSpec>& reqs, const PopularitySpec& p, int32_t n,
                     uint64_t seed) {
  Rng rng(seed, kAdapterStream);
  if (p.kind == "uniform") {
    for (auto& r : reqs) r.adapter = static_cast<int32_t>(rng.uniform_int(0, n - 1));
  } else if (p.kind == "zipf") {
    std::vector<double> cum(static_cast<size_t>(n));
    double total = 0;
    for (int32_t i = 0; i < n; ++i)
      cum[static_cast<size_t>(i)] = total += std::pow(i + 1.0, -p.zipf_s);
    for (auto& r : reqs) {
      const double u = rng.uniform() * total;
      const auto it = std::upper_bound(cum.begin(), cum.end(), u);
      r.adapter = static_cast<int32_t>(std::min<ptrdiff_t>(it - cum.begin(), n - 1));
    }
  } else if (p.kind == "drifting") {
    const int64_t hot = p.hot_count, cold = n - p.hot_count;
    for (auto& r : reqs) {
      const auto epoch = static_cast<int64_t>(std::floor(r.arrival / p.drift_period_s));
      const int64_t base = (epoch % n) * hot % n;  // hot set: base .. base+hot-1 (mod n)
      int64_t offset;
      if (cold == 0 || rng.uniform() < p.hot_share)
        offset = rng.uniform_int(0, hot - 1);
      else
        offset = hot + rng.uniform_int(0, cold - 1);
      r.adapter = static_cast<int32_t>((base + offset) % n);
    }
  }
}

// ---- lengths ----------------------------------------------------------------------------------

class TraceCache {
 public:
  const std::vector<LlmTraceRow>& get(const fs::path& path) {
    auto it = rows_.find(path);
    if (it == rows_.end()) it = rows_.emplace(path, workload_detail::read_llm_trace(path)).first;
    return it->second;
  }

 private:
  std::map<fs::path, std::vector<LlmTraceRow>> rows_;
};

int32_t draw_length(const LengthSpec& s, Rng& rng, const std::vector<LlmTraceRow>* rows,
                    bool prompt) {
  if (s.kind == "fixed") return s.value;
  if (s.kind == "uniform") return static_cast<int32_t>(rng.uniform_int(s.min, s.max));
  if (s.kind == "lognormal") {
    const double v = std::round(s.median * std::exp(s.sigma * rng.normal()));
    return static_cast<int32_t>(
        std::clamp(v, static_cast<double>(s.min), static_cast<double>(s.max)));
  }
  // "trace"
  const auto& row =
      (*rows)[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(rows->size()) - 1))];
  return prompt ? row.prompt : row.output;
}

bool same_file(const fs::path& a, const fs::path& b) {
  if (a.lexically_normal() == b.lexically_normal()) return true;
  std::error_code ec;
  return fs::equivalent(a, b, ec) && !ec;
}

void assign_lengths(std::vector<RequestSpec>& reqs, const WorkloadSpec& spec, uint64_t seed) {
  if (spec.arrival == "adapter-trace") return;  // the file's columns
  TraceCache cache;
  const LengthSpec& ps = spec.prompt;
  const LengthSpec& os = spec.output;
  const auto* prows = ps.kind == "trace" ? &cache.get(ps.trace) : nullptr;
  const auto* orows = os.kind == "trace" ? &cache.get(os.trace) : nullptr;
  if (ps.kind == "trace" && os.kind == "trace" && same_file(ps.trace, os.trace)) {
    Rng rng(seed, kJointRowStream);
    const auto last = static_cast<int64_t>(prows->size()) - 1;
    for (auto& r : reqs) {
      const auto& row = (*prows)[static_cast<size_t>(rng.uniform_int(0, last))];
      r.prompt_tokens = row.prompt;
      r.output_tokens = row.output;
    }
    return;
  }
  Rng prng(seed, kPromptStream), orng(seed, kOutputStream);
  for (auto& r : reqs) {
    if (ps.kind != "from-trace") r.prompt_tokens = draw_length(ps, prng, prows, true);
    if (os.kind != "from-trace") r.output_tokens = draw_length(os, orng, orows, false);
  }
}

}  // namespace

std::vector<RequestSpec> generate_workload(const WorkloadSpec& spec, int32_t num_adapters,
                                           uint64_t seed) {
  validate(spec, num_adapters);
  std::vector<RequestSpec> reqs;
  bool adapters_given = false;
  if (spec.arrival == "poisson" || spec.arrival == "gamma") {
    reqs = renewal_arrivals(spec, seed);
    if (reqs.empty())
      bad(fmt::format("no request arrives before duration_s = {} at rate {}", *spec.duration_s,
                      spec.rate));
  } else if (spec.arrival == "trace") {
    const auto rows = workload_detail::read_llm_trace(spec.trace);
    reqs.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      reqs[i].arrival = rows[i].time;
      reqs[i].prompt_tokens = rows[i].prompt;
      reqs[i].output_tokens = rows[i].output;
    }
    apply_trace_window(reqs, spec);
  } else if (spec.arrival == "adapter-trace") {
    reqs = workload_detail::read_adapter_trace(spec.trace, num_adapters);
    apply_trace_window(reqs, spec);
    adapters_given = true;
  } else {  // artifact
    reqs = workload_detail::artifact_arrivals(spec, num_adapters, seed);
    adapters_given = true;
  }

  if (reqs.empty())  // only the artifact can get here: duration_s before its first arrival
    bad(fmt::format("no request arrives before duration_s"));
  if (!adapters_given) assign_adapters(reqs, spec.popularity, num_adapters, seed);
  assign_lengths(reqs, spec, seed);
  for (size_t i = 0; i < reqs.size(); ++i) {
    RequestSpec& r = reqs[i];
    r.id = static_cast<int64_t>(i);
    r.prompt_tokens = std::max(r.prompt_tokens, 1);  // trace rows may hold 0
    r.output_tokens = std::max(r.output_tokens, 1);
    if (spec.max_prompt_tokens)
      r.prompt_tokens = std::min(r.prompt_tokens, *spec.max_prompt_tokens);
    if (spec.max_output_tokens)
      r.output_tokens = std::min(r.output_tokens, *spec.max_output_tokens);
    LORASCHED_CHECK(i == 0 || reqs[i - 1].arrival <= r.arrival, "arrivals out of order at {}", i);
  }
  return reqs;
}

void write_adapter_trace(const fs::path& path, const std::vector<RequestSpec>& reqs) {
  fs::path partial = path;
  partial += ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(fmt::format("cannot write adapter trace '{}'", partial.string()));
    out << "arrival_s,adapter,prompt_tokens,output_tokens\n";
    std::string buf;
    for (const auto& r : reqs) {
      buf.clear();
      fmt::format_to(std::back_inserter(buf), "{:.17g},{},{},{}\n", r.arrival, r.adapter,
                     r.prompt_tokens, r.output_tokens);
      out << buf;
    }
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(partial, ec);
      throw Error(ExitCode::runtime,
                  fmt::format("writing adapter trace '{}' failed", partial.string()));
    }
  }
  std::error_code ec;
  fs::rename(partial, path, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove(partial, ec2);
    throw Error(ExitCode::runtime, fmt::format("cannot rename '{}' to '{}': {}", partial.string(),
                                               path.string(), ec.message()));
  }
}

bool rate_is_trace_target(const WorkloadSpec& w) {
  return w.arrival == "trace" || w.arrival == "adapter-trace";
}

double offered_rate(const WorkloadSpec& w) {
  if (rate_is_trace_target(w)) return w.target_rate.value_or(0.0);
  return w.rate;
}

void set_offered_rate(WorkloadSpec& w, double rate) {
  if (rate_is_trace_target(w))
    w.target_rate = rate;
  else
    w.rate = rate;
}

}  // namespace lorasched
