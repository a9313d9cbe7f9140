// One replica driven step by step with scripted plans, on the `dlora-artifact` timing model
// (iterations 15 / 27 ms, loads and swaps free): what Replica::step does when a plan admits
// nothing. Expected values are derived by hand from the admission rules (docs/policies.md).
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/engine/replica.hpp"
#include "core/exec/costmodel_factory.hpp"

namespace lorasched {
namespace {

using api::IterationPlan;
using api::Mode;
using api::ReplicaView;

// A scheduler that returns whatever the test's script says for the view at hand.
class Scripted : public api::Scheduler {
 public:
  using Script = std::function<IterationPlan(const ReplicaView&)>;
  explicit Scripted(const api::CreateArgs&) {}
  IterationPlan plan(const ReplicaView& view) override { return script(view); }
  Script script;
};

class Fixed : public api::Threshold {
 public:
  explicit Fixed(const api::CreateArgs&) {}
  api::Thresholds current() const override { return {}; }
  api::Thresholds on_period_end(const api::PeriodStats&) override { return {}; }
};

template <class T>
PluginInstance<T> local_plugin(const char* name, T* obj) {
  auto lib = std::make_shared<PluginLibrary>();
  lib->info.name = name;
  lib->info.kind = api::kind_of<T>();
  return PluginInstance<T>(lib, obj);
}

constexpr int64_t kBlockBytes = 1000;

// The cost model, except that loading an adapter throws: a device fault in the middle of a
// step, after the plan was checked, while admission forms the batch.
class FailingLoad : public Executor {
 public:
  explicit FailingLoad(std::unique_ptr<Executor> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  bool needs_tokens() const override { return inner_->needs_tokens(); }
  IterationResult run(const ExecBatch& b) override { return inner_->run(b); }
  std::vector<CostStep> switch_weights(api::AdapterId from, api::AdapterId to,
                                       SwitchMethod method) override {
    return inner_->switch_weights(from, to, method);
  }
  CostStep load_adapter(api::AdapterId) override { throw std::runtime_error("device lost"); }
  void evict_adapter(api::AdapterId a) override { inner_->evict_adapter(a); }
  CostStep swap_out(api::RequestId r, std::span<const int32_t> b) override {
    return inner_->swap_out(r, b);
  }
  CostStep swap_in(api::RequestId r, std::span<const int32_t> b) override {
    return inner_->swap_in(r, b);
  }
  KvData export_kv(std::span<const int32_t> b) override { return inner_->export_kv(b); }
  void import_kv(std::span<const int32_t> b, const KvData& kv) override {
    inner_->import_kv(b, kv);
  }

 private:
  std::unique_ptr<Executor> inner_;
};

struct Fixture {
  std::vector<AdapterInfo> adapters;
  std::vector<Request> requests;
  RunRecords records;
  api::GuardedScheduler<Scripted>* scheduler = nullptr;
  std::unique_ptr<Replica> replica;

  // Adapters of the given sizes in pool blocks; a unified pool of `pool_blocks`, watermark 0,
  // swap preemption, blocks of 16 tokens.
  Fixture(std::vector<int64_t> adapter_blocks, int64_t pool_blocks, bool failing_load = false) {
    for (size_t a = 0; a < adapter_blocks.size(); ++a) {
      AdapterInfo info;
      info.id = static_cast<int32_t>(a);
      info.rank = 8;
      info.bytes = adapter_blocks[a] * kBlockBytes;
      adapters.push_back(info);
    }
    api::CreateArgs args;
    args.num_adapters = static_cast<int32_t>(adapters.size());
    scheduler = new api::GuardedScheduler<Scripted>(args);
    auto executor = std::make_unique<CostModelExecutor>(
        std::shared_ptr<const CostModel>(make_cost_model("dlora-artifact", ModelShape{})),
        adapters);
    executor->set_block_bytes(kBlockBytes);
    std::unique_ptr<Executor> exec = std::move(executor);
    if (failing_load) exec = std::make_unique<FailingLoad>(std::move(exec));
    ReplicaConfig rc;
    rc.watermark = 0;
    rc.swap_preemption = true;
    rc.pool_blocks = pool_blocks;
    rc.block_bytes = kBlockBytes;
    rc.host_blocks = 1000;
    rc.unified_pool = true;
    rc.limits.max_adapters_per_batch = 0;
    requests.reserve(16);  // the replica keeps a reference to the vector, not to elements
    replica = std::make_unique<Replica>(
        rc, adapters, std::move(exec), local_plugin<api::Scheduler>("scripted", scheduler),
        local_plugin<api::Threshold>("fixed", new api::GuardedThreshold<Fixed>(args)), requests,
        records);
  }

  api::RequestId request(int32_t adapter, int32_t prompt, int32_t output, double arrival) {
    Request r;
    r.spec = {static_cast<int64_t>(requests.size()), arrival, adapter, prompt, output};
    r.record.id = r.spec.id;
    r.record.adapter = adapter;
    r.record.arrival = arrival;
    requests.push_back(r);
    replica->add(r.spec.id, arrival);
    return r.spec.id;
  }
  int64_t count(EventKind kind) const {
    int64_t n = 0;
    for (const auto& e : records.events) n += e.kind == static_cast<int8_t>(kind);
    return n;
  }
};

IterationPlan plan(Mode mode, api::AdapterId merged, std::vector<api::RequestId> ids) {
  IterationPlan p;
  p.mode = mode;
  p.merged_adapter = merged;
  p.requests = std::move(ids);
  return p;
}

TEST(ReplicaStep, ZeroCostSwapOutWithNothingAdmittedPlansAgainAtOnce) {
  // Pool of 8 blocks: adapter 0 takes 1 block (preloaded), adapter 1 takes 6. Requests r0, r1
  // of adapter 0 and w of adapter 1, 48-token prompts (3 blocks each).
  Fixture f({1, 6}, 8);
  ASSERT_TRUE(f.replica->preload(0));
  const auto r0 = f.request(0, 48, 100, 0.0);
  const auto r1 = f.request(0, 48, 100, 0.0);
  const auto w = f.request(1, 48, 100, 0.0);

  // t = 0: r0 and r1 run unmerged (3 + 3 blocks, free 1), 27 ms.
  f.scheduler->script = [&](const ReplicaView&) { return plan(Mode::unmerged, -1, {r0, r1}); };
  ASSERT_EQ(f.replica->step(0.0), std::optional<double>(0.027));

  // t = 0.027: merged on adapter 1 with w. Adapter 1 needs 6 blocks; free 1 + adapter 0's 1
  // (idle, evictable) = 2: r1 then r0 (the last ready ones) are swapped out, free 7 + 1 = 8;
  // adapter 1 is loaded into 6 of the 7 free blocks, free 1 + 1. w needs 3: skipped. Nothing
  // runs, no relief (nothing ready is left to preempt), and swaps and loads cost nothing.
  // The queues changed (r0, r1 swapped), so the replica plans again at once: before the fix
  // the zero cost read as "nothing changed" and it waited for the next arrival (nullopt).
  f.scheduler->script = [&](const ReplicaView&) { return plan(Mode::merged, 1, {w}); };
  EXPECT_EQ(f.replica->step(0.027), std::optional<double>(0.027));
  EXPECT_EQ(f.count(EventKind::preempt_swap), 2);
  EXPECT_EQ(f.count(EventKind::relief), 0);
  EXPECT_EQ(f.requests[static_cast<size_t>(r0)].state, api::RequestState::swapped);
  EXPECT_EQ(f.requests[static_cast<size_t>(r1)].state, api::RequestState::swapped);
  EXPECT_EQ(f.records.iterations.size(), 1u);

  // The plan at once, still at 0.027, sees both swapped and runs r0: swap-in needs 3 + 1
  // blocks of free 1 + idle adapters 0 (pinned for the batch) and 1 (evicted to make room).
  f.scheduler->script = [&](const ReplicaView& v) {
    EXPECT_EQ(v.now, 0.027);
    return plan(Mode::unmerged, -1, {r0, r1});
  };
  ASSERT_EQ(f.replica->step(0.027), std::optional<double>(0.027 + 0.027));
  ASSERT_EQ(f.records.iterations.size(), 2u);
  EXPECT_EQ(f.records.iterations[1].start, 0.027);
  EXPECT_EQ(f.records.iterations[1].batch_size, 1);
  EXPECT_EQ(f.count(EventKind::swap_in), 1);
  EXPECT_EQ(f.count(EventKind::adapter_evict), 1);
}

TEST(ReplicaStep, NothingChangedWaitsForTheNextEvent) {
  // w alone, whose prompt can never fit next to its adapter: nothing is admitted and nothing
  // changes (no preemption, no ignored prompt, the load cost nothing): wait (nullopt).
  Fixture f({1, 6}, 8);
  const auto w = f.request(1, 48, 100, 0.0);
  f.scheduler->script = [&](const ReplicaView&) { return plan(Mode::unmerged, -1, {w}); };
  EXPECT_EQ(f.replica->step(0.0), std::nullopt);
  EXPECT_EQ(f.replica->step(0.0), std::nullopt);
  EXPECT_TRUE(f.records.iterations.empty());
}

TEST(ReplicaStep, AStepThatThrowsLeavesTheNextReplicaAPlanItCanRun) {
  // The plan check marks the requests it lists in memory that every replica stepped on this
  // thread shares, and admission clears the marks at its end. A step that throws after the
  // check (here the executor, loading the plan's adapter) must clear them too: else the next
  // replica to list a request in the same queue slot (its first request: slot 0) would be told that
  // its plan lists that request twice.
  {
    Fixture failing({1}, 8, /*failing_load=*/true);
    const auto r = failing.request(0, 16, 10, 0.0);
    failing.scheduler->script = [&](const ReplicaView&) { return plan(Mode::unmerged, -1, {r}); };
    EXPECT_THROW(failing.replica->step(0.0), std::runtime_error);
  }
  Fixture next({1}, 8);
  const auto r = next.request(0, 16, 10, 0.0);
  next.scheduler->script = [&](const ReplicaView&) { return plan(Mode::unmerged, -1, {r}); };
  // An unmerged iteration under the `dlora-artifact` timing: 27 ms, after a free load.
  EXPECT_EQ(next.replica->step(0.0), std::optional<double>(0.027));
  EXPECT_EQ(next.records.iterations.size(), 1u);
}

}  // namespace
}  // namespace lorasched
