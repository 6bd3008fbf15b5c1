#pragma once
// Fleet: a whole deltasync system as separate processes, for the end-to-end
// tests: a real nats-server with JetStream (tests/harness NatsServer), the
// deltasync-hub binary with its HTTP API, several deltasync-agent binaries
// with different types and partitions, and the `deltasync` CLI run as a
// process for push, agents, list and verify, as an operator would.
//
// The business model is a small retail chain (retail_agents()):
//   products   key sku, unpartitioned: name, category, active, attributes (json)
//   prices     key id, partitioned by store_id: store_id, sku, price
//   inventory  key item, partitioned by store_id: store_id, on_hand, reserved
//   store-1, store-2: products, their own prices and inventory
//   hq:               products and every store's prices
// Heartbeats every 500 ms, dead after 3 missed (FleetOptions changes that,
// where nats-server listens, and what the hub and each agent (AgentSpec) get
// in their environment or run through); delta batches of at most 50
// changes, so a workload spans many stream messages.
//
// Not thread-safe: the test's main thread drives it (and must, since the
// children die with the thread that started them; see ChildProcess). All
// files live in one TempDir. Waits are bounded (kConvergeTimeoutMs). Every
// test that runs a Fleet also checks that its logs stayed quiet (see
// expect_log_line).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shared/status.h"
#include "testing/child_process.h"
#include "testing/nats_cluster.h"
#include "testing/temp_dir.h"
#include "tests/harness/hub_process.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {

// Generous bound for any wait on the system (agents live, dead, converged).
constexpr int64_t kConvergeTimeoutMs = 60000;

struct AgentSpec {
  std::string id;
  // (type, partition), partition "*" for every partition.
  std::vector<std::pair<std::string, std::string>> subscriptions;
  // Put before the agent's command line, e.g. {"ip", "netns", "exec", NS}
  // to run it in a test's network namespace (tests/faults/netns_link.h);
  // the program it starts must exec the agent (same pid, same signals).
  std::vector<std::string> launcher = {};
  // Added to the agent's environment (e.g. libfaketime's).
  Environment env = {};
  // Lines added to its config's [replica] table (e.g. tombstone_max_age).
  std::string replica_toml = {};
  // type -> hook command (the subscription's `hook`), for the types that have one.
  std::map<std::string, std::string> hooks = {};
};

// What a scenario changes in the fleet's set-up; the defaults are the
// fleet described above.
struct FleetOptions {
  // Where nats-server listens, and so where every process connects: a local
  // IPv4 address, e.g. the machine side of a test's network namespace link
  // so that an agent in the namespace reaches it.
  std::string nats_address = "127.0.0.1";
  // Appended to nats-server's configuration file (NatsServerProcess).
  std::string nats_extra_config = {};
  int64_t heartbeat_interval_ms = 500;
  int64_t dead_after = 3;
  // Added to the hub's environment at every start (e.g. libfaketime's).
  Environment hub_env = {};
  // type -> its [[types]] freshness_objective (e.g. "1s"); overrides
  // enable_metrics()'s objective for that type.
  std::map<std::string, std::string> freshness_objectives = {};
  // 0: one nats-server (nats()); N: a JetStream cluster of N nodes on
  // loopback (cluster()) whose every client URL the hub, the agents and the
  // CLI list in [nats] url. nats_address does not apply to a cluster.
  int nats_cluster_nodes = 0;
  // The hub's [streams] replicas.
  int stream_replicas = 1;
  // > 0: [ha] enabled with this lease_ms, and a second hub (standby()) with
  // its own store and HTTP port, started after the first is active.
  int64_t ha_lease_ms = 0;
  // Every agent's [agent] live_feed: false keeps every agent on consumers
  // (the scenarios about consumers themselves, e.g. their copies on a
  // cluster).
  bool live_feed = true;
};

// store-1, store-2 and hq, as described above.
std::vector<AgentSpec> retail_agents();

// A spdlog line of our processes ("<date>T<time> <level> [name] ...",
// shared/log.cc) at level error or critical; how many lines of `log` are.
bool is_error_line(const std::string& line);
size_t error_line_count(const std::string& log);

class Fleet {
 public:
  explicit Fleet(std::vector<AgentSpec> agents = retail_agents(), FleetOptions options = {});
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Starts nats-server, the hub and every agent, and waits until each agent
  // is live with a delivery (its consumer or the live feed) for each of
  // its types.
  Status start();

  // Before start(): the hub and every agent also get a [metrics] listen on
  // a free loopback port (metrics_port()), and every type the freshness
  // objective `freshness_objective` ("" keeps the default).
  void enable_metrics(std::string freshness_objective = {});
  // The [metrics] port of the hub ("hub"; "hub-b": the second hub of an HA
  // pair, whichever is active) or of an agent; 0 without metrics.
  int metrics_port(const std::string& process) const;
  int http_port() const { return http_port_; }
  // The [http] port of standby() (an HA pair); 0 without one.
  int standby_http_port() const { return standby_http_port_; }
  const std::string& token() const { return token_; }

  // The single nats-server (FleetOptions::nats_cluster_nodes == 0).
  NatsServer& nats() { return nats_; }
  // The cluster (nats_cluster_nodes > 0); throws std::logic_error without one.
  NatsCluster& cluster();
  // What the hub, the agents and the CLI have in [nats] url: the single
  // server's URL, or every cluster node's, comma-separated.
  std::string nats_url() const;
  // The hub's configuration file and its store (SQLite), e.g. for a test
  // to back up and restore it; `file(name)`: a scratch file in the fleet's
  // directory.
  std::string hub_config_path() const { return dir_.file("hub.toml"); }
  std::string hub_store_path() const { return hub_store_path_; }
  // Before start(): where the hub's store and an agent's replica live
  // (default: in the fleet's directory), e.g. on a small filesystem a
  // test fills up.
  void set_hub_store_path(std::string path) { hub_store_path_ = std::move(path); }
  // Before start(): adds a variable to every hub's environment (as
  // FleetOptions::hub_env), e.g. a fault hook's trigger file in file().
  void add_hub_env(std::string name, std::string value) {
    options_.hub_env.emplace_back(std::move(name), std::move(value));
  }
  void set_replica_path(const std::string& id, std::string path);
  std::string file(const std::string& name) const { return dir_.file(name); }
  HubProcess& hub() { return *hub_; }
  // (Re)starts the hub and waits until its HTTP API answers.
  Status start_hub();
  // With FleetOptions::ha_lease_ms: the other hub, standing by while hub()
  // is active.
  HubProcess& standby() { return *standby_; }
  // (Re)starts the standby and waits until it follows every stream to its
  // end (its log says so).
  Status start_standby();
  // After a takeover: the standby is the active hub() from now on (the CLI
  // talks to its HTTP API), and the old active the standby().
  void swap_hubs();
  ChildProcess& agent(const std::string& id);
  Status start_agent(const std::string& id);
  const std::vector<AgentSpec>& agents() const { return agents_; }
  const std::string& agent_config(const std::string& id) const;
  // The agent's replica file (SQLite), e.g. for a test to tamper with.
  std::string replica_path(const std::string& id) const;

  // Runs `deltasync <args>` with the hub's URL and token and the NATS URL
  // in its environment.
  CommandResult cli(std::vector<std::string> args, int64_t timeout_ms = 30000);
  // cli(args + "--json") parsed; an error carrying the output when the
  // command fails or prints something that is not JSON.
  Result<nlohmann::json> cli_json(std::vector<std::string> args);
  // Writes `records` (ingest records as JSON objects) as a JSON-lines file
  // and pushes it with `deltasync push`, in batches of `batch`.
  Status push(const std::string& type, const nlohmann::json& records, size_t batch = 100);

  // `deltasync agents --json`, by agent id.
  Result<std::map<std::string, nlohmann::json>> agents_by_id();
  // The agent's state ("live", "suspect", "dead", ...), "" when unknown.
  std::string agent_state(const std::string& id);
  // Every agent live, with a delivery for each of its types: an open
  // consumer or the live feed.
  bool all_live();
  // Waits until every agent is live with its deliveries (kConvergeTimeoutMs).
  Status wait_all_live();

  // The hub's current records of `type` (every page of `deltasync list`):
  // key -> fields, without null fields.
  Result<std::map<std::string, nlohmann::json>> hub_records(const std::string& type);
  // The replica's checkpoint version per type (`deltasync-agent status`).
  Result<std::map<std::string, uint64_t>> replica_versions(const std::string& id);
  // Whether the hub keeps a JetStream consumer for `agent` on `type`'s stream.
  Result<bool> has_consumer(const std::string& type, const std::string& agent);

  // The end of every scenario: waits until `deltasync verify --quiet` exits
  // 0, then runs `deltasync verify --json` and `deltasync verify` and checks
  // that every agent and type of agents() is there and matched (digest and
  // rows; versions too for unpartitioned subscriptions) and that the table
  // says so. `report`, when given, receives the `verify --json` answer.
  ::testing::AssertionResult converged(nlohmann::json* report = nullptr);

  // The tail of every process's log, for failure messages.
  std::string logs() const;

  // Normal operation is quiet. When the fleet goes (~Fleet) it stops the
  // agents and the hub (SIGTERM) and fails the running test on every line at
  // level error or critical in the hub's and the agents' logs and every line
  // with "Violation" in nats-server's log, except the lines a test declared
  // here because it provokes them: `source` is "hub", "nats-server" or an
  // agent id, and the line must contain `needle`. Declare narrowly.
  void expect_log_line(std::string source, std::string needle);
  // The lines that check would fail on, each prefixed with its source.
  std::vector<std::string> unexpected_log_lines() const;

 private:
  struct Agent {
    AgentSpec spec;
    std::string config_path;
    std::string replica_path;
    std::unique_ptr<ChildProcess> process;
  };
  Agent& find(const std::string& id);
  const Agent& find(const std::string& id) const;
  // `metrics_key`: its [metrics] port's name in metrics_ports_ ("hub", or
  // "hub-b" for the standby of an HA pair).
  std::string hub_toml(const std::string& store_path, int http_port, const std::string& metrics_key) const;
  std::string agent_toml(const AgentSpec& spec) const;
  std::string metrics_section(const std::string& process) const;  // "" without metrics
  Environment cli_environment() const;

  std::vector<AgentSpec> agents_;
  FleetOptions options_;
  TempDir dir_{"deltasync-e2e"};
  std::string hub_store_path_ = dir_.file("hub.db");
  NatsServer nats_{options_.nats_extra_config, options_.nats_address};
  std::unique_ptr<NatsCluster> cluster_;  // when options_.nats_cluster_nodes > 0
  int http_port_ = 0;
  std::string token_;
  std::unique_ptr<HubProcess> hub_;
  // The other hub of an HA pair (FleetOptions::ha_lease_ms), its store and
  // HTTP port.
  std::unique_ptr<HubProcess> standby_;
  std::string standby_store_path_ = dir_.file("hub-b.db");
  int standby_http_port_ = 0;
  std::vector<Agent> fleet_;
  uint64_t push_files_ = 0;
  bool metrics_ = false;
  std::string freshness_objective_;
  std::map<std::string, int> metrics_ports_;  // "hub" or agent id -> port
  std::vector<std::pair<std::string, std::string>> expected_log_lines_;  // (source, needle)
};

}  // namespace ds::testing
