// Scheduler `dlora-predictive`: dLoRA's rules (dlora_core.hpp) applied to forecast queues,
// so the replica switches ahead of a burst instead of several iterations after it.
//
// dLoRA merges adapter m when its queue |Q_m| >= alpha x |FCFS batch| and stays merged
// while |Q_m| >= beta x |FCFS batch|: both look at the queue as it is, so a burst is seen
// only once it has piled up (and alpha/beta adapt only at switches). Here every rule sees
// |Q_m| + the arrivals expected for m over the next `horizon_iters` iterations:
//   forecast = "ewma": per adapter, a fast (tau_fast) and a slow (tau_slow) exponentially
//     decaying arrival-rate estimate; during a burst (fast > burst_ratio x slow) the fast
//     rate is extrapolated, otherwise the slow one;
//   forecast = "oracle": the actual future arrivals, read from the workload's adapter trace
//     (`lorasched workload FILE -o trace.csv`). NOT DEPLOYABLE: it knows the future; it
//     bounds what forecasting can gain.
// The horizon in seconds is horizon_iters x the measured mean iteration time.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dlora_core.hpp"

namespace {

using namespace lorasched::api;
using lorasched::plugins::DloraCore;

// An exponentially decaying rate: each event adds 1/tau, the total decays with e^(-t/tau).
struct DecayingRate {
  double value = 0;
  double at = 0;
  double get(double now, double tau) const { return value * std::exp(-(now - at) / tau); }
  void add(double now, double tau) {
    value = get(now, tau) + 1.0 / tau;
    at = now;
  }
};

class DloraPredictive : public DloraCore {
 public:
  explicit DloraPredictive(const CreateArgs& args)
      : DloraCore(args),
        oracle_(args.params.string("forecast") == "oracle"),
        tau_fast_(args.params.real("tau_fast")),
        tau_slow_(args.params.real("tau_slow")),
        burst_ratio_(args.params.real("burst_ratio")),
        horizon_iters_(args.params.real("horizon_iters")),
        iteration_time_(args.params.real("iteration_time")),
        fast_(static_cast<size_t>(args.num_adapters)),
        slow_(static_cast<size_t>(args.num_adapters)),
        future_(static_cast<size_t>(args.num_adapters)) {
    if (tau_fast_ >= tau_slow_)
      throw std::invalid_argument("tau_fast must be shorter than tau_slow");
    if (oracle_) load_trace(args.params.string("trace"), args.num_adapters);
  }

  void on_arrival(const RequestView& r, double now) override {
    DloraCore::on_arrival(r, now);
    if (r.generated > 0) return;  // a migrated request, not a new arrival
    fast_[static_cast<size_t>(r.adapter)].add(now, tau_fast_);
    slow_[static_cast<size_t>(r.adapter)].add(now, tau_slow_);
  }

  void observe(const IterationOutcome& o) override {
    if (o.batch_size > 0) iteration_time_ += 0.2 * (o.duration + o.switch_time - iteration_time_);
  }

 protected:
  bool forecasts() const override { return true; }
  double forecast(AdapterId m, const ReplicaView& view) override {
    return expected_arrivals(m, view.now);
  }

 private:
  double expected_arrivals(AdapterId m, double now) const {
    const double horizon = horizon_iters_ * iteration_time_;
    if (oracle_) {
      const auto& t = future_[static_cast<size_t>(m)];
      return static_cast<double>(std::upper_bound(t.begin(), t.end(), now + horizon) -
                                 std::upper_bound(t.begin(), t.end(), now));
    }
    const double fast = fast_[static_cast<size_t>(m)].get(now, tau_fast_);
    const double slow = slow_[static_cast<size_t>(m)].get(now, tau_slow_);
    const double rate = fast > burst_ratio_ * slow ? fast : slow;
    return rate * horizon;
  }

  void load_trace(const std::string& path, int32_t num_adapters) {
    if (path.empty())
      throw std::invalid_argument("forecast = \"oracle\" needs trace = \"<adapter trace CSV>\"");
    std::ifstream in(path);
    if (!in) throw std::invalid_argument("cannot read the oracle's trace '" + path + "'");
    std::string line;
    std::getline(in, line);
    if (line.rfind("arrival_s,adapter", 0) != 0)
      throw std::invalid_argument(path + ": not an adapter trace (header arrival_s,adapter,...)");
    int lineno = 1;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty()) continue;
      std::istringstream row(line);
      std::string t, a;
      std::getline(row, t, ',');
      std::getline(row, a, ',');
      try {
        const double at = std::stod(t);
        const int adapter = std::stoi(a);
        if (adapter < 0 || adapter >= num_adapters) throw std::out_of_range(a);
        future_[static_cast<size_t>(adapter)].push_back(at);
      } catch (const std::exception&) {
        throw std::invalid_argument(path + ":" + std::to_string(lineno) + ": bad row '" + line +
                                    "'");
      }
    }
    for (auto& v : future_) std::sort(v.begin(), v.end());
  }

  bool oracle_;
  double tau_fast_, tau_slow_, burst_ratio_, horizon_iters_, iteration_time_;
  std::vector<DecayingRate> fast_, slow_;
  std::vector<std::vector<double>> future_;  // oracle: arrival times per adapter
};

PluginInfo info() {
  auto params = lorasched::plugins::dlora_params();
  params.push_back(
      param_choice("forecast", "ewma", {"ewma", "oracle"},
                   "ewma: arrival-rate forecast with burst detection; oracle: the real "
                   "future arrivals from `trace` (not deployable, a bound)"));
  params.push_back(param_real("tau_fast", 0.1,
                              "time constant (s) of the fast arrival-rate estimate", 1e-3, 1e4));
  params.push_back(param_real("tau_slow", 10.0,
                              "time constant (s) of the slow arrival-rate estimate", 1e-3, 1e6));
  params.push_back(param_real("burst_ratio", 2.0,
                              "a burst: fast rate > burst_ratio x slow rate (then the fast rate is "
                              "extrapolated)",
                              1.0, 1e3));
  params.push_back(param_real("horizon_iters", 8.0, "forecast horizon in iterations", 0.0, 1e4));
  params.push_back(param_real("iteration_time", 0.02,
                              "initial mean iteration time (s); replaced by measurements", 1e-6,
                              100));
  params.push_back({"trace",
                    ParamType::string,
                    std::string(""),
                    "forecast = oracle: the workload's adapter trace CSV",
                    0,
                    0,
                    {}});
  return {kApiVersion, PluginKind::scheduler, "dlora-predictive",
          "dLoRA's rules on forecast queues (arrival-rate EWMA with burst detection, or an oracle)",
          params};
}

}  // namespace

LORASCHED_PLUGIN(DloraPredictive, info)
