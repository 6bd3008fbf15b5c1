#pragma once
// HubProcess: the deltasync-hub binary (DELTASYNC_BINARY_DIR/deltasync-hub)
// run as a child process with a config file, for tests that need what only a
// process has: SIGKILL, SIGTERM and its exit code. Its stderr/stdout go to a
// log file in the caller's directory, kept across restarts.
//
// Not thread-safe: one test thread drives it. The destructor stops a hub
// still running as ChildProcess's does (SIGTERM, then SIGKILL) and reaps it.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/status.h"
#include "testing/child_process.h"

namespace ds::testing {

class HubProcess {
 public:
  // `config_path`: the hub.toml to run with; `log_path`: where output goes.
  HubProcess(std::string config_path, std::string log_path);
  HubProcess(const HubProcess&) = delete;
  HubProcess& operator=(const HubProcess&) = delete;

  // Starts the hub with `env` added to the environment, then waits (up to
  // 15 s) until its log shows "started" (its start-up summary). Fails with
  // the log's tail when it exits first or does not start in time.
  Status start(const std::vector<std::pair<std::string, std::string>>& env = {});
  // Starts the hub without waiting for it to be up (e.g. before nats-server).
  Status launch(const std::vector<std::pair<std::string, std::string>>& env = {});
  // Sends `signal` (e.g. SIGTERM, SIGKILL).
  void signal(int signal);
  // Waits up to `timeout_ms` for the process to exit; its exit code, or
  // 128 + signal when a signal ended it; nullopt on timeout.
  std::optional<int> wait_exit(int64_t timeout_ms);
  bool running() const { return process_.pid() > 0; }
  pid_t pid() const { return process_.pid(); }

  // Everything the hub wrote so far.
  std::string log_text() const;
  // Counts lines of the log containing `needle`.
  size_t log_count(const std::string& needle) const;

 private:
  ChildProcess process_;
};

}  // namespace ds::testing
