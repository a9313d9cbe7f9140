#include "core/metrics/table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <variant>

#include <fmt/format.h>

#include "core/metrics/summary.hpp"

namespace lorasched {

namespace {

// The header of the configurable SLO's column; "%SLO <s/token>" when every run has the same.
constexpr const char* kOwnSlo = "%SLO own";

struct Column {
  const char* human;  // header of the aligned table
  int precision;      // decimals in the aligned table; -1: an integer
  std::function<double(const Summary&)> value;
};

// The aligned table's columns: the headline figures. Latency, TTFT and SLO attainment are over
// the requests arriving in the measurement window, throughput is what was served within it
// (docs/results-format.md, "summary"); SLO attainment shows as a percentage.
const std::vector<Column>& columns() {
  static const std::vector<Column> cols{
      {"requests", -1, [](const Summary& s) { return double(s.requests); }},
      {"done", -1, [](const Summary& s) { return double(s.finished); }},
      {"window", -1, [](const Summary& s) { return double(s.window_requests); }},
      {"req/s", 3, [](const Summary& s) { return s.window_throughput_rps; }},
      {"tok/s", 1, [](const Summary& s) { return s.window_throughput_tokens; }},
      {"lat avg(s)", 3, [](const Summary& s) { return s.latency_mean; }},
      {"P50(s)", 3, [](const Summary& s) { return s.latency_p50; }},
      {"P90(s)", 3, [](const Summary& s) { return s.latency_p90; }},
      {"P99(s)", 3, [](const Summary& s) { return s.latency_p99; }},
      {"s/tok avg", 4, [](const Summary& s) { return s.per_token_latency_mean; }},
      {"s/tok P90", 4, [](const Summary& s) { return s.per_token_latency_p90; }},
      {"TTFT(s)", 3, [](const Summary& s) { return s.ttft_mean; }},
      {"TTFT P90", 3, [](const Summary& s) { return s.ttft_p90; }},
      {"%SLO 0.5", 1, [](const Summary& s) { return 100 * s.slo_attainment_dlora; }},
      {kOwnSlo, 1, [](const Summary& s) { return 100 * s.slo_attainment; }},
      {"merges", -1, [](const Summary& s) { return double(s.merges); }},
      {"unmerges", -1, [](const Summary& s) { return double(s.unmerges); }},
      {"loads", -1, [](const Summary& s) { return double(s.adapter_loads); }},
      {"preempt", -1, [](const Summary& s) { return double(s.preemptions); }},
  };
  return cols;
}

std::string csv_quote(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

// Shortest round-trip form; NaN as "nan".
std::string csv_number(double v) {
  if (std::isnan(v)) return "nan";
  return fmt::format("{}", v);
}
std::string csv_number(int64_t v) { return fmt::format("{}", v); }

std::string human_number(double v, int precision) {
  if (std::isnan(v)) return "-";
  if (precision < 0) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{:.{}f}", v, precision);
}

}  // namespace

void print_summary_table(std::ostream& out,
                         const std::vector<std::pair<std::string, Summary>>& runs, bool csv) {
  if (csv) {
    // Every summary field, in the file's order, at full precision.
    std::string line = "run";
    for (const auto& f : summary_fields()) line += fmt::format(",{}", f.name);
    out << line << '\n';
    for (const auto& [label, s] : runs) {
      line = csv_quote(label);
      for (const auto& f : summary_fields()) {
        line += ',';
        line += std::visit([&](auto m) { return csv_number(s.*m); }, f.member);
      }
      out << line << '\n';
    }
    return;
  }

  const auto& cols = columns();
  // Cells first, then widths: the label column left-aligned, numbers right-aligned.
  std::vector<std::vector<std::string>> cells;
  cells.reserve(runs.size());
  for (const auto& [label, s] : runs) {
    std::vector<std::string> row{label};
    for (const auto& c : cols) row.push_back(human_number(c.value(s), c.precision));
    cells.push_back(std::move(row));
  }
  std::vector<std::string> header{"run"};
  for (const auto& c : cols) header.emplace_back(c.human);
  if (!runs.empty() && std::all_of(runs.begin(), runs.end(), [&](const auto& r) {
        return r.second.slo_per_token_s == runs.front().second.slo_per_token_s;
      })) {
    for (auto& h : header)
      if (h == kOwnSlo) h = fmt::format("%SLO {}", runs.front().second.slo_per_token_s);
  }
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : cells)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());

  auto emit = [&](const std::vector<std::string>& row) {
    std::string line = fmt::format("{:<{}}", row[0], width[0]);
    for (size_t i = 1; i < row.size(); ++i) line += fmt::format("  {:>{}}", row[i], width[i]);
    out << line << '\n';
  };
  emit(header);
  for (const auto& row : cells) emit(row);
}

}  // namespace lorasched

namespace lorasched {

void print_busy_table(std::ostream& out, const std::vector<std::pair<std::string, Summary>>& runs) {
  // Shares of busy time; execution holds the unmerged overhead and the empty slots.
  auto pct = [](double part, double busy) {
    return busy > 0 && std::isfinite(part) ? fmt::format("{:.1f}", 100 * part / busy)
                                           : std::string("-");
  };
  auto num = [](double v, int p) {
    return std::isfinite(v) ? fmt::format("{:.{}f}", v, p) : std::string("-");
  };
  std::vector<std::vector<std::string>> rows{{"run", "busy(s)", "switch%", "load%", "swap%",
                                              "exec%", "unmerged ovh%", "empty slots%", "batch unm",
                                              "batch mrg", "batch mix"}};
  for (const auto& [label, s] : runs) {
    const double exec = s.busy_time - s.switch_stall_time - s.adapter_load_time - s.swap_time;
    rows.push_back({label, num(s.busy_time, 1), pct(s.switch_stall_time, s.busy_time),
                    pct(s.adapter_load_time, s.busy_time), pct(s.swap_time, s.busy_time),
                    pct(exec, s.busy_time), pct(s.unmerged_overhead_time, s.busy_time),
                    pct(s.empty_slot_time, s.busy_time), num(s.batch_mean_unmerged, 1),
                    num(s.batch_mean_merged, 1), num(s.batch_mean_mixed, 1)});
  }
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line = fmt::format("{:<{}}", r[0], width[0]);
    for (size_t i = 1; i < r.size(); ++i) line += fmt::format("  {:>{}}", r[i], width[i]);
    out << line << '\n';
  }
}

std::pair<double, double> mean_ci95(const std::vector<double>& values) {
  double sum = 0;
  int n = 0;
  for (double v : values)
    if (!std::isnan(v)) {
      sum += v;
      ++n;
    }
  if (n == 0) return {NAN, NAN};
  const double mean = sum / n;
  if (n < 2) return {mean, NAN};
  double ss = 0;
  for (double v : values)
    if (!std::isnan(v)) ss += (v - mean) * (v - mean);
  // Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
  static const double t95[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                               2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                               2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                               2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  const int df = n - 1;
  const double t = df <= 30 ? t95[df - 1] : 1.96;
  return {mean, t * std::sqrt(ss / df / n)};
}

void print_group_table(std::ostream& out, const std::vector<RunGroup>& groups, bool csv) {
  struct Metric {
    const char* human;
    const char* name;  // the Summary field: CSV columns <name>_mean, <name>_ci95
    int precision;
    double scale;  // in the aligned table (100: a fraction as a percentage)
    std::function<double(const Summary&)> value;
  };
  static const std::vector<Metric> metrics{
      {"req/s", "window_throughput_rps", 3, 1,
       [](const Summary& s) { return s.window_throughput_rps; }},
      {"s/tok avg", "per_token_latency_mean", 4, 1,
       [](const Summary& s) { return s.per_token_latency_mean; }},
      {"s/tok P90", "per_token_latency_p90", 4, 1,
       [](const Summary& s) { return s.per_token_latency_p90; }},
      {"lat avg(s)", "latency_mean", 3, 1, [](const Summary& s) { return s.latency_mean; }},
      {"lat P90(s)", "latency_p90", 3, 1, [](const Summary& s) { return s.latency_p90; }},
      {"lat P99(s)", "latency_p99", 3, 1, [](const Summary& s) { return s.latency_p99; }},
      {"TTFT(s)", "ttft_mean", 3, 1, [](const Summary& s) { return s.ttft_mean; }},
      {"%SLO 0.5", "slo_attainment_dlora", 1, 100,
       [](const Summary& s) { return s.slo_attainment_dlora; }},
      {"merges", "merges", 1, 1, [](const Summary& s) { return double(s.merges); }},
  };
  std::vector<std::vector<std::pair<double, double>>> cells;
  for (const auto& g : groups) {
    std::vector<std::pair<double, double>> row;
    for (const auto& m : metrics) {
      std::vector<double> v;
      for (const auto& s : g.runs) v.push_back(m.value(s));
      row.push_back(mean_ci95(v));
    }
    cells.push_back(row);
  }
  if (csv) {
    out << "group,runs";
    for (const auto& m : metrics) out << "," << m.name << "_mean," << m.name << "_ci95";
    out << "\n";
    for (size_t i = 0; i < groups.size(); ++i) {
      out << csv_quote(groups[i].label) << "," << groups[i].runs.size();
      for (const auto& [mean, ci] : cells[i])
        out << "," << csv_number(mean) << "," << csv_number(ci);
      out << "\n";
    }
    return;
  }
  size_t label_w = 5;
  for (const auto& g : groups) label_w = std::max(label_w, g.label.size());
  std::vector<std::vector<std::string>> text;
  std::vector<size_t> width;
  for (const auto& m : metrics) width.push_back(std::string(m.human).size());
  for (size_t i = 0; i < groups.size(); ++i) {
    std::vector<std::string> row;
    for (size_t j = 0; j < metrics.size(); ++j) {
      const auto [mean, ci] = cells[i][j];
      const double k = metrics[j].scale;
      const int p = metrics[j].precision;
      std::string t = std::isnan(mean) ? "-" : fmt::format("{:.{}f}", k * mean, p);
      if (!std::isnan(ci)) t += fmt::format(" ±{:.{}f}", k * ci, p);
      width[j] = std::max(width[j], t.size());
      row.push_back(t);
    }
    text.push_back(row);
  }
  out << fmt::format("{:<{}}  {:>4}", "group", label_w, "runs");
  for (size_t j = 0; j < metrics.size(); ++j)
    out << fmt::format("  {:>{}}", metrics[j].human, width[j]);
  out << "\n";
  for (size_t i = 0; i < groups.size(); ++i) {
    out << fmt::format("{:<{}}  {:>4}", groups[i].label, label_w, groups[i].runs.size());
    for (size_t j = 0; j < metrics.size(); ++j)
      out << fmt::format("  {:>{}}", text[i][j], width[j]);
    out << "\n";
  }
  out << "(mean ± half-width of the 95% confidence interval over the group's runs)\n";
}

}  // namespace lorasched
