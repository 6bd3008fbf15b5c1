#include "agent/hook_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "shared/codec.h"

extern char** environ;

namespace ds {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ms_left(Clock::time_point deadline) {
  return std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

std::string errno_text(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

// Writes all of `input` to `fd` (non-blocking) before `deadline`. A hook that
// exits or closes stdin early is not an error here: its exit status decides.
void feed(int fd, const std::string& input, Clock::time_point deadline) {
  size_t off = 0;
  while (off < input.size()) {
    pollfd p{fd, POLLOUT, 0};
    const int left = static_cast<int>(std::min<int64_t>(ms_left(deadline), 1000));
    if (left <= 0 && ms_left(deadline) <= 0) return;
    const int n = ::poll(&p, 1, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    if (p.revents & (POLLERR | POLLHUP)) return;
    const ssize_t w = ::write(fd, input.data() + off, input.size() - off);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;  // EPIPE: the hook stopped reading
    }
    off += static_cast<size_t>(w);
  }
}

}  // namespace

HookRunner::HookRunner(const std::atomic<bool>* stop) : stop_(stop) { ::signal(SIGPIPE, SIG_IGN); }

std::string HookRunner::json_lines(const std::string& type, const std::vector<Change>& changes) {
  std::string out;
  const std::string type_json = nlohmann::json(type).dump();
  for (const Change& c : changes) {
    out += "{\"type\":" + type_json + ",\"v\":" + std::to_string(c.v) + ",\"key\":" +
           nlohmann::json(c.key).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
           ",\"op\":\"" + (c.op == Op::kUpsert ? "u" : "d") + "\",\"f\":" + fields_to_json(c.f) +
           ",\"ts\":" + std::to_string(c.ts) + ",\"hts\":" + std::to_string(c.hts) + "}\n";
  }
  return out;
}

Status HookRunner::run_once(const HookSpec& spec, const std::string& input) const {
  const std::string what = "hook '" + spec.command + "'";
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::unavailable(errno_text(what + ": pipe"));
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, read_end.get(), STDIN_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  // The child starts with default signal dispositions and an empty mask, not
  // the agent's (SIGPIPE ignored, SIGTERM blocked for sigwait).
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::string sh = "/bin/sh";
  std::string dash_c = "-c";
  std::string command = spec.command;
  char* argv[] = {sh.data(), dash_c.data(), command.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::unavailable(what + ": spawn: " + std::strerror(rc));
  read_end.reset();

  const auto deadline = Clock::now() + std::chrono::milliseconds(spec.timeout_ms);
  ::fcntl(write_end.get(), F_SETFL, O_NONBLOCK);
  feed(write_end.get(), input, deadline);
  write_end.reset();

  int wstatus = 0;
  while (true) {
    const pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return Status::internal(errno_text(what + ": waitpid"));
    if (ms_left(deadline) <= 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      return Status::deadline_exceeded(what + " timed out after " + std::to_string(spec.timeout_ms) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return Status::ok();
  if (WIFEXITED(wstatus)) {
    return Status::unavailable(what + " exited with status " + std::to_string(WEXITSTATUS(wstatus)));
  }
  if (WIFSIGNALED(wstatus)) {
    return Status::unavailable(what + " was killed by signal " + std::to_string(WTERMSIG(wstatus)));
  }
  return Status::unavailable(what + " ended abnormally");
}

Status HookRunner::run(const HookSpec& spec, const std::string& type, const std::vector<Change>& changes) const {
  const std::string input = json_lines(type, changes);
  const int64_t attempts = 1 + std::max<int64_t>(0, spec.retries);
  int64_t backoff_ms = 200;
  Status last;
  for (int64_t attempt = 1; attempt <= attempts; ++attempt) {
    last = run_once(spec, input);
    if (last.is_ok()) return last;
    if (attempt == attempts) break;
    const auto until = Clock::now() + std::chrono::milliseconds(backoff_ms);
    while (Clock::now() < until && !(stop_ != nullptr && stop_->load())) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(ms_left(until), 50)));
    }
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
  }
  return Status(last.code(), last.message() + " (attempt " + std::to_string(attempts) + " of " +
                                 std::to_string(attempts) + ")");
}

}  // namespace ds
