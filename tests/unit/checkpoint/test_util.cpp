#include "tests/unit/checkpoint/test_util.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "core/common/error.hpp"

namespace lorasched::test {

std::filesystem::path fixture_dir() {
  return std::filesystem::path(LORASCHED_SOURCE_DIR) / "tests" / "fixtures" / "hf-tiny";
}

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream in(fixture_dir() / "expected.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

TempDir::TempDir() {
  // Many small files are written and rewritten: prefer memory (/dev/shm) unless TMPDIR is set.
  std::filesystem::path base = std::filesystem::temp_directory_path();
  std::error_code ec;
  if (std::getenv("TMPDIR") == nullptr && std::filesystem::is_directory("/dev/shm", ec) &&
      ::access("/dev/shm", W_OK) == 0)
    base = "/dev/shm";
  std::string tmpl = (base / "lorasched-ckpt-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::ordered_json read_json(const std::filesystem::path& path) {
  return nlohmann::ordered_json::parse(read_file(path));
}

void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& j) {
  write_file(path, j.dump(2));
}

std::string raw_safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::vector<checkpoint::TensorToWrite> load_all(const std::filesystem::path& path) {
  const auto f = checkpoint::SafetensorsFile::open(path);
  std::vector<checkpoint::TensorToWrite> out;
  for (const auto& t : f.tensors()) out.push_back({t.name, t.shape, f.read_f32(t), t.dtype});
  return out;
}

std::string expect_input_error(const std::function<void()>& fn,
                               const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    if (std::getenv("LORASCHED_PRINT_ERRORS") != nullptr)
      std::fprintf(stderr, "  | %s\n", msg.c_str());
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    EXPECT_EQ(e.code(), ExitCode::input);
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "message lacks \"" << n << "\": " << msg;
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected InputError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected InputError, nothing was thrown";
  return "";
}

}  // namespace lorasched::test
