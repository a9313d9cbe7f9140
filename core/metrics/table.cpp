#include "core/metrics/table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>

#include <fmt/format.h>

namespace lorasched {

namespace {

struct Column {
  const char* human;  // header of the aligned table
  const char* csv;    // CSV header: the Summary field name where there is one
  int precision;      // decimals in the aligned table; -1: an integer
  std::function<double(const Summary&)> value;
};

const std::vector<Column>& columns() {
  static const std::vector<Column> cols{
      {"requests", "requests", -1, [](const Summary& s) { return double(s.requests); }},
      {"done", "finished", -1, [](const Summary& s) { return double(s.finished); }},
      {"req/s", "throughput_rps", 3, [](const Summary& s) { return s.throughput_rps; }},
      {"tok/s", "throughput_tokens", 1, [](const Summary& s) { return s.throughput_tokens; }},
      {"lat avg(s)", "latency_mean", 3, [](const Summary& s) { return s.latency_mean; }},
      {"P50(s)", "latency_p50", 3, [](const Summary& s) { return s.latency_p50; }},
      {"P90(s)", "latency_p90", 3, [](const Summary& s) { return s.latency_p90; }},
      {"P99(s)", "latency_p99", 3, [](const Summary& s) { return s.latency_p99; }},
      {"s/tok avg", "per_token_latency_mean", 4,
       [](const Summary& s) { return s.per_token_latency_mean; }},
      {"s/tok P90", "per_token_latency_p90", 4,
       [](const Summary& s) { return s.per_token_latency_p90; }},
      {"TTFT(s)", "ttft_mean", 3, [](const Summary& s) { return s.ttft_mean; }},
      {"queue(s)", "queueing_mean", 3, [](const Summary& s) { return s.queueing_mean; }},
      {"merges", "merges", -1, [](const Summary& s) { return double(s.merges); }},
      {"unmerges", "unmerges", -1, [](const Summary& s) { return double(s.unmerges); }},
      {"loads", "adapter_loads", -1, [](const Summary& s) { return double(s.adapter_loads); }},
      {"preempt", "preemptions", -1, [](const Summary& s) { return double(s.preemptions); }},
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

std::string csv_number(double v, int precision) {
  if (std::isnan(v)) return "nan";
  if (precision < 0) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

std::string human_number(double v, int precision) {
  if (std::isnan(v)) return "-";
  if (precision < 0) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{:.{}f}", v, precision);
}

}  // namespace

void print_summary_table(std::ostream& out,
                         const std::vector<std::pair<std::string, Summary>>& runs, bool csv) {
  const auto& cols = columns();
  if (csv) {
    std::string line = "run";
    for (const auto& c : cols) line += fmt::format(",{}", c.csv);
    out << line << '\n';
    for (const auto& [label, s] : runs) {
      line = csv_quote(label);
      for (const auto& c : cols) {
        line += ',';
        line += csv_number(c.value(s), c.precision);
      }
      out << line << '\n';
    }
    return;
  }

  // Cells first, then widths: the label column left-aligned, numbers right-aligned.
  std::vector<std::vector<std::string>> cells;
  cells.reserve(runs.size());
  for (const auto& [label, s] : runs) {
    std::vector<std::string> row{label};
    for (const auto& c : cols) row.push_back(human_number(c.value(s), c.precision));
    cells.push_back(std::move(row));
  }
  std::vector<size_t> width(cols.size() + 1);
  width[0] = 3;  // "run"
  for (size_t i = 0; i < cols.size(); ++i) width[i + 1] = std::string_view(cols[i].human).size();
  for (const auto& row : cells)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());

  auto emit = [&](const std::vector<std::string>& row) {
    std::string line = fmt::format("{:<{}}", row[0], width[0]);
    for (size_t i = 1; i < row.size(); ++i) line += fmt::format("  {:>{}}", row[i], width[i]);
    out << line << '\n';
  };
  std::vector<std::string> header{"run"};
  for (const auto& c : cols) header.emplace_back(c.human);
  emit(header);
  for (const auto& row : cells) emit(row);
}

}  // namespace lorasched

namespace lorasched {

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
    const char* name;
    int precision;
    std::function<double(const Summary&)> value;
  };
  static const std::vector<Metric> metrics{
      {"req/s", "throughput_rps", 3, [](const Summary& s) { return s.throughput_rps; }},
      {"s/tok avg", "per_token_latency_mean", 4,
       [](const Summary& s) { return s.per_token_latency_mean; }},
      {"s/tok P90", "per_token_latency_p90", 4,
       [](const Summary& s) { return s.per_token_latency_p90; }},
      {"lat avg(s)", "latency_mean", 3, [](const Summary& s) { return s.latency_mean; }},
      {"lat P90(s)", "latency_p90", 3, [](const Summary& s) { return s.latency_p90; }},
      {"TTFT(s)", "ttft_mean", 3, [](const Summary& s) { return s.ttft_mean; }},
      {"merges", "merges", 1, [](const Summary& s) { return double(s.merges); }},
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
        out << "," << csv_number(mean, 0) << "," << csv_number(ci, 0);
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
      std::string t = std::isnan(mean) ? "-" : fmt::format("{:.{}f}", mean, metrics[j].precision);
      if (!std::isnan(ci)) t += fmt::format(" ±{:.{}f}", ci, metrics[j].precision);
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
