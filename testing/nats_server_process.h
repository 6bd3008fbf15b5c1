#pragma once
// NatsServerProcess: a real nats-server with JetStream on a free port of the
// loopback address (or of another local address the caller names, e.g. the
// machine side of a test's network namespace link), its store, config and
// log in a private TempDir. The benchmark's
// broker (bench/) and the test harness's (tests/harness NatsServer,
// which names the nats-server binary the build found).
//
// Not thread-safe: one thread drives it. start() blocks until the server
// accepts clients (its log says it is ready, and a client connecting to the
// port gets an INFO line) or fails with the server's log
// in the Status message. stop()/start() keep the port and the store dir, so
// a restart looks to clients like a broker bounce. The destructor stops the
// server (SIGTERM, then SIGKILL) and removes the dir. The constructor throws
// std::runtime_error when it cannot make the dir (see TempDir).

#include <sys/types.h>

#include <memory>
#include <string>

#include "shared/status.h"
#include "testing/child_process.h"
#include "testing/temp_dir.h"

namespace ds {

class NatsServerProcess {
 public:
  // `program`: the nats-server binary (a path, or a name looked up in PATH).
  // `extra_config`: nats-server config text (e.g. an authorization block)
  // appended to the config file loaded with -c, which also enables
  // JetStream (so a config reload, SIGHUP to pid(), keeps it); the listen
  // address comes from the command line: `listen_address`, an IPv4 address
  // of this machine. `port`: the client port; 0 lets the first start pick
  // a free one.
  explicit NatsServerProcess(std::string program = "nats-server", std::string extra_config = {},
                             std::string listen_address = "127.0.0.1", int port = 0);
  ~NatsServerProcess();
  NatsServerProcess(const NatsServerProcess&) = delete;
  NatsServerProcess& operator=(const NatsServerProcess&) = delete;

  // Starts the server and waits (up to 10 s) until it accepts connections.
  // The first start picks a free port unless one was given; later starts
  // reuse it.
  Status start();
  // Graceful stop: SIGTERM, wait up to 10 s, then SIGKILL. OK when not running.
  Status stop();
  // Abrupt crash: SIGKILL and reap.
  void kill();
  // stop() then start(): a broker bounce on the same port with the same
  // JetStream store, as clients see a restarted server.
  Status restart();
  bool running() const { return process_ != nullptr && process_->pid() > 0; }
  // The server's process id; -1 when it is not running.
  pid_t pid() const { return process_ != nullptr ? process_->pid() : -1; }

  // "nats://<listen address>:<port>"
  std::string url() const;
  int port() const { return port_; }
  const std::string& store_dir() const { return store_dir_; }
  const std::string& dir() const { return dir_.path(); }
  // Everything the server wrote to stdout/stderr, across restarts.
  std::string log_text() const;

 private:
  Status start_once(bool* port_clash);
  // Ready: this start's "Server is ready" in the log, and the port answers.
  Status wait_ready(int64_t timeout_ms, size_t ready_lines_before, bool* exited);

  TempDir dir_;
  std::string program_;
  std::string extra_config_;
  std::string listen_address_;
  std::string store_dir_;
  std::string log_path_;
  std::string config_path_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace ds
