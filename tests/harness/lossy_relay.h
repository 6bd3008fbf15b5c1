#pragma once
// LossyRelay: a TCP relay between NATS clients and one nats-server that can
// lose a message on its way to a client, as a connection that drops while a
// delivery is in flight does, but at a moment the test chooses.
//
// It listens on a free loopback port (url()); each client connection gets
// its own upstream connection to `upstream_url`. Client -> server bytes pass
// untouched. Server -> client bytes are read as NATS protocol frames (INFO,
// PING, PONG, +OK, -ERR lines; MSG and HMSG with their payloads) and passed
// on whole, except the next JetStream delivery (a MSG/HMSG with a $JS.ACK
// reply) of the subject given to drop_next(), which is read and thrown away.
//
// Threads: one accept thread, and two per relayed connection (one per
// direction), all joined by the destructor, which closes every socket first.
// drop_next() and dropped() are thread-safe.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shared/status.h"

namespace ds::testing {

class LossyRelay {
 public:
  // `upstream_url` is nats://host:port of the server.
  static Result<std::unique_ptr<LossyRelay>> start(const std::string& upstream_url);
  ~LossyRelay();
  LossyRelay(const LossyRelay&) = delete;
  LossyRelay& operator=(const LossyRelay&) = delete;

  // nats://127.0.0.1:<port> for clients.
  std::string url() const;
  // The next JetStream delivery of a message stored under exactly
  // `subject`, to any client, is lost. (A delivery keeps the stream
  // message's subject, e.g. ds.delta.prices.s1, not the deliver subject;
  // the consumer's idle heartbeats and flow-control requests always pass.)
  void drop_next(const std::string& subject);
  // Messages lost so far.
  uint64_t dropped() const { return dropped_.load(); }

 private:
  struct Link {
    int client = -1;
    int server = -1;
    std::thread up;
    std::thread down;
  };

  LossyRelay(int listener, int port, std::string host, int upstream_port);
  void accept_loop();
  void pump_up(int from, int to);
  void pump_down(int from, int to);
  // Whether the frame with this subject is the one to lose (and disarms).
  bool take_drop(const std::string& subject);

  const int listener_;
  const int port_;
  const std::string upstream_host_;
  const int upstream_port_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> dropped_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::string drop_subject_;                // guarded by mu_; "" = none armed
  std::vector<std::unique_ptr<Link>> links_;  // guarded by mu_
};

}  // namespace ds::testing
