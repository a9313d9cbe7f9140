// Scheduler `clairvoyant`: a reference, NOT a deployable policy. It reads every request's true
// output length (RequestView::output_tokens; dLoRA ignores EOS, so the simulator knows it), which
// no server knows. It shows how much better a schedule of the same requests can be for the
// study's objective, the mean over requests of latency / output tokens.
//
// Order: Smith's rule (weighted shortest processing time; W. E. Smith, "Various optimizers for
// single-stage production", 1956) in fluid form. Request i costs the objective 1/L_i per second
// until it finishes (L_i = output_tokens), and one token brings it 1/r_i of the way there
// (r_i = tokens still to generate): its priority is p_i = 1 / (L_i r_i).
//
// Candidates, each a batch of at most B requests (as `throughput-aware` builds them, by
// priority instead of arrival):
//  - unmerged: the highest-priority queued requests, within the per-batch adapter limit;
//  - merged on m, for the `candidates` adapters whose B highest-priority requests sum to the
//    most priority and the adapter merged now: m's B highest-priority requests;
//  - mixed on m (same adapters): m's requests, then other adapters' best requests, adapter by
//    adapter in the same order, each adapter only if the batch's score rises with it.
// Score (`select`): "work" (default), throughput-aware's useful work per second (switch stall
// spread over the expected stay), by the learned iteration-time model of throughput_core.hpp;
// or "smith", Σ p_i / (predicted time + spread switch stall), Smith's ratio per second. The
// latter is the rule taken literally, and it loses on the study's workloads: per iteration it
// prefers a small fast batch of the few top requests to a full one, and the capacity given up
// delays everyone behind (docs/policies.md). A candidate that changes the weights wins only if
// it scores more than (1 + margin) x the best that keeps them.
// No starvation guard: a reference for the mean, it may hold a long request back for as long
// as shorter ones keep arriving.
#include <algorithm>

#include "throughput_core.hpp"

namespace {

using namespace lorasched::api;
using lorasched::plugins::ShapeBuilder;
using lorasched::plugins::ShapeChoice;
using lorasched::plugins::ThroughputCore;

// The shared core with its starvation guard off (this policy declares no `guard_s`).
CreateArgs without_guard(CreateArgs args) {
  args.params.set("guard_s", 0.0);
  return args;
}

class Clairvoyant : public Scheduler {
 public:
  explicit Clairvoyant(const CreateArgs& args)
      : core_(without_guard(args)),
        margin_(args.params.real("margin")),
        smith_(args.params.string("select") == "smith"),
        candidates_(static_cast<int32_t>(args.params.integer("candidates"))),
        groups_(static_cast<size_t>(std::max(args.num_adapters, 0))),
        value_(static_cast<size_t>(std::max(args.num_adapters, 0)), 0.0) {}

  // Smith's ratio of a request's next token: weight 1/L over remaining work r.
  static double priority(const RequestView& r) {
    const double L = std::max(1, r.output_tokens);
    const double rem = std::max(1, r.output_tokens - r.generated);
    return 1.0 / (L * rem);
  }

  IterationPlan plan(const ReplicaView& view) override {
    IterationPlan out;
    core_.begin(view);
    queued_ = core_.snapshot(view.queued);
    if (queued_.empty()) return out;
    const int32_t B = core_.batch_limit();
    const int32_t cap = core_.adapter_cap();

    // The queue by priority (ties: FCFS), each adapter's requests in that order, and the
    // adapters by the summed priority of their B best requests.
    prio_.resize(queued_.size());
    order_.resize(queued_.size());
    for (size_t i = 0; i < queued_.size(); ++i) {
      prio_[i] = priority(queued_[i]);
      order_[i] = &queued_[i];
    }
    std::stable_sort(order_.begin(), order_.end(),
                     [&](const RequestView* a, const RequestView* b) { return p(*a) > p(*b); });
    if (groups_.size() < static_cast<size_t>(view.num_adapters)) {
      groups_.resize(static_cast<size_t>(view.num_adapters));
      value_.resize(static_cast<size_t>(view.num_adapters), 0.0);
    }
    for (AdapterId a : active_) {
      groups_[static_cast<size_t>(a)].clear();
      value_[static_cast<size_t>(a)] = 0;
    }
    active_.clear();
    for (const RequestView* r : order_) {
      auto& g = groups_[static_cast<size_t>(r->adapter)];
      if (g.empty()) active_.push_back(r->adapter);
      if (static_cast<int32_t>(g.size()) < B) value_[static_cast<size_t>(r->adapter)] += p(*r);
      g.push_back(r);
    }
    std::stable_sort(active_.begin(), active_.end(), [&](AdapterId a, AdapterId b) {
      return value_[static_cast<size_t>(a)] > value_[static_cast<size_t>(b)];
    });

    if (core_.stuck()) return fallback();
    choice_.clear();

    // Unmerged: the best requests, within the adapter limit.
    {
      ShapeBuilder b = core_.builder(Mode::unmerged, kNoAdapter);
      batch_.clear();
      for (const RequestView* r : order_) {
        if (static_cast<int32_t>(batch_.size()) >= B) break;
        if (b.new_adapter(r->adapter) && b.unmerged_adapters() >= cap) continue;
        b.add(*r);
        batch_.push_back(r);
      }
      consider(Mode::unmerged, kNoAdapter, b);
    }

    // Merged and mixed on the most valuable adapters and on the adapter merged now.
    core_.merge_candidates(active_, candidates_, merged_candidates_);
    const AdapterId w = core_.weights();
    for (AdapterId m : merged_candidates_) {
      const auto& own = groups_[static_cast<size_t>(m)];
      if (own.empty()) continue;
      ShapeBuilder merged = core_.builder(Mode::merged, m);
      ShapeBuilder mixed = core_.builder(Mode::mixed, m);
      batch_.clear();
      for (const RequestView* r : own) {
        if (static_cast<int32_t>(batch_.size()) >= B) break;
        merged.add(*r);
        mixed.add(*r);
        batch_.push_back(r);
      }
      consider(Mode::merged, m, merged);
      if (core_.max_riders() > 0 && add_riders(m, mixed) > 0) consider(Mode::mixed, m, mixed);
    }

    // Hysteresis: other weights must beat the best plan on the current ones by the margin.
    const Choice& pick = choice_.pick(w, margin_);
    out.mode = pick.mode;
    out.merged_adapter = pick.weights;
    fill_plan(pick, out);
    return out;
  }

  void observe(const IterationOutcome& o) override { core_.observe(o); }
  void on_arrival(const RequestView& r, double now) override { core_.arrived(r, now); }

 private:
  using Choice = ShapeChoice::Choice;

  // Every RequestView handled points into queued_.
  size_t slot(const RequestView& r) const { return static_cast<size_t>(&r - queued_.data()); }
  double p(const RequestView& r) const { return prio_[slot(r)]; }

  double score(const ShapeBuilder& b, AdapterId m, double value) const {
    if (!smith_) return core_.efficiency(b.shape(), m);
    return value / (core_.predict(b.shape()) + core_.amortised_switch(m));
  }
  double value_of(std::span<const RequestView* const> batch) const {
    double v = 0;
    for (const RequestView* r : batch) v += p(*r);
    return v;
  }

  // Other adapters' best requests ride in the mixed batch on m (held in batch_), adapter by
  // adapter in order of value, each adapter's requests only if the score rises with them, at
  // most max_riders in all. Returns the riders added.
  int32_t add_riders(AdapterId m, ShapeBuilder& b) {
    const int32_t B = core_.batch_limit();
    int32_t riders = 0;
    double value = value_of(batch_);
    for (AdapterId a : active_) {
      if (a == m) continue;
      if (riders >= core_.max_riders() || static_cast<int32_t>(batch_.size()) >= B) break;
      if (b.new_adapter(a) && b.unmerged_adapters() >= core_.adapter_cap()) continue;
      ShapeBuilder trial = b;
      double gain = 0;
      size_t n = 0;
      for (const RequestView* r : groups_[static_cast<size_t>(a)]) {
        if (riders + static_cast<int32_t>(n) >= core_.max_riders() ||
            static_cast<int32_t>(batch_.size() + n) >= B)
          break;
        trial.add(*r);
        gain += p(*r);
        ++n;
      }
      if (n == 0 || score(trial, m, value + gain) <= score(b, m, value)) continue;
      b = trial;
      value += gain;
      const auto& g = groups_[static_cast<size_t>(a)];
      batch_.insert(batch_.end(), g.begin(), g.begin() + static_cast<std::ptrdiff_t>(n));
      riders += static_cast<int32_t>(n);
    }
    return riders;
  }

  void consider(Mode mode, AdapterId m, const ShapeBuilder& b) {
    if (batch_.empty()) return;
    const double s = score(b, m, value_of(batch_));
    choice_.offer(mode, m, s, batch_, core_.weights());
  }

  // After a plan that ran nothing (see ThroughputCore::stuck): unmerged, the requests that need
  // the least memory first (ready ones, one KV block each), then the rest, each by priority.
  // Running anything unmerged also releases the merged adapter's blocks.
  IterationPlan fallback() {
    IterationPlan out;
    ShapeBuilder b = core_.builder(Mode::unmerged, kNoAdapter);
    for (int pass = 0; pass < 2; ++pass)
      for (const RequestView* r : order_) {
        if ((r->state == RequestState::ready) != (pass == 0)) continue;
        if (b.new_adapter(r->adapter) && b.unmerged_adapters() >= core_.adapter_cap()) continue;
        b.add(*r);
        out.requests.push_back(r->id);
        core_.remember(*r);
      }
    return out;
  }

  // The plan: the chosen batch, then up to B more requests of the adapters it already holds (by
  // priority), in case admission cannot take some of the batch (KV blocks, token budget). No
  // other adapter: admission fills a short batch from the list, and a rider the score turned
  // away must not get in that way.
  void fill_plan(const Choice& pick, IterationPlan& out) {
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
    for (const RequestView* r : order_) {
      if (extra >= core_.batch_limit()) break;
      if (taken_[core_.slot(*r)]) continue;
      if (pick.mode == Mode::merged && r->adapter != pick.weights) continue;
      if (b.new_adapter(r->adapter)) continue;
      push(r);
      ++extra;
    }
  }

  ThroughputCore core_;
  double margin_;
  bool smith_;
  int32_t candidates_;
  std::vector<std::vector<const RequestView*>> groups_;  // per adapter, by priority
  std::vector<double> value_;  // per adapter: summed priority of its B best requests
  std::vector<AdapterId> active_, merged_candidates_;  // active_: adapters by value
  std::vector<const RequestView*> order_, batch_;      // order_: the queue by priority
  std::vector<double> prio_;                           // by position in queued_
  std::vector<uint8_t> taken_;
  std::span<const RequestView> queued_;  // this plan's copy of view.queued (core_.snapshot)
  ShapeChoice choice_;
};

PluginInfo info() {
  auto params = lorasched::plugins::throughput_params();
  std::erase_if(params, [](const ParamSpec& s) { return s.name == "guard_s"; });
  params.push_back(param_real("margin", 0.05,
                              "hysteresis: new weights must score this much more than the best "
                              "batch on the current ones",
                              0, 10));
  params.push_back(param_int("candidates", 4,
                             "adapters (largest summed priority of their batch-limit best "
                             "requests first) tried for merged and mixed batches",
                             1, 1 << 20));
  params.push_back(param_choice("select", "work", {"work", "smith"},
                                "score of a candidate batch: useful work per second (as "
                                "throughput-aware), or summed priority 1 / (length x remaining) "
                                "per second (Smith's ratio; loses capacity, see docs)"));
  return {kApiVersion, PluginKind::scheduler, "clairvoyant",
          "NOT DEPLOYABLE, a reference: reads true output lengths; batches filled by Smith's rule "
          "(priority 1 / (length x remaining)), the one with the most work per second runs",
          params};
}

}  // namespace

LORASCHED_PLUGIN(Clairvoyant, info)
