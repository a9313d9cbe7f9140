// One replica driven step by step with scripted plans, on the `dlora-artifact` timing model
// (iterations 15 / 27 ms, loads and swaps free): what Replica::step does when a plan admits
// nothing. Expected values are derived by hand from the admission rules (docs/policies.md).
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
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

struct Fixture {
  std::vector<AdapterInfo> adapters;
  std::vector<Request> requests;
  RunRecords records;
  api::GuardedScheduler<Scripted>* scheduler = nullptr;
  std::unique_ptr<Replica> replica;

  // Adapters of the given sizes in pool blocks; a unified pool of `pool_blocks`, watermark 0,
  // swap preemption, blocks of 16 tokens.
  Fixture(std::vector<int64_t> adapter_blocks, int64_t pool_blocks) {
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
        rc, adapters, std::move(executor), local_plugin<api::Scheduler>("scripted", scheduler),
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

}  // namespace
}  // namespace lorasched
