#pragma once
// SimulatedFleet: many agents simulated cheaply inside one process (the
// benchmark's `fleet` and `dead` scenarios, the liveness stall tests), with
// real NATS traffic to a real hub.
//
// A few connections carry all the agents. Each agent registers for real on
// ds.hub.register.<agent> with what a fresh deltasync-agent reports (one
// subscription to the benchmark type, partition "*", empty checkpoint; see
// agent/registrar.cc), so the hub stores it and creates its consumer. When
// heartbeats are answered, each agent answers every heartbeat request the
// hub sends it, the per-type broadcast ds.hb.<type> and the direct probe
// ds.agent.<agent>.hb, with exactly what a fresh agent publishes on
// ds.hub.beat.<agent> (agent/heartbeat_responder.cc,
// CheckpointBoard::heartbeat): its id, the
// current wall time, status ok, the type's checkpoint {version 0, seq 0,
// ts 0, the schema hash from the register reply}, nothing pending or
// quarantined. One subscription per connection takes the broadcast and
// answers for the agents of that connection, one wildcard subscription takes
// the probes.
//
// With Options::live_feed they ask for the live feed and report it as a
// deltasync-agent does once given it (Checkpoint::feed).
//
// Not simulated: the agents do not subscribe their deliver subjects
// (ds.push.<agent>.<type>), so the scenarios that use the fleet ingest
// nothing while it is registered; a request to register again (heartbeat key
// "register") is not acted on.
//
// Thread-safety: register_all() and the accessors are called from the
// driver's thread; the heartbeat handlers run on cnats threads and share the
// per-agent state with them under one mutex.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

class SimulatedFleet {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string nats_url;
    std::string type;              // the one type every agent takes
    std::string id_prefix;         // agent i is "<id_prefix><i>"
    size_t agents = 0;
    size_t connections = 4;        // agents are spread over them; also the registrations in flight
    bool answer_heartbeats = true;  // false: agents that register and then fall silent
    // Agents ask for the live feed (docs/protocol.md, "Live feed") and say
    // in their replies whether the hub gave it. They do not subscribe it:
    // cnats gives every subscription a thread of its own.
    bool live_feed = false;
  };

  static Result<std::unique_ptr<SimulatedFleet>> start(Options options);
  ~SimulatedFleet();
  SimulatedFleet(const SimulatedFleet&) = delete;
  SimulatedFleet& operator=(const SimulatedFleet&) = delete;

  size_t size() const { return ids_.size(); }
  const std::string& id(size_t agent) const { return ids_[agent]; }

  // Registers every agent, one request in flight per connection; fails on the
  // first refusal or when `timeout_s` runs out.
  Status register_all(double timeout_s);

  // The agent answers the next heartbeat request it gets and none after it.
  void fall_silent_after_next_answer(size_t agent);
  // The agent answers no heartbeat request from now on (it is gone).
  void fall_silent(size_t agent);
  // When the agent last answered, and the first request it left unanswered.
  std::optional<Clock::time_point> last_answer(size_t agent) const;
  std::optional<Clock::time_point> first_unanswered(size_t agent) const;
  // Heartbeat replies sent so far, all agents together.
  uint64_t answers() const;
  // Agents whose registration gave them the live feed.
  size_t on_live_feed() const;

 private:
  struct AgentState {
    bool registered = false;
    bool on_feed = false;  // the registration's delivery was the live feed
    bool last_answer_due = false;  // answer once more, then stay silent
    bool silent = false;
    std::optional<Clock::time_point> last_answer;
    std::optional<Clock::time_point> first_unanswered;
  };

  explicit SimulatedFleet(Options options);
  Status register_slice(size_t connection, Clock::time_point deadline);
  // Answers a heartbeat request for the given agents (those registered and not silent).
  void answer(const std::vector<size_t>& agents);
  size_t agent_of_probe(std::string_view subject) const;

  Options options_;
  std::vector<std::string> ids_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::vector<size_t>> agents_of_connection_;

  mutable std::mutex mu_;
  std::vector<AgentState> state_;  // guarded by mu_
  std::string schema_hash_;        // guarded by mu_; from the first register reply
  uint64_t answers_ = 0;           // guarded by mu_

  // Last: destroyed first, so no handler runs while the state above goes.
  std::vector<std::unique_ptr<Subscription>> subscriptions_;
};

}  // namespace ds
