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
