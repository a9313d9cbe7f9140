#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

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
  Summary b;  // no samples: NaN figures
  return {{"scheduler.plugin=dlora workload.rate=2", a}, {"odd, \"label\"", b}};
}

TEST(Table, CsvParses) {
  std::ostringstream out;
  print_summary_table(out, runs(), true);
  auto ls = lines(out.str());
  ASSERT_EQ(ls.size(), 3u);
  auto header = csv_fields(ls[0]);
  EXPECT_EQ(header.size(), 17u);
  EXPECT_EQ(header[0], "run");
  EXPECT_EQ(header[3], "throughput_rps");
  for (size_t i = 1; i < ls.size(); ++i) EXPECT_EQ(csv_fields(ls[i]).size(), header.size());
  auto row = csv_fields(ls[1]);
  EXPECT_EQ(row[0], "scheduler.plugin=dlora workload.rate=2");
  EXPECT_EQ(row[1], "100");
  EXPECT_EQ(row[2], "98");
  EXPECT_EQ(std::stod(row[3]), 1.0 / 3.0);  // full precision
  EXPECT_EQ(row[4], "0");
  EXPECT_EQ(row[5], "1.25");
  EXPECT_EQ(row[13], "7");
  auto odd = csv_fields(ls[2]);
  EXPECT_EQ(odd[0], "odd, \"label\"");
  EXPECT_EQ(odd[5], "nan");
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
  EXPECT_NE(ls[1].find("0.333"), std::string::npos);
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
