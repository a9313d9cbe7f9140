// Scheduler `dlora-mixed`: dLoRA's rule (credits, stay merged while the merged adapter's queue
// >= beta x |FCFS batch|, merge the largest queue at >= alpha x |FCFS batch|, else unmerged
// FCFS; dlora_core.hpp), with two changes to its merged batches:
//  - riders (V-LoRA's mixed "deLoRA" mode): when the merged adapter's requests leave slots
//    free, requests of other adapters ride along through a second LoRA pass (their own term
//    minus the merged adapter's), whole adapter queues at a time, each only if the batch's
//    predicted work per second rises with it, at most `max_riders`; times are learned online
//    from this run's outcomes (throughput_core.hpp);
//  - a starvation guard that acts: a request that has waited `guard_s` for its next token must
//    run. `guard_action = "ride"`: it rides in the merged batch (taking slots from the merged
//    adapter if need be); `"unmerge"`: the stay/merge rules may not run merged while another
//    adapter's request starves, so the iteration falls to unmerged FCFS, oldest first.
// With max_riders = 0 and guard_s = 0 it is `dlora`, decision for decision.
#include <algorithm>

#include "dlora_core.hpp"
#include "throughput_core.hpp"

namespace {

using namespace lorasched::api;
using lorasched::plugins::DloraCore;
using lorasched::plugins::ShapeBuilder;
using lorasched::plugins::ThroughputCore;

class DloraMixed : public DloraCore {
 public:
  explicit DloraMixed(const CreateArgs& args)
      : DloraCore(args),
        core_(args),
        unmerge_guard_(args.params.string("guard_action") == "unmerge"),
        grouped_(args.params.string("rider_order") == "grouped"),
        groups_(static_cast<size_t>(std::max(args.num_adapters, 0))) {}

  IterationPlan plan(const ReplicaView& view) override {
    core_.begin(view);
    queued_ = core_.snapshot(view.queued);
    if (queued_.empty()) return {};
    ThroughputCore::group_by_adapter(queued_, view.num_adapters, groups_, active_);
    core_.find_starving(queued_, starving_);

    IterationPlan p = DloraCore::plan(view);

    // Remember what each candidate was, to learn from the outcome (ids are dense in
    // lorasched's workloads; others are looked up by a scan).
    constexpr RequestId kDense = RequestId{1} << 26;
    for (size_t i = 0; i < queued_.size(); ++i) {
      const RequestId id = queued_[i].id;
      if (id < 0 || id >= kDense) continue;
      if (static_cast<size_t>(id) >= pos_.size()) pos_.resize(static_cast<size_t>(id) + 1);
      pos_[static_cast<size_t>(id)] = i;
    }
    for (RequestId id : p.requests) {
      size_t i = id >= 0 && id < kDense ? pos_[static_cast<size_t>(id)] : queued_.size();
      if (i >= queued_.size() || queued_[i].id != id)
        for (i = 0; i < queued_.size() && queued_[i].id != id; ++i) {
        }
      if (i < queued_.size()) core_.remember(queued_[i]);
    }
    return p;
  }

  void observe(const IterationOutcome& o) override { core_.observe(o); }
  void on_arrival(const RequestView& r, double now) override {
    DloraCore::on_arrival(r, now);
    core_.arrived(r, now);
  }

 protected:
  bool may_merge(AdapterId m, const ReplicaView&) override {
    if (!unmerge_guard_) return true;
    for (const RequestView* r : starving_)
      if (r->adapter != m) return false;
    return true;
  }

  void finish_merged(IterationPlan& plan, const ReplicaView& /*view*/) override {
    // After a plan that ran nothing (riders whose adapters or KV did not fit), dLoRA's own.
    if (core_.stuck()) return;
    if (core_.max_riders() == 0 && starving_.empty()) return;
    const AdapterId m = plan.merged_adapter;
    const int32_t B = core_.batch_limit();
    int32_t starving_others = 0;
    for (const RequestView* r : starving_) starving_others += r->adapter != m;
    if (unmerge_guard_) starving_others = 0;  // may_merge kept them out of merged batches
    const int32_t ride_limit = unmerge_guard_ ? core_.max_riders() : B;
    if (ride_limit == 0 && starving_others == 0) return;

    // The merged adapter's requests, as the rule listed them (FCFS), keeping slots for the
    // starving riders.
    const auto& own = groups_[static_cast<size_t>(m)];
    core_.index_queue(queued_, taken_);
    ShapeBuilder b = core_.builder(Mode::mixed, m);
    batch_.clear();
    const int32_t keep = std::max(1, B - starving_others);  // at least one of m's requests
    for (const RequestView* r : own) {
      if (static_cast<int32_t>(batch_.size()) >= keep) break;
      b.add(*r);
      batch_.push_back(r);
      taken_[core_.slot(*r)] = 1;
    }
    order_ = active_;  // adapters by their oldest queued request
    if (grouped_)
      std::stable_sort(order_.begin(), order_.end(), [&](AdapterId x, AdapterId y) {
        return groups_[static_cast<size_t>(x)].size() > groups_[static_cast<size_t>(y)].size();
      });
    std::span<const RequestView* const> must(starving_);
    if (unmerge_guard_) must = {};
    const int32_t riders = core_.add_riders(m, b, batch_, must, groups_, order_, taken_);
    if (riders == 0) return;
    plan.mode = Mode::mixed;
    plan.tail = Tail::none;  // A1's whole-queue tail is replaced by the explicit list
    plan.tail_adapter = kNoAdapter;
    plan.requests.clear();
    for (const RequestView* r : batch_) plan.requests.push_back(r->id);
    for (const RequestView* r : own)  // the rest of its queue, in case admission skips some
      if (!taken_[core_.slot(*r)]) plan.requests.push_back(r->id);
  }

 private:
  ThroughputCore core_;
  bool unmerge_guard_, grouped_;
  std::vector<std::vector<const RequestView*>> groups_;
  std::vector<AdapterId> active_, order_;
  std::vector<const RequestView*> starving_, batch_;
  std::vector<uint8_t> taken_;
  std::span<const RequestView> queued_;  // this plan's copy of view.queued (core_.snapshot)
  std::vector<size_t> pos_;
};

PluginInfo info() {
  auto params = lorasched::plugins::dlora_params();
  for (auto& p : lorasched::plugins::throughput_params()) {
    // dLoRA's own merge_time / unmerge_time also seed the learned model's prior.
    if (p.name == "merge_time" || p.name == "unmerge_time") continue;
    params.push_back(p);
  }
  params.push_back(param_choice("guard_action", "ride", {"ride", "unmerge"},
                                "what the starvation guard does: starving requests ride in the "
                                "merged batch, or merged batches wait until they have run"));
  params.push_back(param_choice("rider_order", "grouped", {"grouped", "oldest"},
                                "which other adapters' queues ride first: the largest, or the one "
                                "with the oldest request"));
  return {kApiVersion, PluginKind::scheduler, "dlora-mixed",
          "dLoRA's rule with riders in its merged batches (V-LoRA's mixed mode) when the learned "
          "times say they pay, and a starvation guard",
          params};
}

}  // namespace

LORASCHED_PLUGIN(DloraMixed, info)
