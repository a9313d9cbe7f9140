// dLoRA's per-iteration decision (scheduler `dlora`), as a class other schedulers can
// build on: the rules stay the artifact's, variants change what a queue counts for
// (queue_size) or what a merged batch may hold (finish_merged). See dlora.cpp.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace lorasched::plugins {

using namespace lorasched::api;

class DloraCore : public Scheduler {
 public:
  explicit DloraCore(const CreateArgs& args)
      : N_(args.num_adapters),
        B_(args.limits.max_batch_size),
        capacity_(args.limits.max_adapters_per_batch > 0 ? args.limits.max_adapters_per_batch : N_),
        threshold_(args.threshold),
        merge_time_(args.params.real("merge_time")),
        unmerge_time_(args.params.real("unmerge_time")) {
    if (N_ > 1 && capacity_ < 2)
      throw std::invalid_argument(
          "dlora needs max_adapters_per_batch >= 2 with several adapters (with 1 an unmerged "
          "batch is a one-adapter active list, which the artifact cannot run)");
    if (threshold_ == nullptr) throw std::invalid_argument("dlora needs a threshold plugin");
    // Credit constants of Scheduler.__init__ (L102-125), in units of credit_unit (10000).
    const double n = static_cast<double>(N_);
    const double unit = args.params.real("credit_unit");
    credit_right_ = unit * n;
    credit_left_ = credit_right_ - unit / 2;
    credit_.assign(static_cast<size_t>(N_), unit * (n - 1.0));
    order_.resize(static_cast<size_t>(N_));
    for (int32_t m = 0; m < N_; ++m) order_[static_cast<size_t>(m)] = m;
    const double speed_rate = merge_time_ / unmerge_time_;
    credit_cost_ = 1.0 / B_;
    batch_credit_cost_ = 1.0 / (speed_rate * B_);
    was_credit_.assign(static_cast<size_t>(N_), 0);
    map_.resize(static_cast<size_t>(N_));
    // The worker starts unmerged with several adapters resident (len(active) > 1), or with
    // the single adapter as its active list when N == 1.
    active_single_ = N_ == 1 ? 0 : kNoAdapter;
  }

  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan out;
    const auto& queued = view.queued;
    if (queued.empty()) return out;  // nothing changes while idle
    auto current = threshold_->checked_current();
    if (!current) throw std::runtime_error("its threshold plugin failed: " + current.error());
    const Thresholds th = current.value();

    // scheduled_by_fcfs and the per-adapter queues (model_req_mapping), FCFS order.
    const size_t nfcfs = std::min(queued.size(), static_cast<size_t>(B_));
    base_ = queued.data();
    nfcfs_ = nfcfs;
    if (flag_.size() < queued.size()) flag_.resize(queued.size(), 0);
    for (auto& q : map_) q.clear();
    for (const RequestView& r : queued) map_[static_cast<size_t>(r.adapter)].push_back(&r);

    // Credit pass. The artifact re-sorts its credit dict by credit, descending, keeping
    // the previous order among equals; insertion sort is stable and O(N) when sorted.
    for (size_t i = 1; i < order_.size(); ++i) {
      const int32_t m = order_[i];
      size_t j = i;
      while (j > 0 &&
             credit_[static_cast<size_t>(order_[j - 1])] < credit_[static_cast<size_t>(m)]) {
        order_[j] = order_[j - 1];
        --j;
      }
      order_[j] = m;
    }
    std::vector<const RequestView*> scheduled;
    int32_t num_to_schedule = B_;
    std::vector<int32_t> credit_models;
    for (int32_t m : order_) {
      const double c = credit_[static_cast<size_t>(m)];
      if (c < credit_left_) break;
      if (c >= credit_right_ || (was_credit_[static_cast<size_t>(m)] && c >= credit_left_)) {
        const auto& q = map_[static_cast<size_t>(m)];
        const int32_t num = std::min<int32_t>(num_to_schedule, static_cast<int32_t>(q.size()));
        scheduled.insert(scheduled.end(), q.begin(), q.begin() + num);
        credit_models.push_back(m);
        num_to_schedule -= num;
        if (num_to_schedule == 0) break;
      }
    }
    std::fill(was_credit_.begin(), was_credit_.end(), 0);
    for (int32_t m : credit_models) was_credit_[static_cast<size_t>(m)] = 1;

    bool to_merge = false;
    if (num_to_schedule == B_) {
      // Batch-or-FCFS: candidates are adapters with credit >= credit_base (0); the largest
      // queue wins, ties to the lower adapter id.
      int32_t max_model = kNoAdapter;
      double n_max = 0;
      for (int32_t m = 0; m < N_; ++m) {
        if (credit_[static_cast<size_t>(m)] < 0.0) continue;
        const double len = queue_size(m, map_[static_cast<size_t>(m)].size(), view);
        if (max_model == kNoAdapter || len > n_max) {
          max_model = m;
          n_max = len;
        }
      }
      const double fcfs_len = static_cast<double>(nfcfs);
      std::vector<const RequestView*> by_batch;
      if (max_model == kNoAdapter) {
        // Every credit below zero: the artifact would fail here (empty candidate list);
        // run the FCFS batch.
        scheduled.clear();
        for (size_t i = 0; i < nfcfs; ++i) scheduled.push_back(&queued[i]);
      } else if (active_single_ != kNoAdapter &&
                 credit_[static_cast<size_t>(active_single_)] >= 0.0 &&
                 may_merge(active_single_, view) &&
                 !map_[static_cast<size_t>(active_single_)].empty() &&
                 queue_size(active_single_, map_[static_cast<size_t>(active_single_)].size(),
                            view) >= th.beta * fcfs_len) {
        // A1: stay merged (all of its queue; admission stops at B).
        to_merge = true;
        ++num_iters_;
        by_batch = map_[static_cast<size_t>(active_single_)];
        scheduled = by_batch;
        adjust_credit(queued, nfcfs, scheduled, batch_credit_cost_);
      } else if (n_max >= th.alpha * fcfs_len && !map_[static_cast<size_t>(max_model)].empty() &&
                 may_merge(max_model, view)) {
        // (An empty queue can only win through a variant's forecast; the artifact would fail
        // on its empty batch.)
        // A2: enter or switch merged mode on the largest queue.
        adjust_merge_threshold(view.now);
        to_merge = true;
        merged_ = true;
        num_iters_ = 1;
        const auto& q = map_[static_cast<size_t>(max_model)];
        by_batch.assign(q.begin(), q.begin() + std::min<size_t>(q.size(), static_cast<size_t>(B_)));
        scheduled = by_batch;
        active_single_ = max_model;
        adjust_credit(queued, nfcfs, scheduled, batch_credit_cost_);
      } else {
        // A3: unmerged FCFS; remember what a merged batch would have held.
        if (max_model_ != max_model) {
          ++virtual_switch_cnt_;
          max_model_ = max_model;
        }
        const auto& q = map_[static_cast<size_t>(max_model)];
        by_batch.assign(q.begin(), q.begin() + std::min<size_t>(q.size(), static_cast<size_t>(B_)));
        for (size_t i = 0; i < nfcfs; ++i) scheduled.push_back(&queued[i]);
      }
      if (max_model != kNoAdapter) {
        merge_batch_cnt_ +=
            static_cast<double>(std::min<size_t>(by_batch.size(), static_cast<size_t>(B_)));
        unmerge_batch_cnt_ += static_cast<double>(std::min<size_t>(nfcfs, static_cast<size_t>(B_)));
      }
    } else if (num_to_schedule == 0) {
      adjust_credit(queued, nfcfs, scheduled, credit_cost_);
    } else {
      mark(scheduled, true);
      for (size_t i = 0; i < nfcfs && num_to_schedule > 0; ++i)
        if (!flag_[i]) {
          scheduled.push_back(&queued[i]);
          --num_to_schedule;
        }
      mark(scheduled, false);
      adjust_credit(queued, nfcfs, scheduled, credit_cost_);
    }

    if (!to_merge) {
      if (merged_) {
        adjust_merge_threshold(view.now);
        merged_ = false;
        num_iters_ = 1;
      } else {
        ++num_iters_;
      }
      // At most gpu_capacity adapters; requests of further adapters are skipped.
      std::vector<AdapterId> kept;
      std::vector<const RequestView*> capped;
      for (const RequestView* r : scheduled) {
        if (std::find(kept.begin(), kept.end(), r->adapter) == kept.end()) {
          if (static_cast<int32_t>(kept.size()) >= capacity_) continue;
          kept.push_back(r->adapter);
        }
        capped.push_back(r);
      }
      scheduled.swap(capped);
      active_single_ = kNoAdapter;  // active = all resident adapters (capacity >= 2)
      out.mode = Mode::unmerged;
    } else {
      out.mode = Mode::merged;
      out.merged_adapter = active_single_;
    }
    out.requests.reserve(scheduled.size());
    for (const RequestView* r : scheduled) out.requests.push_back(r->id);
    if (to_merge) finish_merged(out, view);
    return out;
  }

 protected:
  // Hooks for variants (dLoRA itself uses the defaults):
  // The queue length the merge / stay / largest-queue rules compare for adapter m
  // (`actual` requests queued now). Predictive variants add expected arrivals.
  virtual double queue_size(AdapterId /*m*/, size_t actual, const ReplicaView& /*view*/) {
    return static_cast<double>(actual);
  }
  // Called with a merged plan (A1 / A2) before it is returned.
  virtual void finish_merged(IterationPlan& /*plan*/, const ReplicaView& /*view*/) {}
  // Whether the stay-merged (A1) and merge (A2) rules may run adapter m merged now; when not,
  // the iteration falls through to the next rule (a guard that must serve other adapters).
  virtual bool may_merge(AdapterId /*m*/, const ReplicaView& /*view*/) { return true; }
  int32_t num_adapters() const { return N_; }
  int32_t batch_limit() const { return B_; }
  int32_t adapter_capacity() const { return capacity_; }

 private:
  // _adjust_credit (L237-253): zero-sum transfers when the batch differs from FCFS.
  void adjust_credit(std::span<const RequestView> queued, size_t nfcfs,
                     const std::vector<const RequestView*>& batch_in, double cost) {
    // The batch sorted so that members of the FCFS batch come first (stable).
    std::vector<const RequestView*> batch;
    batch.reserve(batch_in.size());
    for (const RequestView* r : batch_in)
      if (in_fcfs(r)) batch.push_back(r);
    for (const RequestView* r : batch_in)
      if (!in_fcfs(r)) batch.push_back(r);
    if (nfcfs == batch.size()) {
      for (size_t i = 0; i < nfcfs; ++i)
        if (!in_fcfs(batch[i])) {
          credit_[static_cast<size_t>(batch[i]->adapter)] -= cost;
          credit_[static_cast<size_t>(queued[i].adapter)] += cost;
        }
    } else if (!batch.empty()) {
      mark(batch, true);
      for (size_t i = 0; i < nfcfs; ++i)
        if (!flag_[i]) {
          credit_[static_cast<size_t>(batch[0]->adapter)] -= cost / 2;
          credit_[static_cast<size_t>(queued[i].adapter)] += cost / 2;
        }
      mark(batch, false);
    }
  }

  // Requests are pointers into this iteration's queue: membership by position.
  bool in_fcfs(const RequestView* r) const { return static_cast<size_t>(r - base_) < nfcfs_; }
  void mark(const std::vector<const RequestView*>& rs, bool on) {
    for (const RequestView* r : rs) flag_[static_cast<size_t>(r - base_)] = on;
  }

  // _adjust_merge_threshold (L255-287): the period that just ended goes to the threshold
  // plugin, which updates alpha/beta; the counters restart.
  void adjust_merge_threshold(double now) {
    if (num_iters_ == 0) return;
    PeriodStats s;
    s.merged = merged_;
    s.num_iters = num_iters_;
    s.merge_batch_cnt = merge_batch_cnt_;
    s.unmerge_batch_cnt = unmerge_batch_cnt_;
    s.virtual_switch_cnt = virtual_switch_cnt_;
    s.now = now;
    auto updated = threshold_->checked_on_period_end(s);
    if (!updated) throw std::runtime_error("its threshold plugin failed: " + updated.error());
    merge_batch_cnt_ = 0;
    unmerge_batch_cnt_ = 0;
    virtual_switch_cnt_ = 0;
    max_model_ = kNoAdapter;
  }

  int32_t N_, B_, capacity_;
  Threshold* threshold_;
  double merge_time_, unmerge_time_;
  double credit_right_ = 0, credit_left_ = 0, credit_cost_ = 0, batch_credit_cost_ = 0;
  std::vector<double> credit_;
  std::vector<int32_t> order_;       // the credit dict's order
  std::vector<uint8_t> was_credit_;  // previous_credit_models
  bool merged_ = false;
  int64_t num_iters_ = 0;
  double merge_batch_cnt_ = 0, unmerge_batch_cnt_ = 0;
  int64_t virtual_switch_cnt_ = 0;
  AdapterId max_model_ = kNoAdapter;
  AdapterId active_single_ = kNoAdapter;  // active list of one adapter (merged), else none
  std::vector<std::vector<const RequestView*>> map_;
  const RequestView* base_ = nullptr;  // this iteration's queue
  size_t nfcfs_ = 0;
  std::vector<uint8_t> flag_;  // per queue position, cleared after each use
};

// dLoRA's parameters (every dLoRA-based scheduler declares them).
inline std::vector<ParamSpec> dlora_params() {
  return {
      param_real("merge_time", 0.015,
                 "merged iteration time (s) of the artifact's profile; sets the credit unit of "
                 "merged batches (1 / (merge_time/unmerge_time x B))",
                 1e-6, 10.0),
      param_real("unmerge_time", 0.027, "unmerged iteration time (s) of the artifact's profile",
                 1e-6, 10.0),
      param_real("credit_unit", 10000.0,
                 "credit scale: adapters start at unit x (N-1), enter credit priority at unit x N "
                 "and keep it down to unit x N - unit/2 (the artifact's 10000 makes credits "
                 "practically inert; smaller values make them bite)",
                 1e-9, 1e12)};
}

}  // namespace lorasched::plugins
