// Helpers for tests that act as a user does: run `lorasched` (or python3) as a subprocess in
// a scratch directory, capture its exit code, stdout and stderr, and look at the files it
// left. Shared by tests/cli, tests/unit/plugin and tests/integration.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lorasched::test {

namespace fs = std::filesystem;

inline fs::path lorasched_binary() { return fs::path(LORASCHED_BINARY_DIR) / "lorasched"; }
inline fs::path source_dir() { return fs::path(LORASCHED_SOURCE_DIR); }

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_text(const fs::path& path, const std::string& text) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// A fresh directory per test (ctest runs each test in its own process, maybe in parallel),
// removed when the object goes out of scope unless LORASCHED_KEEP_TEST_DIRS is set.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "test";
    for (char& c : name)
      if (c == '/' || c == ' ') c = '_';
    path_ = fs::path(testing::TempDir()) / ("lorasched_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!std::getenv("LORASCHED_KEEP_TEST_DIRS")) fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  fs::path path_;
};

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal (see signal)
  int signal = 0;
  std::string out, err;
  std::string describe() const {
    return "exit " + std::to_string(exit_code) +
           (signal ? " signal " + std::to_string(signal) : "") + "\n--- stdout ---\n" + out +
           "--- stderr ---\n" + err;
  }
};

using EnvChanges = std::vector<std::pair<std::string, std::optional<std::string>>>;

// Starts `program args...` in `cwd` with stdout and stderr going to the files `out_path` and
// `err_path` and the environment changed by `env` (value nullopt: unset); returns the child's
// pid (-1 when fork failed) without waiting for it.
inline pid_t spawn_process(const fs::path& program, const std::vector<std::string>& args,
                           const fs::path& cwd, const std::string& out_path,
                           const std::string& err_path, const EnvChanges& env = {}) {
  std::vector<std::string> argv_s;
  argv_s.push_back(program.string());
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(126);
    ::dup2(o, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    ::close(o);
    ::close(e);
    for (const auto& [k, v] : env) {
      if (v)
        ::setenv(k.c_str(), v->c_str(), 1);
      else
        ::unsetenv(k.c_str());
    }
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "exec %s failed: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

// Runs `program args...` with the working directory `cwd`, extra environment variables
// `env` (value nullopt: unset), stdout and stderr captured through files in `cwd`'s parent
// scratch area (never in `cwd`, so file checks in `cwd` stay exact).
inline ProcessResult run_process(const fs::path& program, const std::vector<std::string>& args,
                                 const fs::path& cwd, const EnvChanges& env = {}) {
  static int counter = 0;
  const fs::path capture =
      fs::path(testing::TempDir()) /
      ("lorasched_capture_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(capture);
  const std::string out_path = (capture / "stdout").string();
  const std::string err_path = (capture / "stderr").string();

  const pid_t pid = spawn_process(program, args, cwd, out_path, err_path, env);
  ProcessResult r;
  if (pid < 0) {
    r.err = std::string("fork failed: ") + std::strerror(errno);
    return r;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  std::error_code ec;
  fs::remove_all(capture, ec);
  return r;
}

inline ProcessResult run_lorasched(
    const std::vector<std::string>& args, const fs::path& cwd,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& env = {}) {
  return run_process(lorasched_binary(), args, cwd, env);
}

// Every file under `dir` whose name contains ".h5" (final results and .partial files).
inline std::vector<fs::path> results_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file() && it->path().filename().string().find(".h5") != std::string::npos)
      out.push_back(it->path());
  }
  return out;
}

// A string attribute of the root group of an HDF5 file (status, error, format), read with
// the HDF5 C++ API directly (the metrics reader refuses .partial files by design).
inline std::optional<std::string> root_string_attr(const fs::path& file, const std::string& name) {
  try {
    H5::Exception::dontPrint();
    H5::H5File f(file.string(), H5F_ACC_RDONLY);
    H5::Group root = f.openGroup("/");
    if (!root.attrExists(name)) return std::nullopt;
    H5::Attribute a = root.openAttribute(name);
    std::string value;
    a.read(a.getStrType(), value);
    return value;
  } catch (const H5::Exception&) {
    return std::nullopt;
  }
}

// True when python3 can import every module listed (e.g. "h5py", "matplotlib").
inline bool python_has(const std::vector<std::string>& modules) {
  if (!fs::exists("/usr/bin/python3")) return false;
  std::string code = "import ";
  for (size_t i = 0; i < modules.size(); ++i) code += (i ? ", " : "") + modules[i];
  const auto r = run_process("/usr/bin/python3", {"-c", code}, fs::temp_directory_path());
  return r.exit_code == 0;
}

}  // namespace lorasched::test
