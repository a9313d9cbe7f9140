// Decision time of the scheduler plugins per iteration, called through the plugin ABI
// exactly as the engine calls them, on hand-built replica states: 10 / 100 / 1,000
// adapters and 100 / 10,000 queued requests (Zipf-skewed over adapters).
#include <benchmark/benchmark.h>

#include <cmath>

#include "core/common/rng.hpp"
#include "core/plugin/loader.hpp"
#include "lorasched/plugin/testkit.hpp"

namespace {

using namespace lorasched;

PluginRegistry& registry() {
  static PluginRegistry r(plugin_search_path());
  return r;
}

template <class T>
PluginInstance<T> make(const std::string& name, int32_t adapters, api::Threshold* thr = nullptr) {
  auto lib = registry().find(api::kind_of<T>(), name);
  api::CreateArgs args;
  args.params = testkit::params_for(lib->info);
  args.num_adapters = adapters;
  args.limits.max_adapters_per_batch = adapters;
  args.threshold = thr;
  return instantiate<T>(lib, args);
}

// A queue of `queued` requests over `adapters` adapters, Zipf(1.0) popularity.
testkit::ReplicaBuilder state(int32_t adapters, int64_t queued) {
  testkit::ReplicaBuilder b(adapters);
  std::vector<double> cdf(static_cast<size_t>(adapters));
  double sum = 0;
  for (int32_t a = 0; a < adapters; ++a) cdf[static_cast<size_t>(a)] = (sum += 1.0 / (a + 1));
  Rng rng(7);
  for (int64_t i = 0; i < queued; ++i) {
    const double u = rng.uniform() * sum;
    const auto a = static_cast<int32_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    b.add(std::min(a, adapters - 1), 0.001 * static_cast<double>(i));
  }
  return b;
}

void BM_Decision(benchmark::State& st, const std::string& scheduler, const std::string& threshold) {
  const auto adapters = static_cast<int32_t>(st.range(0));
  const int64_t queued = st.range(1);
  auto thr = make<api::Threshold>(threshold, adapters);
  auto sched = make<api::Scheduler>(scheduler, adapters, thr.get());
  auto b = state(adapters, queued);
  const api::ReplicaView& view = b.view();
  size_t planned = 0;
  for (auto _ : st) {
    auto plan = sched->checked_plan(view);
    if (!plan) st.SkipWithError(plan.error().c_str());
    planned += plan.value().requests.size();
    benchmark::DoNotOptimize(planned);
  }
  st.counters["adapters"] = adapters;
  st.counters["queued"] = static_cast<double>(queued);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t a : {10, 100, 1000})
    for (int64_t q : {100, 10000}) b->Args({a, q});
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(BM_Decision, dlora_adaptive, std::string("dlora"), std::string("dlora-adaptive"))
    ->Apply(args);
BENCHMARK_CAPTURE(BM_Decision, unmerged_fcfs, std::string("unmerged-fcfs"), std::string("fixed"))
    ->Apply(args);
BENCHMARK_CAPTURE(BM_Decision, merged_only, std::string("merged-only"), std::string("fixed"))
    ->Apply(args);

}  // namespace

BENCHMARK_MAIN();
