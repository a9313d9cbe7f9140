// What the throughput-aware schedulers (`throughput-aware`, `dlora-mixed`) know about the
// executor: a model of one iteration's time, learned online from the IterationOutcome
// observations, the switch costs they measured, and when each request last got a token.
//
// A plugin never sees the executor, only the outcomes of its own plans. Each outcome names the
// admitted requests; the scheduler remembers, from the view it planned on, what each of them
// was (adapter, prefill or decode, context), so it can describe the batch that ran with the
// same features a cost model prices (docs/costmodel.md) and fit
//
//   t = c0 + c1 decodes + c2 prefill tokens + c3 sum of prefill n^2 + c4 decode context
//       + c5 [a LoRA path ran] + c6 LoRA-path adapters + c7 LoRA-path tokens x rank
//
// by recursive least squares, starting from a prior (dLoRA's own profile: 15 ms for a full
// merged decode batch, +12 ms for 16 unmerged adapters). Merged batches have no LoRA path;
// unmerged ones compute every token's term; mixed ones (V-LoRA's deLoRA mode) compute, for
// the requests of adapters other than the merged one, their own term and the merged
// adapter's term subtracted: a second pass of rank r_m over the same tokens, which reads the
// merged adapter's weights as one more adapter. Nothing here reads a request's output length.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "lorasched/plugin/api.hpp"

namespace lorasched::plugins {

using namespace lorasched::api;

// A batch as the time model sees it.
struct BatchShape {
  int32_t seqs = 0;
  int32_t decodes = 0;
  int64_t prefill_tokens = 0;
  int64_t prefill_sq = 0;       // sum over prefills of n^2
  int64_t decode_context = 0;   // sum of decode contexts
  int32_t lora_adapters = 0;    // distinct adapters whose LoRA weights the batch reads
  int64_t lora_token_rank = 0;  // sum over LoRA-path tokens of the rank(s) applied
  bool lora = false;            // any LoRA path ran
};

// Builds a BatchShape request by request for one weight state (mode + merged adapter), so
// candidate batches can be grown greedily and priced after every step.
class ShapeBuilder {
 public:
  ShapeBuilder() = default;
  ShapeBuilder(Mode mode, AdapterId merged, std::span<const AdapterView> adapters)
      : mode_(mode), merged_(merged), adapters_(adapters) {
    seen_.assign(adapters.size(), 0);
  }

  // Tokens the request runs in its next iteration and whether it is a prefill (waiting: its
  // whole context; ready or swapped: one decode token).
  static bool is_prefill(const RequestView& r) { return r.state == RequestState::waiting; }
  static int32_t new_tokens(const RequestView& r) {
    return is_prefill(r) ? std::max(1, r.context_tokens()) : 1;
  }

  void add(const RequestView& r) {
    const int32_t n = new_tokens(r);
    s_.seqs += 1;
    if (is_prefill(r)) {
      s_.prefill_tokens += n;
      s_.prefill_sq += static_cast<int64_t>(n) * n;
    } else {
      s_.decodes += 1;
      s_.decode_context += r.context_tokens();
    }
    if (mode_ == Mode::merged || (mode_ == Mode::mixed && r.adapter == merged_)) return;
    const int64_t rank = rank_of(r.adapter);
    const int64_t second = mode_ == Mode::mixed ? rank_of(merged_) : 0;
    s_.lora = true;
    s_.lora_token_rank += static_cast<int64_t>(n) * (rank + second);
    mark(r.adapter);
    if (mode_ == Mode::mixed) mark(merged_);  // the subtracted term reads its weights too
  }

  // The shape if `r` were added (the builder is unchanged).
  BatchShape with(const RequestView& r) const {
    ShapeBuilder copy = *this;
    copy.add(r);
    return copy.s_;
  }
  // Whether adding a request of adapter `a` would put one more adapter on the LoRA path.
  bool new_adapter(AdapterId a) const {
    if (mode_ == Mode::merged || (mode_ == Mode::mixed && a == merged_)) return false;
    return !seen_[static_cast<size_t>(a)];
  }
  // Distinct adapters computed through the unmerged path, the merged one excluded (what
  // limits.max_adapters_per_batch counts).
  int32_t unmerged_adapters() const { return others_; }
  const BatchShape& shape() const { return s_; }

 private:
  int64_t rank_of(AdapterId a) const { return adapters_[static_cast<size_t>(a)].rank; }
  void mark(AdapterId a) {
    auto& s = seen_[static_cast<size_t>(a)];
    if (s) return;
    s = 1;
    s_.lora_adapters += 1;
    if (!(mode_ == Mode::mixed && a == merged_)) ++others_;
  }

  Mode mode_ = Mode::unmerged;
  AdapterId merged_ = kNoAdapter;
  std::span<const AdapterView> adapters_;
  std::vector<uint8_t> seen_;
  int32_t others_ = 0;
  BatchShape s_;
};

// Iteration time, linear in the BatchShape's features, fitted online by recursive least
// squares. Features are scaled so a typical decode batch has each near 1, and the
// coefficients are in milliseconds.
class IterationTimeModel {
 public:
  static constexpr int kF = 8;
  using Vec = std::array<double, kF>;

  // prior: coefficients (ms); stddev: their prior uncertainty (ms), relative to a residual
  // of 1 ms per observation; forget: RLS forgetting factor (1 = plain least squares).
  IterationTimeModel(const Vec& prior, const Vec& stddev, double forget)
      : theta_(prior), forget_(forget) {
    for (int i = 0; i < kF; ++i) {
      for (int j = 0; j < kF; ++j) p_[i][j] = 0;
      p_[i][i] = stddev[static_cast<size_t>(i)] * stddev[static_cast<size_t>(i)];
      cap_[static_cast<size_t>(i)] = p_[i][i];
    }
  }

  // dLoRA's profile (15 ms merged, 27 ms unmerged with 16 rank-16 adapters, batch 16, mean
  // context 512) as the prior: every term that profile does not name starts at zero.
  static IterationTimeModel dlora_prior(double merged_s, double unmerged_s, double forget) {
    Vec prior{};
    prior[0] = merged_s * 1e3;
    prior[6] = (unmerged_s - merged_s) * 1e3;
    Vec sd{10, 10, 50, 50, 10, 2, 10, 5};
    return IterationTimeModel(prior, sd, forget);
  }

  static Vec features(const BatchShape& s) {
    return {1.0,
            s.decodes / 16.0,
            static_cast<double>(s.prefill_tokens) / 1024.0,
            static_cast<double>(s.prefill_sq) / 1048576.0,
            static_cast<double>(s.decode_context) / 8192.0,
            s.lora ? 1.0 : 0.0,
            s.lora_adapters / 16.0,
            static_cast<double>(s.lora_token_rank) / 256.0};
  }

  // Predicted seconds (never below 10 us: a linear fit can dip below zero far from its data).
  double predict(const BatchShape& s) const {
    if (s.seqs == 0) return 0;
    const Vec x = features(s);
    double y = 0;
    for (int i = 0; i < kF; ++i) y += theta_[static_cast<size_t>(i)] * x[static_cast<size_t>(i)];
    return std::max(1e-5, y * 1e-3);
  }

  void update(const BatchShape& s, double seconds) {
    if (s.seqs == 0 || !std::isfinite(seconds) || seconds <= 0) return;
    const Vec x = features(s);
    Vec px{};
    for (int i = 0; i < kF; ++i) {
      double v = 0;
      for (int j = 0; j < kF; ++j) v += p_[i][j] * x[static_cast<size_t>(j)];
      px[static_cast<size_t>(i)] = v;
    }
    double denom = forget_;
    for (int i = 0; i < kF; ++i) denom += x[static_cast<size_t>(i)] * px[static_cast<size_t>(i)];
    double err = seconds * 1e3;
    for (int i = 0; i < kF; ++i) err -= theta_[static_cast<size_t>(i)] * x[static_cast<size_t>(i)];
    for (int i = 0; i < kF; ++i)
      theta_[static_cast<size_t>(i)] += px[static_cast<size_t>(i)] / denom * err;
    for (int i = 0; i < kF; ++i)
      for (int j = 0; j < kF; ++j)
        p_[i][j] =
            (p_[i][j] - px[static_cast<size_t>(i)] * px[static_cast<size_t>(j)] / denom) / forget_;
    // With forgetting, directions the data never excites (a mode never run) would grow
    // without bound; no variance may exceed its prior.
    for (int i = 0; i < kF; ++i) {
      const double c = cap_[static_cast<size_t>(i)];
      if (p_[i][i] > c) {
        const double f = std::sqrt(c / p_[i][i]);
        for (int j = 0; j < kF; ++j) {
          p_[i][j] *= f;
          p_[j][i] *= f;
        }
      }
    }
    ++observations_;
  }

  const Vec& coefficients() const { return theta_; }
  int64_t observations() const { return observations_; }

 private:
  Vec theta_;
  double p_[kF][kF];
  Vec cap_{};
  double forget_;
  int64_t observations_ = 0;
};

// Measured weight-switch stalls (EWMA, from the parameters' priors): entering merged mode
// (a merge), leaving it (an unmerge) and moving the merged adapter (an unmerge and a merge,
// or one fused pass, whatever the executor does).
class SwitchCosts {
 public:
  SwitchCosts(double enter, double leave, double swap, double weight)
      : enter_(enter), leave_(leave), swap_(swap), w_(weight) {}

  // Seconds to go from the weights holding `from` to holding `to` (kNoAdapter: clean).
  double cost(AdapterId from, AdapterId to) const {
    if (from == to) return 0;
    if (from == kNoAdapter) return enter_;
    if (to == kNoAdapter) return leave_;
    return swap_;
  }
  void observe(AdapterId from, AdapterId to, double seconds) {
    if (from == to || !std::isfinite(seconds) || seconds < 0) return;
    double& c = from == kNoAdapter ? enter_ : (to == kNoAdapter ? leave_ : swap_);
    c += w_ * (seconds - c);
  }

 private:
  double enter_, leave_, swap_, w_;
};

// When each queued request last got a token (its arrival until it got one): the starvation
// guard's clock. Request ids are dense in lorasched's workloads, so a vector indexed by id
// serves them; other ids fall back to a map.
class LastServed {
 public:
  void arrived(RequestId id, double now) { set(id, now); }
  void served(std::span<const RequestId> batch, double end) {
    for (RequestId id : batch) set(id, end);
  }
  // Seconds since `r` last got a token (or arrived, as far as this replica knows).
  double waited(const RequestView& r, double now) const {
    double t = r.arrival;
    if (r.id >= 0 && r.id < kDense) {
      const size_t i = static_cast<size_t>(r.id);
      if (i < dense_.size() && !std::isnan(dense_[i])) t = dense_[i];
    } else if (auto it = sparse_.find(r.id); it != sparse_.end()) {
      t = it->second;
    }
    return now - t;
  }

 private:
  static constexpr RequestId kDense = RequestId{1} << 26;
  void set(RequestId id, double t) {
    if (id >= 0 && id < kDense) {
      const size_t i = static_cast<size_t>(id);
      if (i >= dense_.size()) dense_.resize(std::max(i + 1, 2 * dense_.size()), std::nan(""));
      dense_[i] = t;
    } else {
      sparse_[id] = t;
    }
  }
  std::vector<double> dense_;
  std::unordered_map<RequestId, double> sparse_;
};

// What a scheduler remembers of the candidates it proposed, to describe the batch that ran
// when its outcome arrives. The engine admits a subsequence of the candidates, in their
// order, so a forward walk finds each admitted request.
class PlannedRequests {
 public:
  void clear() { saved_.clear(); }
  void add(const RequestView& r) { saved_.push_back(r); }
  size_t size() const { return saved_.size(); }

  // The shape of the admitted batch `ids` in weight state (mode, merged); false if some
  // admitted request was not among the candidates (then nothing is learned from it).
  bool shape_of(std::span<const RequestId> ids, Mode mode, AdapterId merged,
                std::span<const AdapterView> adapters, BatchShape& out) const {
    ShapeBuilder b(mode, merged, adapters);
    size_t at = 0;
    for (RequestId id : ids) {
      while (at < saved_.size() && saved_[at].id != id) ++at;
      if (at == saved_.size()) return false;
      b.add(saved_[at++]);
    }
    out = b.shape();
    return true;
  }

 private:
  std::vector<RequestView> saved_;
};

}  // namespace lorasched::plugins
