// What one scheduling decision costs, at 10 / 100 / 1,000 adapters and 100 / 10,000 queued
// requests (Zipf-skewed over adapters):
//  BM_Decision: the scheduler plugin's plan alone, called through the plugin ABI exactly as
//    the engine calls it, on a hand-built replica view;
//  BM_EngineStep: what the engine pays per iteration, a whole Replica::step on the cost-model
//    executor in a steady state (each step, as many requests arrive as finished, so the queue
//    stays at its size): the view's upkeep, the plan, its validation, admission and records.
//    Counter decision_us: the part the engine records as its decision (decision_wall_us).
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>

#include "core/common/rng.hpp"
#include "core/engine/replica.hpp"
#include "core/exec/costmodel_factory.hpp"
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

// Adapters drawn with Zipf(1.0) popularity.
class ZipfAdapters {
 public:
  explicit ZipfAdapters(int32_t adapters) : cdf_(static_cast<size_t>(adapters)) {
    for (int32_t a = 0; a < adapters; ++a) cdf_[static_cast<size_t>(a)] = (sum_ += 1.0 / (a + 1));
  }
  int32_t operator()(Rng& rng) const {
    const double u = rng.uniform() * sum_;
    const auto a =
        static_cast<int32_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    return std::min(a, static_cast<int32_t>(cdf_.size()) - 1);
  }

 private:
  std::vector<double> cdf_;
  double sum_ = 0;
};

// A queue of `queued` requests over `adapters` adapters, Zipf(1.0) popularity.
testkit::ReplicaBuilder state(int32_t adapters, int64_t queued) {
  testkit::ReplicaBuilder b(adapters);
  const ZipfAdapters zipf(adapters);
  Rng rng(7);
  for (int64_t i = 0; i < queued; ++i) b.add(zipf(rng), 0.001 * static_cast<double>(i));
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

// One replica of the cost-model executor (dLoRA's timing model: the executor's own cost is
// negligible), all adapters resident outside the KV pool, a pool no request outgrows, B = 16.
// Requests of 32 prompt tokens and 2..64 output tokens arrive 1 ms apart; the queue starts
// with `queued` of them, and each step as many arrive as finished.
void BM_EngineStep(benchmark::State& st, const std::string& scheduler,
                   const std::string& threshold) {
  const auto adapters = static_cast<int32_t>(st.range(0));
  const int64_t queued = st.range(1);
  const int64_t steps = static_cast<int64_t>(st.max_iterations);
  std::vector<AdapterInfo> infos(static_cast<size_t>(adapters));
  for (int32_t a = 0; a < adapters; ++a) infos[static_cast<size_t>(a)] = {a, "", 16, 0, 0};
  api::ReplicaLimits limits;
  limits.max_adapters_per_batch = adapters;
  auto thr = make<api::Threshold>(threshold, adapters);
  api::Threshold* thr_ptr = thr.get();
  auto sched = make<api::Scheduler>(scheduler, adapters, thr_ptr);
  auto executor = std::make_unique<CostModelExecutor>(
      std::shared_ptr<const CostModel>(make_cost_model("dlora-artifact", ModelShape{})), infos);
  executor->set_block_bytes(1);
  ReplicaConfig rc;
  rc.limits = limits;
  rc.pool_blocks = 8 * (queued + limits.max_batch_size * steps);
  rc.block_bytes = 1;
  rc.unified_pool = false;
  std::vector<Request> requests;
  requests.reserve(static_cast<size_t>(queued + limits.max_batch_size * steps + 1));
  RunRecords records;
  records.iterations.reserve(static_cast<size_t>(steps));
  Replica replica(rc, infos, std::move(executor), std::move(sched), std::move(thr), requests,
                  records);
  for (int32_t a = 0; a < adapters; ++a) replica.preload(a);
  const ZipfAdapters zipf(adapters);
  Rng rng(7);
  double last_arrival = 0;
  auto arrive = [&](double now) {
    Request r;
    last_arrival = std::max(now, last_arrival + 0.001);
    r.spec = {static_cast<int64_t>(requests.size()), last_arrival, zipf(rng), 32,
              static_cast<int32_t>(rng.uniform_int(2, 64))};
    r.record.id = r.spec.id;
    r.record.adapter = r.spec.adapter;
    r.record.arrival = r.spec.arrival;
    r.record.prompt_tokens = r.spec.prompt_tokens;
    requests.push_back(r);
    replica.add(r.spec.id, now);
  };
  for (int64_t i = 0; i < queued; ++i) arrive(0);
  double now = last_arrival;
  for (auto _ : st) {
    const std::optional<double> end = replica.step(now);
    now = end ? *end : now + 0.001;
    while (replica.unfinished() < queued) arrive(now);
  }
  double decision = 0;
  for (const auto& it : records.iterations) decision += it.decision_wall_us;
  st.counters["adapters"] = adapters;
  st.counters["queued"] = static_cast<double>(queued);
  st.counters["decision_us"] =
      records.iterations.empty() ? 0 : decision / static_cast<double>(records.iterations.size());
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
BENCHMARK_CAPTURE(BM_Decision, mixed, std::string("mixed"), std::string("fixed"))->Apply(args);

// A fixed number of steps: the pool and the request vector are sized for them up front.
void step_args(benchmark::internal::Benchmark* b) {
  args(b);
  b->Iterations(4000);
}
BENCHMARK_CAPTURE(BM_EngineStep, dlora_adaptive, std::string("dlora"),
                  std::string("dlora-adaptive"))
    ->Apply(step_args);
BENCHMARK_CAPTURE(BM_EngineStep, unmerged_fcfs, std::string("unmerged-fcfs"), std::string("fixed"))
    ->Apply(step_args);
BENCHMARK_CAPTURE(BM_EngineStep, merged_only, std::string("merged-only"), std::string("fixed"))
    ->Apply(step_args);
BENCHMARK_CAPTURE(BM_EngineStep, mixed, std::string("mixed"), std::string("fixed"))
    ->Apply(step_args);

}  // namespace

BENCHMARK_MAIN();
