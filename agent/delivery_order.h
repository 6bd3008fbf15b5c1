#pragma once
// DeliveryOrder: notices a push delivery that went missing on its way to the
// agent, before the deliveries behind it are applied.
//
// Why: nats-server numbers the deliveries of one consumer 1, 2, 3, ... (the
// consumer sequence of the ack subject; a redelivery gets a new number too).
// A delivery in flight when the agent's connection drops is lost, and the
// consumer sends it again only after ack_wait (30 s). Applying the
// deliveries behind it meanwhile would move the replica's checkpoint past
// it; if the consumer is then recreated from that checkpoint (a
// registration, the agent declared dead), the lost change never comes
// again, and with partial updates the replica keeps a stale field for good
// (docs/reliability.md, "Replica divergence").
//
// The rule, per type:
//   - 1 is in order: a consumer the hub has just (re)created;
//   - one more than the last number seen is in order;
//   - anything else is a gap. That includes a number not above the last
//     one: the number may belong to a consumer the hub recreated whose
//     delivery 1 was lost (its 2 would otherwise pass as "in order" after
//     an old consumer's 5), or to a clustered consumer whose new leader
//     restored an older state; registering again costs little either way.
//     (Agent consumers keep their state in memory, so a standalone broker
//     that restarts has none, and the hub recreates them from 1.)
//     At a gap, that delivery and every later one of the type are refused
//     (neither applied nor acked) until a delivery numbered 1 shows the new
//     consumer; the agent gets one by registering again, and the hub
//     recreates the consumer from the replica's checkpoint, which is before
//     the missing delivery. Should that delivery 1 be lost too, the next
//     redelivery the agent refuses (after ack_wait) asks for a registration
//     again (DeltaApplier::on_push), so a type is never refused for good.
// The first delivery of a run must be 1: the agent subscribes only after
// its first registration has created its consumers (agent/agent.h).
// A lost connection and the start of a registration are treated as a gap
// in every type that has had deliveries, silently (expect_new_consumers):
// the registration recreates every consumer, and the numbers alone cannot
// tell the old consumer from the new one, whose first deliveries may be
// lost too (an old 1 followed by a new 2 would pass as "last + 1"). A type
// with no delivery yet takes only a 1 anyway (a non-1 is a counted gap).
// It relies on every registration leaving a consumer whose next delivery is
// numbered 1 (DeliveryManager::open deletes it and creates it anew, or
// keeps one that has delivered nothing yet; hub/delivery_manager.h): a hub
// that kept a consumer that had delivered would never send the delivery
// numbered 1 that ends a gap.
//
// Thread-safety: none; DeltaApplier calls it under its queue mutex.

#include <cstdint>
#include <map>
#include <string>

namespace ds {

class DeliveryOrder {
 public:
  enum class Verdict {
    kInOrder,  // apply it
    kGap,      // out of order: refuse it, register again
    kRefused,  // behind a gap, before the new consumer: refuse it
  };

  // Judges the delivery of `type` numbered `consumer_seq` and remembers it.
  Verdict observe(const std::string& type, uint64_t consumer_seq);
  // Every type seen so far waits for a delivery numbered 1 (later ones are
  // kRefused, not a new gap).
  void expect_new_consumers();
  // The last number seen for `type` before its gap (0 when none).
  uint64_t last_in_order(const std::string& type) const;

 private:
  struct TypeState {
    uint64_t last = 0;     // last in-order consumer sequence; 0 = none yet
    bool broken = false;   // a gap was seen; waiting for a delivery numbered 1
  };
  std::map<std::string, TypeState> types_;
};

}  // namespace ds
