// The shared part of the throughput-aware schedulers (`throughput-aware`, `dlora-mixed`):
// the learned iteration-time model, measured switch costs and merged-period lengths, the
// starvation clock, and the two questions they ask of a candidate batch: how efficient is it
// (useful work per second, switches amortised), and which other requests should ride along
// in a mixed batch. docs/policies.md describes the rules.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "iteration_model.hpp"

namespace lorasched::plugins {

// Parameters every throughput-aware scheduler declares.
inline std::vector<ParamSpec> throughput_params() {
  return {
      param_real("merge_time", 0.015,
                 "prior of a full merged decode iteration (s), until the model has learned it",
                 1e-6, 10.0),
      param_real("unmerge_time", 0.027,
                 "prior of a full unmerged iteration with 16 adapters (s), until learned", 1e-6,
                 10.0),
      param_real("switch_cost", 0.020, "prior of one weight switch (s), until measured", 0, 10.0),
      param_real("switch_ewma", 0.2, "weight of the newest switch stall in its running mean", 0, 1),
      param_real(
          "forget", 1.0,
          "forgetting factor of the iteration-time fit (1: least squares over the whole run)", 0.9,
          1.0),
      param_real("horizon", 16.0,
                 "iterations a switch's stall is spread over, until merged periods are measured",
                 1.0, 1e6),
      param_real("horizon_ewma", 0.2,
                 "weight of the newest merged-period length in the horizon (0: keep `horizon`)", 0,
                 1),
      param_real("guard_s", 0.5,
                 "starvation guard: a request among the batch-limit oldest that has waited this "
                 "long (s) for its next token must be in the next batch (0: off)",
                 0, 1e6),
      param_int("max_riders", 16,
                "most requests of other adapters a mixed batch takes beside the merged adapter's "
                "(0: never mixed)",
                0, 1 << 20),
  };
}

// The best batch shape considered so far, over all weights and on the weights merged now,
// and the hysteresis between them: other weights must beat the best plan on the current ones
// by `margin` (a switch is paid now, its gain only later). Shared by throughput-aware and
// clairvoyant, which score shapes differently.
class ShapeChoice {
 public:
  struct Choice {
    bool valid = false;
    Mode mode = Mode::unmerged;
    AdapterId weights = kNoAdapter;
    double score = 0;
    std::vector<const RequestView*> batch;
  };
  void clear() {
    best_ = {};
    best_here_ = {};
  }
  // A shape on weights m (kNoAdapter: unmerged) with `score` over `batch`; `current` are the
  // weights merged now. A tie keeps the earlier shape.
  void offer(Mode mode, AdapterId m, double score, const std::vector<const RequestView*>& batch,
             AdapterId current) {
    auto keep = [&](Choice& c) {
      if (c.valid && score <= c.score) return;
      c.valid = true;
      c.mode = mode;
      c.weights = m;
      c.score = score;
      c.batch = batch;
    };
    keep(best_);
    if (m == current) keep(best_here_);
  }
  const Choice& pick(AdapterId current, double margin) const {
    return (best_.weights != current && best_here_.valid &&
            best_.score <= (1 + margin) * best_here_.score)
               ? best_here_
               : best_;
  }

 private:
  Choice best_, best_here_;
};

class ThroughputCore {
 public:
  explicit ThroughputCore(const CreateArgs& args)
      : B_(args.limits.max_batch_size),
        cap_(args.limits.max_adapters_per_batch > 0 ? args.limits.max_adapters_per_batch
                                                    : args.num_adapters),
        model_(IterationTimeModel::dlora_prior(args.params.real("merge_time"),
                                               args.params.real("unmerge_time"),
                                               args.params.real("forget"))),
        switches_(args.params.real("switch_cost"), args.params.real("switch_cost"),
                  args.params.real("switch_cost"), args.params.real("switch_ewma")),
        horizon_(args.params.real("horizon")),
        unmerged_horizon_(args.params.real("horizon")),
        horizon_ewma_(args.params.real("horizon_ewma")),
        guard_s_(args.params.real("guard_s")),
        max_riders_(static_cast<int32_t>(args.params.integer("max_riders"))) {
    if (B_ < 1) throw std::invalid_argument("max_batch_size must be >= 1");
  }

  // ---- at plan time --------------------------------------------------------------------------

  // Call first in plan(): the adapters (ranks) and the weight state the plan starts from.
  void begin(const ReplicaView& v) {
    if (adapters_.size() != v.adapters.size())
      adapters_.assign(v.adapters.begin(), v.adapters.end());
    weights_ = has_merged_weights(v.mode) ? v.merged_adapter : kNoAdapter;
    now_ = v.now;
    planned_.clear();
    stuck_ = planned_once_ && v.iteration == planned_iteration_ && !observed_;
    planned_once_ = true;
    planned_iteration_ = v.iteration;
    observed_ = false;
  }
  // The previous plan ran nothing (the engine plans the same iteration again): admission could
  // not take any of its candidates, e.g. under unified paging, where the merged adapter's
  // blocks stay in the pool until a batch runs. The caller then falls back to a plan that
  // needs the least memory.
  bool stuck() const { return stuck_; }
  // Call with every candidate of the returned plan, in order.
  void remember(const RequestView& r) { planned_.add(r); }

  AdapterId weights() const { return weights_; }
  int32_t batch_limit() const { return B_; }
  int32_t adapter_cap() const { return cap_; }
  int32_t max_riders() const { return max_riders_; }
  bool guard_on() const { return guard_s_ > 0; }
  // The guard protects the head of the FCFS queue: a request among the B oldest that has
  // waited guard_s since its last token (or its arrival) must run. Requests further back are
  // not promoted past older ones, so the guard never starts more requests than FCFS would.
  void find_starving(std::span<const RequestView> queued,
                     std::vector<const RequestView*>& out) const {
    out.clear();
    if (guard_s_ <= 0) return;
    const size_t head = std::min(queued.size(), static_cast<size_t>(B_));
    for (size_t i = 0; i < head; ++i)
      if (served_.waited(queued[i], now_) > guard_s_) out.push_back(&queued[i]);
  }
  // The adapters a plan tries merged (and mixed): the first `k` of `ranked` (the caller's order
  // of promise), and the adapter merged now if it is not among them, so staying is always tried.
  void merge_candidates(std::span<const AdapterId> ranked, int32_t k,
                        std::vector<AdapterId>& out) const {
    out.assign(ranked.begin(),
               ranked.begin() + std::min<size_t>(ranked.size(), static_cast<size_t>(k)));
    if (weights_ != kNoAdapter && std::find(out.begin(), out.end(), weights_) == out.end())
      out.push_back(weights_);
  }
  std::span<const AdapterView> adapters() const { return adapters_; }
  ShapeBuilder builder(Mode mode, AdapterId merged) const {
    return ShapeBuilder(mode, merged, adapters_);
  }

  double predict(const BatchShape& s) const { return model_.predict(s); }

  // Useful work of a batch (s): the time its requests would take in a full merged batch, where
  // the fixed part of an iteration is shared by B requests and no LoRA path runs. A full merged
  // decode batch does exactly its own time of work; an unmerged one pays its LoRA path on top,
  // a half-empty one wastes half of the fixed part.
  double work(const BatchShape& s) const {
    const auto& c = model_.coefficients();
    auto pos = [](double x) { return std::max(0.0, x); };
    const double ms = pos(c[0]) * s.seqs / B_ + pos(c[1]) * s.decodes / 16.0 +
                      pos(c[2]) * static_cast<double>(s.prefill_tokens) / 1024.0 +
                      pos(c[3]) * static_cast<double>(s.prefill_sq) / 1048576.0 +
                      pos(c[4]) * static_cast<double>(s.decode_context) / 8192.0;
    return ms * 1e-3;
  }

  // Seconds of switching to reach `target` from the weights now, spread over the iterations
  // the replica is expected to stay there.
  double amortised_switch(AdapterId target) const {
    const double s = switches_.cost(weights_, target);
    if (s == 0) return 0;
    return s / std::max(1.0, target == kNoAdapter ? unmerged_horizon_ : horizon_);
  }

  // Work per second of running batch `s` with the weights holding `target`.
  double efficiency(const BatchShape& s, AdapterId target) const {
    if (s.seqs == 0) return 0;
    return work(s) / (predict(s) + amortised_switch(target));
  }

  // Adds riders (requests of adapters other than `m`, FCFS order within each adapter) to a
  // mixed batch on `m` whose builder `b` holds `batch`: first every starving request (the
  // guard: they ride whatever it costs), then whole adapter groups, largest first, each only
  // if the batch's predicted work per second rises with it (the filled slots pay for the
  // second LoRA pass). `groups` lists each adapter's queued requests, FCFS; `order` the
  // adapters to try, in order. Returns the riders added.
  int32_t add_riders(AdapterId m, ShapeBuilder& b, std::vector<const RequestView*>& batch,
                     std::span<const RequestView* const> starving,
                     const std::vector<std::vector<const RequestView*>>& groups,
                     std::span<const AdapterId> order, std::vector<uint8_t>& taken) const {
    int32_t riders = 0;
    auto fits = [&](AdapterId a) {
      return static_cast<int32_t>(batch.size()) < B_ &&
             (!b.new_adapter(a) || b.unmerged_adapters() < cap_);
    };
    for (const RequestView* r : starving) {
      if (r->adapter == m || taken[slot(*r)] || !fits(r->adapter)) continue;
      b.add(*r);
      batch.push_back(r);
      taken[slot(*r)] = 1;
      ++riders;
    }
    for (AdapterId a : order) {
      if (a == m) continue;
      if (riders >= max_riders_ || static_cast<int32_t>(batch.size()) >= B_) break;
      if (!fits(a)) continue;
      ShapeBuilder trial = b;
      std::vector<const RequestView*> add;
      for (const RequestView* r : groups[static_cast<size_t>(a)]) {
        if (riders + static_cast<int32_t>(add.size()) >= max_riders_ ||
            static_cast<int32_t>(batch.size() + add.size()) >= B_)
          break;
        if (taken[slot(*r)]) continue;
        trial.add(*r);
        add.push_back(r);
      }
      if (add.empty()) continue;
      if (efficiency(trial.shape(), m) <= efficiency(b.shape(), m)) continue;
      b = trial;
      for (const RequestView* r : add) {
        batch.push_back(r);
        taken[slot(*r)] = 1;
      }
      riders += static_cast<int32_t>(add.size());
    }
    return riders;
  }

  // The view's queue copied into one FCFS array (API 3's queue is a linked range): these
  // policies index requests by position and look at the whole queue, so they pay O(queue) per
  // decision, unlike dlora, which walks only what it needs. Every RequestView they handle
  // points into this array.
  std::span<const RequestView> snapshot(const QueueRange& queued) {
    snapshot_.assign(queued.begin(), queued.end());
    return snapshot_;
  }

  // Each adapter's queued requests in FCFS order (`groups`, indexed by adapter) and the
  // adapters in order of their oldest queued request (`active`), from this plan's snapshot.
  // Only the previous call's active groups are cleared: O(queue), not O(adapters).
  static void group_by_adapter(std::span<const RequestView> queued, int32_t num_adapters,
                               std::vector<std::vector<const RequestView*>>& groups,
                               std::vector<AdapterId>& active) {
    if (groups.size() < static_cast<size_t>(num_adapters))
      groups.resize(static_cast<size_t>(num_adapters));
    for (AdapterId a : active) groups[static_cast<size_t>(a)].clear();
    active.clear();
    for (const RequestView& r : queued) {
      auto& g = groups[static_cast<size_t>(r.adapter)];
      if (g.empty()) active.push_back(r.adapter);
      g.push_back(&r);
    }
  }

  // `taken` flags are indexed by position in the view's queue (every RequestView a scheduler
  // handles points into it): call before using them.
  void index_queue(std::span<const RequestView> queued, std::vector<uint8_t>& taken) {
    base_ = queued.data();
    taken.assign(queued.size(), 0);
  }
  size_t slot(const RequestView& r) const { return static_cast<size_t>(&r - base_); }

  // ---- after the iteration ---------------------------------------------------------------------

  void arrived(const RequestView& r, double now) { served_.arrived(r.id, now); }

  void observe(const IterationOutcome& o) {
    observed_ = true;
    const AdapterId after = has_merged_weights(o.mode) ? o.merged_adapter : kNoAdapter;
    if (after != weights_) switches_.observe(weights_, after, o.switch_time);
    BatchShape s;
    if (planned_.shape_of(o.batch, o.mode, after, adapters_, s)) model_.update(s, o.duration);
    served_.served(o.batch, o.start + o.switch_time + o.duration);
    // Length of the period of iterations with the same weights, for the switch horizon.
    if (after == period_weights_) {
      ++period_iters_;
    } else {
      if (period_iters_ > 0 && horizon_ewma_ > 0) {
        double& h = period_weights_ == kNoAdapter ? unmerged_horizon_ : horizon_;
        h += horizon_ewma_ * (static_cast<double>(period_iters_) - h);
      }
      period_weights_ = after;
      period_iters_ = 1;
    }
    weights_ = after;
  }

  const IterationTimeModel& model() const { return model_; }
  double horizon() const { return horizon_; }

 private:
  int32_t B_, cap_;
  IterationTimeModel model_;
  SwitchCosts switches_;
  double horizon_, unmerged_horizon_, horizon_ewma_, guard_s_;
  int32_t max_riders_;
  std::vector<AdapterView> adapters_;
  AdapterId weights_ = kNoAdapter;
  double now_ = 0;
  PlannedRequests planned_;
  LastServed served_;
  AdapterId period_weights_ = kNoAdapter;
  int64_t period_iters_ = 0;
  const RequestView* base_ = nullptr;
  std::vector<RequestView> snapshot_;
  bool stuck_ = false, planned_once_ = false, observed_ = false;
  int64_t planned_iteration_ = 0;
};

}  // namespace lorasched::plugins
