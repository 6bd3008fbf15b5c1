#pragma once
// AgentService: the agent-facing half of the hub — registration, liveness by
// heartbeat and the per-agent consumers (docs/architecture.md, "Heartbeat"
// and "Consumer planning"). The hub wires it to its connection, its JetStream
// context, the ingest path (on_committed), the broker reconnect
// (on_reconnected) and the HTTP API (fleet_snapshot, retire).
//
// Threads. Every change of agent state runs on one service thread (an asio
// io_context): registrations, heartbeat replies, the liveness tick and the
// consumer operations it causes, retire, reconnect. cnats callbacks only
// decode and post there (or queue, for a registration), so they never block
// on a JetStream request or a SQLite write; the tracker and the registry's
// writer connection have a single user and need no locks (the delivery
// manager is thread-safe: a batch of registrations creates consumers on
// threads of its own, "Registrations in flight" below); and a tick, a
// registration and a reply of the same agent can never interleave. A timer on the same
// thread evaluates liveness every quarter interval (so "dead" is noticed
// within a quarter interval of dead_after x interval of accountable silence)
// and sends the heartbeats every interval, each round followed by a flush
// round trip that confirms it reached the broker. Silence is counted in the
// accountable time of liveness_tracker.h (AccountableClock, steps capped at
// half an interval; frozen while the connection is down or the last round is
// unconfirmed), so a stalled hub or broker does not declare its fleet dead;
// after a reconnect every live or suspect agent's silence counts afresh. The
// heartbeats: one broadcast HeartbeatRequest per type with
// non-retired agents on ds.hb.<type>, plus a direct probe on
// ds.agent.<id>.hb to each suspect agent. Requests carry no reply subject
// (so an agent's allow_responses permission gives it nothing here); agents
// publish their replies on ds.hub.beat.<id>, and a reply is attributed to
// the subject's last token only, which nats-server lets only that agent
// publish. A reply whose body names another agent is refused and counted
// (refused_beats()), with at most one warning per sender per interval.
//
// Registrations in flight. A registration is the one event whose work is
// not all on the service thread: cnats callbacks queue registrations
// (hub/registration_queue.h), and the service thread takes up to
// kRegistrationsInFlight of distinct agents at a time, records each (the
// registry, the tracker), then creates their consumers concurrently, each
// registration on a thread of its own that only calls JetStream
// (RegistrationHandler::open_all), and stores and answers each as soon as
// its consumers are done, until the whole batch is. Why: on replicated
// streams each consumer create waits for its new Raft group to elect a
// leader (nats-server campaigns after a random 100-800 ms), so one create
// at a time registered about 2 agents a second, and batches of 8 register
// 9-10 (docs/benchmarks.md, "Creating consumers on three replicas"). The
// service thread does nothing else meanwhile, as when it made the creates
// itself, so no tick, reply or retire interleaves with a registration;
// one agent's subscriptions are still opened in turn, each after checking
// that the agent still waits.
//
// The public methods are thread-safe. start() returns with the service
// subscribed and running; stop() (or the destructor) unsubscribes, flushes
// buffered heartbeat state and joins the thread. The Connection and JetStream
// passed to start() must outlive the service.
//
// Seams (shared/clock.h, shared/messaging.h): the service reads time only
// through a Clock and talks to the broker only through Messaging and
// ConsumerControl. The production start() adapts its Connection and
// JetStream and the real clocks; unit tests (tests/unit/agent_service_test.cc)
// pass fakes and a service without its own timer, moving time by hand and
// running ticks with tick(). Which consumer each subscription gets is the
// consumer planner's decision (hub/consumer_planner.h).
//
// Fleet snapshot. The HTTP thread never builds the fleet's view: the service
// thread does, after each change (a registration, once answered, a
// heartbeat reply, a tick, a retire, a commit's new marks, a consumer
// change), and publishes it as an immutable FleetSnapshot
// (hub/fleet_view.h) that fleet_snapshot() hands out under a lock held only
// for copying the pointer. GET /v1/fleet/agents filters, sorts and pages it,
// GET /v1/agents serializes it and /metrics writes its fleet series from it
// (write_metrics), so a dashboard refresh or a scrape at 10,000 agents costs
// the HTTP thread a page, not the view. The rule that bounds the service
// thread's share: a snapshot is built at once when the previous build
// started at least kSnapshotDutyFactor times its own duration (steady time,
// as measured) ago, else once that much has passed (a timer), so at 10,000
// agents (about 120 ms a build) the fleet pages lag by about a second and
// building takes about a tenth of the thread; a small fleet's snapshot (well
// under a millisecond) follows every change. tick() always publishes one.
//
// An agent that returns from dead through a heartbeat reply whose checkpoint
// has meanwhile left the stream, or that reports an outdated schema hash, is
// ordered to register again (HeartbeatRequest "register" on its direct probe,
// at most once per interval); the reply to that registration orders the
// snapshot or carries the current schema, which the agent adopts in place.
// So is an agent one of whose consumers has a copy that stays behind on a
// NATS node that is up (replicated streams: each beat round reads the
// followers of up to 64 consumers, within a quarter interval, and gives at
// most 2 such orders; hub/consumer_copy_watch.h): its registration
// recreates the consumers.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hub/agent_registry.h"
#include "shared/prometheus.h"
#include "hub/authorizer.h"
#include "hub/fleet_view.h"
#include "hub/query_store.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// What the service talks to and reads time from; all must outlive it.
struct AgentServiceEnv {
  Messaging& messaging;
  ConsumerControl& consumers;
  Clock& clock;
  // true: a timer on the service thread runs the liveness tick every
  // quarter interval (production); false: only tick() does (tests).
  bool own_timer = true;
};

// Registrations whose consumers are created at once ("Registrations in
// flight" above): the measured gain on a three-node cluster, with few
// enough threads that a burst of registrations costs little.
constexpr size_t kRegistrationsInFlight = 8;

// A fleet snapshot is built again no sooner than this many times the last
// build's duration after that build started ("Fleet snapshot" below).
constexpr int64_t kSnapshotDutyFactor = 10;

class AgentService {
 public:
  // Opens the agent registry next to config.store_path (agent_registry_path),
  // restores known agents (live and suspect ones get a fresh silence window
  // and their consumers checked), subscribes ds.hub.register.* and ds.hub.beat.*, and starts the service
  // thread. Registrations are authorized by `authorizer`, which must outlive
  // the service; a registration whose reply subject is not the agent's own
  // inbox is dropped unanswered (Authorizer::may_reply).
  static Result<std::unique_ptr<AgentService>> start(const HubConfig& config, Connection& nc, JetStream& js,
                                                     Authorizer& authorizer);
  // The same over explicit seams.
  static Result<std::unique_ptr<AgentService>> start(const HubConfig& config, AgentServiceEnv env,
                                                     Authorizer& authorizer);
  ~AgentService();
  AgentService(const AgentService&) = delete;
  AgentService& operator=(const AgentService&) = delete;

  // After an ingest commit, with the marks of the partitions it changed:
  // remembers them (for lag) and probes the agents of those types whose last
  // reply is older than one interval (docs/architecture.md, "Heartbeat"). Only posts.
  void on_committed(const std::vector<PartitionMark>& marks);
  // At start: the marks read from the query store; no probes.
  void restore_marks(const std::vector<PartitionMark>& marks);
  // After a broker reconnect: checks the consumers of live and suspect agents
  // and recreates missing ones from their last known checkpoint (memory
  // consumers do not survive a broker restart). Only posts.
  void on_reconnected();
  // GET /v1/agents: an array, one object per agent:
  //   {id, host, version, state, registered_at, last_beat (wall ms), health,
  //    pending, quarantined, last_error,
  //    types: {<type>: {partition, version, seq, ts, rows, lag_versions,
  //            lag_ms, schema_hash, schema_ok, consumer, held_back,
  //            awaiting_snapshot, quarantined, note, freshness_ok}}}
  // The agent's quarantined counts entries of every type; a type's
  // quarantined those of that type, null while the agent has not reported
  // them per type (an older agent, or no reply since the hub started).
  // Lag is measured against the mark of the agent's partition (all
  // partitions for "*"): caught up (agent version >= the mark's) gives
  // lag_versions = lag_ms = 0; otherwise lag_versions = the type's newest
  // version - the agent's (an upper bound for a partitioned subscription:
  // other partitions' versions in between count too) and lag_ms = the
  // partition's newest business time - the agent's (null while the agent has
  // applied nothing). Both null when the hub has no change of the type yet.
  // staleness_ms: the age of the oldest change of the agent's partition it
  // had not applied, measured by the hub at the agent's latest report while
  // it is live, at now once it is suspect or dead (hub/commit_history.h); 0
  // when it had every change. freshness_breach:
  // staleness_ms above the type's freshness objective (objective_ms);
  // freshness_breaches: how often it entered a breach since the hub started
  // (checked once per heartbeat interval). freshness_ok = live, not held
  // back, and not in breach.
  nlohmann::json agents_json() const;
  // The fleet as published last by the service thread (see "Fleet snapshot"
  // above); never null once start() has returned. Thread-safe.
  std::shared_ptr<const FleetSnapshot> fleet_snapshot() const;
  // The fleet series of GET /metrics (hub/fleet_metrics.h). Thread-safe;
  // reads the latest fleet snapshot, so the fleet series are as old as it is.
  void write_metrics(PrometheusWriter& w) const;
  // Operator: the agent becomes retired, its consumers are deleted and it is
  // no longer sent heartbeats (it stays retired until it registers again).
  // Never waits (the HTTP thread calls it): `done` gets the outcome once, on
  // the service thread, or at once after stop(): NotFound for an unknown
  // agent; Unavailable after stop(). A retire queued when stop() begins is
  // dropped unanswered.
  void retire(const std::string& agent, std::function<void(Status)> done);
  // deltasync verify --repair: orders `agent` to reload `type` from a
  // snapshot. The agent is told to register again (as for an ordered
  // registration) and that registration's reply orders the snapshot, which
  // replaces the agent's rows of the type; it then registers again and its
  // consumer resumes after the snapshot. Until then agents_json() shows the
  // type awaiting_snapshot. NotFound for an unknown agent or a type it does
  // not take; Unavailable when the agent is not live or suspect, or after
  // stop().
  Status order_snapshot(const std::string& agent, const std::string& type);
  void stop();
  // Runs one liveness tick on the service thread now and returns after it:
  // silence evaluated in accountable time, and when the beat is due,
  // heartbeats sent and confirmed (a flush) and freshness evaluated; then a
  // fleet snapshot is published whatever the budget says. Posted
  // after everything posted before it (registrations, replies), so a test
  // can also use it as a barrier. Unavailable after stop().
  Status tick();

  // The agents' state, for tests and diagnostics.
  const AgentRegistry& registry() const;
  // Heartbeat replies refused because their body named an agent other than
  // their sender (the subject's last token).
  uint64_t refused_beats() const;
  // Registrations the agent had stopped waiting for (its reply timeout,
  // kRegisterReplyTimeoutMs, passed): dropped before they began, cut short,
  // or finished too late.
  uint64_t late_registrations() const;
  // Orders to register again because a copy of one of the agent's consumers
  // stayed behind on a NATS node that is up (hub/consumer_copy_watch.h); an
  // order that led to no new consumer is repeated after another grace.
  uint64_t copy_repair_orders() const;

 private:
  struct Impl;
  explicit AgentService(std::unique_ptr<Impl> impl);
  static Result<std::unique_ptr<AgentService>> start(const HubConfig& config, AgentServiceEnv env,
                                                     Authorizer& authorizer, std::unique_ptr<Messaging> own_messaging,
                                                     std::unique_ptr<ConsumerControl> own_consumers);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
