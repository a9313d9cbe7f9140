// Readers of the workload's trace files. See docs/workloads.md for the formats.
#include "core/workload/trace_io.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "core/common/error.hpp"

namespace lorasched::workload_detail {

namespace fs = std::filesystem;

// ---- small helpers ----------------------------------------------------------------------------

std::string where(const fs::path& path, int64_t line) {
  return fmt::format("{}:{}", path.string(), line);
}

std::string read_text_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw InputError(fmt::format("{} '{}' does not exist", what, path.string()));
  if (fs::is_directory(path, ec))
    throw InputError(fmt::format("{} '{}' is a directory, not a file", what, path.string()));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{} '{}' cannot be opened", what, path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("{} '{}' cannot be read", what, path.string()));
  std::string text = ss.str();
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);  // UTF-8 byte order mark
  return text;
}

LineReader::LineReader(std::string_view text) : text_(text) {}

bool LineReader::next(std::string_view& line) {
  if (pos_ >= text_.size()) return false;
  size_t end = text_.find('\n', pos_);
  if (end == std::string_view::npos) end = text_.size();
  line = text_.substr(pos_, end - pos_);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  pos_ = end + 1;
  ++line_;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_csv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      out.push_back(trim(line.substr(start)));
      return out;
    }
    out.push_back(trim(line.substr(start, comma - start)));
    start = comma + 1;
  }
}

bool parse_int64(std::string_view s, int64_t& out) {
  if (s.starts_with('+')) s.remove_prefix(1);
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool parse_double(std::string_view s, double& out) {
  if (s.starts_with('+')) s.remove_prefix(1);
  if (s.empty()) return false;
  const auto [ptr, ec] =
      std::from_chars(s.data(), s.data() + s.size(), out, std::chars_format::general);
  return ec == std::errc() && ptr == s.data() + s.size();
}

namespace {

bool is_blank(std::string_view line) { return trim(line).empty(); }

// A token count: a non-negative integer that fits int32.
int32_t parse_tokens(std::string_view field, std::string_view column, const fs::path& path,
                     int64_t line) {
  int64_t v = 0;
  if (!parse_int64(field, v) || v < 0 || v > std::numeric_limits<int32_t>::max())
    throw InputError(
        fmt::format("{}: {} '{}' is not a non-negative integer", where(path, line), column, field));
  return static_cast<int32_t>(v);
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int days_in_month(int64_t y, int64_t m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// `YYYY-MM-DD HH:MM:SS[.f{1,7}]` (or a 'T' between date and time) in 100 ns ticks since the
// epoch; false when malformed.
bool parse_timestamp(std::string_view s, int64_t& ticks) {
  auto digits = [&](size_t pos, size_t n, int64_t& v) {
    if (pos + n > s.size()) return false;
    v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    return true;
  };
  int64_t y, mo, d, h, mi, sec;
  if (s.size() < 19 || !digits(0, 4, y) || s[4] != '-' || !digits(5, 2, mo) || s[7] != '-' ||
      !digits(8, 2, d) || (s[10] != ' ' && s[10] != 'T') || !digits(11, 2, h) || s[13] != ':' ||
      !digits(14, 2, mi) || s[16] != ':' || !digits(17, 2, sec))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
    return false;
  int64_t frac = 0;
  if (s.size() > 19) {
    const size_t n = s.size() - 20;
    if (s[19] != '.' || n < 1 || n > 7 || !digits(20, n, frac)) return false;
    for (size_t i = n; i < 7; ++i) frac *= 10;
  }
  const int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
  ticks = secs * 10'000'000 + frac;
  return true;
}

}  // namespace

// ---- Azure LLM inference trace ----------------------------------------------------------------

std::vector<LlmTraceRow> read_llm_trace(const fs::path& path) {
  const std::string text = read_text_file(path, "trace file");
  LineReader lines(text);
  std::string_view line;
  if (!lines.next(line) || is_blank(line))
    throw InputError(
        fmt::format("{}: empty file, expected the header "
                    "TIMESTAMP,ContextTokens,GeneratedTokens",
                    where(path, 1)));
  {
    const auto h = split_csv(line);
    if (h.size() != 3 || h[0] != "TIMESTAMP" || h[1] != "ContextTokens" ||
        h[2] != "GeneratedTokens")
      throw InputError(
          fmt::format("{}: header is '{}', expected "
                      "TIMESTAMP,ContextTokens,GeneratedTokens",
                      where(path, 1), trim(line)));
  }
  std::vector<LlmTraceRow> rows;
  int64_t first = 0, prev = 0;
  while (lines.next(line)) {
    if (is_blank(line)) continue;
    const int64_t ln = lines.line_number();
    const auto f = split_csv(line);
    if (f.size() != 3)
      throw InputError(fmt::format("{}: expected 3 fields, found {}", where(path, ln), f.size()));
    int64_t ticks = 0;
    if (!parse_timestamp(f[0], ticks))
      throw InputError(fmt::format("{}: TIMESTAMP '{}' is not 'YYYY-MM-DD HH:MM:SS[.fffffff]'",
                                   where(path, ln), f[0]));
    if (rows.empty()) {
      first = ticks;
    } else if (ticks < prev) {
      throw InputError(
          fmt::format("{}: TIMESTAMP '{}' is earlier than the previous row's "
                      "(rows must be sorted by time)",
                      where(path, ln), f[0]));
    }
    prev = ticks;
    LlmTraceRow r;
    r.time = static_cast<double>(ticks - first) / 1e7;
    r.prompt = parse_tokens(f[1], "ContextTokens", path, ln);
    r.output = parse_tokens(f[2], "GeneratedTokens", path, ln);
    rows.push_back(r);
  }
  if (rows.empty()) throw InputError(fmt::format("trace '{}' has no requests", path.string()));
  return rows;
}

// ---- adapter trace ----------------------------------------------------------------------------

std::vector<RequestSpec> read_adapter_trace(const fs::path& path, int32_t num_adapters) {
  const std::string text = read_text_file(path, "adapter trace file");
  LineReader lines(text);
  std::string_view line;
  constexpr std::string_view kHeader = "arrival_s,adapter,prompt_tokens,output_tokens";
  if (!lines.next(line) || trim(line) != kHeader)
    throw InputError(
        fmt::format("{}: header is '{}', expected {}", where(path, 1), trim(line), kHeader));
  std::vector<RequestSpec> reqs;
  while (lines.next(line)) {
    if (is_blank(line)) continue;
    const int64_t ln = lines.line_number();
    const auto f = split_csv(line);
    if (f.size() != 4)
      throw InputError(fmt::format("{}: expected 4 fields, found {}", where(path, ln), f.size()));
    RequestSpec r;
    if (!parse_double(f[0], r.arrival) || !std::isfinite(r.arrival) || r.arrival < 0)
      throw InputError(
          fmt::format("{}: arrival_s '{}' is not a finite number >= 0", where(path, ln), f[0]));
    if (!reqs.empty() && r.arrival < reqs.back().arrival)
      throw InputError(
          fmt::format("{}: arrival_s {} is earlier than the previous row's {} "
                      "(arrivals must be non-decreasing)",
                      where(path, ln), f[0], reqs.back().arrival));
    int64_t a = 0;
    if (!parse_int64(f[1], a) || a < 0 || a >= num_adapters)
      throw InputError(fmt::format("{}: adapter '{}' is not an adapter id in [0, {})",
                                   where(path, ln), f[1], num_adapters));
    r.adapter = static_cast<int32_t>(a);
    r.prompt_tokens = parse_tokens(f[2], "prompt_tokens", path, ln);
    r.output_tokens = parse_tokens(f[3], "output_tokens", path, ln);
    if (r.prompt_tokens < 1)
      throw InputError(fmt::format("{}: prompt_tokens must be >= 1", where(path, ln)));
    if (r.output_tokens < 1)
      throw InputError(fmt::format("{}: output_tokens must be >= 1", where(path, ln)));
    reqs.push_back(r);
  }
  if (reqs.empty()) throw InputError(fmt::format("trace '{}' has no requests", path.string()));
  return reqs;
}

}  // namespace lorasched::workload_detail

namespace lorasched {

using workload_detail::LineReader;
using workload_detail::where;

// ---- function counts (artifact) ---------------------------------------------------------------

FunctionCounts read_function_counts(const std::filesystem::path& path) {
  const std::string text = workload_detail::read_text_file(path, "function counts file");
  LineReader lines(text);
  std::string_view line;
  if (!lines.next(line))
    throw InputError(
        fmt::format("{}: empty file, expected the header function,bin0,bin1,...", where(path, 1)));
  const auto h = workload_detail::split_csv(line);
  bool ok = h.size() >= 2 && h[0] == "function";
  for (size_t i = 1; ok && i < h.size(); ++i) ok = h[i] == fmt::format("bin{}", i - 1);
  if (!ok)
    throw InputError(fmt::format("{}: header is '{}', expected function,bin0,bin1,...",
                                 where(path, 1), workload_detail::trim(line)));
  const size_t bins = h.size() - 1;
  FunctionCounts counts;
  double total = 0;
  while (lines.next(line)) {
    if (workload_detail::trim(line).empty()) continue;
    const int64_t ln = lines.line_number();
    const auto f = workload_detail::split_csv(line);
    if (f.size() != bins + 1)
      throw InputError(
          fmt::format("{}: expected {} fields, found {}", where(path, ln), bins + 1, f.size()));
    if (f[0].empty()) throw InputError(fmt::format("{}: empty function name", where(path, ln)));
    std::vector<double> row(bins);
    for (size_t b = 0; b < bins; ++b) {
      if (!workload_detail::parse_double(f[b + 1], row[b]) || !std::isfinite(row[b]) || row[b] < 0)
        throw InputError(fmt::format("{}: bin{} count '{}' is not a finite number >= 0",
                                     where(path, ln), b, f[b + 1]));
      total += row[b];
    }
    counts.push_back(std::move(row));
  }
  if (counts.empty())
    throw InputError(fmt::format("function counts '{}' has no functions", path.string()));
  if (!(total > 0))
    throw InputError(fmt::format("function counts '{}' has no invocations", path.string()));
  return counts;
}

}  // namespace lorasched
