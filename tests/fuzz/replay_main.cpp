// The main() of a harness built without libFuzzer (gcc builds, and the *_replay executables
// of the fuzz build): runs every file given, or found under a directory given, through
// LLVMFuzzerTestOneInput once, in name order. ctest replays the seed corpus this way.
// Besides crashes (which abort), a seed's name states what the parser must do with it, so a
// parser that starts refusing good input (or accepting bad input) fails the replay too:
//   valid-*    must be accepted;
//   invalid-*  must be refused with an InputError or PluginError (a one-line message);
//   other names (regress-*: inputs that once crashed, libFuzzer's finds): must not crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path p = argv[i];
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "%s: no such file or directory\n", argv[i]);
      return 1;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIR... (no input found)\n", argv[0]);
    return 1;
  }
  size_t wrong = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::printf("replay %s (%zu bytes)\n", f.c_str(), bytes.size());
    std::fflush(stdout);
    lorasched::fuzz::last_outcome() = {};
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    const std::string name = f.filename().string();
    const auto& outcome = lorasched::fuzz::last_outcome();
    if (outcome.accepted)
      std::printf("  accepted\n");
    else
      std::printf("  refused: %s\n", outcome.refusal.c_str());
    if (name.starts_with("valid-") && !outcome.accepted) {
      std::fprintf(stderr, "%s: a valid seed was refused: %s\n", f.c_str(),
                   outcome.refusal.c_str());
      ++wrong;
    } else if (name.starts_with("invalid-") && outcome.accepted) {
      std::fprintf(stderr, "%s: an invalid seed was accepted\n", f.c_str());
      ++wrong;
    }
  }
  std::printf("replayed %zu inputs\n", files.size());
  if (wrong > 0) {
    std::fprintf(stderr, "%zu seeds were not handled as their names say\n", wrong);
    return 1;
  }
  return 0;
}
