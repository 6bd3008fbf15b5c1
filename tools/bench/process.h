#pragma once
// Child processes for the benchmark driver: nats-server, deltasync-hub and
// deltasync-agent run as real processes (what is measured is what ships).
// Nothing here links the test harness; it mirrors its approach.
//
// Not thread-safe: the driver's main thread owns every process. Destructors
// stop the child (SIGTERM, then SIGKILL after a grace period) and reap it.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace ds::bench {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  static Result<std::unique_ptr<TempDir>> create(std::string_view prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  Status write_file(std::string_view name, std::string_view text) const;

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// One child process; stdout and stderr go to `log_path`.
class ChildProcess {
 public:
  // argv[0] without a slash is looked up in PATH.
  static Result<std::unique_ptr<ChildProcess>> spawn(std::vector<std::string> argv, std::string log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // False once the child exited (it is reaped then).
  bool alive();
  std::string log_text() const;
  // Waits until the log contains `needle`; fails with the log's tail when the
  // child exits first or the time runs out.
  Status wait_for_log(std::string_view needle, int64_t timeout_ms);
  // SIGTERM, up to `grace_ms`, then SIGKILL; always reaps.
  void stop(int64_t grace_ms = 5000);

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
};

// Follows a growing log file: each call returns the complete lines written
// since the previous call (a line still being written waits for the next).
// Reads only the new bytes, so polling a large log stays cheap.
class LogTail {
 public:
  explicit LogTail(std::string path) : path_(std::move(path)) {}
  std::vector<std::string> new_lines();

 private:
  std::string path_;
  uint64_t offset_ = 0;
  std::string partial_;
};

// Waits until something accepts connections on 127.0.0.1:`port`.
Status wait_for_port(int port, int64_t timeout_ms);

// nats-server (from PATH) with JetStream, file storage under `dir`.
class NatsServerProcess {
 public:
  static Result<std::unique_ptr<NatsServerProcess>> start(const TempDir& dir);
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return process_->pid(); }

 private:
  NatsServerProcess(std::unique_ptr<ChildProcess> p, int port) : process_(std::move(p)), port_(port) {}
  std::unique_ptr<ChildProcess> process_;
  int port_;
};

// The directory holding the running executable (/proc/self/exe).
std::string self_dir();

// Process accounting read from /proc/<pid>.
struct ProcStats {
  int64_t rss_kb = 0;       // VmRSS
  int64_t rss_anon_kb = 0;  // RssAnon: the process's own memory, without mapped files (shared libraries)
  int64_t peak_rss_kb = 0;  // VmHWM: the highest VmRSS so far
  double cpu_seconds = 0;   // utime + stime
};
Result<ProcStats> proc_stats(pid_t pid);

}  // namespace ds::bench
