#pragma once
// DeliveryManager: the one place that creates and removes agents' push
// consumers on the types' streams (docs/protocol.md, "Subjects and streams").
//
// Per agent and type one consumer: durable ag_<agent> on stream DS_<TYPE>,
// filtered on ds.delta.<type>.<partition> (or ds.delta.<type>.> for "*" and
// unpartitioned types), delivering to ds.push.<agent>.<type>, explicit
// acks, memory storage, as many replicas as the stream, bounded
// max-ack-pending, flow control, max_deliver 5, starting at the agent's
// checkpoint seq + 1.
//
// Explicit acks, not ack-all: a consumer replaced here keeps its name, and an
// agent may still ack what the replaced one delivered (it was paused, or it
// restarted and subscribed before registering). An explicit ack names a
// stream message the agent applied, which stays true for the new consumer;
// an ack-all ack carries the old consumer's delivery sequence, and
// nats-server 2.9 then ignored the new consumer's real acks until
// redeliveries (ack_wait) had numbered past it: a stall of 30 s or more.
//
// Which consumer a subscription should have is decided by the consumer
// planner (hub/consumer_planner.h); carry_out() reads the broker facts a
// plan asks for and executes it. The planner is pure; this is its only I/O.
//
// Slow answers of a NATS cluster. nats-server 2.9.10 gives a new replicated
// consumer a random preferred leader, an offline node too; then nobody
// campaigns at once and the leader is elected 4-9 s later. Only that leader
// answers the create (and a delete, and consumer info), so with one node
// down about a third of creates outlast the API timeout, although the
// cluster carries them out. Recreating on every attempt would draw again
// each time (an agent with three types registered after a minute of
// retries); instead open() keeps the consumer an earlier attempt made when
// it is still exactly the one wanted, and a delete not answered in time is
// done when the consumer is gone. Only a consumer that has delivered nothing
// is kept: the agent takes a registration as the start of new consumers,
// whose first delivery is numbered 1 (agent/delivery_order.h); a consumer
// that delivered, even one caught up and idle at the agent's checkpoint,
// would look like a gap to it.
//
// Stateless apart from its configuration: it does not remember which
// consumers exist (the registry keeps that belief). Talks to JetStream
// through ConsumerControl (shared/messaging.h), so tests pass a fake.
// Thread-safe as far as JetStream is (it is); each call is zero to five
// JetStream API requests (none for a heartbeat whose consumer is open; at
// most: consumer exists, stream state, the message at the checkpoint, then
// delete and create), so call it from the agent service's thread, never
// from a cnats callback.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hub/consumer_planner.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

class DeliveryManager {
 public:
  // Over `consumers` (shared/messaging.h), which must outlive it.
  DeliveryManager(const HubConfig& config, ConsumerControl& consumers);
  // Over a JetStream context (NatsConsumerControl), which must outlive it.
  DeliveryManager(const HubConfig& config, JetStream& js);

  // Plans `input` for `agent` (plan_consumer), reading each broker fact the
  // plan asks for, logs the plan's lines and carries out its op. Returns the
  // final plan, amended by what happened: at registration a failed op
  // becomes the plan's error; otherwise a failed open leaves state with no
  // consumer and the failure as note (logged, warn), and a failed close is
  // logged (warn) while the planned state stands (the consumer may linger;
  // the next check of a live agent retries).
  ConsumerPlan carry_out(std::string_view agent, const PlanInput& input);

  // The consumer configuration for an agent's subscription.
  ConsumerSpec consumer_spec(std::string_view agent, std::string_view type, std::string_view partition,
                             uint64_t after_seq) const;

  // (Re)creates the consumer so that it delivers from after_seq + 1: deletes
  // an existing one first (a consumer's start cannot be moved), unless it is
  // already what the create would make (the same configuration, nothing
  // delivered yet, no copy online but behind), which it keeps. Unavailable
  // on replicated streams when the create still finds the deleted one (a
  // cluster mid-delete) or is not answered in time (see the header).
  // `read`: the consumer as the caller just read it (carry_out), else
  // open() reads it.
  Status open(std::string_view agent, std::string_view type, std::string_view partition, uint64_t after_seq,
              const Result<std::optional<ConsumerInfo>>* read = nullptr);
  // Removes the consumer; OK when it does not exist.
  Status close(std::string_view agent, std::string_view type);
  // The consumer's replicas other than its leader, as the leader reports
  // them within `timeout_ms` (hub/consumer_copy_watch.h); NotFound when it
  // does not exist.
  Result<std::vector<StreamFollower>> followers(std::string_view agent, std::string_view type, int64_t timeout_ms);

  const Subjects& subjects() const { return subjects_; }

 private:
  const HubConfig& config_;
  std::unique_ptr<ConsumerControl> owned_;  // set by the JetStream constructor
  ConsumerControl& js_;
  Subjects subjects_;
};

}  // namespace ds
