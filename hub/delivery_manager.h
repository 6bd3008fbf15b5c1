#pragma once
// DeliveryManager: the one place that creates and removes agents' push
// consumers on the types' streams (DESIGN.md §4, protocol notes "Consumers").
//
// Per agent and type one consumer: durable ag_<agent> on stream DS_<TYPE>,
// filtered on ds.delta.<type>.<partition> (or ds.delta.<type>.> for "*" and
// unpartitioned types), delivering to ds.push.<agent>.<type>, explicit
// acks, memory storage, one replica, bounded max-ack-pending, flow control,
// max_deliver 5, starting at the agent's checkpoint seq + 1.
//
// Explicit acks, not ack-all: a consumer replaced here keeps its name, and an
// agent may still ack what the replaced one delivered (it was paused, or it
// restarted and subscribed before registering). An explicit ack names a
// stream message the agent applied, which stays true for the new consumer;
// an ack-all ack carries the old consumer's delivery sequence, and
// nats-server 2.9 then ignored the new consumer's real acks until
// redeliveries (ack_wait) had numbered past it: a stall of 30 s or more.
//
// Resume rule (plan()): a checkpoint whose next sequence has left the stream
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
// in the query store that the agent lacks.
//
// Stateless apart from its configuration: it does not remember which
// consumers exist (the registry keeps that belief). Thread-safe as far as
// JetStream is (it is); each call is one or two JetStream API requests, so
// call it from the agent service's thread, never from a cnats callback.

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/config.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// What plan() decided, and why when it is a snapshot (for the log and the
// registry's note).
struct DeliveryPlan {
  Resume resume = Resume::kStream;
  std::string why;
};

class DeliveryManager {
 public:
  DeliveryManager(const HubConfig& config, JetStream& js);

  // Stream resume or snapshot for a checkpoint at stream sequence `seq`
  // and version `version`. NotFound when the type's stream does not exist.
  Result<DeliveryPlan> plan(std::string_view type, uint64_t seq, uint64_t version);

  // The consumer configuration for an agent's subscription.
  ConsumerSpec consumer_spec(std::string_view agent, std::string_view type, std::string_view partition,
                             uint64_t after_seq) const;

  // (Re)creates the consumer so that it delivers from after_seq + 1: deletes
  // an existing one first (a consumer's start cannot be moved).
  Status open(std::string_view agent, std::string_view type, std::string_view partition, uint64_t after_seq);
  // Removes the consumer; OK when it does not exist.
  Status close(std::string_view agent, std::string_view type);
  Result<bool> exists(std::string_view agent, std::string_view type);

  const Subjects& subjects() const { return subjects_; }

 private:
  const HubConfig& config_;
  JetStream& js_;
  Subjects subjects_;
};

}  // namespace ds
