// Fuzz target: experiment TOML files (core/config). The bytes are the file; leading lines
// "#set dotted.key=value" (TOML comments) are also passed as --set overrides, so the
// override path is fuzzed too. parse_experiments must refuse bad input with an InputError,
// never crash or throw anything else.
#include <string>
#include <vector>

#include "core/config/experiment.hpp"
#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lorasched;
  const std::string text(fuzz::as_text(data, size));
  std::vector<std::string> overrides;
  size_t pos = 0;
  while (text.compare(pos, 5, "#set ") == 0 && overrides.size() < 4) {
    const size_t end = text.find('\n', pos);
    overrides.push_back(text.substr(pos + 5, end == std::string::npos ? end : end - pos - 5));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  fuzz::run_one("fuzz_experiment", [&] {
    const auto exps = parse_experiments(text, "fuzz.toml", overrides);
    if (exps.empty()) fuzz::finding("fuzz_experiment", "parse_experiments returned no run");
  });
  return 0;
}
