#include "testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

extern char** environ;

namespace ds {
namespace {

// How long the destructor lets a child still running end after SIGTERM.
constexpr int64_t kDestroyGraceMs = 5000;
// The part of a log a wait_for_log() failure quotes.
constexpr size_t kLogTailBytes = 2000;

// This process's environment with `extra` set (replacing a variable of the
// same name: getenv would otherwise find the inherited one first).
std::vector<std::string> merged_environment(const Environment& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : extra) replaced = replaced || k == name;
    if (!replaced) out.emplace_back(entry);
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return out;
}

// `program` itself when it names a path; else the first executable file of
// that name in a directory of PATH.
Result<std::string> resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Status::not_found(program + " is not in PATH");
}

int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

std::string tail(const std::string& text) {
  return text.size() <= kLogTailBytes ? text : "..." + text.substr(text.size() - kLogTailBytes);
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> argv, std::string log_path, std::string stderr_path)
    : argv_(std::move(argv)), log_path_(std::move(log_path)), stderr_path_(std::move(stderr_path)) {}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) (void)stop(SIGTERM, kDestroyGraceMs);
}

Status ChildProcess::start(const Environment& env) {
  if (argv_.empty()) return Status::invalid_argument("no program to start");
  if (running()) return Status::internal(argv_[0] + " is already running");
  // Everything the child needs is prepared before fork: between fork and
  // exec a multi-threaded parent's child may only make async-signal-safe calls.
  DS_ASSIGN_OR_RETURN(std::string program, resolve_program(argv_[0]));
  std::vector<std::string> env_strings = merged_environment(env);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv_;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int out_fd = open_log(log_path_);
  if (out_fd < 0) return Status::internal("open " + log_path_ + ": " + std::strerror(errno));
  const int err_fd = stderr_path_.empty() ? ::dup(out_fd) : open_log(stderr_path_);
  if (err_fd < 0) {
    ::close(out_fd);
    return Status::internal("open " + stderr_path_ + ": " + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out_fd);
    ::close(err_fd);
    return Status::internal(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    ::execve(program.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
  pid_ = pid;
  return Status::ok();
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0 && sig != 0) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait_exit(int64_t timeout_ms) {
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int wstatus = 0;
    const pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
    if (r < 0 && errno == ECHILD) {  // reaped elsewhere: the code is gone
      pid_ = -1;
      return -1;
    }
    if (r == pid_) {
      pid_ = -1;
      if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
      return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::optional<int> ChildProcess::stop(int sig, int64_t timeout_ms) {
  // sig 0 only waits (run_to_completion).
  signal(sig);
  std::optional<int> code = wait_exit(timeout_ms);
  if (!code && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  return code;
}

bool ChildProcess::running() {
  return pid_ > 0 && !wait_exit(0).has_value();
}

std::string ChildProcess::log_text() const { return read_text_file(log_path_); }

size_t ChildProcess::log_count(const std::string& needle) const {
  std::istringstream in(log_text());
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

Status ChildProcess::wait_for_log(const std::string& needle, int64_t timeout_ms, size_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (log_count(needle) > seen) return Status::ok();
    if (!running()) {
      // It may have written the line just before it exited.
      if (log_count(needle) > seen) return Status::ok();
      return Status::unavailable(argv_[0] + " exited before its log said '" + needle + "':\n" + tail(log_text()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::deadline_exceeded("no '" + needle + "' in the log of " + argv_[0] + " after " +
                                   std::to_string(timeout_ms) + " ms:\n" + tail(log_text()));
}

CommandResult run_to_completion(const std::vector<std::string>& argv, const std::string& scratch_path,
                                const Environment& env, int64_t timeout_ms) {
  const std::string out_path = scratch_path + ".out";
  const std::string err_path = scratch_path + ".err";
  std::ofstream(out_path, std::ios::trunc).close();
  std::ofstream(err_path, std::ios::trunc).close();
  CommandResult result;
  ChildProcess child(argv, out_path, err_path);
  if (Status s = child.start(env); !s.is_ok()) {
    result.err = s.to_string();
    return result;
  }
  result.exit_code = child.stop(0, timeout_ms).value_or(-1);
  result.out = read_text_file(out_path);
  result.err = read_text_file(err_path);
  return result;
}

Status stop_process(pid_t pid, int64_t timeout_ms) {
  if (::kill(pid, SIGSTOP) != 0) {
    return Status::internal("SIGSTOP " + std::to_string(pid) + ": " + std::strerror(errno));
  }
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    bool all_stopped = true;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
      std::ifstream in(task.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      // "<tid> (<comm>) <state> ...": the state follows the last ')'.
      const size_t paren = stat.rfind(')');
      if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'T') {
        all_stopped = false;
        break;
      }
    }
    if (!ec && all_stopped) return Status::ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Status::deadline_exceeded("process " + std::to_string(pid) + " not stopped after " +
                                   std::to_string(timeout_ms) + " ms");
}

}  // namespace ds
