#pragma once
// ConsumerPlanner: the one rule deciding, per agent x type, whether the
// agent's subscription has a push consumer and from where, needs a
// snapshot, is held back, or gets nothing (docs/architecture.md, "Consumer
// planning"). Pure: no clock, thread, JetStream or SQLite of its own. The
// caller passes the registry's view of the subscription, what it read from
// the broker, and "now" where time matters; plan_consumer() returns the
// actions, which DeliveryManager::carry_out() executes. Tests drive it case
// by case (tests/unit/consumer_planner_test.cc).
//
// Broker facts are read lazily, as today's I/O budget demands (a heartbeat
// reply of an agent whose consumer is open must cost no JetStream request):
// when a plan needs a fact it does not have yet, it returns `need` and
// nothing else; the executor reads that fact into BrokerFacts and plans
// again (at most three rounds: stream state, the message at the checkpoint,
// the consumer's existence).
//
// The rules, by event:
//   registered  the reply orders resume: snapshot when the resume rule says
//               so or deltasync verify --repair asked for one (the consumer
//               is then deleted: it would push from a point the agent cannot
//               use); otherwise the consumer is (re)created from the
//               checkpoint. No schema-hash check here: the reply carries the
//               hub's schema, which the agent adopts in place. A failure to
//               plan or to act fails the registration (the agent retries).
//   reported,   (a heartbeat reply; a hub start or broker reconnect, which
//   reconnected also verifies believed-open consumers on the server) only for
//               a live or suspect agent: a type the hub no longer declares
//               gets a note and nothing else; a reported schema hash that
//               differs from the hub's holds deliveries back (the consumer is
//               deleted); while a snapshot is awaited nothing opens;
//               otherwise a missing consumer is opened from the checkpoint,
//               unless the resume rule orders a snapshot (the agent is then
//               ordered to register again: registration_reasons()).
//   gone        (the agent became dead or retired) every consumer is deleted.
//               (A type on the live feed has none: only its state resets.)
//   dropped     (the agent registered without the type) its consumer is
//               deleted.
//
// Live feed (docs/protocol.md, "Live feed"; docs/scaling.md, "The design
// for 100,000 agents"): an agent that asks for it (feed_asked) and is
// current gets no consumer but the feed, whose continuity it checks itself
// (agent/feed_order.h):
//   registered  resume from the stream, no repair, the stream republishes on
//               feed_filter, and the reported version is at partition_mark:
//               the feed (a consumer left from before is deleted). Else a
//               consumer, as above: the agent moves itself onto the feed
//               once the feed continues what the consumer delivered.
//   reported    the agent reports it takes the type from the feed (it moved
//               itself): its consumer is deleted. On the feed, a version
//               still below the partition_mark of two replies before (a
//               lost last batch before a quiet spell; one reply of slack
//               for a batch on its way) orders it to register again
//               (registration_reasons()), which gives it a consumer.
//               Nothing is opened for a type on the feed, after a broker
//               reconnect neither.
//
// Resume rule: a checkpoint whose next sequence has left the stream
// (seq + 1 < first_seq) while the stream has ever held data (last_seq > 0)
// needs a snapshot; so does a checkpoint ahead of the stream (seq > last_seq:
// the stream was recreated and renumbered), and a checkpoint whose message
// now carries a batch past the agent's version (the stream was rebuilt from
// the hub's log after the broker lost it, and the log had been compacted
// below the stream's start (StoreRetention), so the same sequence now names
// a later batch: resuming after it would skip changes). Everything else
// resumes from the stream: batches ascend with the sequence, so every
// message up to a checkpoint whose batch is at or below the agent's version
// holds nothing the agent lacks. "Ever held data" rather than "holds
// messages now": a stream whose messages all aged out still stands for rows
// in the query store that the agent lacks. A stream that does not exist is
// Unavailable: the hub recreates every stream at start and after each
// reconnect, so it is not there yet.
//
// Thread: none of its own; every function is pure and may run anywhere.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hub/agent_registry.h"
#include "hub/liveness_tracker.h"
#include "shared/messages.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// Why the subscription is planned now.
enum class PlanEvent { kRegistered, kReported, kReconnected, kGone, kDropped };

struct PlanInput {
  PlanEvent event = PlanEvent::kReported;
  AgentState agent_state = AgentState::kLive;
  SubscriptionState sub{};              // as the registry holds it (after the registration, for kRegistered)
  std::optional<std::string> hub_hash{};  // the hub's schema hash of sub.type; nullopt: not declared (any more)
  bool repair_ordered = false;          // kRegistered: deltasync verify --repair asked for a snapshot
  std::string gone_reason{};            // kGone: the note, e.g. "agent dead"
  // The live feed (see "Live feed" above): the subject filter the type's
  // stream republishes on when this hub offers the feed ("" = it does not),
  // the newest version committed in the subscription's partition (the
  // type's for "*"), and for kRegistered whether the agent asked for it.
  std::string feed_filter{};
  uint64_t partition_mark = 0;
  bool feed_asked = false;
};

// What the executor read from the broker for this plan, each only once a
// plan asked for it.
struct BrokerFacts {
  std::optional<Result<StreamState>> stream{};  // stream_state(DS_<TYPE>)
  // The batch of the stream message at sub.seq (nullopt inside: it carries
  // none); NotFound: the message was deleted.
  std::optional<Result<std::optional<uint64_t>>> checkpoint_batch{};
  std::optional<Result<bool>> consumer_exists{};  // the agent's consumer on DS_<TYPE>
};

// A fact to read before the plan can be made.
enum class PlanNeed { kNothing, kStreamState, kCheckpointBatch, kConsumerExists };

// What to do with the consumer. kOpen (re)creates it from sub.seq + 1
// (an existing one is deleted first: a consumer's start cannot be moved).
enum class ConsumerOp { kKeep, kOpen, kClose };

enum class PlanLogLevel { kInfo, kWarn };
struct PlanLog {
  PlanLogLevel level = PlanLogLevel::kInfo;
  std::string text{};  // logged as "agent <id> type <type>: <text>"
  bool operator==(const PlanLog&) const = default;
};

struct ConsumerPlan {
  PlanNeed need = PlanNeed::kNothing;  // not kNothing: read it and plan again; nothing below holds yet
  ConsumerOp op = ConsumerOp::kKeep;
  Resume resume = Resume::kStream;     // kRegistered: what the reply orders
  bool store = false;                  // `state` replaces the registry's delivery state
  DeliveryState state{};
  Status error{};                      // kRegistered: the registration fails with this
  std::vector<PlanLog> logs{};         // logged before the op runs
};

// The plan for one subscription given the facts read so far.
ConsumerPlan plan_consumer(const PlanInput& input, const BrokerFacts& facts);

// deltasync verify --repair ordered a snapshot: the state until the agent
// registers again (whose reply orders it).
DeliveryState repair_ordered(DeliveryState state);

// Why `agent` must register again, "" when it need not: a subscription
// awaiting a snapshot that no registration reply has ordered yet (its
// checkpoint left the stream while it was away, or --repair), or one held
// back because its schema is out of date; the reply to that registration
// orders the snapshot or carries the schema.
std::string registration_reasons(const AgentRecord& agent);

// At most one order to register again per agent per interval: true when
// none was given yet (`last_order_ms` nullopt) or the last is an interval old.
bool may_order_registration(std::optional<int64_t> last_order_ms, int64_t now_ms, int64_t interval_ms);

}  // namespace ds
