// A mixed-integer linear program built row by row and solved with CBC (COIN-OR, through its
// C API): what the bound formulations of this folder share.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace lorasched::bound {

class Milp {
 public:
  static constexpr double kInf = std::numeric_limits<double>::max();  // CBC's infinity

  int add_col(double lb, double ub, double cost, bool integer);
  int add_row(double lb, double ub);
  // Adds `value` to the coefficient of `col` in `row` (rows are built term by term).
  void add(int row, int col, double value);
  // A row lb <= sum(value * col) <= ub in one call.
  int add_row(double lb, double ub, const std::vector<std::pair<int, double>>& terms);

  int num_cols() const { return static_cast<int>(lb_.size()); }
  int num_rows() const { return static_cast<int>(row_lb_.size()); }

  struct Options {
    double time_limit_s = 60;
    double relative_gap = 1e-9;  // stop when (incumbent - bound) / |incumbent| is below this
    double absolute_gap = 1e-9;
  };
  struct Solution {
    // "optimal", "feasible" (stopped at the limit with an incumbent), "time limit" (none),
    // "infeasible", "error"
    std::string status;
    std::vector<double> x;  // column values (empty without a solution)
    double objective = 0;   // of the incumbent
    double bound = 0;       // the best lower bound CBC proved (minimisation)
    double seconds = 0;     // wall time of the solve
    int64_t nodes = 0;
  };
  // Minimises; `start` is an optional feasible assignment of every column (a MIP start).
  Solution solve(const Options& opts, const std::vector<double>& start = {}) const;

 private:
  std::vector<double> lb_, ub_, cost_;
  std::vector<char> integer_;
  std::vector<double> row_lb_, row_ub_;
  std::vector<std::vector<std::pair<int, double>>> cols_;  // per column: (row, value)
};

}  // namespace lorasched::bound
