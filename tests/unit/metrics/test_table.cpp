#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/metrics/summary.hpp"
#include "core/metrics/table.hpp"

namespace lorasched {
namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Splits one CSV line (RFC 4180 quoting).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

std::vector<std::pair<std::string, Summary>> runs() {
  Summary a;
  a.requests = 100;
  a.finished = 98;
  a.throughput_rps = 1.0 / 3.0;
  a.latency_mean = 1.25;
  a.merges = 7;
  a.window_requests = 96;
  a.window_throughput_rps = 0.5;
  a.slo_attainment_dlora = 0.875;
  a.slo_per_token_s = 0.2;
  a.slo_attainment = 0.25;
  Summary b;  // no samples: NaN figures
  return {{"scheduler.plugin=dlora workload.rate=2", a}, {"odd, \"label\"", b}};
}

TEST(Table, CsvParses) {
  std::ostringstream out;
  print_summary_table(out, runs(), true);
  auto ls = lines(out.str());
  ASSERT_EQ(ls.size(), 3u);
  auto header = csv_fields(ls[0]);
  // "run", then every summary attribute in the file's order.
  ASSERT_EQ(header.size(), summary_fields().size() + 1);
  EXPECT_EQ(header[0], "run");
  auto col = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << name;
    return static_cast<size_t>(it - header.begin());
  };
  for (size_t i = 1; i < ls.size(); ++i) EXPECT_EQ(csv_fields(ls[i]).size(), header.size());
  auto row = csv_fields(ls[1]);
  EXPECT_EQ(row[0], "scheduler.plugin=dlora workload.rate=2");
  EXPECT_EQ(row[col("requests")], "100");
  EXPECT_EQ(row[col("finished")], "98");
  EXPECT_EQ(std::stod(row[col("throughput_rps")]), 1.0 / 3.0);  // full precision
  EXPECT_EQ(row[col("ignored")], "0");
  EXPECT_EQ(row[col("latency_mean")], "1.25");
  EXPECT_EQ(row[col("merges")], "7");
  EXPECT_EQ(std::stod(row[col("slo_attainment_dlora")]), 0.875);
  EXPECT_EQ(row[col("window_requests")], "96");
  auto odd = csv_fields(ls[2]);
  EXPECT_EQ(odd[0], "odd, \"label\"");
  EXPECT_EQ(odd[col("latency_mean")], "nan");
}

TEST(Table, HumanAligned) {
  std::ostringstream out;
  print_summary_table(out, runs(), false);
  auto ls = lines(out.str());
  ASSERT_EQ(ls.size(), 3u);
  EXPECT_EQ(ls[0].substr(0, 3), "run");
  EXPECT_NE(ls[0].find("req/s"), std::string::npos);
  EXPECT_NE(ls[0].find("P99(s)"), std::string::npos);
  // Every line has the same width: columns are aligned.
  EXPECT_EQ(ls[1].size(), ls[0].size());
  EXPECT_EQ(ls[2].size(), ls[0].size());
  // req/s is the window's throughput; SLO attainment as a percentage, the own SLO's header
  // names its value only when every run has the same.
  EXPECT_NE(ls[1].find("0.500"), std::string::npos);
  EXPECT_EQ(ls[1].find("0.333"), std::string::npos);
  EXPECT_NE(ls[1].find("87.5"), std::string::npos);
  EXPECT_NE(ls[1].find("25.0"), std::string::npos);
  EXPECT_NE(ls[0].find("%SLO 0.5"), std::string::npos);
  EXPECT_NE(ls[0].find("%SLO own"), std::string::npos);  // run b has another (NaN) SLO
  EXPECT_NE(ls[1].find("1.250"), std::string::npos);
  EXPECT_NE(ls[2].find(" -"), std::string::npos);  // NaN shows as "-"
}

TEST(Table, NoRuns) {
  std::ostringstream csv, human;
  print_summary_table(csv, {}, true);
  print_summary_table(human, {}, false);
  EXPECT_EQ(lines(csv.str()).size(), 1u);
  EXPECT_EQ(lines(human.str()).size(), 1u);
}

}  // namespace
}  // namespace lorasched
