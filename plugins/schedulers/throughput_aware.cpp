// Scheduler `throughput-aware`: per iteration, the batch and weight state that do the most
// useful work per second, by the executor's own times as learned from this run's outcomes
// (throughput_core.hpp), with hysteresis on weight changes and a starvation guard.
//
// Candidates, each a batch of at most B requests:
//  - unmerged: the starving requests, then the queue in FCFS order (`unmerged_order = "fcfs"`)
//    or whole adapter queues, largest first (`"grouped"`: fewer distinct adapters, so less
//    per-adapter LoRA overhead), within the per-batch adapter limit;
//  - merged on m, for the `candidates` adapters with the most queued requests and the adapter
//    merged now: m's oldest B requests (not when other adapters' requests are starving);
//  - mixed on m (V-LoRA's deLoRA mode): m's requests, the starving ones, then other adapters'
//    queues, largest first, each only if it raises the batch's work per second (the filled
//    slots pay for the second LoRA pass), at most `max_riders` of them.
// Each is scored by work / (predicted time + switch stall / expected stay), where work is what
// its requests would cost in a full merged batch (a full merged decode batch scores 1). The
// best candidate whose weights differ from the current ones wins only if it scores more than
// (1 + margin) x the best that keeps them: a switch must pay for itself and a bit more, so
// near-ties do not flap.
#include <algorithm>

#include "throughput_core.hpp"

namespace {

using namespace lorasched::api;
using lorasched::plugins::ShapeBuilder;
using lorasched::plugins::ShapeChoice;
using lorasched::plugins::ThroughputCore;

class ThroughputAware : public Scheduler {
 public:
  explicit ThroughputAware(const CreateArgs& args)
      : core_(args),
        margin_(args.params.real("margin")),
        candidates_(static_cast<int32_t>(args.params.integer("candidates"))),
        grouped_(args.params.string("unmerged_order") == "grouped"),
        groups_(static_cast<size_t>(std::max(args.num_adapters, 0))) {}

  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan out;
    core_.begin(view);
    queued_ = core_.snapshot(view.queued);
    if (queued_.empty()) return out;
    const int32_t B = core_.batch_limit();
    const int32_t cap = core_.adapter_cap();

    // Each adapter's queue (FCFS); adapters in order of their oldest request.
    ThroughputCore::group_by_adapter(queued_, view.num_adapters, groups_, active_);
    by_size_ = active_;
    std::stable_sort(by_size_.begin(), by_size_.end(), [&](AdapterId a, AdapterId b) {
      return groups_[static_cast<size_t>(a)].size() > groups_[static_cast<size_t>(b)].size();
    });
    core_.find_starving(queued_, starving_);

    if (core_.stuck()) return fallback(view);
    choice_.clear();

    // Unmerged.
    {
      core_.index_queue(queued_, taken_);
      ShapeBuilder b = core_.builder(Mode::unmerged, kNoAdapter);
      batch_.clear();
      auto take = [&](const RequestView* r) {
        if (taken_[core_.slot(*r)] || static_cast<int32_t>(batch_.size()) >= B) return;
        if (b.new_adapter(r->adapter) && b.unmerged_adapters() >= cap) return;
        b.add(*r);
        batch_.push_back(r);
        taken_[core_.slot(*r)] = 1;
      };
      for (const RequestView* r : starving_) take(r);
      if (grouped_) {
        for (AdapterId a : by_size_)
          for (const RequestView* r : groups_[static_cast<size_t>(a)]) take(r);
      } else {
        for (const RequestView& r : queued_) take(&r);
      }
      consider(Mode::unmerged, kNoAdapter, b);
    }

    // Merged and mixed on the largest queues and on the adapter merged now.
    core_.merge_candidates(by_size_, candidates_, merged_candidates_);
    const AdapterId w = core_.weights();
    for (AdapterId m : merged_candidates_) {
      const auto& own = groups_[static_cast<size_t>(m)];
      int32_t starving_others = 0;
      for (const RequestView* r : starving_) starving_others += r->adapter != m;
      if (starving_others == 0 && !own.empty()) {
        ShapeBuilder b = core_.builder(Mode::merged, m);
        batch_.clear();
        for (const RequestView* r : own) {
          if (static_cast<int32_t>(batch_.size()) >= B) break;
          b.add(*r);
          batch_.push_back(r);
        }
        consider(Mode::merged, m, b);
      }
      if (core_.max_riders() > 0 && !own.empty()) {  // a mixed batch without m: all pay its pass
        core_.index_queue(queued_, taken_);
        ShapeBuilder b = core_.builder(Mode::mixed, m);
        batch_.clear();
        // At least one of m's requests (else every request would pay m's pass for nothing).
        const int32_t keep = std::max(1, B - starving_others);
        for (const RequestView* r : own) {
          if (static_cast<int32_t>(batch_.size()) >= keep) break;
          b.add(*r);
          batch_.push_back(r);
          taken_[core_.slot(*r)] = 1;
        }
        const int32_t riders = core_.add_riders(m, b, batch_, starving_, groups_, by_size_, taken_);
        if (riders > 0) consider(Mode::mixed, m, b);
      }
    }

    // Hysteresis: other weights must beat the best plan on the current ones by the margin.
    const Choice& pick = choice_.pick(w, margin_);
    out.mode = pick.mode;
    out.merged_adapter = pick.weights;
    fill_plan(view, pick, out);
    return out;
  }

  void observe(const IterationOutcome& o) override { core_.observe(o); }
  void on_arrival(const RequestView& r, double now) override { core_.arrived(r, now); }

 private:
  using Choice = ShapeChoice::Choice;

  void consider(Mode mode, AdapterId m, const ShapeBuilder& b) {
    if (batch_.empty()) return;
    const double score = core_.efficiency(b.shape(), m);
    choice_.offer(mode, m, score, batch_, core_.weights());
  }

  // After a plan that ran nothing: unmerged, the requests that need the least memory first
  // (ready ones, one KV block each, FCFS), then the rest FCFS. Running anything unmerged also
  // releases the merged adapter's blocks.
  IterationPlan fallback(const ReplicaView& /*view*/) {
    IterationPlan out;
    ShapeBuilder b = core_.builder(Mode::unmerged, kNoAdapter);
    for (int pass = 0; pass < 2; ++pass)
      for (const RequestView& r : queued_) {
        if ((r.state == RequestState::ready) != (pass == 0)) continue;
        if (b.new_adapter(r.adapter) && b.unmerged_adapters() >= core_.adapter_cap()) continue;
        b.add(r);
        out.requests.push_back(r.id);
        core_.remember(r);
      }
    return out;
  }

  // The plan: the chosen batch, then up to B more requests of the adapters it already holds
  // (in FCFS order), in case admission cannot take some of the batch (KV blocks, token
  // budget). No other adapter: admission fills a short batch from the list, and a rider the
  // cost test turned away must not get in that way.
  void fill_plan(const ReplicaView& /*view*/, const Choice& pick, IterationPlan& out) {
    core_.index_queue(queued_, taken_);
    ShapeBuilder b = core_.builder(pick.mode, pick.weights);
    auto push = [&](const RequestView* r) {
      b.add(*r);
      taken_[core_.slot(*r)] = 1;
      out.requests.push_back(r->id);
      core_.remember(*r);
    };
    for (const RequestView* r : pick.batch) push(r);
    int32_t extra = 0;
    const int32_t B = core_.batch_limit();
    for (const RequestView& r : queued_) {
      if (extra >= B) break;
      if (taken_[core_.slot(r)]) continue;
      if (pick.mode == Mode::merged && r.adapter != pick.weights) continue;
      if (b.new_adapter(r.adapter)) continue;
      push(&r);
      ++extra;
    }
  }

  ThroughputCore core_;
  double margin_;
  int32_t candidates_;
  bool grouped_;
  std::vector<std::vector<const RequestView*>> groups_;
  std::vector<AdapterId> active_, by_size_, merged_candidates_;
  std::vector<const RequestView*> starving_, batch_;
  std::vector<uint8_t> taken_;
  std::span<const RequestView> queued_;  // this plan's copy of view.queued (core_.snapshot)
  ShapeChoice choice_;
};

PluginInfo info() {
  auto params = lorasched::plugins::throughput_params();
  params.push_back(param_real("margin", 0.05,
                              "hysteresis: new weights must promise this much more work per second "
                              "than the best batch on the current ones",
                              0, 10));
  params.push_back(param_int("candidates", 4,
                             "adapters (largest queues first) tried for merged and mixed batches",
                             1, 1 << 20));
  params.push_back(param_choice("unmerged_order", "fcfs", {"fcfs", "grouped"},
                                "unmerged batches: oldest requests first, or whole adapter queues, "
                                "largest first (fewer distinct adapters)"));
  return {kApiVersion, PluginKind::scheduler, "throughput-aware",
          "per iteration, the merged, mixed or unmerged batch with the most work per second by "
          "learned iteration times, with hysteresis and a starvation guard",
          params};
}

}  // namespace

LORASCHED_PLUGIN(ThroughputAware, info)
