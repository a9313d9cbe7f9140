// api::RequestQueue and api::PlanTail against a reference kept the way the engine kept its
// queue before it was incremental: three plain lists (waiting, ready, swapped) changed as vLLM
// changes them, and the FCFS order rebuilt from scratch as one stable sort by arrival of the
// three lists one after the other; a plan tail written out as the policies used to list it.
// Random operations, frozen and not, with many equal arrivals.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "lorasched/plugin/testkit.hpp"

namespace lorasched::api {
namespace {

using End = RequestQueue::End;

struct Reference {
  std::map<RequestId, RequestView> req;
  std::vector<RequestId> lists[3];  // waiting, ready, swapped
  std::vector<RequestId>& list(RequestState s) { return lists[static_cast<int>(s)]; }
  const std::vector<RequestId>& list(RequestState s) const { return lists[static_cast<int>(s)]; }
  void erase_from_lists(RequestId id) {
    for (auto& l : lists) l.erase(std::remove(l.begin(), l.end(), id), l.end());
  }
  void put(RequestId id, RequestState s, End end) {
    auto& l = list(s);
    if (end == End::back)
      l.push_back(id);
    else
      l.insert(l.begin(), id);
  }
  std::vector<RequestId> fcfs() const {
    std::vector<RequestId> all;
    for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
    std::stable_sort(all.begin(), all.end(), [&](RequestId a, RequestId b) {
      return req.at(a).arrival < req.at(b).arrival;
    });
    return all;
  }
};

std::vector<RequestId> ids(QueueRange r) {
  std::vector<RequestId> out;
  for (const RequestView& v : r) out.push_back(v.id);
  return out;
}

void expect_same(const RequestQueue& q, const Reference& ref, int num_adapters,
                 const std::string& when) {
  SCOPED_TRACE(when);
  const auto want = ref.fcfs();
  ASSERT_EQ(ids(q.all()), want);
  ASSERT_EQ(q.size(), static_cast<int32_t>(want.size()));
  for (AdapterId a = 0; a < num_adapters; ++a) {
    std::vector<RequestId> of;
    for (RequestId id : want)
      if (ref.req.at(id).adapter == a) of.push_back(id);
    ASSERT_EQ(ids(q.of_adapter(a)), of) << "adapter " << a;
    ASSERT_EQ(q.of_adapter(a).size(), static_cast<int32_t>(of.size()));
  }
  for (RequestState s : {RequestState::waiting, RequestState::ready, RequestState::swapped}) {
    std::vector<RequestId> got;
    for (auto slot = q.first(s); slot != RequestQueue::kNone; slot = q.next_in_state(slot))
      got.push_back(q.node(slot).request.id);
    const auto& l = ref.list(s);
    ASSERT_EQ(got, l) << to_string(s);
    ASSERT_EQ(q.count(s), static_cast<int32_t>(l.size()));
  }
}

TEST(RequestQueue, KeepsDloraFcfsThroughRandomChanges) {
  constexpr int kAdapters = 4;
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    std::mt19937 rng(seed);
    RequestQueue q(kAdapters);
    Reference ref;
    std::map<RequestId, RequestQueue::Slot> slot;
    RequestId next_id = 0;
    auto pick = [&](const std::vector<RequestId>& v) {
      return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
    };
    auto state_of = [&](int k) { return static_cast<RequestState>(k); };
    for (int step = 0; step < 400; ++step) {
      const int op = std::uniform_int_distribution<int>(0, 9)(rng);
      if (op <= 2 || ref.req.empty()) {  // a request joins: arrivals drawn from few values
        RequestView r;
        r.id = next_id++;
        r.adapter = std::uniform_int_distribution<int>(0, kAdapters - 1)(rng);
        r.arrival = 0.5 * std::uniform_int_distribution<int>(0, 8)(rng);
        r.state = state_of(std::uniform_int_distribution<int>(0, 2)(rng));
        ref.req[r.id] = r;
        ref.put(r.id, r.state, End::back);
        slot[r.id] = q.push(r);
      } else if (op <= 7) {  // a batch: moves and erases while frozen, then thaw
        q.freeze();
        const auto before = ids(q.all());
        std::vector<RequestId> running;
        const int changes = std::uniform_int_distribution<int>(1, 8)(rng);
        for (int c = 0; c < changes && !ref.req.empty(); ++c) {
          std::vector<RequestId> live;
          for (const auto& [id, r] : ref.req)
            if (r.state != RequestState::running) live.push_back(id);
          if (live.empty()) break;
          const RequestId id = pick(live);
          const int what = std::uniform_int_distribution<int>(0, 3)(rng);
          ref.erase_from_lists(id);
          if (what == 0) {  // admitted: out of the lists until the batch ends
            ref.req[id].state = RequestState::running;
            q.move(slot[id], RequestState::running);
            running.push_back(id);
          } else if (what == 1) {  // preempted by swapping
            ref.req[id].state = RequestState::swapped;
            ref.put(id, RequestState::swapped, End::back);
            q.move(slot[id], RequestState::swapped);
          } else if (what == 2) {  // preempted by recomputation: the front of `waiting`
            ref.req[id].state = RequestState::waiting;
            ref.put(id, RequestState::waiting, End::front);
            q.move(slot[id], RequestState::waiting, End::front);
          } else {  // ignored
            ref.req.erase(id);
            q.erase(slot[id]);
          }
          ASSERT_EQ(ids(q.all()), before) << "the order changed while frozen";
        }
        for (RequestId id : running) {  // the batch ends: finished, or back to `ready`
          if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
            ref.req.erase(id);
            q.erase(slot[id]);
          } else {
            ref.req[id].state = RequestState::ready;
            ref.put(id, RequestState::ready, End::back);
            q.move(slot[id], RequestState::ready);
          }
        }
        q.thaw();
      } else if (op == 8) {  // migration: leaves between iterations
        std::vector<RequestId> live;
        for (const auto& [id, r] : ref.req) live.push_back(id);
        const RequestId id = pick(live);
        ref.erase_from_lists(id);
        ref.req.erase(id);
        q.erase(slot[id]);
      } else {  // a move between iterations (the test kit's hand-built states)
        std::vector<RequestId> live;
        for (const auto& [id, r] : ref.req) live.push_back(id);
        const RequestId id = pick(live);
        const RequestState to = state_of(std::uniform_int_distribution<int>(0, 2)(rng));
        ref.erase_from_lists(id);
        ref.req[id].state = to;
        ref.put(id, to, End::back);
        q.move(slot[id], to);
      }
      expect_same(q, ref, kAdapters,
                  "seed " + std::to_string(seed) + " step " + std::to_string(step));
      if (HasFatalFailure()) return;
    }
  }
}

// The candidates the policies used to list: unmerged-fcfs (stop at the limit), mixed (skip
// beyond the limit, the merged adapter aside), one adapter's queue after listed requests.
TEST(PlanTail, ListsWhatThePoliciesUsedToList) {
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    const int adapters = std::uniform_int_distribution<int>(1, 5)(rng);
    const int cap = std::uniform_int_distribution<int>(0, adapters)(rng);
    testkit::ReplicaBuilder b(adapters);
    ReplicaLimits l;
    l.max_adapters_per_batch = cap;
    b.limits(l);
    const int n = std::uniform_int_distribution<int>(0, 30)(rng);
    for (int i = 0; i < n; ++i)
      b.add(std::uniform_int_distribution<int>(0, adapters - 1)(rng),
            0.1 * std::uniform_int_distribution<int>(0, 10)(rng), 32, 16,
            static_cast<RequestState>(std::uniform_int_distribution<int>(0, 2)(rng)));
    const ReplicaView& v = b.view();
    std::vector<RequestId> fcfs;
    for (const RequestView& r : v.queued) fcfs.push_back(r.id);
    SCOPED_TRACE("round " + std::to_string(round));

    // unmerged-fcfs, as it was (the artifact's strict FCFS).
    IterationPlan strict;
    strict.tail = Tail::fcfs_until_limit;
    std::vector<RequestId> want;
    {
      std::vector<uint8_t> seen(static_cast<size_t>(adapters), 0);
      int count = 0;
      for (const RequestView& r : v.queued) {
        if (!seen[static_cast<size_t>(r.adapter)]) {
          if (cap > 0 && count >= cap) break;
          seen[static_cast<size_t>(r.adapter)] = 1;
          ++count;
        }
        want.push_back(r.id);
      }
    }
    EXPECT_EQ(testkit::candidates(v, strict), want);

    // mixed, as it was: on `target`, requests of other adapters beyond the limit skipped,
    // after two listed requests.
    const AdapterId target = std::uniform_int_distribution<int>(-1, adapters - 1)(rng);
    IterationPlan mixed;
    mixed.mode = target == kNoAdapter ? Mode::unmerged : Mode::mixed;
    mixed.merged_adapter = target;
    mixed.tail = Tail::fcfs;
    for (size_t i = 0; i < std::min<size_t>(2, fcfs.size()); ++i)
      mixed.requests.push_back(fcfs[fcfs.size() - 1 - i]);
    want = mixed.requests;
    {
      std::vector<AdapterId> kept;
      std::map<RequestId, AdapterId> adapter_of;
      for (const RequestView& r : v.queued) adapter_of[r.id] = r.adapter;
      for (RequestId id : mixed.requests)
        if (adapter_of[id] != target &&
            std::find(kept.begin(), kept.end(), adapter_of[id]) == kept.end())
          kept.push_back(adapter_of[id]);
      const int limit = cap > 0 ? cap : adapters;
      if (static_cast<int>(kept.size()) <= limit) {  // a valid plan
        for (const RequestView& r : v.queued) {
          if (std::find(mixed.requests.begin(), mixed.requests.end(), r.id) != mixed.requests.end())
            continue;
          if (r.adapter != target && std::find(kept.begin(), kept.end(), r.adapter) == kept.end()) {
            if (static_cast<int>(kept.size()) >= limit) continue;
            kept.push_back(r.adapter);
          }
          want.push_back(r.id);
        }
        EXPECT_EQ(testkit::candidates(v, mixed), want);
      }
    }

    // One adapter's queue, after the first request listed.
    const AdapterId a = std::uniform_int_distribution<int>(0, adapters - 1)(rng);
    IterationPlan merged;
    merged.mode = Mode::merged;
    merged.merged_adapter = a;
    merged.tail = Tail::adapter;
    merged.tail_adapter = a;
    want.clear();
    for (const RequestView& r : v.queued)
      if (r.adapter == a) want.push_back(r.id);
    if (!want.empty()) merged.requests.push_back(want.back());
    std::rotate(want.begin(), want.end() - (want.empty() ? 0 : 1), want.end());
    EXPECT_TRUE(validate_plan(v, merged).is_ok()) << validate_plan(v, merged).message();
    EXPECT_EQ(testkit::candidates(v, merged), want);
  }
}

TEST(PlanTail, ValidationOfTails) {
  testkit::ReplicaBuilder b(3);
  ReplicaLimits l;
  l.max_adapters_per_batch = 2;
  b.limits(l);
  b.add(0, 0.0).add(1, 0.1).add(2, 0.2);
  IterationPlan p;
  p.mode = Mode::merged;
  p.merged_adapter = 1;
  p.tail = Tail::fcfs;
  EXPECT_FALSE(validate_plan(b.view(), p).is_ok());  // other adapters in a merged batch
  p.tail = Tail::adapter;
  p.tail_adapter = 2;
  EXPECT_FALSE(validate_plan(b.view(), p).is_ok());
  p.tail_adapter = 1;
  EXPECT_TRUE(validate_plan(b.view(), p).is_ok());
  p.tail_adapter = 3;
  p.mode = Mode::unmerged;
  p.merged_adapter = kNoAdapter;
  EXPECT_FALSE(validate_plan(b.view(), p).is_ok());  // no such adapter
  p.tail_adapter = 2;
  p.requests = {0, 1};  // adapters 0, 1 and the tail's 2: over the limit of 2
  EXPECT_FALSE(validate_plan(b.view(), p).is_ok());
  p.requests = {0};
  EXPECT_TRUE(validate_plan(b.view(), p).is_ok());
  p.tail = static_cast<Tail>(7);
  EXPECT_FALSE(validate_plan(b.view(), p).is_ok());
}

// The blocks a hand-built request holds follow the limits' block size through the engine's
// own rule; expected values counted by hand (whole blocks of block_size tokens).
TEST(TestKit, HeldBlocksFollowTheBlockSize) {
  EXPECT_EQ(kv_blocks_for(0, 16), 0);
  EXPECT_EQ(kv_blocks_for(1, 16), 1);
  EXPECT_EQ(kv_blocks_for(16, 16), 1);
  EXPECT_EQ(kv_blocks_for(17, 16), 2);

  testkit::ReplicaBuilder fixed(1);  // default limits: 16 tokens a block
  fixed.add(0, 0.0, /*prompt=*/32, 16, RequestState::ready, /*generated=*/1);  // 33 tokens
  EXPECT_EQ(fixed.view().queued.front().kv_blocks, 3);

  testkit::ReplicaBuilder b(1);
  ReplicaLimits l;
  l.block_size = 32;
  b.limits(l);
  b.add(0, 0.0, /*prompt=*/40, 16, RequestState::ready, /*generated=*/3);  // 43 tokens
  b.add(0, 0.1, /*prompt=*/64, 16, RequestState::swapped);                 // 64 tokens
  b.add(0, 0.2, /*prompt=*/65, 16, RequestState::ready);                   // 65 tokens
  b.add(0, 0.3, /*prompt=*/500, 16, RequestState::waiting);                // holds none yet
  std::vector<int32_t> blocks;
  for (const RequestView& r : b.view().queued) blocks.push_back(r.kv_blocks);
  EXPECT_EQ(blocks, (std::vector<int32_t>{2, 2, 3, 0}));
}

}  // namespace
}  // namespace lorasched::api
