// Helpers of the hardening tests: a `lorasched` child process that the test can kill at a
// chosen moment (cli_util.hpp's run_process waits for the end), and polling.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_util.hpp"

namespace lorasched::test {

// A child process with stdout and stderr in files (outside its working directory).
class Child {
 public:
  Child(const fs::path& program, const std::vector<std::string>& args, const fs::path& cwd,
        const fs::path& capture_dir) {
    fs::create_directories(capture_dir);
    out_ = capture_dir / "stdout";
    err_ = capture_dir / "stderr";
    pid_ = spawn_process(program, args, cwd, out_.string(), err_.string(),
                         {{"LORASCHED_PLUGIN_PATH", std::nullopt}});
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) kill_now();
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  std::string err() const { return slurp(err_); }
  std::string out() const { return slurp(out_); }
  // True while the process runs (reaps it when it has ended).
  bool running() {
    if (reaped_) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = status;
      return false;
    }
    return r == 0;
  }
  // SIGKILL and reap; returns true when the signal killed it (false: it had ended before).
  bool kill_now() {
    if (reaped_) return false;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    status_ = status;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }
  // Waits for the end; the exit code (-1 when a signal ended it).
  int wait() {
    if (!reaped_) {
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      status_ = status;
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  fs::path out_, err_;
};

// Polls `pred` every millisecond until it holds (true) or `timeout` passes (false).
inline bool wait_until(const std::function<bool()>& pred,
                       std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace lorasched::test
