#pragma once
// ChildProcess: one of our binaries (or any program) run as a separate
// process, for the benchmark (bench/: what is measured is what ships)
// and for tests that need what only a process has: SIGKILL, SIGTERM, an exit
// code, a restart. stdout and stderr are appended to a log file that is kept
// across restarts. The child gets PR_SET_PDEATHSIG(SIGKILL), so it never
// outlives a crashed parent (the signal follows the thread that started it:
// start children from the main thread).
//
// Not thread-safe: one thread drives it. The destructor stops a child still
// running (SIGTERM, then SIGKILL after a grace period of 5 s) and reaps it.
//
// run_to_completion() runs a short-lived command (a CLI call) and returns its
// exit code and output.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/status.h"
#include "testing/local_host.h"  // read_text_file()

namespace ds {

// Variables added to (or replacing those of) this process's environment.
using Environment = std::vector<std::pair<std::string, std::string>>;

class ChildProcess {
 public:
  // `argv[0]` is the program: a path, or a name without '/' looked up in
  // this process's PATH. `log_path` receives its output, and its stderr too
  // unless `stderr_path` names another file.
  ChildProcess(std::vector<std::string> argv, std::string log_path, std::string stderr_path = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts the program with `env` added to this process's environment.
  // Fails when it is already running, is not found in PATH or cannot be
  // started; a program that cannot be executed exits 127.
  Status start(const Environment& env = {});
  // Sends `signal` when running.
  void signal(int signal);
  // Waits up to `timeout_ms` for the exit; the exit code, or 128 + signal
  // when a signal ended it; nullopt when it is still running (or never ran).
  std::optional<int> wait_exit(int64_t timeout_ms);
  // Sends `signal` (0: none) and waits up to `timeout_ms` for the exit (as
  // wait_exit); on a timeout the child is killed with SIGKILL, reaped, and
  // nullopt returned, so a hang is a failure, never a leaked process.
  std::optional<int> stop(int signal, int64_t timeout_ms = 30000);
  // True while the child runs (reaps it when it has exited).
  bool running();
  pid_t pid() const { return pid_; }

  const std::string& log_path() const { return log_path_; }
  // Everything the child wrote so far, across restarts.
  std::string log_text() const;
  // Lines of the log containing `needle`.
  size_t log_count(const std::string& needle) const;
  // Waits until more than `seen` lines of the log contain `needle` (pass
  // log_count(needle) from before a restart to skip the earlier runs'
  // lines). Fails with the log's tail when the child exits first or
  // `timeout_ms` passes.
  Status wait_for_log(const std::string& needle, int64_t timeout_ms, size_t seen = 0);

 private:
  std::vector<std::string> argv_;
  std::string log_path_;
  std::string stderr_path_;
  pid_t pid_ = -1;
};

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed; -1 when it did not end in time
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs `argv` to completion with `env` added; after `timeout_ms` it is
// killed and exit_code is -1. The output is collected in the files
// `scratch_path`.out and .err, which are overwritten.
CommandResult run_to_completion(const std::vector<std::string>& argv, const std::string& scratch_path,
                                const Environment& env = {}, int64_t timeout_ms = 60000);

// Sends SIGSTOP to `pid` and waits until every thread of it is stopped (state
// 'T' in /proc/<pid>/task/*/stat): kill() returns before a thread running on
// another core has stopped, and such a thread may still read a socket.
// DeadlineExceeded after `timeout_ms`.
Status stop_process(pid_t pid, int64_t timeout_ms = 5000);

}  // namespace ds
