// The cluster in the event loop: placement, conservation under migration (recompute and
// transfer), plan checking, failed solves, determinism.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <map>
#include <set>

#include "cluster_util.hpp"
#include "core/common/error.hpp"

namespace lorasched::test {
namespace {

std::string costmodel_toml(const std::string& migration, const std::string& extra_cluster = "",
                           int requests = 1500, const std::string& engine = "") {
  return fmt::format(R"(
[run]
name = "cluster-test"
seed = 7
[model]
preset = "llama2-7b"
[adapters]
count = 16
ranks = [8, 16]
[workload]
arrival = "poisson"
rate = 60.0
num_requests = {}
popularity = {{ kind = "zipf", s = 1.3 }}
prompt = {{ kind = "uniform", min = 32, max = 400 }}
output = {{ kind = "uniform", min = 16, max = 200 }}
[engine]
max_batch_size = 16
{}
[cluster]
replicas = 4
executor = "costmodel"
costmodel = "dlora-artifact"
migration_interval_s = 2.0
{}
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[dispatcher]
plugin = "adapter-affinity"
[migration]
{}
)",
                     requests, engine, extra_cluster, migration);
}

int64_t count(const RunRecords& r, EventKind k) {
  int64_t n = 0;
  for (const auto& e : r.events) n += e.kind == static_cast<int8_t>(k);
  return n;
}

// Every request finished exactly once; its `migrations` equals its migrate_request
// events; adapter copies carry the adapter's size.
void check_conservation(const Run& run, const RunResult& out) {
  const auto& sim = *run.sim;
  ASSERT_EQ(static_cast<int64_t>(out.records.requests.size()), sim.num_requests());
  std::map<int64_t, int32_t> moved;
  for (const auto& e : out.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::migrate_request)) {
      ++moved[e.request];
      EXPECT_NE(e.replica, e.other_replica);
      EXPECT_GE(e.other_replica, 0);
    }
  std::set<int64_t> ids;
  for (const auto& r : out.records.requests) {
    EXPECT_TRUE(ids.insert(r.id).second);
    EXPECT_TRUE(r.status == static_cast<int8_t>(RequestStatus::finished) ||
                r.status == static_cast<int8_t>(RequestStatus::length_capped))
        << "request " << r.id << " status " << int(r.status);
    EXPECT_TRUE(std::isfinite(r.finish));
    EXPECT_GE(r.finish, r.arrival);
    EXPECT_EQ(r.migrations, moved.count(r.id) ? moved[r.id] : 0) << "request " << r.id;
  }
  // One finishing iteration per request: tokens generated = output tokens asked for.
  int64_t produced = 0, asked = 0;
  for (const auto& it : out.records.iterations) produced += it.batch_size;
  for (const auto& r : out.records.requests) asked += r.output_tokens;
  EXPECT_EQ(produced, asked);  // every batch slot produces one token of one request
  for (const auto& e : out.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::migrate_adapter)) {
      EXPECT_EQ(e.bytes, sim.adapters().at(static_cast<size_t>(e.adapter)).bytes);
      EXPECT_GT(e.duration, 0);
    }
}

std::string faulty(const std::string& fault) {
  return fmt::format("plugin = \"{}\"\nfault = \"{}\"", LORASCHED_FAULTY_PLUGIN, fault);
}

// The view the simulation keeps from event to event (LiveView: counts, in-flight requests,
// KV blocks, placement indexes, load order, mean execution times) equals the view computed
// from the replicas from scratch, at every dispatch and migration decision: dispatchers with
// and without substitution, migrations that move requests (recompute and transfer), swap
// preemption under a small pool.
TEST(ClusterSim, KeptViewEqualsTheViewFromScratch) {
  struct Case {
    std::string migration, cluster, engine, dispatcher;
  };
  const std::string small_pool = "kv_blocks = 400\npreemption = \"swap\"";
  const std::vector<Case> cases = {
      {"plugin = \"dlora-ilp\"\nload_threshold = 8.0", "", small_pool,
       "plugin = \"adapter-affinity\""},
      {"plugin = \"greedy\"\nload_threshold = 4.0", "", small_pool, "plugin = \"least-loaded\""},
      {"plugin = \"greedy\"\nload_threshold = 8.0", "migration_kv = \"transfer\"", "",
       "plugin = \"adapter-affinity\""},
      {"plugin = \"none\"", "", small_pool, "plugin = \"adapter-affinity\"\nsubstitute = true"},
  };
  for (const Case& c : cases) {
    std::string toml = costmodel_toml(c.migration, c.cluster, 600, c.engine);
    const std::string from = "plugin = \"adapter-affinity\"";
    toml.replace(toml.find(from), from.size(), c.dispatcher);
    auto run = make_run(toml);
    run->sim->check_views(true);
    RunResult out;
    try {
      out = run->sim->run();
    } catch (const std::exception& e) {
      FAIL() << e.what() << "\n" << toml;
    }
    check_conservation(*run, out);
    if (c.migration.find("none") == std::string::npos) {
      EXPECT_GT(count(out.records, EventKind::migrate_request), 0) << toml;
    }
  }
}

TEST(ClusterSim, PlacementFollowsTheArtifact) {
  auto run = make_run(costmodel_toml("plugin = \"none\""));
  const auto& sim = *run->sim;
  ASSERT_EQ(sim.placement().size(), 4u);
  int64_t total = 0;
  std::map<api::AdapterId, int> copies;
  for (size_t r = 0; r < 4; ++r) {
    total += static_cast<int64_t>(sim.placement()[r].size());
    EXPECT_EQ(sim.adapter_slots()[r], static_cast<int32_t>(sim.placement()[r].size()));
    for (auto a : sim.placement()[r]) ++copies[a];
  }
  EXPECT_EQ(total, 4 + 16 - 1);
  EXPECT_EQ(copies.size(), 16u);
  int replicated = 0;
  for (auto [a, c] : copies) replicated += c == 4;
  EXPECT_EQ(replicated, 1);
}

TEST(ClusterSim, IlpRecomputeConservesRequests) {
  auto run = make_run(costmodel_toml("plugin = \"dlora-ilp\"\nload_threshold = 8.0"));
  const RunResult out = run->sim->run();
  check_conservation(*run, out);
  EXPECT_GT(count(out.records, EventKind::migrate_request), 0);
  EXPECT_GT(count(out.records, EventKind::migration_decision), 0);
  for (const auto& e : out.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::migrate_request)) {
      EXPECT_EQ(e.bytes, 0);  // recompute: nothing travels
      EXPECT_GE(e.value, 0);
    }
  // Solve time is recorded, not charged: decisions sit at multiples of the interval.
  for (const auto& e : out.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::migration_decision)) {
      EXPECT_NEAR(std::fmod(e.time + 1e-9, 2.0), 0.0, 1e-6);
      EXPECT_GE(e.duration, 0);
    }
}

TEST(ClusterSim, TransferConservesRequestsAndMovesKv) {
  auto run = make_run(
      costmodel_toml("plugin = \"greedy\"\nload_threshold = 8.0", "migration_kv = \"transfer\""));
  const RunResult out = run->sim->run();
  check_conservation(*run, out);
  int64_t with_kv = 0;
  for (const auto& e : out.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::migrate_request) && e.bytes > 0) {
      ++with_kv;
      // The default link is the artifact's PCIE_BANDWIDTH, 32 GiB/s = 2^35 B/s.
      EXPECT_NEAR(e.duration, static_cast<double>(e.bytes) / 34359738368.0, 1e-12);
    }
  EXPECT_GT(with_kv, 0);
}

TEST(ClusterSim, DeterministicAcrossRuns) {
  const std::string toml = costmodel_toml("plugin = \"dlora-ilp\"\nload_threshold = 8.0", "", 600);
  auto a = make_run(toml);
  auto b = make_run(toml);
  const RunResult ra = a->sim->run(), rb = b->sim->run();
  ASSERT_EQ(ra.records.requests.size(), rb.records.requests.size());
  for (size_t i = 0; i < ra.records.requests.size(); ++i) {
    EXPECT_EQ(ra.records.requests[i].finish, rb.records.requests[i].finish);
    EXPECT_EQ(ra.records.requests[i].migrations, rb.records.requests[i].migrations);
  }
  EXPECT_EQ(ra.records.events.size(), rb.records.events.size());
}

void expect_rejected(const std::string& toml, const std::string& what) {
  auto run = make_run(toml);
  try {
    run->sim->run();
    FAIL() << "no PluginError for: " << what;
  } catch (const PluginError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("test-faulty"), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(ClusterSim, RejectsUnknownRequest) {
  expect_rejected(costmodel_toml(faulty("unknown"), "", 300), "unknown request 1000000000");
}
TEST(ClusterSim, RejectsRunningRequest) {
  expect_rejected(costmodel_toml(faulty("running"), "", 300), "running on replica");
}
TEST(ClusterSim, RejectsRequestNotOnSource) {
  expect_rejected(costmodel_toml(faulty("not-on-from"), "", 300), "but the request is on replica");
}
TEST(ClusterSim, RejectsReplicaOutOfRange) {
  expect_rejected(costmodel_toml(faulty("range"), "", 300), "but replicas are 0..3");
}
TEST(ClusterSim, RejectsDestinationWithoutMemory) {
  expect_rejected(costmodel_toml(faulty("nomem"), "migration_kv = \"transfer\"", 600,
                                 "kv_blocks = 200\nunified_pool = false"),
                  "has no memory for the KV cache");
}

TEST(ClusterSim, FailedSolveWarnsAndMovesNothing) {
  for (const std::string fault : {"infeasible", "time limit"}) {
    auto run = make_run(costmodel_toml(faulty(fault), "", 300));
    const RunResult out = run->sim->run();
    check_conservation(*run, out);
    EXPECT_EQ(count(out.records, EventKind::migrate_request), 0);
    int64_t warnings = 0;
    for (const auto& e : out.records.events)
      if (e.kind == static_cast<int8_t>(EventKind::warning) && e.value == 3.0) {
        ++warnings;
        EXPECT_DOUBLE_EQ(e.value2, 0.25);  // the solve time the plugin reported
      }
    EXPECT_EQ(warnings, 1) << fault;
  }
}

TEST(ClusterSim, TimeLimitFallbackPlanIsAppliedWithAWarning) {
  // A policy out of time that returns its fallback moves: they are applied, and one warning
  // (value 4) says the moves are not the solver's.
  auto run = make_run(costmodel_toml(faulty("time limit fallback"), "", 300));
  const RunResult out = run->sim->run();
  check_conservation(*run, out);
  EXPECT_GT(count(out.records, EventKind::migrate_request), 0);
  int64_t fallback = 0, failed = 0;
  for (const auto& e : out.records.events)
    if (e.kind == static_cast<int8_t>(EventKind::warning)) {
      if (e.value == 4.0) {
        ++fallback;
        EXPECT_DOUBLE_EQ(e.value2, 0.5);
      }
      if (e.value == 3.0) ++failed;
    }
  EXPECT_EQ(fallback, 1);
  EXPECT_EQ(failed, 0);
}

TEST(ClusterSim, CpuExecutorTransfersKvForReal) {
  const std::string toml = R"(
[run]
name = "cpu-transfer"
seed = 5
[model]
preset = "tiny"
[adapters]
count = 4
ranks = [8]
[workload]
arrival = "poisson"
rate = 400.0
num_requests = 80
popularity = { kind = "zipf", s = 2.0 }
prompt = { kind = "uniform", min = 8, max = 40 }
output = { kind = "uniform", min = 8, max = 40 }
[engine]
kv_blocks = 256
max_batch_size = 4
[cluster]
replicas = 2
executor = "cpu"
threads = 1
migration_interval_s = 0.01
migration_kv = "transfer"
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[dispatcher]
plugin = "adapter-affinity"
)";
  auto run = make_run(toml + "[migration]\n" + faulty("move-ready"));
  const RunResult out = run->sim->run();
  check_conservation(*run, out);
  int64_t with_kv = 0;
  for (const auto& e : out.records.events)
    with_kv += e.kind == static_cast<int8_t>(EventKind::migrate_request) && e.bytes > 0;
  EXPECT_GT(with_kv, 0);  // KV blocks copied between the two executors' caches
}

}  // namespace
}  // namespace lorasched::test
