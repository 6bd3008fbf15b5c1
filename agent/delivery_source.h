#pragma once
// DeliverySource: where each type's deltas come from now, its push consumer
// or the live feed (docs/protocol.md, "Live feed"), and whether a message
// of the live feed is taken. The rule of docs/scaling.md ("The design for
// 100,000 agents") on the agent's side.
//
//   - A type starts on its consumer. `held` is the stream sequence up to
//     which every message of the type's subscription is applied or queued:
//     the replica's checkpoint at start, then each message taken.
//   - On its consumer, a live-feed message that continues `held` (by
//     agent/feed_order.h's rule) moves the type onto the feed by itself: the
//     feed now brings everything after what the consumer brought, so the
//     consumer's deliveries are dropped from here on and the heartbeat
//     reply says so (Checkpoint::feed); the hub then removes the consumer.
//     A feed message that does not continue `held` is dropped (the consumer
//     brings it), and so is every one while a registration is under way
//     (a snapshot may be loading, and the reply decides).
//   - On the feed, messages are judged by FeedOrder: a gap (or a message the
//     agent's queue has no room for: lost()) stops the type
//     until a registration's reply (the agent registers again; the hub
//     finds it behind and gives it a consumer from its checkpoint).
//   - A registration's reply decides: a delivery with `feed` puts the type
//     on the feed from the sequence the registration reported (a type on
//     the feed already, without a gap, goes on as it is); one without puts
//     it on the consumer the hub made from that sequence, with that
//     sequence held, also when the type was on the feed: the hub found it
//     behind (a batch lost before a quiet spell, a stream created anew), and
//     only a consumer from the checkpoint brings what it lacks.
//
// Thread-safety: none; DeltaApplier calls it under its queue mutex.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "agent/feed_order.h"

namespace ds {

class DeliverySource {
 public:
  // Per type it takes: whether it takes every partition ("*": the feed is
  // ds.feed.<type>.>), and the stream sequence the replica holds.
  struct TypeStart {
    bool every_partition = false;
    uint64_t held = 0;
  };
  explicit DeliverySource(const std::map<std::string, TypeStart>& types);

  enum class Take {
    kApply,     // apply it (on the feed, in order)
    kSwitched,  // apply it: the type moved onto the feed with it
    kDrop,      // not needed: held already, or the consumer brings it
    kGap,       // a feed message is missing before it: register again
    // The same, at the first (stamped) message after a registration's reply
    // gave the feed: one published while the registration was under way
    // (dropped then, see above) is missing. Expected under load; not a fault.
    kGapAfterRegistration,
  };
  Take feed_message(const std::string& type, const std::optional<FeedStamp>& stamp);
  // Whether a consumer delivery of `type` is taken: not once the type is on
  // the feed, except while a registration is under way (its consumer
  // delivery order decides then: the reply may move the type onto the
  // consumer the hub just made, whose first deliveries may come before it).
  bool takes_consumer(const std::string& type) const;
  // A consumer delivery of `type` at stream sequence `seq` was taken in order.
  void consumer_taken(const std::string& type, uint64_t seq);

  // A registration begins: no type moves onto the feed by itself until
  // registered() is done.
  void registering();
  // The registration's reply for `type`: `feed` as the delivery says,
  // `reported_seq` as the registration reported.
  void registered(const std::string& type, bool feed, uint64_t reported_seq);
  // The registration is done (every registered() called), or failed.
  void registration_done() { registering_ = false; }

  // The agent could not keep a message of `type` (its queue is full): on
  // the feed that is a gap (the same as a missing one).
  void lost(const std::string& type);

  // On the feed (also behind a gap, until the next reply).
  bool on_feed(const std::string& type) const;
  // On the feed and taking it: what the heartbeat reply reports
  // (Checkpoint::feed), so that the hub removes the type's consumer only
  // while the feed brings everything.
  bool taking_feed(const std::string& type) const;

 private:
  struct TypeState {
    bool every_partition = false;
    bool feed = false;
    bool just_registered = false;  // on the feed from a reply, no message taken since
    uint64_t held = 0;  // on the consumer; on the feed FeedOrder holds it
  };
  std::map<std::string, TypeState> types_;
  FeedOrder order_;
  bool registering_ = false;
};

}  // namespace ds
