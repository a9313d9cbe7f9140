// Internal to the workload module: readers of the trace files (Azure LLM trace, adapter trace,
// function counts) and the small CSV helpers they share. Every error is an InputError naming
// file:line.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/workload/workload.hpp"

namespace lorasched::workload_detail {

// One row of an Azure LLM inference trace. `time` is in seconds from the first row.
struct LlmTraceRow {
  double time = 0;
  int32_t prompt = 0;  // ContextTokens
  int32_t output = 0;  // GeneratedTokens, as in the file (may be 0)
};

// Reads TIMESTAMP,ContextTokens,GeneratedTokens. Rows must be sorted by TIMESTAMP.
std::vector<LlmTraceRow> read_llm_trace(const std::filesystem::path& path);

// Reads arrival_s,adapter,prompt_tokens,output_tokens; ids are left 0.
std::vector<RequestSpec> read_adapter_trace(const std::filesystem::path& path,
                                            int32_t num_adapters);

// The whole file, or an InputError naming it.
std::string read_text_file(const std::filesystem::path& path, std::string_view what);

// Walks the lines of a text (\n or \r\n), counting them from 1.
class LineReader {
 public:
  explicit LineReader(std::string_view text);
  // The next line without its terminator; false at the end.
  bool next(std::string_view& line);
  int64_t line_number() const { return line_; }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  int64_t line_ = 0;
};

// Splits on ',' (no quoting) and trims blanks around each field.
std::vector<std::string_view> split_csv(std::string_view line);
std::string_view trim(std::string_view s);

// Strict number parsing of a whole field; false when it is not one.
bool parse_int64(std::string_view s, int64_t& out);
bool parse_double(std::string_view s, double& out);

// "path:line"
std::string where(const std::filesystem::path& path, int64_t line);

}  // namespace lorasched::workload_detail
