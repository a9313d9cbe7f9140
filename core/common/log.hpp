// The runtime's diagnostics: warnings about input that loads but that the user should hear of
// (a PEFT setting overridden as PEFT overrides it, a pattern that matches no module). One spdlog
// logger, "lorasched", writing "warning: ..." lines to stderr; `--quiet` silences it. Errors
// are not logged: they are exceptions (core/common/error.hpp) that the CLI prints once.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace lorasched::log {

void warn(std::string_view message);

template <class... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  warn(std::string_view(fmt::format(format, std::forward<Args>(args)...)));
}

// Quiet: warnings are dropped (the CLI's -q/--quiet).
void set_quiet(bool quiet);

// For tests: while alive, warnings are collected here (and still go to stderr unless quiet).
class Capture {
 public:
  Capture();
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  // The messages so far, one per warning, without the "warning: " prefix.
  std::vector<std::string> messages() const;

 private:
  struct Sink;
  Sink* sink_;
};

}  // namespace lorasched::log
