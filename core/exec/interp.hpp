// Piecewise-linear tables for the profile cost model (docs/costmodel.md): a Curve is a
// function of one variable through measured points; Rows<Inner> stacks inner tables along
// one more variable (each row may cover a different range of the inner variables). Every
// table returns its measured values exactly at its points, interpolates linearly between
// them (so it is monotone between neighbours), holds the first value below the first point
// and extends the last segment's slope, never negative, above the last one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace lorasched::interp {

// Index i of the segment [x[i], x[i+1]] holding v (x sorted, strictly increasing, size >= 2).
inline size_t segment(const std::vector<double>& x, double v) {
  const auto it = std::upper_bound(x.begin(), x.end(), v);
  size_t i = static_cast<size_t>(it - x.begin());
  i = i == 0 ? 0 : i - 1;
  return std::min(i, x.size() - 2);
}

// Linear blend of (x0, y0) and (x1, y1) at v in [x0, x1]; above x1 the slope goes on, never
// negative; below x0 it holds y0.
inline double blend(double x0, double y0, double x1, double y1, double v) {
  if (v <= x0) return y0;
  if (v >= x1) return y1 + std::max(0.0, (y1 - y0) / (x1 - x0)) * (v - x1);
  return y0 + (y1 - y0) * ((v - x0) / (x1 - x0));
}

class Curve {
 public:
  Curve() = default;
  // Points sorted by x, x strictly increasing (the caller checks).
  Curve(std::vector<double> x, std::vector<double> y) : x_(std::move(x)), y_(std::move(y)) {}

  bool empty() const { return x_.empty(); }
  const std::vector<double>& xs() const { return x_; }
  const std::vector<double>& ys() const { return y_; }

  double operator()(double v) const {
    if (x_.size() == 1) return y_[0];
    const size_t i = segment(x_, v);
    return blend(x_[i], y_[i], x_[i + 1], y_[i + 1], v);
  }

 private:
  std::vector<double> x_, y_;
};

template <class Inner>
class Rows {
 public:
  // Rows are added in strictly increasing key order (the caller checks).
  void add(double key, Inner row) {
    keys_.push_back(key);
    rows_.push_back(std::move(row));
  }
  bool empty() const { return keys_.empty(); }
  const std::vector<double>& keys() const { return keys_; }
  const std::vector<Inner>& rows() const { return rows_; }

  template <class... Rest>
  double operator()(double v, Rest... rest) const {
    if (keys_.size() == 1) return rows_[0](rest...);
    const size_t i = segment(keys_, v);
    if (v <= keys_[i]) return rows_[i](rest...);
    return blend(keys_[i], rows_[i](rest...), keys_[i + 1], rows_[i + 1](rest...), v);
  }

 private:
  std::vector<double> keys_;
  std::vector<Inner> rows_;
};

using Table2 = Rows<Curve>;
using Table3 = Rows<Table2>;

}  // namespace lorasched::interp
