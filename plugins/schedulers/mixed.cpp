// Scheduler `mixed`: mixed-mode batching. Keep the hot adapter merged and serve the other
// adapters' requests in the same batch through the unmerged path, with the merged
// adapter's term subtracted for them (y = W' x + s_i B_i A_i x - s_h B_h A_h x). A merged
// batch then excludes no one: every iteration is the FCFS batch, and the only question is
// which adapter, if any, the weights should hold.
//
// LoRA work of the likely batch (the first B requests in FCFS order, n_i of adapter i of
// rank r_i), in token x rank units:
//   unmerged:         W_u = sum_i n_i r_i
//   mixed on adapter m: W_m = sum_{i != m} n_i (r_i + r_m)
// The merged adapter h is kept while W_h <= (1 + margin) min(W_u, W_best); otherwise the
// replica moves to the cheaper of unmerged and the best m, but leaves or enters a merged
// state only when that saves more than `margin` of the work (hysteresis against paying a
// switch for a small gain). A batch of one adapter runs plain merged.
#include <algorithm>
#include <limits>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Mixed : public Scheduler {
 public:
  explicit Mixed(const CreateArgs& args)
      : margin_(args.params.real("margin")),
        cap_(args.limits.max_adapters_per_batch > 0 ? args.limits.max_adapters_per_batch
                                                    : args.num_adapters),
        n_(static_cast<size_t>(args.num_adapters), 0) {}

  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan out;
    if (view.queued.empty()) return out;
    const AdapterId h = has_merged_weights(view.mode) ? view.merged_adapter : kNoAdapter;

    // The likely batch: FCFS, at most B, at most cap_ unmerged adapters (the merged one
    // does not count against the limit).
    std::fill(n_.begin(), n_.end(), 0);
    std::vector<AdapterId> present;
    int32_t taken = 0;
    for (const RequestView& r : view.queued) {
      if (taken >= view.limits.max_batch_size) break;
      if (n_[static_cast<size_t>(r.adapter)] == 0) {
        const int32_t others = static_cast<int32_t>(present.size()) -
                               (std::find(present.begin(), present.end(), h) != present.end());
        if (r.adapter != h && others >= cap_) continue;
        present.push_back(r.adapter);
      }
      ++n_[static_cast<size_t>(r.adapter)];
      ++taken;
    }
    auto rank = [&](AdapterId a) {
      return static_cast<double>(view.adapters[static_cast<size_t>(a)].rank);
    };
    double w_u = 0;
    for (AdapterId a : present) w_u += n_[static_cast<size_t>(a)] * rank(a);
    auto w_mixed = [&](AdapterId m) {
      double w = 0;
      for (AdapterId a : present)
        if (a != m) w += n_[static_cast<size_t>(a)] * (rank(a) + rank(m));
      return w;
    };
    AdapterId best = kNoAdapter;
    double w_best = std::numeric_limits<double>::infinity();
    for (AdapterId a : present) {
      const double w = w_mixed(a);
      if (w < w_best) {
        w_best = w;
        best = a;
      }
    }

    AdapterId target = kNoAdapter;
    if (h != kNoAdapter) {
      const double w_h = w_mixed(h);
      if (w_h <= (1 + margin_) * std::min(w_u, w_best))
        target = h;
      else if (w_best < (1 - margin_) * w_u)
        target = best;
    } else if (best != kNoAdapter && w_best < (1 - margin_) * w_u) {
      target = best;
    }

    // Candidates: the queue in FCFS order, skipping requests of adapters beyond the limit (the
    // merged one aside): a plan tail, which the engine walks only as far as admission goes.
    // Only the target's requests queued: a plain merged batch.
    if (target == kNoAdapter) {
      out.mode = Mode::unmerged;
      out.tail = Tail::fcfs;
    } else if (view.queued_of(target).size() == view.queued.size()) {
      out.mode = Mode::merged;
      out.merged_adapter = target;
      out.tail = Tail::adapter;
      out.tail_adapter = target;
    } else {
      out.mode = Mode::mixed;
      out.merged_adapter = target;
      out.tail = Tail::fcfs;
    }
    return out;
  }

 private:
  double margin_;
  int32_t cap_;
  std::vector<int32_t> n_;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::scheduler,
          "mixed",
          "mixed-mode batching: the hot adapter stays merged and other adapters' requests join "
          "its batches through the unmerged path",
          {param_real("margin", 0.2,
                      "hysteresis: change the merged adapter only when it saves this share of the "
                      "batch's LoRA work",
                      0.0, 1.0)}};
}

}  // namespace

LORASCHED_PLUGIN(Mixed, info)
