#include "core/bound/milp.hpp"

#include <coin/Cbc_C_Interface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

namespace lorasched::bound {

int Milp::add_col(double lb, double ub, double cost, bool integer) {
  lb_.push_back(lb);
  ub_.push_back(ub);
  cost_.push_back(cost);
  integer_.push_back(integer ? 1 : 0);
  cols_.emplace_back();
  return num_cols() - 1;
}

int Milp::add_row(double lb, double ub) {
  row_lb_.push_back(lb);
  row_ub_.push_back(ub);
  return num_rows() - 1;
}

void Milp::add(int row, int col, double value) {
  if (value == 0.0) return;
  auto& c = cols_[static_cast<size_t>(col)];
  // Terms of one row arrive together, so only the last entry can be the same row.
  if (!c.empty() && c.back().first == row)
    c.back().second += value;
  else
    c.emplace_back(row, value);
}

int Milp::add_row(double lb, double ub, const std::vector<std::pair<int, double>>& terms) {
  const int r = add_row(lb, ub);
  for (const auto& [col, v] : terms) add(r, col, v);
  return r;
}

Milp::Solution Milp::solve(const Options& opts, const std::vector<double>& start) const {
  Solution out;
  std::vector<CoinBigIndex> starts{0};
  std::vector<int> index;
  std::vector<double> value;
  for (const auto& c : cols_) {
    for (const auto& [r, v] : c) {
      index.push_back(r);
      value.push_back(v);
    }
    starts.push_back(static_cast<CoinBigIndex>(index.size()));
  }
  Cbc_Model* m = Cbc_newModel();
  Cbc_loadProblem(m, num_cols(), num_rows(), starts.data(), index.data(), value.data(), lb_.data(),
                  ub_.data(), cost_.data(), row_lb_.data(), row_ub_.data());
  Cbc_setObjSense(m, 1.0);
  for (int c = 0; c < num_cols(); ++c)
    if (integer_[static_cast<size_t>(c)]) Cbc_setInteger(m, c);
  Cbc_setMaximumSeconds(m, opts.time_limit_s);
  Cbc_setAllowableFractionGap(m, opts.relative_gap);
  Cbc_setAllowableGap(m, opts.absolute_gap);
  Cbc_setLogLevel(m, 0);
  if (!start.empty()) {
    std::vector<int> idx(start.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int>(i);
    Cbc_setMIPStartI(m, static_cast<int>(idx.size()), idx.data(), start.data());
  }
  const auto t0 = std::chrono::steady_clock::now();
  Cbc_solve(m);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.nodes = Cbc_getNodeCount(m);
  const bool has_solution = Cbc_bestSolution(m) != nullptr;
  if (Cbc_isProvenOptimal(m)) {
    out.status = "optimal";
  } else if (Cbc_isProvenInfeasible(m) || Cbc_isInitialSolveProvenPrimalInfeasible(m)) {
    out.status = "infeasible";
  } else if (has_solution) {
    out.status = "feasible";
  } else if (Cbc_isSecondsLimitReached(m)) {
    out.status = "time limit";
  } else {
    out.status = "error";
  }
  if (out.status == "optimal" || out.status == "feasible") {
    const double* sol = Cbc_getColSolution(m);
    out.x.assign(sol, sol + num_cols());
    out.objective = Cbc_getObjValue(m);
    out.bound = std::min(Cbc_getBestPossibleObjValue(m), out.objective);
    if (out.status == "optimal") out.bound = out.objective;
  } else if (out.status == "time limit") {
    out.bound = Cbc_getBestPossibleObjValue(m);
  }
  Cbc_deleteModel(m);
  return out;
}

}  // namespace lorasched::bound
