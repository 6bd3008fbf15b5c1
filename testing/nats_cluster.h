#pragma once
// NatsCluster: a JetStream cluster of real nats-server processes on the
// loopback address, for the high-availability tests (label ha) and for
// trying a cluster by hand. Each node is a NatsServerProcess (own TempDir,
// JetStream store, log, free client port) with a server_name ("n1", "n2",
// ...), a monitoring port (for /healthz) and a cluster block whose routes
// name every other node's cluster port; these ports are picked once and kept,
// so a node stopped or killed comes back into the same cluster with the
// same store and the same client port.
//
// Not thread-safe: one thread drives it (the nodes die with the thread that
// started them; see ChildProcess). start() returns when every node accepts
// clients, the JetStream meta group has a leader (the JetStream API
// answers) and it can place a stream with a copy on every node, or with the logs of every node in the Status. The destructor
// stops every node (SIGTERM, then SIGKILL) and removes their directories.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "shared/status.h"
#include "testing/nats_server_process.h"

namespace ds {

class NatsCluster {
 public:
  // `program`: the nats-server binary. `nodes`: at least 1 (3 for
  // replicated streams). `extra_config` is appended to every node's
  // configuration; start()'s readiness probes connect without credentials,
  // so it must leave anonymous clients JetStream (no authorization block).
  explicit NatsCluster(std::string program = "nats-server", int nodes = 3, std::string extra_config = {});
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  // Starts every node not running (or only the first `nodes`: a cluster
  // missing members) and waits (bounded, ~30 s) until each accepts clients
  // and JetStream is available to clients.
  Status start(int nodes = -1);
  int size() const { return static_cast<int>(nodes_.size()); }
  // Node `i` (0-based): stop/kill/start/restart, pid, log as NatsServerProcess.
  NatsServerProcess& node(int i) { return *nodes_.at(static_cast<size_t>(i)); }
  const NatsServerProcess& node(int i) const { return *nodes_.at(static_cast<size_t>(i)); }
  // Its server_name ("n1" for node 0), as JetStream names stream peers.
  std::string server_name(int i) const { return "n" + std::to_string(i + 1); }
  // Starts node `i` again after stop() or kill() and waits until it accepts
  // clients (catching up with the others is the caller's to check).
  Status start_node(int i) { return node(i).start(); }
  // SIGKILL: a node lost without a goodbye.
  void kill_node(int i) { node(i).kill(); }
  // OK when node `i`'s /healthz says it is current: in contact with the
  // meta leader and caught up with every stream and consumer it holds a
  // copy of (nats-server 2.9.10); else Unavailable with what it reports.
  Status node_current(int i) const;
  // Waits (up to `timeout_ms`) until node_current(i).
  Status wait_current(int i, int64_t timeout_ms) const;
  // Every node's client URL, comma-separated ("nats://127.0.0.1:P1,..."):
  // what a [nats] url lists. Valid after the first start().
  std::string urls() const;
  // Every node's log, each headed by its name, for failure messages.
  std::string logs() const;
  // Waits until a client can use JetStream through `url` (the meta group
  // has a leader), up to `timeout_ms`.
  static Status wait_jetstream(const std::string& url, int64_t timeout_ms);

 private:
  // Builds the nodes around freshly picked cluster ports.
  Status make_nodes();
  // Waits until the cluster places a stream with a copy on every node.
  Status wait_placement(int64_t timeout_ms);

  std::string program_;
  int count_;
  std::string extra_config_;
  std::vector<std::unique_ptr<NatsServerProcess>> nodes_;
  std::vector<int> monitor_ports_;
};

}  // namespace ds
