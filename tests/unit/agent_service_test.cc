// AgentService over fakes (tests/harness/fake_env.h): registrations and
// heartbeat replies handed in by hand, a broker whose consumers the test
// reads, time moved by hand and ticks run with tick(). No nats-server, no
// sleeping; the registry is a real SQLite file.

#include "hub/agent_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <memory>
#include <thread>

#include "hub/authorizer.h"
#include "shared/codec.h"
#include "shared/names.h"
#include "shared/schema.h"
#include "tests/harness/agent_service_calls.h"
#include "tests/harness/fake_env.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

using ds::testing::FakeClock;
using ds::testing::FakeConsumerControl;
using ds::testing::FakeMessaging;
using ds::testing::retire_and_wait;

class AgentServiceTest : public ::testing::Test {
 protected:
  // Interval 1000 ms, dead after 3: suspect after more than 1500 ms of
  // accountable silence, dead at 3000 ms; an accountable step is at most
  // 500 ms (half an interval).
  void SetUp() override {
    config_.name = "test-hub";
    config_.store_path = dir_.file("hub.db");
    config_.heartbeat_interval_ms = 1000;
    config_.dead_after = 3;
    config_.stream_replicas = replicas_;
    TypeConfig price;
    price.name = "price";
    price.schema.key = "sku";
    price.schema.columns = {{"amount", ColumnType::kReal}};
    config_.types = {price};
    for (const std::string& name : extra_types_) {
      TypeConfig extra = price;
      extra.name = name;
      config_.types.push_back(extra);
      consumers_.set_stream(stream_name(name), StreamState{.first_seq = 1, .last_seq = 10, .messages = 10});
    }
    auto auth = Authorizer::open(config_);  // open mode: no identities file
    ASSERT_TRUE(auth.is_ok()) << auth.status().to_string();
    authorizer_ = std::move(*auth);
    consumers_.set_stream(kStream, StreamState{.first_seq = 1, .last_seq = 10, .messages = 10});
    auto service = AgentService::start(
        config_, AgentServiceEnv{.messaging = messaging_, .consumers = consumers_, .clock = clock_, .own_timer = false},
        *authorizer_);
    ASSERT_TRUE(service.is_ok()) << service.status().to_string();
    service_ = std::move(*service);
  }

  // Registers `agent` reporting checkpoint (seq, version) of "price" and
  // returns the hub's reply.
  RegisterReply register_agent(const std::string& agent, uint64_t seq, uint64_t version) {
    RegisterRequest req{agent, "host-1", "test", {SubscriptionReport{"price", "*", version, seq, 0, 0}}};
    const std::string inbox = "_INBOX." + agent + "." + std::to_string(++requests_);
    EXPECT_EQ(messaging_.deliver({subjects_.register_agent(agent), inbox, encode(req)}), 1);
    auto answer = messaging_.wait_published(inbox);
    if (!answer) {
      ADD_FAILURE() << "no reply to the registration of " << agent;
      return {};
    }
    auto reply = decode_register_reply(answer->data);
    EXPECT_TRUE(reply.is_ok()) << reply.status().to_string();
    return reply.is_ok() ? *reply : RegisterReply{};
  }

  // The agent answers a heartbeat, reporting checkpoint (seq, version).
  void reply_beat(const std::string& agent, uint64_t seq, uint64_t version) {
    HeartbeatReply r;
    r.agent = agent;
    r.ts = clock_.now_system_ms();
    r.checkpoints["price"] = Checkpoint{version, seq, 0, schema_hash(config_.types[0].schema)};
    EXPECT_EQ(messaging_.deliver({subjects_.hub_beat(agent), "", encode(r)}), 1);
  }

  // `ms` of steady time pass, a tick every 250 ms (a healthy hub's pace).
  void pass(int64_t ms) {
    for (int64_t done = 0; done < ms; done += 250) {
      clock_.advance(250);
      ASSERT_TRUE(service_->tick().is_ok());
    }
  }

  // Holds the service thread (AgentService::retire of an unknown agent
  // calls back on it) until the returned promise is set; whatever is
  // posted to the service meanwhile waits in its queue.
  std::promise<void> hold_service_thread() {
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    auto held = std::make_shared<std::promise<void>>();
    std::future<void> holding = held->get_future();
    service_->retire("nobody", [held, released, caller = std::this_thread::get_id()](Status) {
      held->set_value();
      // Called back at once on this thread (a stopped service): do not hang.
      if (std::this_thread::get_id() != caller) released.wait();
    });
    holding.wait();
    return release;
  }

  std::optional<AgentState> state_of(const std::string& agent) const {
    auto a = service_->registry().find(agent);
    if (!a) return std::nullopt;
    return a->state;
  }
  DeliveryState delivery_of(const std::string& agent) const {
    auto a = service_->registry().find(agent);
    if (!a || !a->subscriptions.contains("price")) return {};
    return a->subscriptions.at("price").delivery;
  }
  bool has_consumer(const std::string& agent) const {
    return consumers_.consumer(kStream, consumer_name(agent)).has_value();
  }

  const std::string kStream = stream_name("price");
  std::vector<std::string> extra_types_;  // declared besides "price" (set before SetUp)
  int64_t replicas_ = 1;                  // [streams] replicas (set before SetUp)
  TempDir dir_{"agent-service-test"};
  HubConfig config_;
  Subjects subjects_{config_.nats.subject_prefix};
  FakeClock clock_;
  FakeMessaging messaging_;
  FakeConsumerControl consumers_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<AgentService> service_;
  int requests_ = 0;
};

// Orders to register the hub sent `agent` (heartbeat requests with
// reregister set).
size_t register_orders(const FakeMessaging& messaging, const Subjects& subjects, const std::string& agent) {
  size_t n = 0;
  for (const FakeMessaging::Published& p : messaging.published()) {
    if (p.subject != subjects.probe(agent)) continue;
    auto req = decode_heartbeat_request(p.data);
    if (req.is_ok() && req->reregister) ++n;
  }
  return n;
}

TEST_F(AgentServiceTest, AnUnknownAgentAnsweringHeartbeatsIsOrderedToRegisterOnceAMinute) {
  reply_beat("ghost", 1, 1);
  pass(250);
  EXPECT_EQ(register_orders(messaging_, subjects_, "ghost"), 1u);
  pass(30000);
  reply_beat("ghost", 1, 1);
  pass(250);
  EXPECT_EQ(register_orders(messaging_, subjects_, "ghost"), 1u) << "ordered again within the minute";
  pass(30000);
  reply_beat("ghost", 1, 1);
  pass(250);
  EXPECT_EQ(register_orders(messaging_, subjects_, "ghost"), 2u) << "not ordered again after a minute";
  // Another unknown agent has its own pace, and does not reset the first's.
  pass(30000);
  reply_beat("ghost-2", 1, 1);
  pass(250);
  reply_beat("ghost", 1, 1);
  pass(250);
  EXPECT_EQ(register_orders(messaging_, subjects_, "ghost-2"), 1u);
  EXPECT_EQ(register_orders(messaging_, subjects_, "ghost"), 2u);
  EXPECT_FALSE(state_of("ghost").has_value()) << "an order is not a registration";
}

TEST_F(AgentServiceTest, RegistrationCreatesTheConsumerAfterTheCheckpoint) {
  RegisterReply reply = register_agent("a1", 4, 4);
  ASSERT_TRUE(reply.ok()) << reply.error->message;
  EXPECT_EQ(reply.heartbeat_ms, 1000u);
  ASSERT_EQ(reply.deliveries.size(), 1u);
  EXPECT_EQ(reply.deliveries[0].resume, Resume::kStream);
  EXPECT_EQ(reply.deliveries[0].subject, subjects_.push("a1", "price"));

  auto spec = consumers_.consumer(kStream, consumer_name("a1"));
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->start_seq, 5u);
  EXPECT_EQ(spec->deliver_subject, subjects_.push("a1", "price"));
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  EXPECT_TRUE(delivery_of("a1").consumer_open);
}

TEST_F(AgentServiceTest, RegistrationWithACheckpointThatLeftTheStreamOrdersASnapshot) {
  consumers_.set_stream(kStream, StreamState{.first_seq = 50, .last_seq = 100, .messages = 51});
  RegisterReply reply = register_agent("a1", 10, 10);
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(reply.deliveries.size(), 1u);
  EXPECT_EQ(reply.deliveries[0].resume, Resume::kSnapshot);
  EXPECT_FALSE(has_consumer("a1"));
  EXPECT_TRUE(delivery_of("a1").awaiting_snapshot);
}

TEST_F(AgentServiceTest, RegistrationFromAnotherInboxIsDroppedUnanswered) {
  RegisterRequest req{"a1", "host-1", "test", {SubscriptionReport{"price", "*", 0, 0, 0, 0}}};
  EXPECT_EQ(messaging_.deliver({subjects_.register_agent("a1"), "ds.delta.price.x", encode(req)}), 1);
  ASSERT_TRUE(service_->tick().is_ok());  // a barrier: anything posted before it ran
  // No reply: only the heartbeat broadcast every configured type gets.
  for (const auto& p : messaging_.published()) {
    EXPECT_EQ(p.subject, subjects_.heartbeat("price")) << "published on " << p.subject;
  }
  EXPECT_EQ(state_of("a1"), std::nullopt);
  EXPECT_EQ(consumers_.added(), 0);
}

// A registration that waited in the hub's queue past the agent's reply
// timeout (the service thread busy, as with other agents' registrations
// while a NATS cluster elects leaders) is dropped: its agent stopped
// waiting and registers again, and carrying it out would only recreate the
// consumers once more.
TEST_F(AgentServiceTest, ARegistrationThatWaitedPastTheAgentsReplyTimeoutIsDroppedUnanswered) {
  std::promise<void> release = hold_service_thread();
  RegisterRequest req{"a1", "host-1", "test", {SubscriptionReport{"price", "*", 4, 4, 0, 0}}};
  const std::string stale_inbox = "_INBOX.a1.stale";
  ASSERT_EQ(messaging_.deliver({subjects_.register_agent("a1"), stale_inbox, encode(req)}), 1);
  clock_.advance(kRegisterReplyTimeoutMs + 1);
  release.set_value();

  // The agent's next registration is answered; the stale one, ahead of it
  // in the queue, never was and created nothing.
  RegisterReply reply = register_agent("a1", 4, 4);
  ASSERT_TRUE(reply.ok()) << reply.error->message;
  for (const auto& p : messaging_.published()) EXPECT_NE(p.subject, stale_inbox);
  EXPECT_EQ(consumers_.added(), 1);
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  EXPECT_EQ(service_->late_registrations(), 1u);
}

// One that waited just the agent's timeout is still carried out.
TEST_F(AgentServiceTest, ARegistrationThatWaitedWithinTheAgentsReplyTimeoutIsAnswered) {
  std::promise<void> release = hold_service_thread();
  RegisterRequest req{"a1", "host-1", "test", {SubscriptionReport{"price", "*", 4, 4, 0, 0}}};
  const std::string inbox = "_INBOX.a1.slow";
  ASSERT_EQ(messaging_.deliver({subjects_.register_agent("a1"), inbox, encode(req)}), 1);
  clock_.advance(kRegisterReplyTimeoutMs);
  release.set_value();
  auto answer = messaging_.wait_published(inbox);
  ASSERT_TRUE(answer.has_value());
  auto reply = decode_register_reply(answer->data);
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_EQ(consumers_.added(), 1);
  EXPECT_EQ(service_->late_registrations(), 0u);
}

// A registration that passes the agent's reply timeout while it is carried
// out (each JetStream call slow) stops before its next subscription: the
// rest of its consumers are not recreated for an agent that no longer waits.
class AgentServiceTwoTypesTest : public AgentServiceTest {
 protected:
  AgentServiceTwoTypesTest() { extra_types_ = {"stock"}; }
};

TEST_F(AgentServiceTwoTypesTest, ARegistrationThatPassesTheAgentsReplyTimeoutStopsBeforeTheNextSubscription) {
  consumers_.after_add([this] { clock_.advance(kRegisterReplyTimeoutMs + 1); });  // each create outlasts the timeout
  RegisterRequest req{"a1", "host-1", "test",
                      {SubscriptionReport{"price", "*", 4, 4, 0, 0}, SubscriptionReport{"stock", "*", 4, 4, 0, 0}}};
  const std::string inbox = "_INBOX.a1.slow";
  ASSERT_EQ(messaging_.deliver({subjects_.register_agent("a1"), inbox, encode(req)}), 1);
  auto answer = messaging_.wait_published(inbox);
  ASSERT_TRUE(answer.has_value());
  auto reply = decode_register_reply(answer->data);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kDeadlineExceeded);
  EXPECT_NE(reply->error->message.find("before the consumer of stock was planned"), std::string::npos)
      << reply->error->message;
  EXPECT_EQ(consumers_.added(), 1);
  EXPECT_FALSE(consumers_.consumer(stream_name("stock"), consumer_name("a1")).has_value());
  EXPECT_EQ(service_->late_registrations(), 1u);

  // In time, both are opened.
  consumers_.after_add({});
  RegisterReply again = register_agent("a1", 4, 4);
  ASSERT_TRUE(again.ok()) << again.error->message;
}

// Registrations queued behind each other (a takeover: every agent registers
// at once) have their consumers created at once, up to
// kRegistrationsInFlight of distinct agents: on replicated streams each
// create waits for its own leader election. The fake broker holds each
// create until three are under way, so creates made in turn fail the test
// (after a bounded wait) instead of hanging it. A second registration of
// an agent waits for the first and is answered too.
TEST_F(AgentServiceTest, QueuedRegistrationsOfDistinctAgentsCreateTheirConsumersAtOnce) {
  std::mutex mu;
  std::condition_variable cv;
  int creates = 0;
  int alone = 0;  // creates that waited in vain for the other agents' creates
  consumers_.after_add([&] {
    std::unique_lock lock(mu);
    ++creates;
    cv.notify_all();
    if (!cv.wait_for(lock, std::chrono::seconds(3), [&] { return creates >= 3; })) ++alone;
  });
  std::promise<void> release = hold_service_thread();
  std::vector<std::string> inboxes;
  for (const std::string agent : {"a1", "a2", "a3", "a1"}) {
    RegisterRequest req{agent, "host-1", "test", {SubscriptionReport{"price", "*", 4, 4, 0, 0}}};
    inboxes.push_back("_INBOX." + agent + "." + std::to_string(inboxes.size()));
    ASSERT_EQ(messaging_.deliver({subjects_.register_agent(agent), inboxes.back(), encode(req)}), 1);
  }
  release.set_value();
  for (const std::string& inbox : inboxes) {
    auto answer = messaging_.wait_published(inbox);
    ASSERT_TRUE(answer.has_value()) << "no reply on " << inbox;
    auto reply = decode_register_reply(answer->data);
    ASSERT_TRUE(reply.is_ok() && reply->ok()) << inbox;
  }
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(creates, 3) << "a1's second registration keeps the consumer its first made";
    EXPECT_EQ(alone, 0) << "the three agents' consumers were not created at once";
  }
  consumers_.after_add({});
  for (const std::string agent : {"a1", "a2", "a3"}) {
    EXPECT_TRUE(has_consumer(agent)) << agent;
    EXPECT_EQ(state_of(agent), AgentState::kLive) << agent;
  }
  EXPECT_EQ(service_->late_registrations(), 0u);
}

// On replicated streams the hub watches the copies of the consumers it
// creates (hub/consumer_copy_watch.h); the fake broker reports the followers
// the test sets.
class AgentServiceReplicatedTest : public AgentServiceTest {
 protected:
  AgentServiceReplicatedTest() { replicas_ = 3; }

  // `ms` pass with `agent` answering every heartbeat (checkpoint 4).
  void pass_live(const std::string& agent, int64_t ms) {
    for (int64_t done = 0; done < ms; done += 1000) {
      reply_beat(agent, 4, 4);
      pass(1000);
    }
  }
  void set_followers(std::vector<StreamFollower> followers) {
    consumers_.set_followers(kStream, consumer_name("a1"), std::move(followers));
  }
};

TEST_F(AgentServiceReplicatedTest, ACopyBehindOnANodeThatIsUpHasTheAgentRegisterAgainWhichRecreatesIt) {
  set_followers({{.name = "n2", .current = true}, {.name = "n3", .current = false, .lag = 120}});
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  pass_live("a1", 9000);  // within the grace: a node that came back catches up in seconds
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 0u);
  EXPECT_GE(consumers_.timed_reads(), 8);  // once per interval
  pass_live("a1", 3000);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 1u);
  EXPECT_EQ(service_->copy_repair_orders(), 1u);
  EXPECT_EQ(state_of("a1"), AgentState::kLive);

  // The agent registers again: its consumer is recreated, and the new one
  // has a grace of its own (its copy may take a few seconds too).
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  EXPECT_EQ(consumers_.added(), 2);
  pass_live("a1", 9000);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 1u);
  // Its copy catches up: no more orders.
  set_followers({{.name = "n2", .current = true}, {.name = "n3", .current = true}});
  pass_live("a1", 15000);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 1u);
  EXPECT_EQ(service_->copy_repair_orders(), 1u);
}

// A consumer deleted behind the hub's back (or lost with a node) is opened
// again as soon as a round finds it missing.
TEST_F(AgentServiceReplicatedTest, AConsumerFoundMissingIsOpenedAgain) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  ASSERT_TRUE(consumers_.delete_consumer(kStream, consumer_name("a1")).is_ok());
  ASSERT_FALSE(has_consumer("a1"));
  pass_live("a1", 2000);
  EXPECT_TRUE(has_consumer("a1"));
  EXPECT_EQ(consumers_.added(), 2);
}

// Each order re-registers an agent (slow on R3): a round gives two at most.
TEST_F(AgentServiceReplicatedTest, ARoundGivesAtMostTwoOrders) {
  const std::vector<std::string> agents = {"a1", "a2", "a3"};
  for (const std::string& agent : agents) {
    consumers_.set_followers(kStream, consumer_name(agent),
                             {{.name = "n2", .current = true}, {.name = "n3", .current = false, .lag = 5}});
    ASSERT_TRUE(register_agent(agent, 4, 4).ok());
  }
  const auto orders = [&] {
    size_t n = 0;
    for (const std::string& agent : agents) n += register_orders(messaging_, subjects_, agent);
    return n;
  };
  size_t most_in_a_round = 0;
  for (int round = 0; round < 14; ++round) {
    const size_t before = orders();
    for (const std::string& agent : agents) reply_beat(agent, 4, 4);
    pass(1000);  // one beat round
    most_in_a_round = std::max(most_in_a_round, orders() - before);
  }
  EXPECT_EQ(most_in_a_round, 2u);
  for (const std::string& agent : agents) EXPECT_GE(register_orders(messaging_, subjects_, agent), 1u) << agent;
}

TEST_F(AgentServiceReplicatedTest, ACopyOnANodeThatIsDownIsWaitedForAndItsGraceStartsWhenTheNodeIsBack) {
  set_followers({{.name = "n2", .current = true}, {.name = "n3", .current = false, .offline = true}});
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  pass_live("a1", 15000);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 0u);
  // The node is back, its copy behind: the grace counts from now.
  set_followers({{.name = "n2", .current = true}, {.name = "n3", .current = false, .lag = 3}});
  pass_live("a1", 9000);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 0u);
  pass_live("a1", 3000);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 1u);
}

// A cluster electing leaders answers slowly or not at all: a round stops
// at its first failed read instead of waiting on every consumer in turn.
TEST_F(AgentServiceReplicatedTest, ARoundStopsAtItsFirstFailedRead) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  ASSERT_TRUE(register_agent("a2", 4, 4).ok());
  // Beat rounds so far: one broadcast heartbeat of "price" each.
  const auto rounds = [this] {
    int n = 0;
    for (const FakeMessaging::Published& p : messaging_.published()) n += p.subject == subjects_.heartbeat("price");
    return n;
  };
  const auto both_live_for_3s = [this] {
    for (int i = 0; i < 3; ++i) {
      reply_beat("a1", 4, 4);
      reply_beat("a2", 4, 4);
      pass(1000);
    }
  };
  consumers_.fail_timed_reads(Status::deadline_exceeded("consumer info: Timeout"));
  int reads = consumers_.timed_reads();
  int before = rounds();
  both_live_for_3s();
  EXPECT_EQ(consumers_.timed_reads() - reads, rounds() - before);  // one read a round, not two
  EXPECT_GE(rounds() - before, 2);
  consumers_.fail_timed_reads(Status::ok());
  reads = consumers_.timed_reads();
  before = rounds();
  both_live_for_3s();
  EXPECT_EQ(consumers_.timed_reads() - reads, 2 * (rounds() - before));  // both consumers, every round
}

TEST_F(AgentServiceReplicatedTest, TheConsumerOfADeadAgentIsNotChecked) {
  set_followers({{.name = "n2", .current = true}, {.name = "n3", .current = false, .lag = 7}});
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  pass(4000);  // silent: dead, its consumer deleted
  ASSERT_EQ(state_of("a1"), AgentState::kDead);
  const int reads = consumers_.timed_reads();
  pass(15000);
  EXPECT_EQ(consumers_.timed_reads(), reads);
  EXPECT_EQ(register_orders(messaging_, subjects_, "a1"), 0u);
}

// One replica: nothing to watch, no JetStream request spent on it.
TEST_F(AgentServiceTest, OneReplicaWatchesNoConsumerCopies) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  for (int i = 0; i < 5; ++i) {
    reply_beat("a1", 4, 4);
    pass(1000);
  }
  EXPECT_EQ(consumers_.timed_reads(), 0);
}

TEST_F(AgentServiceTest, AgentSilentPastDeadAfterLosesItsConsumer) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  pass(1500);
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  pass(1250);  // 2750 ms of silence
  EXPECT_EQ(state_of("a1"), AgentState::kSuspect);
  EXPECT_TRUE(has_consumer("a1"));
  pass(250);  // 3000 ms: dead_after x interval
  EXPECT_EQ(state_of("a1"), AgentState::kDead);
  EXPECT_FALSE(has_consumer("a1"));
  EXPECT_FALSE(delivery_of("a1").consumer_open);
  EXPECT_EQ(delivery_of("a1").note, "agent dead");
}

TEST_F(AgentServiceTest, HeartbeatRepliesKeepAnAgentLive) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  for (int i = 0; i < 10; ++i) {
    pass(1000);
    reply_beat("a1", 4, 4);
  }
  ASSERT_TRUE(service_->tick().is_ok());
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  EXPECT_TRUE(has_consumer("a1"));
  EXPECT_EQ(consumers_.added(), 1);  // replies of an agent with a consumer cost no JetStream request
}

TEST_F(AgentServiceTest, StalledHubDoesNotDeclareItsAgentsDead) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  // The hub's thread stood still for a minute (SIGSTOP, a paused VM): one
  // tick after it counts at most half an interval against the agent.
  clock_.advance(60'000);
  ASSERT_TRUE(service_->tick().is_ok());
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  EXPECT_TRUE(has_consumer("a1"));
  // The agent answers the next beat: nothing was lost.
  reply_beat("a1", 4, 4);
  pass(1000);
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
}

TEST_F(AgentServiceTest, UnconfirmedHeartbeatsStopTheSilenceClock) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  // The broker takes the beats but never confirms the flush after them.
  messaging_.set_flush_status(Status::deadline_exceeded("fake broker: no PONG"));
  pass(20'000);
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  EXPECT_TRUE(has_consumer("a1"));
  // Confirmed again: silence counts again, and the agent is declared dead
  // after dead_after intervals of it.
  messaging_.set_flush_status(Status::ok());
  pass(4500);
  EXPECT_EQ(state_of("a1"), AgentState::kDead);
}

TEST_F(AgentServiceTest, DisconnectedHubJudgesNobody) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  messaging_.set_connected(false);
  pass(20'000);
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
}

TEST_F(AgentServiceTest, DeadAgentThatAnswersAgainGetsItsConsumerBack) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  pass(3000);
  ASSERT_EQ(state_of("a1"), AgentState::kDead);
  ASSERT_FALSE(has_consumer("a1"));
  reply_beat("a1", 6, 6);  // it applied up to seq 6 before it went silent
  ASSERT_TRUE(service_->tick().is_ok());
  EXPECT_EQ(state_of("a1"), AgentState::kLive);
  auto spec = consumers_.consumer(kStream, consumer_name("a1"));
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->start_seq, 7u);
}

TEST_F(AgentServiceTest, ReconnectRecreatesConsumersTheBrokerLost) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  consumers_.lose_consumers();  // memory consumers do not survive a broker restart
  service_->on_reconnected();
  ASSERT_TRUE(service_->tick().is_ok());
  EXPECT_TRUE(has_consumer("a1"));
  EXPECT_TRUE(delivery_of("a1").consumer_open);
}

TEST_F(AgentServiceTest, RetireDeletesTheConsumer) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  ASSERT_TRUE(retire_and_wait(*service_, "a1").is_ok());
  EXPECT_EQ(state_of("a1"), AgentState::kRetired);
  EXPECT_FALSE(has_consumer("a1"));
  EXPECT_EQ(retire_and_wait(*service_, "nobody").code(), StatusCode::kNotFound);
}

TEST_F(AgentServiceTest, ReplyNamingAnotherAgentIsRefused) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  ASSERT_TRUE(register_agent("a2", 4, 4).ok());
  HeartbeatReply forged;
  forged.agent = "a2";
  EXPECT_EQ(messaging_.deliver({subjects_.hub_beat("a1"), "", encode(forged)}), 1);
  ASSERT_TRUE(service_->tick().is_ok());
  EXPECT_EQ(service_->refused_beats(), 1u);
}

TEST_F(AgentServiceTest, VerifyRepairOrdersARegistrationWhoseReplyOrdersTheSnapshot) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  ASSERT_TRUE(service_->order_snapshot("a1", "price").is_ok());
  EXPECT_TRUE(delivery_of("a1").awaiting_snapshot);
  // The agent was told to register again on its direct subject.
  auto order = messaging_.wait_published(subjects_.probe("a1"));
  ASSERT_TRUE(order.has_value());
  auto req = decode_heartbeat_request(order->data);
  ASSERT_TRUE(req.is_ok());
  EXPECT_TRUE(req->reregister);
  RegisterReply reply = register_agent("a1", 4, 4);
  ASSERT_EQ(reply.deliveries.size(), 1u);
  EXPECT_EQ(reply.deliveries[0].resume, Resume::kSnapshot);
  EXPECT_FALSE(has_consumer("a1"));
  // Once: the registration after the snapshot resumes from the stream.
  EXPECT_EQ(register_agent("a1", 10, 10).deliveries[0].resume, Resume::kStream);
  EXPECT_TRUE(has_consumer("a1"));
}

// The fleet's view reaches HTTP readers only as snapshots the service thread
// publishes: a reader's snapshot never changes under it, a tick publishes a
// new one, and /metrics' fleet series come from the same snapshot.
TEST_F(AgentServiceTest, FleetSnapshotsArePublishedByTheServiceAndNeverChangeUnderAReader) {
  const std::shared_ptr<const FleetSnapshot> before = service_->fleet_snapshot();
  ASSERT_NE(before, nullptr) << "a snapshot exists from start() on";
  EXPECT_TRUE(before->rows.empty());

  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  ASSERT_TRUE(service_->tick().is_ok());
  const std::shared_ptr<const FleetSnapshot> live = service_->fleet_snapshot();
  ASSERT_EQ(live->rows.size(), 1u);
  EXPECT_EQ(live->rows[0].id, "a1");
  EXPECT_EQ(live->rows[0].state, "live");
  EXPECT_EQ(live->now_ms, clock_.now_system_ms());
  EXPECT_TRUE(before->rows.empty()) << "a published snapshot is never changed";

  pass(3500);  // silent past dead_after
  ASSERT_EQ(state_of("a1"), AgentState::kDead);
  const std::shared_ptr<const FleetSnapshot> dead = service_->fleet_snapshot();
  EXPECT_EQ(dead->rows[0].state, "dead");
  EXPECT_EQ(dead->dead, 1u);
  EXPECT_EQ(live->rows[0].state, "live") << "the reader's older snapshot still says what it said";
  EXPECT_EQ(live->agents[0]["state"], "live");
  EXPECT_EQ(dead->agents, service_->agents_json()) << "the snapshot is the view at the last tick";

  PrometheusWriter w;
  service_->write_metrics(w);
  const std::string text = w.take();
  EXPECT_NE(text.find("deltasync_hub_agent_state{agent=\"a1\",state=\"dead\"} 1"), std::string::npos) << text;
}

// Quarantine entries by type (HeartbeatReply::quarantined_types) reach the
// agent's types in the view and /metrics; an agent that reports a total only
// (an older one) shows no per-type count.
TEST_F(AgentServiceTest, QuarantineIsShownPerTypeWhenTheAgentReportsIt) {
  ASSERT_TRUE(register_agent("a1", 4, 4).ok());
  auto beat = [&](std::optional<std::map<std::string, uint64_t>> by_type, uint64_t total) {
    HeartbeatReply r;
    r.agent = "a1";
    r.ts = clock_.now_system_ms();
    r.status = total > 0 ? AgentHealth::kDegraded : AgentHealth::kOk;
    r.checkpoints["price"] = Checkpoint{4, 4, 0, schema_hash(config_.types[0].schema)};
    r.quarantined = total;
    r.quarantined_types = std::move(by_type);
    EXPECT_EQ(messaging_.deliver({subjects_.hub_beat("a1"), "", encode(r)}), 1);
    ASSERT_TRUE(service_->tick().is_ok());
  };
  // at(), not []: a const json has no entry to make for a missing key.
  auto price_of = [&] { return service_->fleet_snapshot()->agents.at(0).at("types").at("price"); };
  ASSERT_TRUE(service_->tick().is_ok());  // publishes a snapshot with a1 in it
  EXPECT_TRUE(price_of()["quarantined"].is_null()) << "nothing reported yet";

  beat(std::map<std::string, uint64_t>{{"price", 3}, {"other", 1}}, 4);
  EXPECT_EQ(price_of()["quarantined"], 3);
  EXPECT_EQ(service_->fleet_snapshot()->agents.at(0).at("quarantined"), 4);
  PrometheusWriter w;
  service_->write_metrics(w);
  const std::string text = w.take();
  EXPECT_NE(text.find("deltasync_hub_agent_type_quarantined{agent=\"a1\",type=\"price\"} 3"), std::string::npos)
      << text;

  beat(std::map<std::string, uint64_t>{}, 0);
  EXPECT_EQ(price_of()["quarantined"], 0) << "reported, and none of this type";

  beat(std::nullopt, 2);  // an agent from before quarantined_types
  EXPECT_TRUE(price_of()["quarantined"].is_null());
  EXPECT_EQ(service_->fleet_snapshot()->agents.at(0).at("quarantined"), 2);
  PrometheusWriter again;
  service_->write_metrics(again);
  EXPECT_EQ(again.take().find("deltasync_hub_agent_type_quarantined{"), std::string::npos);
}

}  // namespace
}  // namespace ds
