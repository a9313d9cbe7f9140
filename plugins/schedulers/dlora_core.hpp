// dLoRA's per-iteration decision (scheduler `dlora`), as a class other schedulers can
// build on: the rules stay the artifact's, variants change what a queue counts for
// (forecast) or what a merged batch may hold (finish_merged). See dlora.cpp.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
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
    credit_start_ = unit * (n - 1.0);
    credit_.assign(static_cast<size_t>(N_), credit_start_);
    negative_credits_ = credit_start_ < 0.0 ? N_ : 0;
    sided_.assign(static_cast<size_t>(N_), 0);
    moved_flag_.assign(static_cast<size_t>(N_), 0);
    listed_.assign(static_cast<size_t>(N_), 0);
    if (credit_start_ < credit_left_) {
      order_.push_back(kRest);
    } else {  // (not for a positive unit) every adapter is ordered explicitly, as the artifact
      order_.resize(static_cast<size_t>(N_));
      for (int32_t m = 0; m < N_; ++m) order_[static_cast<size_t>(m)] = m;
      std::fill(sided_.begin(), sided_.end(), 1);
    }
    const double speed_rate = merge_time_ / unmerge_time_;
    credit_cost_ = 1.0 / B_;
    batch_credit_cost_ = 1.0 / (speed_rate * B_);
    was_credit_.assign(static_cast<size_t>(N_), 0);
    // The worker starts unmerged with several adapters resident (len(active) > 1), or with
    // the single adapter as its active list when N == 1.
    active_single_ = N_ == 1 ? 0 : kNoAdapter;
  }

  // O(A + B log B) per call, A the adapters with queued requests or whose credit ever moved
  // on this replica (not the fleet's N: a replica of a large cluster sees a few adapters),
  // whatever the queue's length: it reads the first B of the queue and of the adapters it
  // considers, and per-adapter counts; a batch of a whole adapter queue (A1) is a plan tail.
  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan out;
    if (view.queued.empty()) return out;  // nothing changes while idle
    s_ = &scratch();
    if (s_->flag.size() < static_cast<size_t>(B_)) s_->flag.resize(static_cast<size_t>(B_), 0);
    forecasts_ = forecasts();
    auto current = threshold_->checked_current();
    if (!current) throw std::runtime_error("its threshold plugin failed: " + current.error());
    const Thresholds th = current.value();

    // scheduled_by_fcfs: the first B of the queue; the per-adapter queues (model_req_mapping)
    // are view.queued_of(m), in the same order.
    s_->fcfs.clear();
    for (const RequestView& r : view.queued) {
      if (s_->fcfs.size() == static_cast<size_t>(B_)) break;
      s_->fcfs.push_back(&r);
    }
    const size_t nfcfs = s_->fcfs.size();
    fcfs_indexed_ = false;  // fcfs_position() sorts it when a credit rule first asks
    auto queued = [&](AdapterId m) { return static_cast<size_t>(view.queued_of(m).size()); };

    // Credit pass. The artifact re-sorts its credit dict by credit, descending, keeping
    // the previous order among equals; insertion sort is stable and O(A) when sorted, and
    // needless when no credit moved since the last sort.
    if (credits_moved_) sort_credits();
    std::vector<const RequestView*>& scheduled = s_->scheduled;
    scheduled.clear();
    int32_t num_to_schedule = B_;
    s_->credit_models.clear();
    for (int32_t m : order_) {
      const double c = key(m);
      if (c < credit_left_) break;  // at kRest at the latest
      if (c >= credit_right_ || (was_credit_[static_cast<size_t>(m)] && c >= credit_left_)) {
        const QueueRange q = view.queued_of(m);
        const int32_t num = std::min<int32_t>(num_to_schedule, q.size());
        auto it = q.begin();
        for (int32_t k = 0; k < num; ++k, ++it) scheduled.push_back(&*it);
        s_->credit_models.push_back(m);
        num_to_schedule -= num;
        if (num_to_schedule == 0) break;
      }
    }
    for (int32_t m : was_credit_list_) was_credit_[static_cast<size_t>(m)] = 0;
    for (int32_t m : s_->credit_models) was_credit_[static_cast<size_t>(m)] = 1;
    was_credit_list_.assign(s_->credit_models.begin(), s_->credit_models.end());

    bool to_merge = false;
    bool whole_queue = false;  // A1: the batch is the whole queue of active_single_ (a tail)
    if (num_to_schedule == B_) {
      // Batch-or-FCFS: candidates are adapters with credit >= credit_base (0); the largest
      // queue wins, ties to the lower adapter id.
      int32_t max_model = kNoAdapter;
      double n_max = 0;
      if (forecasts_) {
        for (int32_t m = 0; m < N_; ++m) {
          if (credit_[static_cast<size_t>(m)] < 0.0) continue;
          const double len = queue_size(m, queued(m), view);
          if (max_model == kNoAdapter || len > n_max) {
            max_model = m;
            n_max = len;
          }
        }
      } else {
        // Lengths are queue lengths: only queued adapters can beat length 0, and with none
        // of them a candidate the first candidate by id wins (at length 0).
        const auto [largest, len] = largest_queued(view);
        max_model = largest;
        n_max = static_cast<double>(len);
        if (max_model == kNoAdapter) {
          // Only adapters whose credit moved can be below 0: few steps.
          int32_t m = 0;
          while (m < N_ && credit_[static_cast<size_t>(m)] < 0.0) ++m;
          if (m < N_) {
            max_model = m;
            n_max = queue_size(m, queued(m), view);
          }
        }
      }
      const double fcfs_len = static_cast<double>(nfcfs);
      size_t by_batch = 0;  // requests in the merged batch, actual or counterfactual
      if (max_model == kNoAdapter) {
        // Every credit below zero: the artifact would fail here (empty candidate list);
        // run the FCFS batch.
        scheduled.assign(s_->fcfs.begin(), s_->fcfs.end());
      } else if (active_single_ != kNoAdapter &&
                 credit_[static_cast<size_t>(active_single_)] >= 0.0 &&
                 may_merge(active_single_, view) && queued(active_single_) > 0 &&
                 queue_size(active_single_, queued(active_single_), view) >= th.beta * fcfs_len) {
        // A1: stay merged (all of its queue; admission stops at B).
        to_merge = true;
        whole_queue = true;
        ++num_iters_;
        by_batch = queued(active_single_);
        adjust_credit_whole_queue(active_single_, by_batch, batch_credit_cost_);
      } else if (n_max >= th.alpha * fcfs_len && queued(max_model) > 0 &&
                 may_merge(max_model, view)) {
        // (An empty queue can only win through a variant's forecast; the artifact would fail
        // on its empty batch.)
        // A2: enter or switch merged mode on the largest queue.
        adjust_merge_threshold(view.now);
        to_merge = true;
        merged_ = true;
        num_iters_ = 1;
        const QueueRange q = view.queued_of(max_model);
        auto it = q.begin();
        for (int32_t k = 0; k < std::min(q.size(), B_); ++k, ++it) scheduled.push_back(&*it);
        by_batch = scheduled.size();
        active_single_ = max_model;
        adjust_credit(scheduled, batch_credit_cost_);
      } else {
        // A3: unmerged FCFS; remember what a merged batch would have held.
        if (max_model_ != max_model) {
          ++virtual_switch_cnt_;
          max_model_ = max_model;
        }
        by_batch = std::min(queued(max_model), static_cast<size_t>(B_));
        scheduled.insert(scheduled.end(), s_->fcfs.begin(), s_->fcfs.end());
      }
      if (max_model != kNoAdapter) {
        merge_batch_cnt_ += static_cast<double>(std::min(by_batch, static_cast<size_t>(B_)));
        unmerge_batch_cnt_ += static_cast<double>(std::min(nfcfs, static_cast<size_t>(B_)));
      }
    } else if (num_to_schedule == 0) {
      adjust_credit(scheduled, credit_cost_);
    } else {
      mark(scheduled, true);
      for (size_t i = 0; i < nfcfs && num_to_schedule > 0; ++i)
        if (!s_->flag[i]) {
          scheduled.push_back(s_->fcfs[i]);
          --num_to_schedule;
        }
      mark(scheduled, false);
      adjust_credit(scheduled, credit_cost_);
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
      s_->kept.clear();
      s_->capped.clear();
      for (const RequestView* r : scheduled) {
        if (std::find(s_->kept.begin(), s_->kept.end(), r->adapter) == s_->kept.end()) {
          if (static_cast<int32_t>(s_->kept.size()) >= capacity_) continue;
          s_->kept.push_back(r->adapter);
        }
        s_->capped.push_back(r);
      }
      scheduled.swap(s_->capped);
      active_single_ = kNoAdapter;  // active = all resident adapters (capacity >= 2)
      out.mode = Mode::unmerged;
    } else {
      out.mode = Mode::merged;
      out.merged_adapter = active_single_;
    }
    if (whole_queue) {
      out.tail = Tail::adapter;
      out.tail_adapter = active_single_;
    } else {
      out.requests.reserve(scheduled.size());
      for (const RequestView* r : scheduled) out.requests.push_back(r->id);
    }
    if (to_merge) finish_merged(out, view);
    return out;
  }

  // Variants that take arrivals call this too: it keeps the list of queued adapters short
  // (largest_queued()); decisions do not depend on it.
  void on_arrival(const RequestView& r, double /*now*/) override { list_queued(r.adapter); }

 protected:
  // Hooks for variants (dLoRA itself uses the defaults):
  // Whether the merge / stay / largest-queue rules compare queue lengths plus forecast
  // arrivals (forecast()) instead of queue lengths: then the largest-queue rule looks at
  // every adapter, not only the queued ones.
  virtual bool forecasts() const { return false; }
  // Expected arrivals of adapter m that its queue length counts (only when forecasts()).
  virtual double forecast(AdapterId /*m*/, const ReplicaView& /*view*/) { return 0.0; }
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
  void adjust_credit(const std::vector<const RequestView*>& batch_in, double cost) {
    const size_t nfcfs = s_->fcfs.size();
    // The batch sorted so that members of the FCFS batch come first (stable).
    s_->batch.clear();
    for (const RequestView* r : batch_in)
      if (fcfs_position(r) < nfcfs) s_->batch.push_back(r);
    for (const RequestView* r : batch_in)
      if (fcfs_position(r) == nfcfs) s_->batch.push_back(r);
    if (nfcfs == s_->batch.size()) {
      for (size_t i = 0; i < nfcfs; ++i)
        if (fcfs_position(s_->batch[i]) == nfcfs) move_credit(s_->batch[i]->adapter, i, cost);
    } else if (!s_->batch.empty()) {
      mark(s_->batch, true);
      for (size_t i = 0; i < nfcfs; ++i)
        if (!s_->flag[i]) move_credit(s_->batch[0]->adapter, i, cost / 2);
      mark(s_->batch, false);
    }
  }

  // The same for a batch of adapter m's whole queue (`size` requests, FCFS order) without
  // listing it: its FCFS members are the requests of m among the first B, and come first.
  void adjust_credit_whole_queue(AdapterId m, size_t size, double cost) {
    const size_t nfcfs = s_->fcfs.size();
    if (nfcfs == size) {
      size_t in_fcfs = 0;
      for (const RequestView* r : s_->fcfs) in_fcfs += r->adapter == m;
      for (size_t i = in_fcfs; i < nfcfs; ++i) move_credit(m, i, cost);
    } else if (size > 0) {
      for (size_t i = 0; i < nfcfs; ++i)
        if (s_->fcfs[i]->adapter != m) move_credit(m, i, cost / 2);
    }
  }

  // `cost` credit from adapter `from` to the adapter of the i-th request of the FCFS batch.
  void move_credit(AdapterId from, size_t i, double cost) {
    const AdapterId to = s_->fcfs[i]->adapter;
    double& f = credit_[static_cast<size_t>(from)];
    double& t = credit_[static_cast<size_t>(to)];
    negative_credits_ -= (f < 0.0) + (t < 0.0);
    f -= cost;
    t += cost;
    negative_credits_ += (f < 0.0) + (t < 0.0);
    for (AdapterId m : {from, to})
      if (!moved_flag_[static_cast<size_t>(m)]) {
        moved_flag_[static_cast<size_t>(m)] = 1;
        moved_.push_back(m);
      }
    credits_moved_ = true;
  }

  // The artifact's credit dict holds all N adapters; order_ holds those whose credit has
  // left its start (credit_start_) at some sort, and kRest for all the others. Those others
  // all have the start credit, so a stable sort never reorders them among themselves: in
  // the full order they stay together, by id, where kRest is. An adapter whose credit left
  // the start since the last sort joins order_ from there (by id), and one stable sort of
  // order_ then orders what it holds as the full sort would. The start is below
  // credit_left_, so the credit walk stops at kRest and never needs the others.
  double key(int32_t m) const {
    return m == kRest ? credit_start_ : credit_[static_cast<size_t>(m)];
  }
  void sort_credits() {
    s_->joining.clear();
    for (AdapterId m : moved_) {
      moved_flag_[static_cast<size_t>(m)] = 0;
      if (!sided_[static_cast<size_t>(m)] && credit_[static_cast<size_t>(m)] != credit_start_) {
        sided_[static_cast<size_t>(m)] = 1;
        s_->joining.push_back(m);
      }
    }
    moved_.clear();
    if (!s_->joining.empty()) {
      std::sort(s_->joining.begin(), s_->joining.end());
      order_.insert(std::find(order_.begin(), order_.end(), kRest), s_->joining.begin(),
                    s_->joining.end());
    }
    for (size_t i = 1; i < order_.size(); ++i) {
      const int32_t m = order_[i];
      const double c = key(m);
      size_t j = i;
      while (j > 0 && key(order_[j - 1]) < c) {
        order_[j] = order_[j - 1];
        --j;
      }
      order_[j] = m;
    }
    credits_moved_ = false;
  }

  // The length the merge / stay / largest-queue rules compare for adapter m (`actual`
  // requests queued now).
  double queue_size(AdapterId m, size_t actual, const ReplicaView& view) {
    return forecasts_ ? static_cast<double>(actual) + forecast(m, view)
                      : static_cast<double>(actual);
  }

  // The queued adapter with the longest queue among those with credit >= 0 (not below 0:
  // a NaN credit counts), the lower id on ties, and its length; kNoAdapter when none.
  // The adapters with queued requests are kept in a list from arrivals (on_arrival) and
  // pruned here, in the same pass; when their queues do not add up to the whole queue (a
  // request came back without an arrival this class saw), it is rebuilt from every adapter.
  std::pair<AdapterId, int32_t> largest_queued(const ReplicaView& view) {
    // One key per candidate, larger = preferred: its length, then the lower id.
    const bool all = negative_credits_ == 0;
    int64_t best = -1;
    auto consider = [&](AdapterId m, int32_t n) {
      if (all || !(credit_[static_cast<size_t>(m)] < 0.0))
        best = std::max(best, (static_cast<int64_t>(n) << 32) | (INT32_MAX - m));
    };
    int64_t total = 0;
    for (size_t i = 0; i < queued_list_.size();) {
      const AdapterId m = queued_list_[i];
      const int32_t n = view.queued_of(m).size();
      if (n == 0) {
        listed_[static_cast<size_t>(m)] = 0;
        queued_list_[i] = queued_list_.back();
        queued_list_.pop_back();
        continue;
      }
      total += n;
      consider(m, n);
      ++i;
    }
    if (total != view.queued.size()) {
      for (AdapterId m : queued_list_) listed_[static_cast<size_t>(m)] = 0;
      queued_list_.clear();
      best = -1;
      for (AdapterId m = 0; m < N_; ++m)
        if (const int32_t n = view.queued_of(m).size(); n > 0) {
          list_queued(m);
          consider(m, n);
        }
    }
    if (best < 0) return {kNoAdapter, 0};
    return {static_cast<AdapterId>(INT32_MAX - (best & 0xffffffff)),
            static_cast<int32_t>(best >> 32)};
  }
  void list_queued(AdapterId m) {
    if (m < 0 || m >= N_ || listed_[static_cast<size_t>(m)]) return;
    listed_[static_cast<size_t>(m)] = 1;
    queued_list_.push_back(m);
  }

  // Position of a request in the FCFS batch, or its size when not in it. Requests are
  // pointers into the view's queue, so membership is identity.
  size_t fcfs_position(const RequestView* r) {
    if (!fcfs_indexed_) {
      s_->fcfs_index.clear();
      for (size_t i = 0; i < s_->fcfs.size(); ++i) s_->fcfs_index.push_back({s_->fcfs[i], i});
      std::sort(s_->fcfs_index.begin(), s_->fcfs_index.end());
      fcfs_indexed_ = true;
    }
    auto it = std::lower_bound(s_->fcfs_index.begin(), s_->fcfs_index.end(),
                               std::pair<const RequestView*, size_t>{r, 0});
    return it != s_->fcfs_index.end() && it->first == r ? it->second : s_->fcfs.size();
  }
  void mark(const std::vector<const RequestView*>& rs, bool on) {
    for (const RequestView* r : rs)
      if (const size_t i = fcfs_position(r); i < s_->fcfs.size()) s_->flag[i] = on;
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

  // The scratch of one plan() call, dead between calls: all instances on a thread share one,
  // which stays in cache. With one scheduler per replica, each instance's own vectors were out
  // of cache at every plan of a large cluster, where replicas take turns (at 1,000 replicas
  // about 8 lines from beyond a 1 MiB cache per iteration: docs/performance.md). plan() looks
  // it up on each call, so an instance may plan on any thread.
  struct Scratch {
    std::vector<const RequestView*> fcfs;  // the FCFS batch, the first B of the queue
    std::vector<const RequestView*> scheduled, capped;
    std::vector<int32_t> credit_models;
    std::vector<AdapterId> kept;
    std::vector<AdapterId> joining;                                 // sort_credits'
    std::vector<std::pair<const RequestView*, size_t>> fcfs_index;  // fcfs by address
    std::vector<const RequestView*> batch;                          // adjust_credit's
    std::vector<uint8_t> flag;  // per FCFS batch position, all zero between uses
  };
  static Scratch& scratch() {
    static thread_local Scratch s;
    return s;
  }
  Scratch* s_ = nullptr;  // this plan() call's

  int32_t N_, B_, capacity_;
  Threshold* threshold_;
  double merge_time_, unmerge_time_;
  // What plan() reads on every call, in the object's first four cache lines: a simulation of
  // many replicas fetches those ahead of the replica's step (Simulation::run).
  std::vector<int32_t> order_;            // the credit dict's order (see sort_credits)
  std::vector<AdapterId> queued_list_;    // see largest_queued()
  std::vector<int32_t> was_credit_list_;  // the adapters was_credit_ holds
  std::vector<uint8_t> was_credit_;       // previous_credit_models
  double credit_right_ = 0, credit_left_ = 0, credit_cost_ = 0, batch_credit_cost_ = 0;
  static constexpr int32_t kRest = -1;  // in order_: the adapters whose credit never moved
  double credit_start_ = 0;
  std::vector<double> credit_;
  std::vector<uint8_t> sided_;       // by adapter: in order_
  std::vector<uint8_t> moved_flag_;  // by adapter: in moved_
  std::vector<AdapterId> moved_;     // credit moved since the last sort
  std::vector<uint8_t> listed_;      // by adapter: in queued_list_
  int32_t negative_credits_ = 0;     // adapters whose credit is below 0 (never, at the
                                     // artifact's credit unit: then no credit is read)
  bool merged_ = false;
  int64_t num_iters_ = 0;
  double merge_batch_cnt_ = 0, unmerge_batch_cnt_ = 0;
  int64_t virtual_switch_cnt_ = 0;
  AdapterId max_model_ = kNoAdapter;
  AdapterId active_single_ = kNoAdapter;  // active list of one adapter (merged), else none
  bool credits_moved_ = true;             // since order_ was last sorted
  bool forecasts_ = false;                // forecasts(), read once per plan()
  bool fcfs_indexed_ = false;             // s_->fcfs_index holds this call's s_->fcfs
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
