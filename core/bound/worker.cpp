#include "core/bound/worker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/bound/milp.hpp"
#include "core/bound/relaxation.hpp"

namespace lorasched::bound {

const char* to_string(Objective o) { return o == Objective::per_token ? "per-token" : "request"; }

double weight(const SmallRequest& r, Objective o) {
  return o == Objective::per_token ? 1.0 / r.tokens : 1.0;
}

namespace {

double slot_duration(const Timing& t, const Slot& s) {
  if (s.fast) return t.merged;
  return s.state == kClean ? t.unmerged : t.mixed;
}

}  // namespace

Evaluation evaluate(const SmallInstance& inst, const Schedule& s, Objective o) {
  Evaluation ev;
  const size_t n = inst.requests.size();
  std::vector<int32_t> done(n, 0);
  ev.finish.assign(n, NAN);
  auto fail = [&](std::string why) {
    ev.feasible = false;
    ev.problem = std::move(why);
    return ev;
  };
  double prev_end = 0;
  int32_t state = kClean;
  for (size_t j = 0; j < s.slots.size(); ++j) {
    const Slot& sl = s.slots[j];
    if (sl.batch.empty()) return fail(fmt::format("iteration {} runs no request", j));
    if (static_cast<int32_t>(sl.batch.size()) > inst.max_batch)
      return fail(fmt::format("iteration {} runs {} requests, over the batch limit {}", j,
                              sl.batch.size(), inst.max_batch));
    if (sl.state != kClean && (sl.state < 0 || sl.state >= inst.num_adapters))
      return fail(fmt::format("iteration {} merges adapter {}, which does not exist", j, sl.state));
    if (sl.fast && sl.state == kClean)
      return fail(fmt::format("iteration {} is merged with no adapter merged", j));
    if (!sl.fast && sl.state != kClean && !inst.allow_mixed)
      return fail(fmt::format("iteration {} is mixed, which this instance does not allow", j));
    double start = prev_end;
    for (size_t a = 0; a < sl.batch.size(); ++a) {
      const int32_t i = sl.batch[a];
      if (i < 0 || static_cast<size_t>(i) >= n)
        return fail(fmt::format("iteration {} runs request {}, which does not exist", j, i));
      if (std::find(sl.batch.begin(), sl.batch.begin() + static_cast<std::ptrdiff_t>(a), i) !=
          sl.batch.begin() + static_cast<std::ptrdiff_t>(a))
        return fail(fmt::format("iteration {} lists request {} twice", j, i));
      const SmallRequest& r = inst.requests[static_cast<size_t>(i)];
      if (sl.fast && r.adapter != sl.state)
        return fail(fmt::format("merged iteration {} (adapter {}) runs request {} of adapter {}", j,
                                sl.state, i, r.adapter));
      if (done[static_cast<size_t>(i)] >= r.tokens)
        return fail(fmt::format("iteration {} runs request {}, which has finished", j, i));
      start = std::max(start, r.arrival);
    }
    const double sw = sl.state != state ? inst.timing.switch_cost : 0.0;
    const double end = start + sw + slot_duration(inst.timing, sl);
    ev.start.push_back(start);
    ev.end.push_back(end);
    for (int32_t i : sl.batch)
      if (++done[static_cast<size_t>(i)] == inst.requests[static_cast<size_t>(i)].tokens)
        ev.finish[static_cast<size_t>(i)] = end;
    state = sl.state;
    prev_end = end;
  }
  for (size_t i = 0; i < n; ++i)
    if (done[i] != inst.requests[i].tokens)
      return fail(
          fmt::format("request {} got {} of its {} tokens", i, done[i], inst.requests[i].tokens));
  ev.feasible = true;
  for (size_t i = 0; i < n; ++i)
    ev.objective += weight(inst.requests[i], o) * (ev.finish[i] - inst.requests[i].arrival);
  return ev;
}

Schedule greedy_schedule(const SmallInstance& inst, bool merge) {
  const size_t n = inst.requests.size();
  std::vector<int32_t> left(n);
  for (size_t i = 0; i < n; ++i) left[i] = inst.requests[i].tokens;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return inst.requests[static_cast<size_t>(a)].arrival <
           inst.requests[static_cast<size_t>(b)].arrival;
  });
  Schedule s;
  double t = 0;
  int32_t state = kClean;
  size_t remaining = n;
  while (remaining > 0) {
    std::vector<int32_t> avail;
    double next = INFINITY;
    for (int32_t i : order) {
      if (left[static_cast<size_t>(i)] == 0) continue;
      const double a = inst.requests[static_cast<size_t>(i)].arrival;
      if (a <= t)
        avail.push_back(i);
      else
        next = std::min(next, a);
    }
    if (avail.empty()) {
      t = next;
      continue;
    }
    Slot sl;
    if (merge) {
      std::vector<int32_t> count(static_cast<size_t>(inst.num_adapters), 0);
      for (int32_t i : avail)
        ++count[static_cast<size_t>(inst.requests[static_cast<size_t>(i)].adapter)];
      const auto best =
          static_cast<int32_t>(std::max_element(count.begin(), count.end()) - count.begin());
      sl.state = best;
      sl.fast = true;
      for (int32_t i : avail)
        if (inst.requests[static_cast<size_t>(i)].adapter == best &&
            static_cast<int32_t>(sl.batch.size()) < inst.max_batch)
          sl.batch.push_back(i);
    } else {
      for (int32_t i : avail)
        if (static_cast<int32_t>(sl.batch.size()) < inst.max_batch) sl.batch.push_back(i);
    }
    const double sw = sl.state != state ? inst.timing.switch_cost : 0.0;
    t += sw + slot_duration(inst.timing, sl);
    state = sl.state;
    for (int32_t i : sl.batch)
      if (--left[static_cast<size_t>(i)] == 0) --remaining;
    s.slots.push_back(std::move(sl));
  }
  return s;
}

MilpResult solve_milp(const SmallInstance& inst, Objective o, const MilpOptions& opts) {
  MilpResult out;
  const auto& req = inst.requests;
  const int n = static_cast<int>(req.size());
  const int K = inst.num_adapters;
  const Timing& T = inst.timing;
  int J = opts.slots;
  if (J <= 0)
    J = std::accumulate(req.begin(), req.end(), 0,
                        [](int a, const SmallRequest& r) { return a + r.tokens; });
  if (n == 0) {
    out.status = "optimal";
    return out;
  }
  double a_max = 0;
  for (const auto& r : req) a_max = std::max(a_max, r.arrival);
  const double t_max = std::max({T.merged, T.unmerged, inst.allow_mixed ? T.mixed : 0.0});
  const double t_min = std::min({T.merged, T.unmerged, inst.allow_mixed ? T.mixed : T.unmerged});
  // Some optimal schedule runs its iterations back to back once the last request arrived, so
  // every iteration of it ends by H: the big-M of the completion rows.
  const double H = a_max + J * (t_max + T.switch_cost);

  Milp m;
  constexpr double inf = Milp::kInf;
  std::vector<int> u(J), f(J), g(J, -1), w(J), S(J);
  std::vector<std::vector<int>> y(J, std::vector<int>(static_cast<size_t>(K) + 1));
  std::vector<std::vector<int>> x(static_cast<size_t>(n), std::vector<int>(J));
  std::vector<int> C(static_cast<size_t>(n));
  for (int j = 0; j < J; ++j) {
    u[j] = m.add_col(0, 1, 0, true);
    f[j] = m.add_col(0, 1, 0, true);
    if (inst.allow_mixed) g[j] = m.add_col(0, 1, 0, false);
    for (int s = 0; s <= K; ++s) y[j][s] = m.add_col(0, 1, 0, true);
    w[j] = m.add_col(0, 1, 0, false);
    S[j] = m.add_col(0, H, 0, false);
  }
  for (int i = 0; i < n; ++i) {
    const auto& r = req[static_cast<size_t>(i)];
    for (int j = 0; j < J; ++j) x[i][j] = m.add_col(0, 1, 0, true);
    C[i] = m.add_col(r.arrival + r.tokens * t_min, inf, weight(r, o), false);
  }
  // E[j] = S[j] + T_sw w[j] + T_u u[j] - (T_u - T_m) f[j] + (T_mix - T_u) g[j]
  auto end_terms = [&](int j, double scale) {
    std::vector<std::pair<int, double>> t = {{S[j], scale},
                                             {w[j], scale * T.switch_cost},
                                             {u[j], scale * T.unmerged},
                                             {f[j], -scale * (T.unmerged - T.merged)}};
    if (inst.allow_mixed) t.emplace_back(g[j], scale * (T.mixed - T.unmerged));
    return t;
  };
  for (int j = 0; j < J; ++j) {
    std::vector<std::pair<int, double>> one;
    for (int s = 0; s <= K; ++s) one.emplace_back(y[j][s], 1.0);
    m.add_row(1, 1, one);                           // one weight state
    m.add_row(-inf, 0, {{f[j], 1}, {u[j], -1}});    // fast only if used
    m.add_row(-inf, 1, {{f[j], 1}, {y[j][0], 1}});  // fast only with an adapter merged
    if (inst.allow_mixed) {                         // g = slow with an adapter merged
      m.add_row(0, inf, {{g[j], 1}, {u[j], -1}, {f[j], 1}, {y[j][0], 1}});
      m.add_row(-inf, 0, {{g[j], 1}, {u[j], -1}, {f[j], 1}});
      m.add_row(-inf, 1, {{g[j], 1}, {y[j][0], 1}});
    } else {  // slow means clean weights
      m.add_row(0, inf, {{y[j][0], 1}, {u[j], -1}, {f[j], 1}});
    }
    if (j + 1 < J) m.add_row(0, inf, {{u[j], 1}, {u[j + 1], -1}});  // used slots first
    // A switch whenever the state differs from the previous slot's (clean before slot 0).
    for (int s = 0; s <= K; ++s) {
      if (j == 0) {
        if (s > 0) m.add_row(0, inf, {{w[j], 1}, {y[j][s], -1}});
      } else {
        m.add_row(0, inf, {{w[j], 1}, {y[j][s], -1}, {y[j - 1][s], 1}});
      }
    }
    std::vector<std::pair<int, double>> cap = {{u[j], -inst.max_batch}};
    for (int i = 0; i < n; ++i) cap.emplace_back(x[i][j], 1.0);
    m.add_row(-inf, 0, cap);  // batch limit
    cap[0].second = -1.0;
    m.add_row(0, inf, cap);  // and a used slot runs something (switches come with a batch)
    for (int i = 0; i < n; ++i) {
      const auto& r = req[static_cast<size_t>(i)];
      // A merged slot runs only its adapter's requests.
      m.add_row(-inf, 1, {{x[i][j], 1}, {f[j], 1}, {y[j][r.adapter + 1], -1}});
      // It starts after its requests arrived.
      if (r.arrival > 0) m.add_row(0, inf, {{S[j], 1}, {x[i][j], -r.arrival}});
    }
    if (j + 1 < J) {  // the next slot starts after this one ends
      auto t = end_terms(j, -1.0);
      t.emplace_back(S[j + 1], 1.0);
      m.add_row(0, inf, t);
    }
  }
  for (int i = 0; i < n; ++i) {
    const auto& r = req[static_cast<size_t>(i)];
    std::vector<std::pair<int, double>> tokens;
    for (int j = 0; j < J; ++j) tokens.emplace_back(x[i][j], 1.0);
    m.add_row(r.tokens, r.tokens, tokens);
    for (int j = 0; j < J; ++j) {  // C_i >= E_j when i runs in slot j
      // Some optimal schedule starts each iteration when the previous one ended or its
      // batch arrived: slot j ends by a_max + (j + 1) of the longest iterations.
      const double M = a_max + (j + 1) * (t_max + T.switch_cost) - (r.arrival + r.tokens * t_min);
      auto t = end_terms(j, -1.0);
      t.emplace_back(C[i], 1.0);
      t.emplace_back(x[i][j], -M);
      m.add_row(-M, inf, t);
    }
  }

  // The full-trace relaxation is a valid lower bound here too: as a cut it lifts the LP bound.
  {
    std::vector<TraceRequest> trace;
    for (const auto& r : req) trace.push_back({r.arrival, 1, r.tokens});
    TokenTimes tt;
    tt.t_min = t_min;
    tt.rate_max = inst.max_batch / t_min;
    tt.first.assign(req.size(), t_min);
    const RelaxationResult lb = token_relaxation(trace, tt);
    double constant = 0;
    for (const auto& r : req) constant += weight(r, o) * r.arrival;
    std::vector<std::pair<int, double>> terms;
    for (int i = 0; i < n; ++i) terms.emplace_back(C[i], weight(req[static_cast<size_t>(i)], o));
    m.add_row((o == Objective::per_token ? lb.per_token_sum : lb.request_sum) + constant - 1e-9,
              inf, terms);
  }

  // Incumbent: the better of two greedy schedules.
  Schedule seed = greedy_schedule(inst, false);
  Evaluation seed_ev = evaluate(inst, seed, o);
  {
    Schedule s2 = greedy_schedule(inst, true);
    Evaluation e2 = evaluate(inst, s2, o);
    if (e2.feasible && (!seed_ev.feasible || e2.objective < seed_ev.objective)) {
      seed = std::move(s2);
      seed_ev = std::move(e2);
    }
  }
  std::vector<double> start;
  if (seed_ev.feasible && static_cast<int>(seed.slots.size()) <= J) {
    start.assign(static_cast<size_t>(m.num_cols()), 0.0);
    int32_t prev = kClean;
    double t_end = 0;
    for (int j = 0; j < J; ++j) {
      const bool used = j < static_cast<int>(seed.slots.size());
      const int32_t st = used ? seed.slots[static_cast<size_t>(j)].state : prev;
      start[static_cast<size_t>(u[j])] = used ? 1 : 0;
      start[static_cast<size_t>(f[j])] = used && seed.slots[static_cast<size_t>(j)].fast;
      if (g[j] >= 0)
        start[static_cast<size_t>(g[j])] =
            used && !seed.slots[static_cast<size_t>(j)].fast && st != kClean;
      start[static_cast<size_t>(y[j][st + 1])] = 1;
      start[static_cast<size_t>(w[j])] = st != prev ? 1 : 0;
      start[static_cast<size_t>(S[j])] = used ? seed_ev.start[static_cast<size_t>(j)] : t_end;
      if (used) {
        t_end = seed_ev.end[static_cast<size_t>(j)];
        for (int32_t i : seed.slots[static_cast<size_t>(j)].batch)
          start[static_cast<size_t>(x[i][j])] = 1;
      }
      prev = st;
    }
    for (int i = 0; i < n; ++i)
      start[static_cast<size_t>(C[i])] = seed_ev.finish[static_cast<size_t>(i)];
  }

  Milp::Options mo;
  mo.time_limit_s = opts.time_limit_s;
  const Milp::Solution sol = m.solve(mo, start);
  out.variables = m.num_cols();
  out.constraints = m.num_rows();
  out.nodes = sol.nodes;
  out.seconds = sol.seconds;
  out.status = sol.status;
  double constant = 0;  // the objective counts finish times; latency subtracts arrivals
  for (const auto& r : req) constant += weight(r, o) * r.arrival;
  out.bound = sol.bound - constant;
  if (sol.x.empty()) return out;
  for (int j = 0; j < J; ++j) {
    if (sol.x[static_cast<size_t>(u[j])] < 0.5) continue;
    Slot sl;
    for (int s = 0; s <= K; ++s)
      if (sol.x[static_cast<size_t>(y[j][s])] > 0.5) sl.state = s - 1;
    sl.fast = sol.x[static_cast<size_t>(f[j])] > 0.5;
    for (int i = 0; i < n; ++i)
      if (sol.x[static_cast<size_t>(x[i][j])] > 0.5) sl.batch.push_back(i);
    // An empty iteration only costs time (and dropping it never adds a switch): drop it.
    if (!sl.batch.empty()) out.schedule.slots.push_back(std::move(sl));
  }
  const Evaluation ev = evaluate(inst, out.schedule, o);
  if (!ev.feasible) {
    out.status = "error";
    out.objective = NAN;
    return out;
  }
  out.objective = ev.objective;
  // CBC's incumbent is within its tolerances of the exact value; never report a bound above
  // the schedule that proves the optimum.
  out.bound = std::min(out.bound, out.objective);
  return out;
}

}  // namespace lorasched::bound
