// The error type of the runtime: one line of text naming the place (file:line:col, tensor,
// plugin path) and the exit code the CLI returns for it.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace lorasched {

// Exit codes of `lorasched`: 0 ok, 1 runtime failure, 2 bad input (experiment file, trace,
// model or adapter file), 3 plugin failure (load, version, creation, invalid decision).
enum class ExitCode : int { ok = 0, runtime = 1, input = 2, plugin = 3 };

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad user input: config, trace, model/adapter files. Exit code 2.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(ExitCode::input, what) {}
};

// A plugin could not be loaded, was built for another API version, or misbehaved. Exit 3.
class PluginError : public Error {
 public:
  explicit PluginError(const std::string& what) : Error(ExitCode::plugin, what) {}
};

// A broken internal invariant: a bug in lorasched, not in the input. Exit 1.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& what) : Error(ExitCode::runtime, what) {}
};

}  // namespace lorasched

// CHECK(cond, fmt, args...): guard an assumption at a boundary; throws InternalError with the
// message, the condition and the source location.
#define LORASCHED_CHECK(cond, ...)                                                                \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      throw ::lorasched::InternalError(::fmt::format(                                             \
          "{}:{}: check failed: {}: {}", __FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__))); \
  } while (0)
