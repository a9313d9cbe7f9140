// Migration `dlora-ilp`: dLoRA's request-adapter co-migration (artifact
// vllm/engine/engine_manager.py migration_schedule, vllm/engine/migration_ilp.py), solved
// with CBC's C API. docs/cluster.md has the formulation and where it differs from the
// artifact.
//
// scope = "pair" (default, the artifact): the trigger picks two replicas; over their
// requests i, replicas j and the adapters k they host:
//   x[i,j] >= 0 continuous, y[k,j] binary, z[j] >= 0, T >= 0;  min T
//   sum_j x[i,j] >= 1                         (relaxed: the artifact's "constraint 1")
//   n_k y[k,j] >= sum_{i of k} x[i,j]         (a replica serves only adapters it hosts)
//   sum_k y[k,j] <= C_j                       (C_j = adapters it hosts now)
//   z[j] >= (sum_i b_i x[i,j] - M_j) / BW     (KV overflow, BW in blocks/s)
//   T >= sum_i e_k(i) x[i,j] + sum_{i not from j} per_move x[i,j] + z[j]
// then every request goes to the first replica with the largest x (argmax rounding) and
// each replica hosts the adapters with y = 1. Requests running at the snapshot cannot move
// (x fixed to 0 off their replica).
// scope = "cluster": every replica at once, x binary with sum_j x[i,j] = 1 (the paper's
// formulation as remembered; a solve that becomes the bottleneck at 16+ replicas).
#include <coin/Cbc_C_Interface.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <chrono>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "dlora_common.hpp"
#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;
namespace dl = lorasched::dlora;

constexpr double kInf = DBL_MAX;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Moves the greedy fallback may make (the `greedy` plugin's default max_moves).
constexpr int64_t kMaxMoves = 100000;

// A model built row by row, loaded into CBC column-wise.
struct Lp {
  std::vector<double> col_lb, col_ub, obj;
  std::vector<char> integer;
  std::vector<double> row_lb, row_ub;
  // Entries in the order they were set (rows ascending): row, column, value.
  std::vector<int> entry_row, entry_col;
  std::vector<double> entry_value;

  void reserve(size_t cols, size_t entries) {
    col_lb.reserve(cols);
    col_ub.reserve(cols);
    obj.reserve(cols);
    integer.reserve(cols);
    entry_row.reserve(entries);
    entry_col.reserve(entries);
    entry_value.reserve(entries);
  }
  int add_col(double lb, double ub, double c, bool is_int) {
    col_lb.push_back(lb);
    col_ub.push_back(ub);
    obj.push_back(c);
    integer.push_back(is_int ? 1 : 0);
    return static_cast<int>(col_lb.size()) - 1;
  }
  int add_row(double lb, double ub) {
    row_lb.push_back(lb);
    row_ub.push_back(ub);
    return static_cast<int>(row_lb.size()) - 1;
  }
  void set(int row, int col, double v) {
    if (v == 0.0) return;
    entry_row.push_back(row);
    entry_col.push_back(col);
    entry_value.push_back(v);
  }
  // Column-major arrays for Cbc_loadProblem (a stable counting sort by column: within a
  // column, entries keep the order of their rows).
  void column_major(std::vector<CoinBigIndex>& start, std::vector<int>& index,
                    std::vector<double>& value) const {
    const size_t C = col_lb.size(), E = entry_col.size();
    start.assign(C + 1, 0);
    for (int c : entry_col) ++start[static_cast<size_t>(c) + 1];
    for (size_t c = 0; c < C; ++c) start[c + 1] += start[c];
    std::vector<CoinBigIndex> next(start.begin(), start.end() - 1);
    index.resize(E);
    value.resize(E);
    for (size_t e = 0; e < E; ++e) {
      const auto at = static_cast<size_t>(next[static_cast<size_t>(entry_col[e])]++);
      index[at] = entry_row[e];
      value[at] = entry_value[e];
    }
  }
};

struct Solved {
  std::string status;
  std::vector<double> x;  // column values (empty when no solution)
  double objective = 0;
  double bound = 0;
  int64_t variables = 0;
  int64_t constraints = 0;
};

// Solves in this process: loads the model, runs CBC (its own limit: `time_limit` seconds,
// which CBC checks between the steps of its search, not inside the root LP), reads back
// the status and the solution.
Solved solve_in_process(const Lp& lp, double time_limit, const std::vector<int>& start_idx,
                        const std::vector<double>& start_val) {
  Solved out;
  std::vector<CoinBigIndex> start;
  std::vector<int> index;
  std::vector<double> value;
  lp.column_major(start, index, value);
  Cbc_Model* m = Cbc_newModel();
  Cbc_loadProblem(m, static_cast<int>(lp.col_lb.size()), static_cast<int>(lp.row_lb.size()),
                  start.data(), index.data(), value.data(), lp.col_lb.data(), lp.col_ub.data(),
                  lp.obj.data(), lp.row_lb.data(), lp.row_ub.data());
  Cbc_setObjSense(m, 1.0);
  for (size_t c = 0; c < lp.integer.size(); ++c)
    if (lp.integer[c]) Cbc_setInteger(m, static_cast<int>(c));
  Cbc_setMaximumSeconds(m, time_limit);
  Cbc_setLogLevel(m, 0);
  if (!start_idx.empty())
    Cbc_setMIPStartI(m, static_cast<int>(start_idx.size()), start_idx.data(), start_val.data());
  out.variables = Cbc_getNumCols(m);
  out.constraints = Cbc_getNumRows(m);
  Cbc_solve(m);
  const bool has_solution = Cbc_bestSolution(m) != nullptr || Cbc_isProvenOptimal(m);
  if (Cbc_isProvenOptimal(m)) {
    out.status = "optimal";
  } else if (Cbc_isProvenInfeasible(m) || Cbc_isInitialSolveProvenPrimalInfeasible(m)) {
    out.status = "infeasible";
  } else if (Cbc_isContinuousUnbounded(m)) {
    out.status = "unbounded";
  } else if (Cbc_isAbandoned(m) && !has_solution) {
    out.status = "abandoned";
  } else if (has_solution) {
    out.status = "feasible";
  } else if (Cbc_isSecondsLimitReached(m) || Cbc_status(m) == 1) {
    out.status = "time limit";
  } else {
    out.status = "error";
  }
  if (out.status == "optimal" || out.status == "feasible") {
    const double* sol = Cbc_getColSolution(m);
    out.x.assign(sol, sol + lp.col_lb.size());
    out.objective = Cbc_getObjValue(m);
    out.bound = Cbc_getBestPossibleObjValue(m);
    if (out.status == "optimal") out.bound = std::min(out.bound, out.objective);
  }
  Cbc_deleteModel(m);
  return out;
}

// ---- the hard time limit --------------------------------------------------------------------
// CBC's own limit is not hard: the root LP (Clp) and the preprocessing run to the end before
// the limit is looked at (273-356 s for a 10 s limit on a 64-replica cluster-scope model).
// No API of the CBC 2.10 C interface reaches into them, and a thread running them cannot be
// stopped. So the solve runs in a child process that the caller abandons (SIGKILL) when the
// deadline passes; the child sends its result back through a pipe. The model and CBC's
// decisions are the same as in process: results do not change when the solve finishes in time.

// Extra seconds the child gets after CBC's own limit to return the incumbent CBC stopped with
// (its limit is checked between nodes; a node's LP can take a while on a large model).
double grace_seconds(double time_limit) { return 0.25 + 0.05 * time_limit; }

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The result on the wire: status code, objective, bound, sizes, then the solution.
constexpr const char* kStatuses[] = {"optimal",   "feasible",   "infeasible", "unbounded",
                                     "abandoned", "time limit", "error"};
struct WireHeader {
  int32_t status = 0;
  double objective = 0, bound = 0;
  int64_t variables = 0, constraints = 0, solution_size = 0;
};

[[noreturn]] void child_solve(int fd, const Lp& lp, double time_limit,
                              const std::vector<int>& start_idx,
                              const std::vector<double>& start_val) {
  const Solved s = solve_in_process(lp, time_limit, start_idx, start_val);
  WireHeader h;
  h.status = 6;
  for (int32_t i = 0; i < 7; ++i)
    if (s.status == kStatuses[i]) h.status = i;
  h.objective = s.objective;
  h.bound = s.bound;
  h.variables = s.variables;
  h.constraints = s.constraints;
  h.solution_size = static_cast<int64_t>(s.x.size());
  const bool ok =
      write_all(fd, &h, sizeof h) && write_all(fd, s.x.data(), s.x.size() * sizeof(double));
  ::_exit(ok ? 0 : 1);  // no atexit handlers, no destructors of the parent's objects
}

// Reads exactly n bytes before the deadline; false on timeout, EOF or error.
bool read_until(int fd, void* data, size_t n, std::chrono::steady_clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Runs the solve under a hard deadline of time_limit + grace_seconds (wall time). Status
// "time limit" without a solution when the deadline passed (the child is killed).
Solved solve_with_cbc(const Lp& lp, double time_limit, const std::vector<int>& start_idx,
                      const std::vector<double>& start_val) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(time_limit + grace_seconds(time_limit)));
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return solve_in_process(lp, time_limit, start_idx, start_val);
  const pid_t pid = ::fork();
  if (pid < 0) {  // no process to spare: solve here, with CBC's own (soft) limit
    ::close(fds[0]);
    ::close(fds[1]);
    return solve_in_process(lp, time_limit, start_idx, start_val);
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_solve(fds[1], lp, time_limit, start_idx, start_val);
  }
  ::close(fds[1]);
  Solved out;
  WireHeader h;
  bool ok = read_until(fds[0], &h, sizeof h, deadline) && h.status >= 0 && h.status < 7 &&
            h.solution_size >= 0 && h.solution_size <= static_cast<int64_t>(lp.col_lb.size());
  if (ok) {
    out.x.resize(static_cast<size_t>(h.solution_size));
    ok = read_until(fds[0], out.x.data(), out.x.size() * sizeof(double), deadline);
  }
  ::close(fds[0]);
  if (!ok) ::kill(pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  out.variables = static_cast<int64_t>(lp.col_lb.size());
  out.constraints = static_cast<int64_t>(lp.row_lb.size());
  if (!ok) {
    out.x.clear();
    // Killed at the deadline, or the child died (then the status says error).
    const bool killed = std::chrono::steady_clock::now() >= deadline;
    out.status = killed ? "time limit" : "error";
    return out;
  }
  out.status = kStatuses[h.status];
  out.objective = h.objective;
  out.bound = h.bound;
  out.variables = h.variables;
  out.constraints = h.constraints;
  return out;
}

class DloraIlp : public Migration {
 public:
  explicit DloraIlp(const CreateArgs& a)
      : common_(a.params),
        time_limit_(a.params.real("time_limit_s")),
        exec_time_bug_(a.params.boolean("exec_time_bug")),
        warm_start_(a.params.boolean("warm_start")),
        cluster_scope_(a.params.string("scope") == "cluster"),
        always_(a.params.string("trigger") == "always"),
        greedy_fallback_(a.params.string("on_time_limit") == "greedy") {}

  MigrationPlan plan(const ClusterView& v) override {
    const auto t0 = std::chrono::steady_clock::now();
    MigrationPlan plan;
    dl::Trigger trig = dl::dlora_trigger(v, common_.trigger);
    if (trig.kind.empty() && always_ && v.replicas.size() >= 2) {
      // The most (highest id on ties) and least (lowest id) loaded replicas by requests.
      size_t most = 0, least = 0;
      for (size_t j = 0; j < v.replicas.size(); ++j) {
        if (v.replicas[j].requests.size() >= v.replicas[most].requests.size()) most = j;
        if (v.replicas[j].requests.size() < v.replicas[least].requests.size()) least = j;
      }
      if (most == least) least = most == 0 ? 1 : 0;
      trig.kind = "always";
      trig.pair = {std::min(v.replicas[most].replica, v.replicas[least].replica),
                   std::max(v.replicas[most].replica, v.replicas[least].replica)};
    }
    if (trig.kind.empty()) return plan;
    plan.trigger = trig.kind;
    // Replicas of the model (ids, ascending) -> index in v.replicas.
    std::vector<size_t> reps;
    if (cluster_scope_) {
      for (size_t j = 0; j < v.replicas.size(); ++j) reps.push_back(j);
    } else {
      for (int32_t id : trig.pair)
        for (size_t j = 0; j < v.replicas.size(); ++j)
          if (v.replicas[j].replica == id) reps.push_back(j);
    }
    std::sort(reps.begin(), reps.end(),
              [&](size_t a, size_t b) { return v.replicas[a].replica < v.replicas[b].replica; });
    for (size_t j : reps) plan.replicas_considered.push_back(v.replicas[j].replica);
    const size_t J = reps.size();

    // Adapters of the model: those the replicas host (sorted), plus any of their requests'.
    std::vector<AdapterId> K;
    for (size_t j : reps) {
      for (AdapterId a : v.replicas[j].hosted) K.push_back(a);
      for (const auto& r : v.replicas[j].requests) K.push_back(r.adapter);
    }
    std::sort(K.begin(), K.end());
    K.erase(std::unique(K.begin(), K.end()), K.end());
    std::unordered_map<AdapterId, size_t> local;
    for (size_t k = 0; k < K.size(); ++k) local[K[k]] = k;

    // Per-adapter cost e_k (the artifact's bug: indexed by the ILP-local adapter index).
    const std::vector<double> global_cost = dl::adapter_costs(v, common_.default_exec);
    std::vector<double> e(K.size());
    for (size_t k = 0; k < K.size(); ++k)
      e[k] = exec_time_bug_ ? global_cost[std::min(k, global_cost.size() - 1)]
                            : global_cost[static_cast<size_t>(K[k])];

    struct Req {
      const RequestView* r;
      size_t src;  // index in reps
      size_t k;
      double blocks;
    };
    std::vector<Req> reqs;
    for (size_t j = 0; j < J; ++j)
      for (const auto& r : v.replicas[reps[j]].requests)
        reqs.push_back({&r, j, local.at(r.adapter),
                        static_cast<double>(dl::logical_blocks(r, v.limits.block_size))});
    if (reqs.empty()) return finish(plan, t0, "optimal", 0, 0, 0, 0);
    std::vector<int64_t> n(K.size(), 0);
    for (const auto& q : reqs) ++n[q.k];

    const double bw = dl::blocks_per_second(v);
    Lp lp;
    const size_t I = reqs.size();
    lp.reserve((I + K.size() + 1) * J + 1, 4 * I * J + K.size() * J + 3 * J);
    std::vector<int> xcol(I * J), ycol(K.size() * J), zcol(J);
    for (size_t i = 0; i < I; ++i)
      for (size_t j = 0; j < J; ++j) {
        const bool fixed = reqs[i].r->state == RequestState::running && j != reqs[i].src;
        xcol[i * J + j] = lp.add_col(0, fixed ? 0 : (cluster_scope_ ? 1 : kInf), 0, cluster_scope_);
      }
    for (size_t k = 0; k < K.size(); ++k)
      for (size_t j = 0; j < J; ++j) ycol[k * J + j] = lp.add_col(0, 1, 0, true);
    for (size_t j = 0; j < J; ++j) zcol[j] = lp.add_col(0, kInf, 0, false);
    const int tcol = lp.add_col(0, kInf, 1, false);
    // (1) each request somewhere
    for (size_t i = 0; i < I; ++i) {
      const int row = lp.add_row(1, cluster_scope_ ? 1 : kInf);
      for (size_t j = 0; j < J; ++j) lp.set(row, xcol[i * J + j], 1);
    }
    // (2) only to replicas hosting its adapter
    for (size_t k = 0; k < K.size(); ++k) {
      if (n[k] == 0) continue;
      for (size_t j = 0; j < J; ++j) {
        const int row = lp.add_row(0, kInf);
        lp.set(row, ycol[k * J + j], static_cast<double>(n[k]));
        for (size_t i = 0; i < I; ++i)
          if (reqs[i].k == k) lp.set(row, xcol[i * J + j], -1);
      }
    }
    // (4) adapter capacity: what the replica hosts now
    for (size_t j = 0; j < J; ++j) {
      const int row = lp.add_row(-kInf, static_cast<double>(v.replicas[reps[j]].hosted.size()));
      for (size_t k = 0; k < K.size(); ++k) lp.set(row, ycol[k * J + j], 1);
    }
    // z: KV overflow; T: makespan
    for (size_t j = 0; j < J; ++j) {
      const double M = static_cast<double>(v.replicas[reps[j]].kv_blocks_total);
      const int zr = lp.add_row(-M / bw, kInf);
      lp.set(zr, zcol[j], 1);
      for (size_t i = 0; i < I; ++i) lp.set(zr, xcol[i * J + j], -reqs[i].blocks / bw);
      const int tr = lp.add_row(0, kInf);
      lp.set(tr, tcol, 1);
      lp.set(tr, zcol[j], -1);
      for (size_t i = 0; i < I; ++i)
        lp.set(tr, xcol[i * J + j], -(e[reqs[i].k] + (reqs[i].src != j ? common_.per_move : 0.0)));
    }
    // Warm start: the current placement (the artifact builds it but never passes it).
    std::vector<int> sidx;
    std::vector<double> sval;
    if (warm_start_) {
      for (size_t i = 0; i < I; ++i) {
        sidx.push_back(xcol[i * J + reqs[i].src]);
        sval.push_back(1.0);
      }
      for (size_t j = 0; j < J; ++j)
        for (AdapterId a : v.replicas[reps[j]].hosted) {
          sidx.push_back(ycol[local.at(a) * J + j]);
          sval.push_back(1.0);
        }
    }
    Solved s = solve_with_cbc(lp, time_limit_, sidx, sval);
    if (s.x.empty() && s.status == "time limit" && greedy_fallback_) {
      // Out of time without a solution: the best plan known is the greedy's over the same
      // replicas (never worse than staying put, the warm start). Status "time limit" says so.
      std::vector<uint8_t> active(v.replicas.size(), 0);
      for (size_t j : reps) active[j] = 1;
      dl::GreedyPlan g =
          dl::rebalance_greedily(v, active, global_cost, common_.per_move, kMaxMoves);
      plan.moves = std::move(g.moves);
      plan.placements = std::move(g.placements);
      return finish(plan, t0, s.status, g.makespan, kNaN, s.variables, s.constraints);
    }
    if (s.x.empty()) return finish(plan, t0, s.status, 0, 0, s.variables, s.constraints);

    // Rounding: the first replica with the strictly largest x (artifact: start j=0, max 0.0).
    for (size_t i = 0; i < I; ++i) {
      size_t best = 0;
      double best_val = 0.0;
      for (size_t j = 0; j < J; ++j)
        if (s.x[static_cast<size_t>(xcol[i * J + j])] > best_val + 1e-9) {
          best_val = s.x[static_cast<size_t>(xcol[i * J + j])];
          best = j;
        }
      // The artifact asserts y = 1 there; a request rounded elsewhere stays where it is.
      if (s.x[static_cast<size_t>(ycol[reqs[i].k * J + best])] < 0.5) continue;
      if (best != reqs[i].src)
        plan.moves.push_back(
            {reqs[i].r->id, v.replicas[reps[reqs[i].src]].replica, v.replicas[reps[best]].replica});
    }
    for (size_t j = 0; j < J; ++j) {
      Placement p;
      p.replica = v.replicas[reps[j]].replica;
      for (size_t k = 0; k < K.size(); ++k)
        if (s.x[static_cast<size_t>(ycol[k * J + j])] > 0.5) p.adapters.push_back(K[k]);
      plan.placements.push_back(std::move(p));
    }
    return finish(plan, t0, s.status, s.objective, s.bound, s.variables, s.constraints);
  }

 private:
  static MigrationPlan& finish(MigrationPlan& plan, std::chrono::steady_clock::time_point t0,
                               const std::string& status, double obj, double bound, int64_t vars,
                               int64_t rows) {
    plan.has_report = true;
    plan.report.status = status;
    plan.report.solve_time =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    plan.report.objective = obj;
    plan.report.bound = bound;
    plan.report.variables = vars;
    plan.report.constraints = rows;
    return plan;
  }

  dl::CommonParams common_;
  double time_limit_;
  bool exec_time_bug_, warm_start_, cluster_scope_, always_, greedy_fallback_;
};

PluginInfo info() {
  return {
      kApiVersion, PluginKind::migration, "dlora-ilp",
      "dLoRA's request-adapter co-migration: trigger + makespan ILP (CBC), as in its artifact",
      dl::concat(
          dl::concat({param_real("time_limit_s", 600.0,
                                 "time limit per solve, seconds (artifact: 600); hard: the solve "
                                 "is abandoned 0.25 s + 5% after it",
                                 0.0)},
                     dl::common_params()),
          {param_bool("exec_time_bug", false,
                      "reproduce the artifact's bug: per-adapter times indexed by the ILP-local "
                      "adapter index"),
           param_bool("warm_start", true,
                      "give CBC the current placement as a MIP start (the artifact builds it "
                      "but never passes it)"),
           param_choice("scope", "pair", {"pair", "cluster"},
                        "pair: the two replicas the trigger picks, relaxed request variables "
                        "(artifact); cluster: every replica, binary request assignment"),
           param_choice("trigger", "dlora", {"dlora", "always"},
                        "dlora: migrate only when the memory or load trigger fires; always: "
                        "every period (pair scope: the most and least loaded replicas)"),
           param_choice("on_time_limit", "greedy", {"greedy", "none"},
                        "the plan when the solve reaches time_limit_s (a hard limit) without a "
                        "solution: greedy: the `greedy` policy's moves over the same replicas; "
                        "none: no moves (the warm start)")})};
}

}  // namespace

LORASCHED_PLUGIN(DloraIlp, info)
