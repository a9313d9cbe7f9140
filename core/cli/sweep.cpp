#include "core/cli/sweep.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "core/cli/commands.hpp"
#include "core/common/error.hpp"

namespace fs = std::filesystem;

namespace lorasched {

Shard parse_shard(const std::string& text) {
  if (text.empty()) return {};
  const auto bad = [&] {
    return InputError(
        fmt::format("--shard '{}': expected I/N with 0 <= I < N, e.g. --shard 0/4", text));
  };
  const auto slash = text.find('/');
  if (slash == std::string::npos) throw bad();
  Shard s;
  try {
    size_t used = 0;
    s.index = std::stoi(text.substr(0, slash), &used);
    if (used != slash) throw bad();
    const std::string n = text.substr(slash + 1);
    s.count = std::stoi(n, &used);
    if (used != n.size()) throw bad();
  } catch (const std::logic_error&) {
    throw bad();
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count) throw bad();
  return s;
}

std::vector<size_t> shard_points(size_t points, Shard shard) {
  std::vector<size_t> out;
  for (size_t i = static_cast<size_t>(shard.index); i < points;
       i += static_cast<size_t>(shard.count))
    out.push_back(i);
  return out;
}

fs::path shard_output(const fs::path& output, Shard shard) {
  fs::path p = output;
  p.replace_filename(fmt::format("{}.shard-{}-of-{}{}", output.stem().string(), shard.index,
                                 shard.count, output.extension().string()));
  return p;
}

std::string point_group(size_t index) { return fmt::format("{:03d}", index); }

std::string point_label(const Experiment& e) { return e.label.empty() ? e.run.name : e.label; }

FileProvenance make_provenance(const std::vector<Experiment>& exps,
                               const std::vector<std::string>& overrides,
                               const std::string& shard) {
  FileProvenance p;
  p.experiment_file_toml = exps.empty() ? std::string() : exps.front().file_text;
  p.overrides = fmt::format("{}", fmt::join(overrides, "\n"));
  p.build = kVersionText;
  p.points = static_cast<int64_t>(exps.size());
  p.shard = shard;
  return p;
}

std::string provenance_mismatch(const FileProvenance& a, const FileProvenance& b) {
  if (a.experiment_file_toml != b.experiment_file_toml) return "the experiment files differ";
  if (a.overrides != b.overrides)
    return fmt::format("the --set overrides differ ('{}' and '{}')", a.overrides, b.overrides);
  if (a.build != b.build) return fmt::format("built by '{}' and '{}'", a.build, b.build);
  if (a.points != b.points) return fmt::format("sweeps of {} and {} points", a.points, b.points);
  return "";
}

void write_merged(const fs::path& output, const FileProvenance& provenance,
                  const std::vector<std::pair<std::string, fs::path>>& runs) {
  ResultsWriter writer(output);
  try {
    writer.set_provenance(provenance);
    // One copy per source file and its groups, in the given (group) order.
    size_t i = 0;
    while (i < runs.size()) {
      std::vector<std::string> groups{runs[i].first};
      size_t j = i + 1;
      while (j < runs.size() && runs[j].second == runs[i].second) groups.push_back(runs[j++].first);
      writer.copy_runs(runs[i].second, groups);
      i = j;
    }
  } catch (const std::exception& err) {
    writer.fail(err.what());
    throw;
  }
  writer.commit();
}

namespace {

// The signal that asked the run to stop (0: none). Set by the handler, read by the loop.
std::atomic<int> g_stop{0};
void on_stop_signal(int sig) { g_stop.store(sig); }

class SignalGuard {
 public:
  SignalGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &old_[i]);
    // A worker that dies must not kill this process by SIGPIPE on its progress pipe.
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe_);
  }
  ~SignalGuard() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
    sigaction(SIGPIPE, &old_pipe_, nullptr);
  }

 private:
  static constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> old_{};
  struct sigaction old_pipe_ {};
};

std::string self_exe() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(ExitCode::runtime, "cannot find this program's path (/proc/self/exe)");
  return p.string();
}

// A worker process: `run FILE --worker -o PARTS`, which reads point numbers on its stdin,
// runs each into PARTS/<group>.h5 and answers "@done K" on its stdout (with "@progress"
// lines before). It stays for the next point: starting a process and reading the
// experiment cost as much as a short point.
struct Worker {
  pid_t pid = -1;
  int in = -1;   // its stdin: point numbers
  int out = -1;  // its stdout: progress and done lines
  bool busy = false;
  size_t point = 0;
  std::string buffer;
  int pct = 0;
  std::chrono::steady_clock::time_point started;
};

// The header of a complete results file made from the same experiment, or nothing.
std::optional<ResultsHeader> reusable(const fs::path& path, const FileProvenance& want) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  try {
    ResultsHeader h = read_results_header(path);
    if (!h.provenance || !provenance_mismatch(*h.provenance, want).empty()) return std::nullopt;
    return h;
  } catch (const Error&) {
    return std::nullopt;  // incomplete, failed or foreign: run the point again
  }
}

class Display {
 public:
  Display(bool quiet, size_t total)
      : quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0), total_(total) {}
  void started(const std::string& label) {
    if (!quiet_ && !tty_) fmt::print(stderr, "[{}/{}] {}: started\n", done_ + 1, total_, label);
  }
  void finished(const std::string& label, double wall) {
    ++done_;
    if (quiet_) return;
    if (tty_) fmt::print(stderr, "\r\033[K");
    fmt::print(stderr, "[{}/{}] {}: done in {:.1f}s\n", done_, total_, label, wall);
  }
  // The one line of a terminal: points done, then each running point's progress.
  void running(const std::vector<std::pair<std::string, int>>& points) {
    if (quiet_ || !tty_) return;
    std::string line = fmt::format("[{}/{} done]", done_, total_);
    for (const auto& [label, pct] : points) line += fmt::format("  {} {}%", label, pct);
    if (line.size() > 150) line = line.substr(0, 147) + "...";
    fmt::print(stderr, "\r\033[K{}", line);
  }
  void clear() {
    if (!quiet_ && tty_) fmt::print(stderr, "\r\033[K");
  }

 private:
  bool quiet_, tty_;
  size_t total_, done_ = 0;
};

}  // namespace

void run_parallel(const ParallelRun& run) {
  const auto& exps = *run.exps;
  const fs::path parts = fs::path(run.output.string() + ".parts");
  auto part_of = [&](size_t p) { return parts / (point_group(p) + ".h5"); };

  // Where each point's run comes from: a reused file, or the part its worker writes.
  std::map<size_t, fs::path> source;
  if (run.resume) {
    if (auto h = reusable(run.output, run.provenance)) {
      std::set<std::string> groups;
      for (const auto& [g, label] : h->runs) groups.insert(g);
      for (size_t p : run.points)
        if (groups.count(point_group(p))) source[p] = run.output;
    }
    for (size_t p : run.points)
      if (!source.count(p)) {
        if (auto h = reusable(part_of(p), run.provenance);
            h && h->runs.size() == 1 && h->runs.front().first == point_group(p))
          source[p] = part_of(p);
      }
  }
  std::vector<size_t> todo;
  for (size_t p : run.points)
    if (!source.count(p)) todo.push_back(p);
  if (!run.quiet && run.resume)
    fmt::print(stderr, "--resume: {} of {} points done before, {} to run\n",
               run.points.size() - todo.size(), run.points.size(), todo.size());

  std::error_code ec;
  fs::create_directories(parts, ec);
  if (ec)
    throw Error(ExitCode::runtime,
                fmt::format("cannot create {}: {}", parts.string(), ec.message()));

  const std::string exe = self_exe();
  const pid_t parent = getpid();
  SignalGuard guard;
  g_stop.store(0);
  Display display(run.quiet, todo.size());
  std::vector<Worker> running;
  size_t next = 0;
  int failed_code = 0;
  std::string failed_what;

  auto spawn = [&] {
    int out[2], in[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0)
      throw Error(ExitCode::runtime, fmt::format("pipe: {}", std::strerror(errno)));
    std::vector<std::string> args{exe, "run", run.file};
    for (const auto& o : run.overrides) {
      args.emplace_back("--set");
      args.push_back(o);
    }
    args.insert(args.end(), {"--worker", "-o", parts.string()});
    if (run.quiet) args.emplace_back("-q");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) throw Error(ExitCode::runtime, fmt::format("fork: {}", std::strerror(errno)));
    if (pid == 0) {
      // A worker dies with this process, even when it is killed by SIGKILL.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      dup2(out[1], STDOUT_FILENO);
      dup2(in[0], STDIN_FILENO);
      execv(exe.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    close(in[0]);
    Worker w;
    w.pid = pid;
    w.in = in[1];
    w.out = out[0];
    running.push_back(std::move(w));
  };

  auto assign = [&](Worker& w, size_t p) {
    const std::string line = fmt::format("{}\n", p);
    if (write(w.in, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return false;
    w.busy = true;
    w.point = p;
    w.pct = 0;
    w.started = std::chrono::steady_clock::now();
    display.started(point_label(exps[p]));
    return true;
  };

  auto finished = [&](Worker& w) {
    w.busy = false;
    source[w.point] = part_of(w.point);
    display.finished(
        point_label(exps[w.point]),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - w.started).count());
  };

  // Reads what a worker wrote: "@progress DONE TOTAL T" and "@done K" lines; anything else
  // on its stdout is passed on. `wait`: until the end of its output (it has ended).
  auto drain = [&](Worker& w, bool wait) {
    char buf[4096];
    while (true) {
      pollfd pfd{w.out, POLLIN, 0};
      if (!wait && poll(&pfd, 1, 0) <= 0) break;
      const ssize_t n = read(w.out, buf, sizeof(buf));
      if (n <= 0) break;
      w.buffer.append(buf, static_cast<size_t>(n));
    }
    size_t nl;
    while ((nl = w.buffer.find('\n')) != std::string::npos) {
      const std::string line = w.buffer.substr(0, nl);
      w.buffer.erase(0, nl + 1);
      long long done = 0, total = 0;
      if (std::sscanf(line.c_str(), "@progress %lld %lld", &done, &total) == 2)
        w.pct = total ? static_cast<int>(100 * done / total) : 100;
      else if (line.rfind("@done ", 0) == 0 && w.busy)
        finished(w);
      else if (!run.quiet)
        fmt::print("{}\n", line);
    }
  };

  // A worker ended: a failure when it ended in a point or not cleanly.
  auto reap = [&](Worker& w, int status) {
    drain(w, /*wait=*/true);  // its last "@done" may have come after the poll
    close(w.out);
    if (w.in >= 0) close(w.in);
    const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if ((clean && !w.busy) || g_stop.load() != 0 || failed_code != 0) return;
    const int code = WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1;
    const std::string what =
        w.busy ? fmt::format("sweep point {} ({})", w.point, point_label(exps[w.point]))
               : std::string("a worker");
    failed_code = code;
    failed_what = WIFSIGNALED(status)
                      ? fmt::format("{} was killed by signal {}", what, WTERMSIG(status))
                      : fmt::format("{} failed with exit code {}", what, code);
  };

  const size_t jobs = std::min(static_cast<size_t>(std::max(1, run.jobs)), todo.size());
  for (size_t i = 0; i < jobs; ++i) spawn();
  while (!running.empty()) {
    if (g_stop.load() == 0 && failed_code == 0)
      for (auto& w : running)
        if (!w.busy && next < todo.size()) assign(w, todo[next++]);
    // Nothing left to give out (or stopping after a failure): idle workers may go.
    if (next >= todo.size() || failed_code != 0)
      for (auto& w : running)
        if (!w.busy && w.in >= 0) {
          close(w.in);
          w.in = -1;
        }

    if (g_stop.load() != 0) {
      for (auto& w : running) kill(w.pid, SIGTERM);
      for (auto& w : running) {
        int status = 0;
        waitpid(w.pid, &status, 0);
        close(w.out);
        if (w.in >= 0) close(w.in);
      }
      running.clear();
      break;
    }

    std::vector<pollfd> fds;
    for (const auto& w : running) fds.push_back({w.out, POLLIN, 0});
    poll(fds.data(), fds.size(), 200);
    for (size_t i = 0; i < running.size(); ++i)
      if (fds[i].revents & (POLLIN | POLLHUP)) drain(running[i], /*wait=*/false);
    for (size_t i = 0; i < running.size();) {
      int status = 0;
      const pid_t r = waitpid(running[i].pid, &status, WNOHANG);
      if (r == running[i].pid) {
        reap(running[i], status);
        running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    std::vector<std::pair<std::string, int>> shown;
    for (const auto& w : running)
      if (w.busy) shown.emplace_back(point_label(exps[w.point]), w.pct);
    display.running(shown);
  }
  display.clear();

  if (const int sig = g_stop.load(); sig != 0) {
    // Nothing under the final name; the completed parts stay for --resume. A worker that the
    // signal reached directly (Ctrl-C reaches the whole process group) left its .partial.
    for (size_t p : todo) fs::remove(fs::path(part_of(p).string() + ".partial"), ec);
    if (!run.quiet)
      fmt::print(stderr, "stopped by signal {}: {} completed points kept in {} (--resume)\n", sig,
                 source.size(), parts.string());
    std::fflush(stderr);
    // End by the same signal, as a process that did not catch it would.
    signal(sig, SIG_DFL);
    raise(sig);
    throw Error(ExitCode::runtime, fmt::format("stopped by signal {}", sig));
  }
  if (failed_code != 0) {
    throw Error(static_cast<ExitCode>(failed_code),
                fmt::format("{} (its message above); no further point was started; the {} "
                            "completed points are kept in {}: rerun with --resume to run only "
                            "the others",
                            failed_what, source.size(), parts.string()));
  }

  std::vector<std::pair<std::string, fs::path>> runs;
  for (size_t p : run.points) runs.emplace_back(point_group(p), source.at(p));
  write_merged(run.output, run.provenance, runs);
  for (size_t p : run.points) fs::remove(part_of(p), ec);
  fs::remove(parts, ec);  // only when empty
}

}  // namespace lorasched
