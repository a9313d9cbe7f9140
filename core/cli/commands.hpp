// The subcommands of `lorasched`, callable from tests as functions returning exit codes.
#pragma once

#include <string>
#include <vector>

namespace lorasched {

extern const char* const kVersionText;  // "lorasched 0.1.0 (git <rev>)"

struct RunOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string output;
  bool quiet = false;
};
struct ValidateOptions {
  std::string file;
  std::vector<std::string> overrides;
};
struct ReportOptions {
  std::string file;
  bool csv = false;
};
struct PluginsOptions {
  std::string describe;
  std::vector<std::string> paths;
};

struct GenerateOptions {
  std::string model;                        // HF model directory
  std::vector<std::string> adapters;        // PEFT adapter directories, paired with prompts
  std::vector<std::string> prompt_ids;      // "1,2,3" per prompt
  int max_new_tokens = 16;
  std::string mode = "unmerged";
  std::string logits_out;
};

int cmd_generate(const GenerateOptions& opts);
int cmd_run(const RunOptions& opts, bool require_sweep);
int cmd_validate(const ValidateOptions& opts);
int cmd_report(const ReportOptions& opts);
int cmd_plugins(const PluginsOptions& opts);

}  // namespace lorasched
