// Liveness (step 3) and delivery to live agents only (step 4) against a real
// nats-server: heartbeat interval 200 ms, dead after 3 missed beats.

#include <chrono>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "shared/schema.h"
#include "tests/harness/agent_service_calls.h"
#include "tests/harness/test_agent.h"

namespace ds::testing {
namespace {

class HubLivenessTest : public AgentServiceTest {
 protected:
  void SetUp() override {
    AgentServiceTest::SetUp();
    if (HasFatalFailure()) return;
    start_service();
  }

  // An agent the hub registered before it heard from it otherwise: one that
  // answered a heartbeat broadcast first would be unknown to the hub then,
  // and ordered to register (once a minute), which the tests that count
  // orders must not see. It answers heartbeats once registered.
  std::unique_ptr<TestAgent> registered_agent(const std::string& id, std::vector<SubscriptionReport> subs) {
    auto a = make_agent(id, std::move(subs));
    if (!a) return nullptr;
    a->set_answering(false);
    auto reply = a->register_now();
    EXPECT_TRUE(reply.is_ok() && reply->ok()) << (reply.is_ok() ? reply->error->message : reply.status().to_string());
    a->set_answering(true);
    return a;
  }

  std::vector<std::string> transitions(const std::string& agent) {
    auto ev = service_->registry().events(agent);
    EXPECT_TRUE(ev.is_ok()) << ev.status().to_string();
    std::vector<std::string> out;
    if (!ev.is_ok()) return out;
    for (const AgentEvent& e : *ev) out.push_back((e.from_state.empty() ? "new" : e.from_state) + ">" + e.to_state);
    return out;
  }

  static bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  }

  nlohmann::json agent_json(const std::string& id) {
    for (const auto& a : service_->agents_json()) {
      if (a["id"] == id) return a;
    }
    return nullptr;
  }
};

TEST_F(HubLivenessTest, AnsweringAgentStaysLive) {
  auto a = registered_agent("steady", {{.type = "inventory", .partition = "store-1"}});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(eventually([&] { return a->broadcasts_answered() >= 5; }));
  EXPECT_EQ(state_of("steady"), AgentState::kLive);
  EXPECT_EQ(transitions("steady"), std::vector<std::string>{"new>live"});
  EXPECT_TRUE(consumer_exists("inventory", "steady"));
}

TEST_F(HubLivenessTest, SilentAgentBecomesDeadAndItsConsumersDisappear) {
  auto a = registered_agent("quiet", {{.type = "inventory", .partition = "store-1"}, {.type = "prices"}});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(consumer_exists("inventory", "quiet"));
  ASSERT_TRUE(consumer_exists("prices", "quiet"));

  a->set_answering(false);
  ASSERT_TRUE(wait_for_state("quiet", AgentState::kDead));
  EXPECT_FALSE(consumer_exists("inventory", "quiet"));
  EXPECT_FALSE(consumer_exists("prices", "quiet"));
  // Every state change is stored, in order.
  EXPECT_EQ(transitions("quiet"), (std::vector<std::string>{"new>live", "live>suspect", "suspect>dead"}));
  EXPECT_EQ(agent_json("quiet")["state"], "dead");
  EXPECT_EQ(agent_json("quiet")["types"]["inventory"]["consumer"], false);
}

TEST_F(HubLivenessTest, ReturningAgentGetsWhatWasPublishedMeanwhileStartingRightAfterItsCheckpoint) {
  auto a = registered_agent("store-1-agent", {{.type = "inventory", .partition = "store-1"}});
  auto b = registered_agent("store-2-agent", {{.type = "inventory", .partition = "store-2"}});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);

  publish_change("inventory", "store-1", 1, "k1");
  const uint64_t s2 = publish_change("inventory", "store-1", 2, "k2");
  ASSERT_TRUE(eventually([&] { return a->checkpoint("inventory").seq == s2; }));

  a->set_answering(false);
  ASSERT_TRUE(wait_for_state("store-1-agent", AgentState::kDead));
  ASSERT_FALSE(consumer_exists("inventory", "store-1-agent"));

  const uint64_t s3 = publish_change("inventory", "store-1", 3, "k3");
  const uint64_t s4 = publish_change("inventory", "store-2", 4, "k4");
  const uint64_t s5 = publish_change("inventory", "store-1", 5, "k5");
  EXPECT_EQ(a->received().size(), 2u) << "a dead agent has no consumer";

  a->set_answering(true);
  ASSERT_TRUE(wait_for_state("store-1-agent", AgentState::kLive));
  ASSERT_TRUE(eventually([&] { return a->received().size() == 4; }));
  const auto got = a->received();
  EXPECT_EQ(got[2].stream_seq, s3);
  EXPECT_EQ(got[2].batch.changes.at(0).v, 3u);
  EXPECT_EQ(got[3].stream_seq, s5);
  EXPECT_TRUE(contains(transitions("store-1-agent"), "dead>live"));

  // The other partition's agent got only its own change.
  ASSERT_TRUE(eventually([&] { return !b->received().empty(); }));
  const auto b_got = b->received();
  ASSERT_EQ(b_got.size(), 1u);
  EXPECT_EQ(b_got[0].stream_seq, s4);
  for (const ReceivedBatch& r : a->received()) EXPECT_NE(r.stream_seq, s4);
}

TEST_F(HubLivenessTest, AgentReturningAfterItsCheckpointLeftTheStreamIsOrderedToRegisterAndSnapshot) {
  auto a = registered_agent("away", {{.type = "prices"}});
  ASSERT_NE(a, nullptr);
  const uint64_t s1 = publish_change("prices", "_all", 1, "k1");
  ASSERT_TRUE(eventually([&] { return a->checkpoint("prices").seq == s1; }));

  a->set_answering(false);
  ASSERT_TRUE(wait_for_state("away", AgentState::kDead));
  publish_change("prices", "_all", 2, "k2");
  purge("prices");  // seq 2 (right after its checkpoint) is gone
  publish_change("prices", "_all", 3, "k3");
  EXPECT_EQ(a->register_orders(), 0);

  // Back through a heartbeat reply: no consumer can start after seq 1, so
  // the hub orders a registration, whose reply orders the snapshot.
  a->set_answering(true);
  ASSERT_TRUE(wait_for_state("away", AgentState::kLive));
  ASSERT_TRUE(eventually([&] { return a->register_orders() > 0; }));
  EXPECT_FALSE(consumer_exists("prices", "away"));
  EXPECT_EQ(agent_json("away")["types"]["prices"]["awaiting_snapshot"], true);

  auto reply = a->register_now();
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  ASSERT_EQ(reply->deliveries.size(), 1u);
  EXPECT_EQ(reply->deliveries[0].resume, Resume::kSnapshot);
  // While it loads the snapshot it was told to load, it is not ordered again.
  const int64_t orders = a->register_orders();
  const int64_t beats = a->broadcasts_answered();
  ASSERT_TRUE(eventually([&] { return a->broadcasts_answered() >= beats + 3; }));
  EXPECT_EQ(a->register_orders(), orders);
}

TEST_F(HubLivenessTest, SuspectAgentIsProbedDirectlyAndBecomesLiveAgain) {
  auto a = registered_agent("deaf", {{.type = "prices"}});
  ASSERT_NE(a, nullptr);
  a->set_answer_broadcasts(false);  // only direct probes get an answer
  ASSERT_TRUE(eventually([&] { return contains(transitions("deaf"), "suspect>live"); }));
  EXPECT_GT(a->probes_answered(), 0);
  EXPECT_TRUE(contains(transitions("deaf"), "live>suspect"));
}

TEST_F(HubLivenessTest, DeadAgentIsNotProbedDirectlyButReturnsThroughTheBroadcast) {
  auto a = registered_agent("gone", {{.type = "prices"}});
  ASSERT_NE(a, nullptr);
  a->set_answering(false);
  ASSERT_TRUE(wait_for_state("gone", AgentState::kDead));
  a->set_answer_broadcasts(true);
  a->set_answering(true);
  ASSERT_TRUE(wait_for_state("gone", AgentState::kLive));
  EXPECT_TRUE(eventually([&] { return consumer_exists("prices", "gone"); }));
}

TEST_F(HubLivenessTest, RetiredAgentLosesItsConsumersUntilItRegistersAgain) {
  auto a = registered_agent("old", {{.type = "inventory", .partition = "store-1"}});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(retire_and_wait(*service_, "old").is_ok());
  EXPECT_EQ(state_of("old"), AgentState::kRetired);
  EXPECT_FALSE(consumer_exists("inventory", "old"));
  // Its heartbeat replies (it still gets the type's broadcast) bring it
  // back neither to life nor to a registration order, and it is not probed.
  const int64_t broadcasts = a->broadcasts_answered();
  const int64_t probes = a->probes_answered();
  const int64_t orders = a->register_orders();
  publish_change("inventory", "store-1", 1, "k");
  ASSERT_TRUE(eventually([&] { return a->broadcasts_answered() >= broadcasts + 2; }));
  EXPECT_EQ(state_of("old"), AgentState::kRetired);
  EXPECT_EQ(a->probes_answered(), probes) << "a retired agent was probed";
  EXPECT_EQ(a->register_orders(), orders) << "a retired agent was told to register";

  ASSERT_TRUE(a->register_now().is_ok());
  EXPECT_EQ(state_of("old"), AgentState::kLive);
  EXPECT_TRUE(consumer_exists("inventory", "old"));
  EXPECT_TRUE(contains(transitions("old"), "live>retired"));
  EXPECT_TRUE(contains(transitions("old"), "retired>live"));
}

TEST_F(HubLivenessTest, RetiringAnUnknownAgentIsNotFound) {
  EXPECT_EQ(retire_and_wait(*service_, "nobody").code(), StatusCode::kNotFound);
}

TEST_F(HubLivenessTest, SchemaMismatchHoldsDeltasBackUntilTheHashMatches) {
  auto a = registered_agent("old-schema", {{.type = "inventory", .partition = "store-1"}});
  ASSERT_NE(a, nullptr);
  const std::string good = schema_hash(config_.types[0].schema);
  EXPECT_EQ(a->checkpoint("inventory").schema_hash, good);

  a->set_schema_hash("inventory", "0000");
  ASSERT_TRUE(eventually([&] { return !consumer_exists("inventory", "old-schema"); }));
  // Told to register again, where it would get the current schema.
  EXPECT_TRUE(eventually([&] { return a->register_orders() > 0; }));
  const auto j = agent_json("old-schema");
  EXPECT_EQ(j["state"], "live");
  EXPECT_EQ(j["types"]["inventory"]["held_back"], true);
  EXPECT_EQ(j["types"]["inventory"]["schema_ok"], false);
  EXPECT_EQ(j["types"]["inventory"]["freshness_ok"], false);

  const uint64_t s1 = publish_change("inventory", "store-1", 1, "k");
  a->set_schema_hash("inventory", good);
  ASSERT_TRUE(eventually([&] { return a->received().size() == 1; }));
  EXPECT_EQ(a->received()[0].stream_seq, s1);
  EXPECT_TRUE(eventually([&] { return agent_json("old-schema")["types"]["inventory"]["held_back"] == false; }));
}

TEST_F(HubLivenessTest, UpdateOfATypeProbesItsAgentsWhoseViewIsOlderThanOneInterval) {
  // A longer interval, so "older than one interval" comes well before suspect.
  service_->stop();
  service_.reset();
  config_.heartbeat_interval_ms = 2000;
  config_.dead_after = 100;
  start_service();
  auto a = registered_agent("lazy", {{.type = "inventory", .partition = "store-1"}});
  ASSERT_NE(a, nullptr);
  a->set_answer_broadcasts(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  service_->on_committed({{"inventory", "store-1", 1, 1000}});
  ASSERT_TRUE(eventually([&] { return a->probes_answered() >= 1; }));
  // The probe came from the update, not from the agent being suspect.
  EXPECT_EQ(transitions("lazy"), std::vector<std::string>{"new>live"});
}

TEST_F(HubLivenessTest, ConsumerLostOnTheBrokerIsRecreatedAfterReconnect) {
  auto a = registered_agent("r1", {{.type = "prices"}});
  ASSERT_NE(a, nullptr);
  const uint64_t s1 = publish_change("prices", "_all", 1, "p1");
  ASSERT_TRUE(eventually([&] { return a->checkpoint("prices").seq == s1; }));
  // Let a heartbeat carry the checkpoint to the hub.
  ASSERT_TRUE(eventually([&] { return service_->registry().find("r1")->subscriptions.at("prices").seq == s1; }));

  ASSERT_TRUE(js_->delete_consumer(stream_name("prices"), consumer_name("r1")).is_ok());
  service_->on_reconnected();
  ASSERT_TRUE(eventually([&] { return consumer_exists("prices", "r1"); }));
  const uint64_t s2 = publish_change("prices", "_all", 2, "p2");
  ASSERT_TRUE(eventually([&] { return a->received().size() == 2; }));
  EXPECT_EQ(a->received()[1].stream_seq, s2) << "resumed right after the checkpoint, no replay";
}

TEST_F(HubLivenessTest, BrokerOutageDoesNotKillTheFleetAndLostConsumersComeBack) {
  auto a = registered_agent("patient", {{.type = "inventory", .partition = "store-1"}});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(server_->stop().is_ok());
  // Far longer than dead_after x interval without the hub hearing anyone.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(server_->start().is_ok());
  ASSERT_TRUE(eventually([&] { return nc_->connected(); }));
  const int64_t answered = a->broadcasts_answered();
  service_->on_reconnected();  // the hub wires this to the connection's callback
  // Memory consumers did not survive the broker restart; the service puts it back.
  ASSERT_TRUE(eventually([&] { return consumer_exists("inventory", "patient"); }));
  ASSERT_TRUE(eventually([&] { return a->broadcasts_answered() >= answered + 3; }));
  EXPECT_FALSE(contains(transitions("patient"), "suspect>dead"));
  EXPECT_FALSE(contains(transitions("patient"), "live>dead"));
  const uint64_t s1 = publish_change("inventory", "store-1", 1, "k");
  ASSERT_TRUE(eventually([&] { return a->received().size() == 1; }));
  EXPECT_EQ(a->received()[0].stream_seq, s1);
}

TEST_F(HubLivenessTest, RestartedServiceKeepsItsAgentsAndRecreatesMissingConsumers) {
  auto a = registered_agent("survivor", {{.type = "inventory", .partition = "store-1"}});
  ASSERT_NE(a, nullptr);
  service_->stop();
  service_.reset();
  ASSERT_TRUE(js_->delete_consumer(stream_name("inventory"), consumer_name("survivor")).is_ok());

  start_service();
  EXPECT_EQ(state_of("survivor"), AgentState::kLive);
  ASSERT_TRUE(eventually([&] { return consumer_exists("inventory", "survivor"); }));
  const uint64_t s1 = publish_change("inventory", "store-1", 1, "k");
  ASSERT_TRUE(eventually([&] { return a->received().size() == 1; }));
  EXPECT_EQ(a->received()[0].stream_seq, s1);
}

TEST_F(HubLivenessTest, AgentsJsonReportsLagInVersionsAndBusinessTime) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  // What the ingest writer reports after its commits: store-1's newest change
  // is version 10, store-2's 12 (so the type's newest is 12).
  service_->on_committed({{"inventory", "store-1", 10, now}, {"inventory", "store-2", 12, now + 5},
                          {"prices", "_all", 3, now}});
  auto a = make_agent("behind", {{.type = "inventory", .partition = "store-1", .version = 4, .seq = 0,
                                  .ts = now - 60'000},
                                 {.type = "prices", .partition = "*", .version = 3, .seq = 0, .ts = now}});
  auto b = make_agent("current", {{.type = "inventory", .partition = "store-1", .version = 10, .seq = 0, .ts = now}});
  auto c = make_agent("everything", {{.type = "inventory", .partition = "*", .version = 10, .seq = 0, .ts = now}});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(a->register_now().is_ok());
  ASSERT_TRUE(b->register_now().is_ok());
  ASSERT_TRUE(c->register_now().is_ok());

  const auto j = agent_json("behind");
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["state"], "live");
  EXPECT_EQ(j["host"], "test-host");
  EXPECT_GT(j["last_beat"].get<int64_t>(), 0);
  const auto& inv = j["types"]["inventory"];
  EXPECT_EQ(inv["partition"], "store-1");
  EXPECT_EQ(inv["version"], 4);
  EXPECT_EQ(inv["lag_versions"], 8);     // 12 - 4: an upper bound, store-2's versions count too
  EXPECT_EQ(inv["lag_ms"], 60'000);      // store-1's newest business time - the agent's
  EXPECT_EQ(inv["freshness_ok"], true);  // objective 300 s
  const auto& pr = j["types"]["prices"];
  EXPECT_EQ(pr["lag_versions"], 0);
  EXPECT_EQ(pr["lag_ms"], 0);
  EXPECT_EQ(pr["freshness_ok"], true);

  // Store-1 complete: not behind, whatever store-2 got since.
  EXPECT_EQ(agent_json("current")["types"]["inventory"]["lag_versions"], 0);
  EXPECT_EQ(agent_json("current")["types"]["inventory"]["lag_ms"], 0);
  // All partitions: behind store-2's newest.
  const auto everything = agent_json("everything");
  const auto& all = everything["types"]["inventory"];
  EXPECT_EQ(all["lag_versions"], 2);
  EXPECT_EQ(all["lag_ms"], 5);  // store-2's newest is 5 ms later in business time
}

}  // namespace
}  // namespace ds::testing
