// Helpers shared by the checkpoint tests: fixture paths, temp folders, files from bytes,
// expectations on InputError messages.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/checkpoint/safetensors.hpp"

namespace lorasched::test {

// tests/fixtures/hf-tiny in the source tree.
std::filesystem::path fixture_dir();
// tests/fixtures/hf-tiny/expected.json.
const nlohmann::json& expected();

// A fresh folder under the temp directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& bytes);
std::string read_file(const std::filesystem::path& path);
nlohmann::ordered_json read_json(const std::filesystem::path& path);
void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& j);

// 8-byte little-endian length + header + data.
std::string raw_safetensors(const std::string& header, const std::string& data);

// All tensors of a safetensors file as fp32 TensorToWrite (original dtype kept).
std::vector<checkpoint::TensorToWrite> load_all(const std::filesystem::path& path);

// Runs `fn`, which must throw InputError; checks that its message is one line and contains
// each of `needles`. Returns the message ("" when nothing was thrown).
std::string expect_input_error(const std::function<void()>& fn,
                               const std::vector<std::string>& needles);

}  // namespace lorasched::test
