// The consumer planner case by case: registry state and broker facts in,
// actions out. No broker, no clock, no sleeping.

#include "hub/consumer_planner.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

constexpr const char* kHash = "h1";

SubscriptionState sub_at(uint64_t seq, uint64_t version) {
  SubscriptionState s;
  s.type = "orders";
  s.seq = seq;
  s.version = version;
  s.schema_hash = kHash;
  return s;
}

PlanInput input(PlanEvent event, SubscriptionState sub) {
  return PlanInput{.event = event, .agent_state = AgentState::kLive, .sub = std::move(sub), .hub_hash = kHash};
}

BrokerFacts stream(uint64_t first_seq, uint64_t last_seq) {
  BrokerFacts f;
  f.stream = Result<StreamState>(StreamState{.first_seq = first_seq, .last_seq = last_seq});
  return f;
}

// Plans until no fact is missing, answering from `facts`; fails the test
// when the plan asks for a fact `facts` lacks.
ConsumerPlan plan_with(const PlanInput& in, const BrokerFacts& facts) {
  BrokerFacts given;
  ConsumerPlan p = plan_consumer(in, given);
  for (int round = 0; round < 3 && p.need != PlanNeed::kNothing; ++round) {
    switch (p.need) {
      case PlanNeed::kStreamState:
        EXPECT_TRUE(facts.stream.has_value()) << "asked for the stream state";
        given.stream = facts.stream;
        break;
      case PlanNeed::kCheckpointBatch:
        EXPECT_TRUE(facts.checkpoint_batch.has_value()) << "asked for the checkpoint's message";
        given.checkpoint_batch = facts.checkpoint_batch;
        break;
      case PlanNeed::kConsumerExists:
        EXPECT_TRUE(facts.consumer_exists.has_value()) << "asked whether the consumer exists";
        given.consumer_exists = facts.consumer_exists;
        break;
      case PlanNeed::kNothing:
        break;
    }
    if (::testing::Test::HasFailure()) return p;
    p = plan_consumer(in, given);
  }
  EXPECT_EQ(p.need, PlanNeed::kNothing);
  return p;
}

// ---- the resume rule, at registration ----

TEST(ConsumerPlannerTest, RegistrationAsksForTheStreamFirst) {
  ConsumerPlan p = plan_consumer(input(PlanEvent::kRegistered, sub_at(5, 5)), {});
  EXPECT_EQ(p.need, PlanNeed::kStreamState);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_FALSE(p.store);
}

TEST(ConsumerPlannerTest, RegistrationOnAStreamThatNeverHeldDataResumesFromIt) {
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(0, 0)), stream(0, 0));
  EXPECT_TRUE(p.error.is_ok());
  EXPECT_EQ(p.resume, Resume::kStream);
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
  EXPECT_TRUE(p.store);
  EXPECT_EQ(p.state, (DeliveryState{.consumer_open = true}));
}

TEST(ConsumerPlannerTest, FreshAgentResumesFromTheStreamStart) {
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(0, 0)), stream(1, 100));
  EXPECT_EQ(p.resume, Resume::kStream);
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
}

TEST(ConsumerPlannerTest, CheckpointThatLeftTheStreamOrdersASnapshot) {
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(10, 10)), stream(50, 100));
  EXPECT_TRUE(p.error.is_ok());
  EXPECT_EQ(p.resume, Resume::kSnapshot);
  EXPECT_EQ(p.op, ConsumerOp::kClose);  // a leftover consumer would push from a useless point
  EXPECT_TRUE(p.state.awaiting_snapshot);
  EXPECT_TRUE(p.state.snapshot_ordered);
  EXPECT_FALSE(p.state.consumer_open);
  EXPECT_EQ(p.state.note, "checkpoint seq 10 is no longer in the stream (first seq 50): snapshot ordered");
  ASSERT_EQ(p.logs.size(), 1u);
  EXPECT_EQ(p.logs[0].level, PlanLogLevel::kInfo);
}

TEST(ConsumerPlannerTest, CheckpointJustBeforeTheFirstMessageResumes) {
  // seq + 1 == first_seq: the next message the agent needs is still there.
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(49, 49)), stream(50, 100));
  EXPECT_EQ(p.resume, Resume::kStream);
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
}

TEST(ConsumerPlannerTest, CheckpointWhoseMessagesAllAgedOutStillNeedsASnapshot) {
  // Every message aged out (first = last + 1): the stream once held data.
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(3, 3)), stream(101, 100));
  EXPECT_EQ(p.resume, Resume::kSnapshot);
}

TEST(ConsumerPlannerTest, CheckpointPastTheStreamEndOrdersASnapshot) {
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(200, 200)), stream(1, 100));
  EXPECT_EQ(p.resume, Resume::kSnapshot);
  EXPECT_NE(p.state.note.find("past the stream's end (seq 100)"), std::string::npos) << p.state.note;
}

TEST(ConsumerPlannerTest, CheckpointInsideTheStreamComparesItsMessagesBatch) {
  BrokerFacts f = stream(1, 100);
  ConsumerPlan asks = plan_consumer(input(PlanEvent::kRegistered, sub_at(40, 40)), f);
  EXPECT_EQ(asks.need, PlanNeed::kCheckpointBatch);

  f.checkpoint_batch = Result<std::optional<uint64_t>>(std::optional<uint64_t>(40));
  EXPECT_EQ(plan_with(input(PlanEvent::kRegistered, sub_at(40, 40)), f).resume, Resume::kStream);
  f.checkpoint_batch = Result<std::optional<uint64_t>>(std::optional<uint64_t>(35));
  EXPECT_EQ(plan_with(input(PlanEvent::kRegistered, sub_at(40, 40)), f).resume, Resume::kStream);
}

TEST(ConsumerPlannerTest, CheckpointWhoseMessageNowCarriesALaterBatchOrdersASnapshot) {
  // The stream was rebuilt from a compacted log: seq 40 now names batch 90.
  BrokerFacts f = stream(1, 100);
  f.checkpoint_batch = Result<std::optional<uint64_t>>(std::optional<uint64_t>(90));
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(40, 40)), f);
  EXPECT_EQ(p.resume, Resume::kSnapshot);
  EXPECT_EQ(p.state.note,
            "checkpoint seq 40 now holds batch 90, past the checkpoint's version 40: the stream was rebuilt since: "
            "snapshot ordered");
}

TEST(ConsumerPlannerTest, CheckpointMessageDeletedOrWithoutBatchResumes) {
  BrokerFacts f = stream(1, 100);
  f.checkpoint_batch = Result<std::optional<uint64_t>>(Status::not_found("no message"));
  EXPECT_EQ(plan_with(input(PlanEvent::kRegistered, sub_at(40, 40)), f).resume, Resume::kStream);
  f.checkpoint_batch = Result<std::optional<uint64_t>>(std::optional<uint64_t>());
  EXPECT_EQ(plan_with(input(PlanEvent::kRegistered, sub_at(40, 40)), f).resume, Resume::kStream);
}

TEST(ConsumerPlannerTest, CheckpointMessageUnreadableFailsTheRegistration) {
  BrokerFacts f = stream(1, 100);
  f.checkpoint_batch = Result<std::optional<uint64_t>>(Status::unavailable("timeout"));
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(40, 40)), f);
  EXPECT_EQ(p.error.code(), StatusCode::kUnavailable);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_FALSE(p.store);
}

TEST(ConsumerPlannerTest, MissingStreamIsUnavailableAtRegistration) {
  BrokerFacts f;
  f.stream = Result<StreamState>(Status::not_found("stream not found"));
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, sub_at(4, 4)), f);
  EXPECT_EQ(p.error.code(), StatusCode::kUnavailable);
  EXPECT_NE(p.error.message().find("does not exist (yet)"), std::string::npos) << p.error.message();
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_FALSE(p.store);
}

TEST(ConsumerPlannerTest, RepairOrderTurnsAResumableRegistrationIntoASnapshot) {
  PlanInput in = input(PlanEvent::kRegistered, sub_at(0, 0));
  in.repair_ordered = true;
  ConsumerPlan p = plan_with(in, stream(1, 100));
  EXPECT_EQ(p.resume, Resume::kSnapshot);
  EXPECT_EQ(p.op, ConsumerOp::kClose);
  EXPECT_EQ(p.state.note, "snapshot ordered by deltasync verify --repair");
  EXPECT_TRUE(p.state.snapshot_ordered);
}

TEST(ConsumerPlannerTest, RegistrationDoesNotHoldBackAMismatchedSchema) {
  // The reply carries the hub's schema, which the agent adopts in place.
  SubscriptionState s = sub_at(0, 0);
  s.schema_hash = "old";
  ConsumerPlan p = plan_with(input(PlanEvent::kRegistered, s), stream(1, 10));
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
  EXPECT_FALSE(p.state.held_back);
}

// ---- checks of a live or suspect agent (heartbeat replies, reconnects) ----

TEST(ConsumerPlannerTest, ReportWithAnOpenConsumerCostsNoBrokerRequest) {
  SubscriptionState s = sub_at(40, 40);
  s.delivery.consumer_open = true;
  ConsumerPlan p = plan_consumer(input(PlanEvent::kReported, s), {});
  EXPECT_EQ(p.need, PlanNeed::kNothing);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_EQ(p.state, s.delivery);
  EXPECT_TRUE(p.logs.empty());
}

TEST(ConsumerPlannerTest, ReportWithoutAConsumerOpensOneFromTheCheckpoint) {
  SubscriptionState s = sub_at(0, 0);
  s.delivery.note = "agent dead";
  ConsumerPlan p = plan_with(input(PlanEvent::kReported, s), stream(1, 10));
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
  EXPECT_EQ(p.state, (DeliveryState{.consumer_open = true}));
}

TEST(ConsumerPlannerTest, DeadOrRetiredAgentsAreNotChecked) {
  for (AgentState st : {AgentState::kDead, AgentState::kRetired}) {
    PlanInput in = input(PlanEvent::kReconnected, sub_at(0, 0));
    in.agent_state = st;
    ConsumerPlan p = plan_consumer(in, {});
    EXPECT_EQ(p.need, PlanNeed::kNothing);
    EXPECT_EQ(p.op, ConsumerOp::kKeep);
    EXPECT_FALSE(p.store);
  }
  PlanInput suspect = input(PlanEvent::kReported, sub_at(0, 0));
  suspect.agent_state = AgentState::kSuspect;
  EXPECT_EQ(plan_with(suspect, stream(1, 10)).op, ConsumerOp::kOpen);
}

TEST(ConsumerPlannerTest, ReportWhoseCheckpointLeftTheStreamAwaitsASnapshotUnordered) {
  ConsumerPlan p = plan_with(input(PlanEvent::kReported, sub_at(10, 10)), stream(50, 100));
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_TRUE(p.state.awaiting_snapshot);
  EXPECT_FALSE(p.state.snapshot_ordered);  // the agent is ordered to register, whose reply orders it
  EXPECT_NE(p.state.note.find("ordered to register again"), std::string::npos) << p.state.note;
  ASSERT_EQ(p.logs.size(), 1u);
  EXPECT_EQ(p.logs[0].level, PlanLogLevel::kWarn);
}

TEST(ConsumerPlannerTest, ReportWhileAwaitingASnapshotOpensNothing) {
  SubscriptionState s = sub_at(10, 10);
  s.delivery = {.awaiting_snapshot = true, .snapshot_ordered = true, .note = "loading"};
  ConsumerPlan p = plan_consumer(input(PlanEvent::kReconnected, s), {});
  EXPECT_EQ(p.need, PlanNeed::kNothing);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_EQ(p.state, s.delivery);
}

TEST(ConsumerPlannerTest, ReportOnAMissingStreamNotesItAndOpensNothing) {
  BrokerFacts f;
  f.stream = Result<StreamState>(Status::not_found("stream not found"));
  ConsumerPlan p = plan_with(input(PlanEvent::kReported, sub_at(4, 4)), f);
  EXPECT_TRUE(p.error.is_ok());  // not a registration: nothing to fail
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_TRUE(p.store);
  EXPECT_FALSE(p.state.consumer_open);
  EXPECT_NE(p.state.note.find("does not exist (yet)"), std::string::npos) << p.state.note;
}

TEST(ConsumerPlannerTest, MismatchedSchemaHoldsBackAndClosesOnce) {
  SubscriptionState s = sub_at(5, 5);
  s.schema_hash = "old";
  s.delivery.consumer_open = true;
  ConsumerPlan p = plan_consumer(input(PlanEvent::kReported, s), {});
  EXPECT_EQ(p.need, PlanNeed::kNothing);
  EXPECT_EQ(p.op, ConsumerOp::kClose);
  EXPECT_TRUE(p.state.held_back);
  EXPECT_FALSE(p.state.consumer_open);
  EXPECT_EQ(p.state.note, "schema hash old differs from the hub's h1");
  ASSERT_EQ(p.logs.size(), 1u);
  EXPECT_EQ(p.logs[0].level, PlanLogLevel::kWarn);

  // Already held back: no second delete, no second warning.
  s.delivery = p.state;
  ConsumerPlan again = plan_consumer(input(PlanEvent::kReported, s), {});
  EXPECT_EQ(again.op, ConsumerOp::kKeep);
  EXPECT_TRUE(again.logs.empty());
  EXPECT_EQ(again.state, p.state);
}

TEST(ConsumerPlannerTest, UnreportedSchemaHashIsNoMismatch) {
  SubscriptionState s = sub_at(0, 0);
  s.schema_hash.clear();
  EXPECT_EQ(plan_with(input(PlanEvent::kReported, s), stream(1, 10)).op, ConsumerOp::kOpen);
}

TEST(ConsumerPlannerTest, MatchingSchemaAgainResumesDelivery) {
  SubscriptionState s = sub_at(0, 0);
  s.delivery = {.held_back = true, .note = "schema hash old differs from the hub's h1"};
  ConsumerPlan p = plan_with(input(PlanEvent::kReported, s), stream(1, 10));
  EXPECT_FALSE(p.state.held_back);
  EXPECT_TRUE(p.state.consumer_open);
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
  ASSERT_FALSE(p.logs.empty());
  EXPECT_EQ(p.logs[0].text, "schema hash matches again: delivery resumes");
}

TEST(ConsumerPlannerTest, UndeclaredTypeGetsANoteOnly) {
  PlanInput in = input(PlanEvent::kReconnected, sub_at(5, 5));
  in.hub_hash.reset();
  in.sub.delivery.consumer_open = true;
  ConsumerPlan p = plan_consumer(in, {});
  EXPECT_EQ(p.need, PlanNeed::kNothing);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_TRUE(p.state.consumer_open);
  EXPECT_EQ(p.state.note, "type 'orders' is no longer declared by this hub");
}

TEST(ConsumerPlannerTest, ReconnectVerifiesABelievedOpenConsumer) {
  SubscriptionState s = sub_at(5, 5);
  s.delivery.consumer_open = true;
  EXPECT_EQ(plan_consumer(input(PlanEvent::kReconnected, s), {}).need, PlanNeed::kConsumerExists);

  BrokerFacts there;
  there.consumer_exists = Result<bool>(true);
  ConsumerPlan kept = plan_with(input(PlanEvent::kReconnected, s), there);
  EXPECT_EQ(kept.op, ConsumerOp::kKeep);
  EXPECT_TRUE(kept.state.consumer_open);
}

TEST(ConsumerPlannerTest, ReconnectRecreatesAConsumerTheBrokerLost) {
  SubscriptionState s = sub_at(5, 5);
  s.delivery.consumer_open = true;
  BrokerFacts f = stream(1, 10);
  f.consumer_exists = Result<bool>(false);
  f.checkpoint_batch = Result<std::optional<uint64_t>>(std::optional<uint64_t>(5));
  ConsumerPlan p = plan_with(input(PlanEvent::kReconnected, s), f);
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
  EXPECT_TRUE(p.state.consumer_open);
  ASSERT_FALSE(p.logs.empty());
  EXPECT_EQ(p.logs[0].text, "consumer missing on the server: recreating");
}

TEST(ConsumerPlannerTest, ReconnectThatCannotAskTheBrokerChangesNothing) {
  SubscriptionState s = sub_at(5, 5);
  s.delivery.consumer_open = true;
  BrokerFacts f;
  f.consumer_exists = Result<bool>(Status::unavailable("disconnected"));
  ConsumerPlan p = plan_with(input(PlanEvent::kReconnected, s), f);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  EXPECT_FALSE(p.store);
  ASSERT_EQ(p.logs.size(), 1u);
  EXPECT_EQ(p.logs[0].level, PlanLogLevel::kWarn);
}

// ---- gone and dropped ----

TEST(ConsumerPlannerTest, GoneAgentLosesItsConsumerButKeepsItsOtherState) {
  SubscriptionState s = sub_at(5, 5);
  s.delivery = {.consumer_open = true, .held_back = false, .awaiting_snapshot = true};
  PlanInput in = input(PlanEvent::kGone, s);
  in.agent_state = AgentState::kLive;
  in.gone_reason = "agent dead";
  ConsumerPlan p = plan_consumer(in, {});
  EXPECT_EQ(p.need, PlanNeed::kNothing);
  EXPECT_EQ(p.op, ConsumerOp::kClose);
  EXPECT_TRUE(p.store);
  EXPECT_EQ(p.state, (DeliveryState{.awaiting_snapshot = true, .note = "agent dead"}));
}

TEST(ConsumerPlannerTest, DroppedTypeLosesItsConsumerAndStoresNothing) {
  ConsumerPlan p = plan_consumer(input(PlanEvent::kDropped, sub_at(5, 5)), {});
  EXPECT_EQ(p.op, ConsumerOp::kClose);
  EXPECT_FALSE(p.store);
}

// ---- ordering a registration ----

TEST(ConsumerPlannerTest, RepairOrderAwaitsASnapshotNotYetOrdered) {
  DeliveryState d = repair_ordered({.consumer_open = true, .snapshot_ordered = true});
  EXPECT_TRUE(d.awaiting_snapshot);
  EXPECT_FALSE(d.snapshot_ordered);
  EXPECT_TRUE(d.consumer_open);  // the consumer goes at the registration that orders the snapshot
}

TEST(ConsumerPlannerTest, RegistrationReasonsNameEveryTypeThatNeedsOne) {
  AgentRecord a;
  a.subscriptions["a"].delivery = {.awaiting_snapshot = true};
  a.subscriptions["b"].delivery = {.awaiting_snapshot = true, .snapshot_ordered = true};  // loading it already
  a.subscriptions["c"].delivery = {.held_back = true};
  a.subscriptions["d"].delivery = {.consumer_open = true};
  EXPECT_EQ(registration_reasons(a), "a: snapshot needed, c: schema out of date");
  a.subscriptions.erase("a");
  a.subscriptions.erase("c");
  EXPECT_EQ(registration_reasons(a), "");
}

TEST(ConsumerPlannerTest, RegistrationIsOrderedAtMostOncePerInterval) {
  EXPECT_TRUE(may_order_registration(std::nullopt, 0, 1000));
  EXPECT_FALSE(may_order_registration(5000, 5999, 1000));
  EXPECT_TRUE(may_order_registration(5000, 6000, 1000));
}


// ---- the live feed (consumer_planner.h, "Live feed") ----

constexpr const char* kFeed = "ds.feed.orders.>";

BrokerFacts stream_with_feed(uint64_t first_seq, uint64_t last_seq) {
  BrokerFacts f;
  f.stream = Result<StreamState>(
      StreamState{.first_seq = first_seq, .last_seq = last_seq, .republish_destination = kFeed});
  return f;
}

// A registration that asks for the feed, at `version` with the partition at `mark`.
PlanInput feed_registration(uint64_t version, uint64_t mark) {
  PlanInput in = input(PlanEvent::kRegistered, sub_at(0, version));
  in.feed_filter = kFeed;
  in.partition_mark = mark;
  in.feed_asked = true;
  return in;
}

TEST(ConsumerPlannerTest, ACurrentAgentAskingForTheFeedGetsItAndNoConsumer) {
  const ConsumerPlan p = plan_with(feed_registration(40, 40), stream_with_feed(1, 0));
  EXPECT_EQ(p.op, ConsumerOp::kClose) << "a consumer left from before goes";
  EXPECT_EQ(p.resume, Resume::kStream);
  EXPECT_TRUE(p.state.on_feed);
  EXPECT_FALSE(p.state.consumer_open);
  EXPECT_EQ(p.state.feed_mark_seen, 40u);
}

TEST(ConsumerPlannerTest, AnAgentBehindItsPartitionGetsAConsumerEvenIfItAsksForTheFeed) {
  const ConsumerPlan p = plan_with(feed_registration(39, 40), stream_with_feed(1, 0));
  EXPECT_EQ(p.op, ConsumerOp::kOpen);
  EXPECT_FALSE(p.state.on_feed);
}

TEST(ConsumerPlannerTest, NoFeedWithoutTheAgentAskingTheHubOfferingOrTheStreamRepublishing) {
  PlanInput not_asked = feed_registration(40, 40);
  not_asked.feed_asked = false;
  EXPECT_EQ(plan_with(not_asked, stream_with_feed(1, 0)).op, ConsumerOp::kOpen);
  PlanInput not_offered = feed_registration(40, 40);
  not_offered.feed_filter.clear();
  EXPECT_EQ(plan_with(not_offered, stream_with_feed(1, 0)).op, ConsumerOp::kOpen);
  // A stream created before the feed (nats-server 2.9 cannot add it).
  EXPECT_EQ(plan_with(feed_registration(40, 40), stream(1, 0)).op, ConsumerOp::kOpen);
}

TEST(ConsumerPlannerTest, ASnapshotOrRepairComesBeforeTheFeed) {
  PlanInput in = feed_registration(40, 40);
  in.sub.seq = 5;
  EXPECT_EQ(plan_with(in, stream_with_feed(100, 200)).resume, Resume::kSnapshot);
  PlanInput repair = feed_registration(40, 40);
  repair.repair_ordered = true;
  const ConsumerPlan p = plan_with(repair, stream_with_feed(1, 0));
  EXPECT_EQ(p.resume, Resume::kSnapshot);
  EXPECT_FALSE(p.state.on_feed);
}

TEST(ConsumerPlannerTest, AnAgentReportingTheFeedLosesItsConsumer) {
  SubscriptionState sub = sub_at(10, 40);
  sub.delivery.consumer_open = true;
  sub.feed = true;  // its heartbeat reply: it moved onto the feed itself
  PlanInput in = input(PlanEvent::kReported, sub);
  in.feed_filter = kFeed;
  in.partition_mark = 41;
  const ConsumerPlan p = plan_with(in, {});
  EXPECT_EQ(p.op, ConsumerOp::kClose);
  EXPECT_TRUE(p.state.on_feed);
  EXPECT_FALSE(p.state.consumer_open);
  EXPECT_EQ(p.state.feed_mark_seen, 41u);
}

TEST(ConsumerPlannerTest, OnTheFeedNothingIsOpenedNotEvenAfterABrokerReconnect) {
  SubscriptionState sub = sub_at(10, 40);
  sub.feed = true;
  sub.delivery.on_feed = true;
  sub.delivery.feed_mark_seen = 40;
  for (PlanEvent event : {PlanEvent::kReported, PlanEvent::kReconnected}) {
    PlanInput in = input(event, sub);
    in.feed_filter = kFeed;
    in.partition_mark = 40;
    const ConsumerPlan p = plan_with(in, {});  // asks the broker nothing
    EXPECT_EQ(p.op, ConsumerOp::kKeep);
    EXPECT_TRUE(p.state.on_feed);
    EXPECT_FALSE(p.state.feed_behind);
  }
}

TEST(ConsumerPlannerTest, AnAgentThatStaysBehindOnTheFeedIsOrderedToRegister) {
  SubscriptionState sub = sub_at(10, 40);
  sub.feed = true;
  sub.delivery.on_feed = true;
  sub.delivery.feed_mark_seen = 40;
  sub.delivery.feed_mark_before = 40;
  PlanInput in = input(PlanEvent::kReported, sub);
  in.feed_filter = kFeed;
  // A batch committed since its previous reply is not behind yet (it may be
  // on its way), nor at the next reply: one reply of slack.
  in.partition_mark = 41;
  ConsumerPlan p = plan_with(in, {});
  EXPECT_FALSE(p.state.feed_behind);
  EXPECT_EQ(p.state.feed_mark_seen, 41u);
  in.sub.delivery = p.state;
  p = plan_with(in, {});  // the next reply, still at 40
  EXPECT_FALSE(p.state.feed_behind);
  EXPECT_EQ(p.state.feed_mark_before, 41u);
  in.sub.delivery = p.state;
  p = plan_with(in, {});  // and the one after
  EXPECT_TRUE(p.state.feed_behind);
  EXPECT_EQ(p.op, ConsumerOp::kKeep);
  AgentRecord a;
  a.subscriptions["orders"].delivery = p.state;
  EXPECT_EQ(registration_reasons(a), "orders: behind on the live feed");
  EXPECT_NE(p.state.note.find("behind version 41"), std::string::npos) << p.state.note;
}

TEST(ConsumerPlannerTest, AGoneAgentLeavesTheFeed) {
  SubscriptionState sub = sub_at(10, 40);
  sub.delivery.on_feed = true;
  sub.delivery.feed_behind = true;
  PlanInput in = input(PlanEvent::kGone, sub);
  in.gone_reason = "agent dead";
  const ConsumerPlan p = plan_with(in, {});
  EXPECT_FALSE(p.state.on_feed);
  EXPECT_FALSE(p.state.feed_behind);
}

}  // namespace
}  // namespace ds
