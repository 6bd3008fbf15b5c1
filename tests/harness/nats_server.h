#pragma once
// Test harness for messaging tests: NatsServer, a real nats-server (the
// binary named by the compile definition DELTASYNC_NATS_SERVER) with
// JetStream on a free loopback port (testing/nats_server_process.h says how it
// starts, stops and restarts); the NatsTest fixture (one server and a
// connected client per test); wait_until() and MessageCollector for waiting
// on what other threads and processes do, ms_since() for timing it.
//
// NatsServer and NatsTest are not thread-safe: one test thread drives them.
// MessageCollector is thread-safe (cnats delivers on its own threads).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "shared/nats.h"
#include "shared/status.h"
#include "testing/nats_server_process.h"

namespace ds::testing {

// The nats-server the build found; `extra_config` and `listen_address` as
// NatsServerProcess.
class NatsServer : public NatsServerProcess {
 public:
  explicit NatsServer(std::string extra_config = {}, std::string listen_address = "127.0.0.1")
      : NatsServerProcess(DELTASYNC_NATS_SERVER, std::move(extra_config), std::move(listen_address)) {}
};

// Polls `done` every `poll_ms` until it returns true (-> true) or
// `timeout_ms` passes (-> false). For waiting on other threads and
// processes, never for asserting time.
bool wait_until(const std::function<bool()>& done, int64_t timeout_ms = 10000, int64_t poll_ms = 5);

// Milliseconds of steady time since `since`: a wait's deadline, or a figure
// a test reports.
int64_t ms_since(std::chrono::steady_clock::time_point since);

// What a test handler saw of one message.
struct ReceivedMessage {
  std::string subject;
  std::string reply;
  std::string data;
  uint64_t stream_seq = 0;  // JetStream deliveries only (from the ack subject)
};

// A thread-safe collector for messages delivered on cnats threads. The
// handler copies each message (and, when `ack_through` is given, acks it
// first, "+ACK" on its ack subject through that connection).
class MessageCollector {
 public:
  MessageHandler handler(Connection* ack_through = nullptr);
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
