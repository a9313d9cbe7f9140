// `lorasched profile`: measures a cost-model profile of the cpu executor (or, with --executor
// cuda, of the cuda executor) on this machine (core/exec/profiler.hpp, docs/costmodel.md); and the
// fidelity section of `lorasched report`: the error of a costmodel run against a cpu run of the
// same workload.
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>

#include "core/adapters/synthetic.hpp"
#include "core/cli/commands.hpp"
#include "core/common/error.hpp"
#include "core/exec/cpu_executor.hpp"
#include "core/exec/cuda_factory.hpp"
#include "core/exec/profile_grid.hpp"
#include "core/exec/profile_json.hpp"
#include "core/exec/profiler.hpp"
#include "core/metrics/h5.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"

namespace lorasched {

namespace {

// The pool the cpu executor gets when an experiment sets none (core/cluster/simulation.cpp).
constexpr double kCpuDefaultPoolBytes = 0.25 * 1024 * 1024 * 1024;

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return "unknown";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

int cmd_profile(const ProfileOptions& opts) {
  if (opts.model != "tiny" && opts.model != "small")
    throw InputError(
        fmt::format("profile: --model {}: the cpu executor profiles 'tiny' or 'small' "
                    "(the Llama-2 shapes have hardware presets: see docs/costmodel.md)",
                    opts.model));
  if (opts.ranks.empty()) throw InputError("profile: --adapters-ranks lists no rank");
  for (int r : opts.ranks)
    if (r < 1 || r > 1024)
      throw InputError(fmt::format("profile: --adapters-ranks: rank {} is not in 1..1024", r));
  if (opts.output.empty()) throw InputError("profile: -o FILE.json is required");
  const bool cuda = opts.executor == "cuda";
  if (!cuda && opts.executor != "cpu")
    throw InputError(fmt::format("profile: --executor {}: 'cpu' or 'cuda'", opts.executor));
  if (cuda) require_cuda_device();  // "executor cuda: no CUDA device (...)", exit 1

  const ModelShape shape = model_preset(opts.model);
  ProfileGrid grid =
      default_profile_grid(shape, opts.quick, {opts.ranks.begin(), opts.ranks.end()});
  if (opts.repeats > 0) grid.repeats = opts.repeats;
  const int threads = cuda ? 0 : set_cpu_threads(opts.threads);
  constexpr int32_t kBlock = 16;
  const int kElem = cuda ? kCudaElementBytes : 4;

  // The model and the adapters, seeded; the grid's adapters per rank.
  const uint64_t seed = 20240601;
  ModelWeights weights = synthetic_model(shape, seed);
  const double weight_bytes = static_cast<double>(shape.num_parameters()) * kElem;
  auto host = std::make_shared<std::vector<LoraAdapterWeights>>();
  ProfileTarget target;
  target.shape = shape;
  target.element_bytes = kElem;
  target.block_size = kBlock;
  target.block_bytes = static_cast<int64_t>(shape.kv_bytes_per_token(kElem)) * kBlock;
  for (int32_t r : grid.ranks)
    for (int32_t i = 0; i < profile_adapters_per_rank(grid); ++i) {
      AdapterInfo a;
      a.id = static_cast<int32_t>(host->size());
      a.name = fmt::format("rank{}-{}", r, i);
      a.rank = r;
      a.num_parameters = lora_parameters(shape, r);
      a.bytes = a.num_parameters * kElem;
      host->push_back(
          synthetic_adapter(shape, r, r, false, seed + 1 + static_cast<uint64_t>(a.id), a.name));
      target.adapters.push_back(a);
    }
  int32_t max_seqs = 1;
  for (int32_t b : grid.decode_batch) max_seqs = std::max(max_seqs, b);
  target.kv_blocks = grid.max_kv_tokens / kBlock + max_seqs + 1;
  std::unique_ptr<Executor> exec =
      cuda ? make_cuda_executor(weights, host, target.kv_blocks, kBlock)
           : std::make_unique<CpuExecutor>(std::move(weights), host, target.kv_blocks, kBlock);
  target.executor = exec.get();

  if (cuda)
    fmt::print(stderr, "profiling the cuda executor: {}, ranks {}, {} grid\n", exec->device(),
               fmt::join(grid.ranks, ","), opts.quick ? "quick" : "full");
  else
    fmt::print(stderr, "profiling the cpu executor: model {}, {} thread{}, ranks {}, {} grid\n",
               shape.name, threads, threads == 1 ? "" : "s", fmt::join(grid.ranks, ","),
               opts.quick ? "quick" : "full");
  Profile p =
      run_profile(target, grid, [](std::string_view line) { fmt::print(stderr, "  {}\n", line); });
  p.machine.hostname = hostname();
  p.machine.cpu_model = cpu_model();
  p.machine.threads = threads;
  p.machine.executor = exec->name();
  p.machine.device = exec->device();
  p.date = utc_now();
  p.default_pool_bytes = kCpuDefaultPoolBytes;
  p.device_memory_bytes = weight_bytes + kCpuDefaultPoolBytes;
  if (cuda) {  // the pool is then the device's memory x gpu_memory_utilization - weights
    p.default_pool_bytes = 0;
    p.device_memory_bytes = cuda_device_info().total_bytes;
  }
  write_profile(p, opts.output);
  fmt::print("profile: {} points in {:.1f} s -> {}\n",
             p.prefill.size() + p.decode.size() + p.lora.size() + p.mixed.size() + p.merge.size() +
                 p.unmerge.size() + p.load.size() + p.swap_out.size() + p.swap_in.size(),
             p.seconds_taken, opts.output);
  return 0;
}

// ---- fidelity ---------------------------------------------------------------------------------

namespace {

// Same workload: the same requests (arrival, adapter, prompt length) in the same order.
bool same_workload(const StoredRun& a, const StoredRun& b) {
  const auto& x = a.records.requests;
  const auto& y = b.records.requests;
  if (a.attrs.seed != b.attrs.seed || x.size() != y.size() || x.empty()) return false;
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i].arrival != y[i].arrival || x[i].adapter != y[i].adapter ||
        x[i].prompt_tokens != y[i].prompt_tokens)
      return false;
  return true;
}

double mean_of(const RecordVector<IterationRecord>& it, bool with_switch) {
  if (it.empty()) return NAN;
  double s = 0;
  for (const auto& r : it) s += r.duration + (with_switch ? r.switch_time : 0.0);
  return s / static_cast<double>(it.size());
}

}  // namespace

void print_fidelity(std::ostream& out, const std::vector<StoredRun>& runs) {
  std::vector<bool> used(runs.size(), false);
  for (size_t c = 0; c < runs.size(); ++c) {
    if (runs[c].attrs.executor != "costmodel") continue;
    for (size_t r = 0; r < runs.size(); ++r) {
      if (used[r] || runs[r].attrs.executor != "cpu" || !same_workload(runs[r], runs[c])) continue;
      used[r] = true;
      const StoredRun& cpu = runs[r];
      const StoredRun& cm = runs[c];
      auto name = [](const StoredRun& s) {
        return s.attrs.label.empty() ? s.group : s.attrs.label;
      };
      out << fmt::format("\nfidelity: costmodel run '{}' against cpu run '{}' ({} requests)\n",
                         name(cm), name(cpu), cpu.records.requests.size());
      out << fmt::format("  {:<28} {:>12} {:>12} {:>9}\n", "figure", "cpu", "costmodel", "error");
      auto row = [&](const char* what, double a, double b, double scale) {
        const std::string err = std::isfinite(a) && std::isfinite(b) && a != 0
                                    ? fmt::format("{:+.1f}%", (b - a) / a * 100.0)
                                    : std::string("-");
        out << fmt::format("  {:<28} {:>12.4f} {:>12.4f} {:>9}\n", what, a * scale, b * scale, err);
      };
      row("latency mean (s)", cpu.summary.latency_mean, cm.summary.latency_mean, 1);
      row("latency P90 (s)", cpu.summary.latency_p90, cm.summary.latency_p90, 1);
      row("throughput (req/s)", cpu.summary.throughput_rps, cm.summary.throughput_rps, 1);
      row("throughput (tok/s)", cpu.summary.throughput_tokens, cm.summary.throughput_tokens, 1);
      row("iteration time mean (ms)", mean_of(cpu.records.iterations, false),
          mean_of(cm.records.iterations, false), 1e3);
      row("iteration + switch mean (ms)", mean_of(cpu.records.iterations, true),
          mean_of(cm.records.iterations, true), 1e3);
      row("iterations", static_cast<double>(cpu.summary.iterations),
          static_cast<double>(cm.summary.iterations), 1);
      row("switch time total (s)", cpu.summary.switch_time_total, cm.summary.switch_time_total, 1);
      break;
    }
  }
}

}  // namespace lorasched
