// Shared by the fuzz harnesses (tests/fuzz): a scratch directory per process, files from
// bytes, and the rule every harness applies to what the code under test throws:
//  - lorasched::InputError / PluginError (bad input, exit codes 2 and 3): expected;
//  - lorasched::InternalError ("a bug in lorasched, not in the input", exit 1): a finding;
//  - anything else (std::bad_alloc, std::out_of_range, a crash, a sanitizer report, a leak):
//    a finding. Findings abort, so libFuzzer (and the corpus replay under ctest) report them.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/common/error.hpp"

namespace lorasched::fuzz {

namespace fs = std::filesystem;

// A directory of this process (removed at exit): libFuzzer's -fork / -jobs workers each get
// their own.
inline const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    fs::path d = fs::path(tmp && *tmp ? tmp : "/tmp") /
                 ("lorasched-fuzz-" + std::to_string(static_cast<long>(::getpid())));
    std::error_code ec;
    fs::remove_all(d, ec);
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec2;
      fs::remove_all(scratch_dir(), ec2);
    });
    return d;
  }();
  return dir;
}

inline void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// What the last run_one did with its input: accepted, or refused with this message. The corpus
// replay (replay_main.cpp) checks it against the seed's name: valid-* must stay accepted,
// invalid-* must stay refused.
struct Outcome {
  bool accepted = false;
  std::string refusal;
};
inline Outcome& last_outcome() {
  static Outcome o;
  return o;
}

// Runs `f` on one input; expected errors are swallowed, findings abort with a message.
template <class F>
void run_one(const char* target, F&& f) {
  last_outcome() = {};
  try {
    f();
    last_outcome().accepted = true;
  } catch (const InternalError& e) {
    std::fprintf(stderr, "%s: InternalError on input (a bug, not bad input): %s\n", target,
                 e.what());
    std::abort();
  } catch (const Error& e) {
    // InputError (exit 2) or PluginError (exit 3): the input was refused with a message.
    last_outcome().refusal = e.what();
  }
  // Any other exception leaves LLVMFuzzerTestOneInput: std::terminate, a finding.
}

// Aborts with a message: a silent wrong result the harness caught.
[[noreturn]] inline void finding(const char* target, const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", target, what.c_str());
  std::abort();
}

}  // namespace lorasched::fuzz
