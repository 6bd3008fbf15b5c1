#pragma once
// AgentRegistry: what the hub knows about its agents, in memory and in a
// database file of its own next to the hub's store (agent_registry_path:
// hub.db -> hub.agents.db; tables agents, agent_subscriptions and
// agent_events), so each database has one writer: the ingest writer writes
// the store, the agent service's thread writes this file. Earlier hubs kept
// these tables in the store; the first open copies them over once (the
// file's user_version says it was done), then drops them from the store
// (before the ingest writer starts), so a registry file lost later is not
// refilled with stale agents: running agents register again instead.
//
// Registrations and state transitions are written through at once (each in
// its own transaction), because they decide what the hub does after a
// restart. Heartbeat replies only update memory and mark the agent dirty;
// flush() writes all dirty agents in one transaction, so 10,000 replies per
// interval cost one commit, not 10,000 (losing a few at a crash is harmless:
// the next reply brings them again).
//
// The runtime delivery state of a subscription (consumer open, held back,
// awaiting a snapshot) lives in memory only; after a restart the service
// derives it again.
//
// Thread-safety: the mutating methods and flush() belong to one owner thread
// (the agent service's thread), which also owns the writer connection. The
// in-memory map sits behind mu_, so find()/all() may be called from any thread
// and return copies. events() uses a separate read-only
// connection behind read_mu_ and may also be called from any thread.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "hub/liveness_tracker.h"
#include "shared/messages.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// Why an agent's subscription has (or lacks) a consumer on the server.
// Decided by the consumer planner (hub/consumer_planner.h) alone; the
// services store what it returns.
struct DeliveryState {
  bool consumer_open = false;      // the hub created it and has not removed it
  bool held_back = false;          // schema hash mismatch (docs/protocol.md, "Semantics")
  bool awaiting_snapshot = false;  // checkpoint left the stream; agent must snapshot and register again
  bool snapshot_ordered = false;   // a registration reply told the agent so; it is loading the snapshot
  // The agent takes the type from the live feed (docs/protocol.md, "Live
  // feed"): no consumer, by the planner's feed rule (consumer_planner.h).
  bool on_feed = false;
  // On the feed, its checkpoint stayed behind the partition's newest
  // version of two replies before: it is ordered to register again.
  bool feed_behind = false;
  // On the feed: the partition's newest version when the agent last replied,
  // and at the reply before that.
  uint64_t feed_mark_seen = 0;
  uint64_t feed_mark_before = 0;
  std::string note{};              // the reason when there is no consumer
  bool operator==(const DeliveryState&) const = default;
};

struct SubscriptionState {
  std::string type;
  std::string partition = "*";
  uint64_t version = 0;     // checkpoint as last reported (registration or heartbeat)
  uint64_t seq = 0;
  int64_t ts = 0;
  uint64_t rows = 0;
  std::string schema_hash;  // as last reported by the agent; "" = not reported yet
  // The agent takes the type from the live feed now, as its last heartbeat
  // reply said (false until one did); memory only.
  bool feed = false;
  // Quarantine entries of this type the agent reported in its last reply
  // (memory only); nullopt until a reply carries them, and from agents that
  // report a total only (HeartbeatReply::quarantined_types).
  std::optional<uint64_t> quarantined;
  DeliveryState delivery;   // memory only
};

struct AgentRecord {
  std::string id;
  std::string host;
  std::string version;
  AgentState state = AgentState::kLive;
  int64_t registered_at = 0;  // wall-clock ms
  // Registrations of this agent since the hub started (memory only): what
  // tells "registered after X" without a wall clock (verify --repair).
  uint64_t registrations = 0;
  int64_t last_beat = 0;      // wall-clock ms of the last accepted reply or registration
  std::string last_error;     // the agent's own error report, "" when healthy
  AgentHealth health = AgentHealth::kOk;
  uint64_t pending = 0;
  uint64_t quarantined = 0;
  std::map<std::string, SubscriptionState> subscriptions;  // by type
};

struct AgentEvent {
  int64_t id = 0;
  int64_t ts = 0;
  std::string agent;
  std::string from_state;  // "" for a new agent
  std::string to_state;
  std::string reason;
};

// The registry's file for the hub store `store_path`: "x.db" -> "x.agents.db",
// any other name gets ".agents.db" appended.
std::string agent_registry_path(const std::string& store_path);

class AgentRegistry {
 public:
  // Opens the registry database `path` (WAL, busy timeout), creates its
  // tables when missing and loads every agent. When the file is new and
  // `old_store` (the hub's store) holds agent tables, they are copied first,
  // in the same transaction that marks the file done.
  static Result<std::unique_ptr<AgentRegistry>> open(const std::string& path, const std::string& old_store = {});

  // Upserts the agent (host, version, state live, registered_at, last_beat =
  // now) and replaces its subscriptions with the reported ones. Delivery
  // state of the new subscriptions starts empty.
  Status record_registration(const RegisterRequest& request, int64_t now_wall_ms);
  // How many state changes of one agent agent_events keeps (the newest).
  static constexpr size_t kMaxEventsPerAgent = 1000;

  // Stores the agent's new state and appends to agent_events, dropping the
  // agent's events beyond the newest kMaxEventsPerAgent.
  Status record_transition(const Transition& t, int64_t now_wall_ms);
  // Takes an accepted heartbeat reply: last beat, health, and the checkpoints
  // of the types the agent is registered for (others are ignored). Memory
  // only until flush(). No-op for an unknown agent.
  void record_beat(const HeartbeatReply& reply, int64_t now_wall_ms);
  // Writes every agent changed by record_beat since the last flush.
  Status flush();

  void set_delivery(const std::string& agent, const std::string& type, DeliveryState state);

  std::optional<AgentRecord> find(const std::string& agent) const;
  std::vector<AgentRecord> all() const;

  // The stored state changes of `agent`, oldest first.
  Result<std::vector<AgentEvent>> events(const std::string& agent) const;

 private:
  explicit AgentRegistry(std::unique_ptr<Database> db) : db_(std::move(db)) {}
  Status create_tables(const std::string& old_store);
  // `attached`: the old store's path when it is attached as old_store, else "".
  Status copy_old_tables(const std::string& attached);
  // Drops the agent tables of the attached old store, if it has them.
  Status drop_old_tables();
  // How many of the three agent tables the attached old store holds.
  Result<int64_t> old_agent_tables();
  Status load();
  Status write_beat(const AgentRecord& a);
  Result<Database*> reader() const;

  std::unique_ptr<Database> db_;  // writer; owner thread only

  mutable std::mutex mu_;
  std::map<std::string, AgentRecord> agents_;  // guarded by mu_
  std::vector<std::string> dirty_;             // guarded by mu_; agents with unflushed beats

  mutable std::mutex read_mu_;
  mutable std::unique_ptr<Database> read_db_;  // guarded by read_mu_; opened on first use
};

}  // namespace ds
