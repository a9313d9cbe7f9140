// The `dlora` plugin against dlora_reference.hpp (its previous implementation, which sorted
// and scanned all N adapters every iteration), decision for decision, on random queues with
// credits that bite (small credit_unit: adapters enter credit priority, ties and negative
// credits happen) and adaptive thresholds (which see the virtual switch count, so the
// largest-queue rule's choice matters even when it does not merge; the periods each hands
// its threshold are compared too, virtual switch count included). Arrivals are announced to
// the plugin for some requests only: its list of queued adapters must also be right when it
// has to rebuild it.
#include <gtest/gtest.h>

#include <random>

#include "dlora_reference.hpp"
#include "policy_util.hpp"

namespace lorasched {
namespace {

using test::load;

// Passes everything to `inner` and keeps the periods it was handed.
class Recording : public api::Threshold {
 public:
  explicit Recording(api::Threshold* inner) : inner_(inner) {}
  api::Thresholds current() const override { return inner_->checked_current().value(); }
  api::Thresholds on_period_end(const api::PeriodStats& s) override {
    periods.push_back(s);
    return inner_->checked_on_period_end(s).value();
  }
  std::vector<api::PeriodStats> periods;

 private:
  api::Threshold* inner_;
};

struct Case {
  int adapters, batch, capacity;
  double credit_unit;
  uint32_t seed;
  double alpha = 1.0;  // dlora-adaptive's initial alpha (lower: more merged periods)
};

// Returns how many plans merged and how many unmerged plans did not start with the oldest
// request (credit priority).
std::pair<int, int> replay(const Case& c) {
  api::ReplicaLimits l;
  l.max_batch_size = c.batch;
  l.max_adapters_per_batch = c.capacity;
  const std::map<std::string, api::ParamValue> params = {{"credit_unit", c.credit_unit}};
  const std::map<std::string, api::ParamValue> thr = {{"alpha", c.alpha}, {"beta", c.alpha / 2}};
  auto thr_new = load<api::Threshold>("dlora-adaptive", thr, nullptr, c.adapters, l);
  auto thr_ref = load<api::Threshold>("dlora-adaptive", thr, nullptr, c.adapters, l);
  api::GuardedThreshold<Recording> rec_new(thr_new.get()), rec_ref(thr_ref.get());
  auto current = load<api::Scheduler>("dlora", params, &rec_new, c.adapters, l);
  api::CreateArgs args;
  args.params =
      testkit::params_for(test::registry().find(api::PluginKind::scheduler, "dlora")->info, params);
  args.seed = 1;
  args.num_adapters = c.adapters;
  args.limits = l;
  args.threshold = &rec_ref;
  api::GuardedScheduler<reference::DloraReference> ref(args);

  std::mt19937 rng(c.seed);
  testkit::ReplicaBuilder b(c.adapters, c.batch);
  b.limits(l);
  // A few hot adapters and a long tail, so queues of several adapters compete.
  auto adapter = [&] {
    std::uniform_int_distribution<int> any(0, c.adapters - 1), hot(0, 4);
    return std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? any(rng)
                                                              : hot(rng) * 3 % c.adapters;
  };
  double t = 0;
  api::RequestId next = 0;
  int merged = 0, credit_first = 0;
  for (int step = 0; step < 3000; ++step) {
    const int arrivals = std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? 5 : 1;
    for (int i = 0; i < arrivals; ++i) {
      t += 0.01;
      const api::AdapterId a = adapter();
      b.add(a, t);
      api::RequestView r;
      r.id = next++;
      r.adapter = a;
      r.arrival = t;
      if (rng() % 2) {
        EXPECT_TRUE(current->checked_on_arrival(r, t));
      }
    }
    b.now(t);
    const api::ReplicaView& v = b.view();
    const api::IterationPlan want = test::plan(ref, v);
    const api::IterationPlan got = test::plan(*current, v);
    EXPECT_EQ(got.mode, want.mode) << "step " << step << ", seed " << c.seed;
    EXPECT_EQ(got.merged_adapter, want.merged_adapter) << "step " << step << ", seed " << c.seed;
    EXPECT_EQ(got.requests, want.requests) << "step " << step << ", seed " << c.seed;
    EXPECT_EQ(got.tail, want.tail) << "step " << step << ", seed " << c.seed;
    EXPECT_EQ(got.tail_adapter, want.tail_adapter) << "step " << step << ", seed " << c.seed;
    EXPECT_EQ(rec_new.periods.size(), rec_ref.periods.size()) << "step " << step;
    if (!rec_new.periods.empty() && rec_new.periods.size() == rec_ref.periods.size()) {
      const api::PeriodStats &x = rec_new.periods.back(), &y = rec_ref.periods.back();
      EXPECT_TRUE(x.merged == y.merged && x.num_iters == y.num_iters &&
                  x.merge_batch_cnt == y.merge_batch_cnt &&
                  x.unmerge_batch_cnt == y.unmerge_batch_cnt &&
                  x.virtual_switch_cnt == y.virtual_switch_cnt && x.now == y.now)
          << "period " << rec_ref.periods.size() << " at step " << step;
    }
    if (::testing::Test::HasFailure()) return {merged, credit_first};
    merged += want.mode == api::Mode::merged;
    // Each iteration finishes up to B of its candidates.
    const auto ran = testkit::candidates(v, want);
    const size_t done =
        std::min<size_t>(ran.size(), std::uniform_int_distribution<size_t>(0, 4)(rng));
    if (!ran.empty() && !want.requests.empty() && ran.front() != v.queued.front().id)
      ++credit_first;
    for (size_t i = 0; i < done; ++i) b.remove(ran[i]);
  }
  return {merged, credit_first};
}

TEST(DloraReference, SameDecisionsAsTheFullScan) {
  for (const Case& c :
       {Case{40, 4, 40, 0.02, 1}, Case{40, 4, 40, 0.02, 2}, Case{12, 8, 3, 0.05, 3},
        Case{200, 16, 200, 1.0, 4}, Case{20, 4, 20, 0.001, 6}, Case{20, 8, 4, 0.0001, 7},
        Case{40, 4, 40, 0.002, 8, 0.3}, Case{20, 8, 20, 0.01, 9, 0.2}}) {
    const auto [merged, credit_first] = replay(c);
    if (HasFailure()) return;
    // It visited both modes and credit priority.
    EXPECT_GT(merged, 0) << "seed " << c.seed;
    EXPECT_GT(credit_first, 0) << "seed " << c.seed;
  }
  replay({30, 4, 30, 10000.0, 5});  // the default unit: credits inert
}

}  // namespace
}  // namespace lorasched
