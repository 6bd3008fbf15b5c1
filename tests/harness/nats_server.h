#pragma once
// Test harness for messaging tests: a real nats-server (the binary named by
// the compile definition DELTASYNC_NATS_SERVER) with JetStream, on a free
// loopback port, with its store and log in a private temp dir.
//
// NatsServer is not thread-safe: one test thread drives it. start() blocks
// until the server accepts clients (it has sent its INFO line) or fails with
// the server's log in the Status message. stop()/start() keep the port and
// the store dir, so a restart looks to clients like a broker bounce. The
// destructor stops the server (SIGTERM, then SIGKILL) and removes the dir.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shared/nats.h"
#include "shared/status.h"
#include "tests/harness/child_process.h"
#include "tests/harness/temp_dir.h"
#include "tools/local_host.h"  // free_loopback_port(); NatsServer::start() retries when a port was taken

namespace ds::testing {

class NatsServer {
 public:
  // `extra_config` is nats-server config text (e.g. an authorization block)
  // loaded with -c; listen address and JetStream come from the command line.
  explicit NatsServer(std::string extra_config = {});
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Starts the server and waits (up to 10 s) until it accepts connections.
  // The first start picks a free port; later starts reuse it.
  Status start();
  // Graceful stop: SIGTERM, wait up to 10 s, then SIGKILL. OK when not running.
  Status stop();
  // Abrupt crash: SIGKILL and reap.
  void kill();
  // stop() then start(): a broker bounce on the same port with the same
  // JetStream store, as clients see a restarted server.
  Status restart();
  bool running() const { return process_ != nullptr && process_->pid() > 0; }

  // "nats://127.0.0.1:<port>"
  std::string url() const;
  int port() const { return port_; }
  const std::string& store_dir() const { return store_dir_; }
  const std::string& dir() const { return dir_.path(); }
  // Everything the server wrote to stdout/stderr, across restarts.
  std::string log_text() const;

 private:
  Status start_once(bool* port_clash);
  Status wait_ready(int64_t timeout_ms, bool* exited);

  TempDir dir_;
  std::string extra_config_;
  std::string store_dir_;
  std::string log_path_;
  std::string config_path_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};


// Polls `done` every `poll_ms` until it returns true (-> true) or
// `timeout_ms` passes (-> false). For waiting on other threads and
// processes, never for asserting time.
bool wait_until(const std::function<bool()>& done, int64_t timeout_ms = 10000, int64_t poll_ms = 5);

// What a test handler saw of one message.
struct ReceivedMessage {
  std::string subject;
  std::string reply;
  std::string data;
  uint64_t stream_seq = 0;  // JetStream messages only
};

// A thread-safe collector for messages delivered on cnats threads. The
// handler copies each message (and, when `ack` is set, acks it first).
class MessageCollector {
 public:
  MessageHandler handler(bool ack = false);
  std::vector<ReceivedMessage> messages() const;
  size_t count() const;
  // Waits until at least `n` messages arrived.
  bool wait_for(size_t n, int64_t timeout_ms = 10000) const;

 private:
  mutable std::mutex mu_;
  std::vector<ReceivedMessage> messages_;  // guarded by mu_
};

// Connect options for a client of `server`, named after the running test.
ConnectOptions test_connect_options(const NatsServer& server);

// One nats-server per test plus a connected client `nc_`. Tests that need
// more clients or auth create their own from server_.
class NatsTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Connects another client with `opts` (url filled in when empty).
  std::unique_ptr<Connection> connect(ConnectOptions opts);
  std::unique_ptr<JetStream> jetstream(Connection& nc);

  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<Connection> nc_;
};

}  // namespace ds::testing
