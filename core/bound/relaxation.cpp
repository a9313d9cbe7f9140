#include "core/bound/relaxation.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>

#include "core/exec/costmodel.hpp"

namespace lorasched::bound {

TokenTimes token_times(const CostModel& model, int32_t max_batch,
                       const std::vector<TraceRequest>& requests) {
  // The cheapest batch of b entries: merged (no LoRA work), each entry as small as an entry
  // can be (a one-token prefill or a decode at context 1), whichever split is cheaper.
  auto floor_time = [&](int32_t b) {
    double best = INFINITY;
    for (int32_t p = 0; p <= b; ++p) {
      BatchFeatures f;
      f.mode = api::Mode::merged;
      f.entries = b;
      f.prefill_tokens = p;
      f.prefill_sq_tokens = p;
      f.decode_seqs = b - p;
      f.decode_context = b - p;
      best = std::min(best, model.iteration(f));
    }
    return best;
  };
  TokenTimes t;
  t.t_min = floor_time(1);
  for (int32_t b = 1; b <= max_batch; ++b) t.rate_max = std::max(t.rate_max, b / floor_time(b));
  t.first.reserve(requests.size());
  for (const auto& r : requests) {
    BatchFeatures f;
    f.mode = api::Mode::merged;
    f.entries = 1;
    f.prefill_tokens = r.prompt_tokens;
    f.prefill_sq_tokens = static_cast<int64_t>(r.prompt_tokens) * r.prompt_tokens;
    t.first.push_back(std::max(t.t_min, model.iteration(f)));
  }
  return t;
}

double min_weighted_mean_busy_time(const std::vector<double>& release,
                                   const std::vector<double>& weight, double p) {
  return min_weighted_mean_busy_time(release, weight, std::vector<double>(release.size(), p));
}

double min_weighted_mean_busy_time(const std::vector<double>& release,
                                   const std::vector<double>& weight,
                                   const std::vector<double>& p) {
  const size_t n = release.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return release[a] < release[b]; });
  // Released jobs by weight / processing time (Smith's ratio); remaining work travels along.
  struct Job {
    double ratio;
    size_t id;
    double left;
    bool operator<(const Job& o) const { return ratio < o.ratio; }
  };
  std::priority_queue<Job> ready;
  double total = 0;  // sum of weight * (integral of t over the job's processing) / p
  double now = 0;
  size_t next = 0;
  while (next < n || !ready.empty()) {
    if (ready.empty()) now = std::max(now, release[order[next]]);
    while (next < n && release[order[next]] <= now) {
      const size_t j = order[next++];
      ready.push({weight[j] / p[j], j, p[j]});
    }
    Job job = ready.top();
    ready.pop();
    // Run it until it is done or the next release (which may preempt it).
    const double until = next < n ? std::min(now + job.left, release[order[next]]) : now + job.left;
    total += weight[job.id] * (until * until - now * now) / (2.0 * p[job.id]);
    job.left -= until - now;
    now = until;
    if (job.left > 1e-15 * std::max(1.0, now)) ready.push(job);
  }
  return total;
}

RelaxationResult token_relaxation(const std::vector<TraceRequest>& requests, const TokenTimes& t,
                                  const std::vector<bool>& counted) {
  RelaxationResult out;
  const double p = 1.0 / t.rate_max;
  auto counts = [&](size_t i) { return counted.empty() || counted[i]; };
  for (int pass = 0; pass < 2; ++pass) {
    const bool per_token = pass == 0;
    std::vector<double> release, weight;
    double chain = 0, arrivals = 0, trivial = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      const TraceRequest& r = requests[i];
      const int32_t L = std::max(1, r.output_tokens);
      const double w = counts(i) ? (per_token ? 1.0 / L : 1.0) : 0.0;
      // Token k (1-based) cannot start before its predecessor exists: a, then a + first, then
      // one shortest iteration more per token.
      for (int32_t k = 1; k <= L; ++k) {
        release.push_back(k == 1 ? r.arrival : r.arrival + t.first[i] + (k - 2) * t.t_min);
        weight.push_back(w / L);
      }
      // finish >= (mean token time) + (L - 1) t_min / 2: the last token comes at least
      // (L - k) shortest iterations after token k.
      chain += w * (L - 1) * t.t_min / 2.0;
      arrivals += w * r.arrival;
      trivial += w * (t.first[i] + (L - 1) * t.t_min);  // its own tokens, back to back
      if (pass == 0 && counts(i)) ++out.weighted;
    }
    if (pass == 0) out.tokens = static_cast<int64_t>(release.size());
    double tokens_term = min_weighted_mean_busy_time(release, weight, p);
    for (double w : weight) tokens_term += w * p / 2.0;  // C_j >= M_j + p / 2
    const double bound = std::max(tokens_term + chain - arrivals, trivial);
    (per_token ? out.per_token_sum : out.request_sum) = bound;
  }
  return out;
}

}  // namespace lorasched::bound
