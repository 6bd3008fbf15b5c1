// The agent library in-process against a real nats-server and the FakeHub:
// routing by type and partition, the version rule on the wire, quarantine,
// snapshots and heartbeats.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "shared/codec.h"
#include "tests/harness/lossy_relay.h"
#include "tests/integration/agent_test_support.h"

namespace ds::testing {
namespace {

constexpr const char* kStore1Prices = "[[subscriptions]]\ntype = \"prices\"\npartition = \"s1\"\n";

// The value of `series` (its name and labels as exposed) in a /metrics
// text; -1 when it is absent.
double sample(const std::string& text, const std::string& series) {
  const std::string all = "\n" + text;
  const size_t at = all.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(all.substr(at + 1 + series.size() + 1));
}

class AgentApplyTest : public AgentIntegrationTest {
 protected:
  Agent& start_agent(const std::string& id, const std::string& subscriptions) {
    agent_ = std::make_unique<Agent>(config(id, subscriptions));
    Status s = agent_->start();
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_TRUE(agent_->wait_registered(0, 15000)) << "the agent never registered";
    return *agent_;
  }
  void TearDown() override {
    agent_.reset();
    AgentIntegrationTest::TearDown();
  }

  std::unique_ptr<Agent> agent_;
};

// Until its first registration succeeds the agent takes no deliveries
// (agent/agent.h, "Why the push subscriptions wait"): a consumer its
// previous run left, maybe with deliveries that run never applied, has no
// subscriber to send later ones to, which would otherwise move the
// checkpoint past the lost ones.
TEST_F(AgentApplyTest, TakesNoDeliveriesBeforeItsFirstRegistration) {
  hub_.reset();  // nobody answers registrations yet
  agent_ = std::make_unique<Agent>(config("store-1", kStore1Prices));
  ASSERT_TRUE(agent_->start().is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // its first registration is out, unanswered
  auto before = nc_->request("ds.push.store-1.prices", "probe", 1000);
  ASSERT_FALSE(before.is_ok());
  EXPECT_EQ(before.status().code(), StatusCode::kUnavailable) << "a subscriber took it: " << before.status().to_string();

  hub_ = std::make_unique<FakeHub>(*nc_, std::vector<FakeType>{{"prices", prices_schema()},
                                                              {"products", products_schema()}});
  ASSERT_TRUE(hub_->start().is_ok());
  ASSERT_TRUE(agent_->wait_registered(0, 30000)) << "the agent never registered";
  // Now the agent subscribes (it takes the probe and does not answer it).
  auto after = nc_->request("ds.push.store-1.prices", "probe", 300);
  ASSERT_FALSE(after.is_ok());
  EXPECT_EQ(after.status().code(), StatusCode::kDeadlineExceeded) << after.status().to_string();
}

// A delivery in flight when the agent's connection dropped is lost, and the
// consumer goes on with the next ones; it would send the lost one again only
// after ack_wait (30 s). Applied meanwhile, the next ones move the
// checkpoint past it, and a registration (here: a restart) then recreates
// the consumer after it: lost for good. The agent must notice the gap in
// the consumer's numbering (agent/delivery_order.h), apply nothing behind
// it, and register again so that the hub resumes from its checkpoint.
TEST_F(AgentApplyTest, ADeliveryLostOnTheWayIsNotSkipped) {
  auto relay = LossyRelay::start(server_->url());
  ASSERT_TRUE(relay.is_ok()) << relay.status().to_string();
  const AgentConfig cfg = config("store-1", kStore1Prices, (*relay)->url());
  agent_ = std::make_unique<Agent>(cfg);
  ASSERT_TRUE(agent_->start().is_ok());
  ASSERT_TRUE(agent_->wait_registered(0, 15000)) << "the agent never registered";
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 1; }));

  (*relay)->drop_next("ds.delta.prices.s1");
  ASSERT_TRUE(hub_->commit("prices", {price("b", "s1", 2.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return (*relay)->dropped() == 1; })) << "the delivery of b never passed the relay";
  ASSERT_TRUE(hub_->commit("prices", {price("c", "s1", 3.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 3; }));
  EXPECT_NE(agent_->metrics_text().find("deltasync_agent_delivery_gaps_total{type=\"prices\"} 1"), std::string::npos)
      << agent_->metrics_text();

  // A restart registers with the replica's checkpoint.
  agent_.reset();
  agent_ = std::make_unique<Agent>(cfg);
  ASSERT_TRUE(agent_->start().is_ok());
  ASSERT_TRUE(agent_->wait_registered(0, 15000)) << "the agent never registered";
  EXPECT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices", "s1"); }))
      << "the replica misses b";
  agent_.reset();  // before the relay closes its connection
}

TEST_F(AgentApplyTest, DeltasOfItsTypeAndPartitionArriveAndOthersNever) {
  start_agent("store-1", kStore1Prices);
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0), price("b", "s2", 2.0), price("c", "s1", 3.0)}).is_ok());
  ASSERT_TRUE(hub_->commit("products", {{"p1", Op::kUpsert, {{"name", std::string("tea")}}, {}, {}}}).is_ok());
  ASSERT_TRUE(hub_->commit("prices", {price("d", "s2", 4.0), price("a", "s1", 1.5)}).is_ok());
  // The last s1 change is published after every s2 change: once it is in, any
  // s2 delta that leaked would be in too.
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices", "s1"); }));
  auto r = replica("store-1");
  ASSERT_NE(r, nullptr);
  auto rows = r->key_versions("prices");
  ASSERT_TRUE(rows.is_ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].first, "a");
  EXPECT_EQ((*rows)[1].first, "c");
  EXPECT_EQ(std::get<double>(r->row("prices", "a")->at("price")), 1.5);
  EXPECT_EQ(r->schema("products"), nullptr) << "a type the agent does not take got a table";
  EXPECT_EQ(r->checkpoints()->at("prices").version, 5u);
}

TEST_F(AgentApplyTest, DuplicateAndOutOfOrderDeliveriesLeaveTheReplicaUnchanged) {
  start_agent("store-1", kStore1Prices);
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0), price("b", "s1", 2.0)}).is_ok());
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.1), removal("b")}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices", "s1"); }));
  const Digest before = replica_digest("store-1", "prices");

  // A duplicate of versions 3..4, and an out-of-order replay of versions 1..2
  // carrying different values: both must be ignored.
  DeltaBatch dup{"prices", {{3, "a", Op::kUpsert, {{"price", 1.1}}, 1, 1}, {4, "b", Op::kDelete, {}, 1, 1}}};
  DeltaBatch old{"prices",
                 {{1, "a", Op::kUpsert, {{"price", 99.0}}, 1, 1}, {2, "b", Op::kUpsert, {{"price", 99.0}}, 1, 1}}};
  ASSERT_TRUE(hub_->republish("prices", "s1", dup).is_ok());
  ASSERT_TRUE(hub_->republish("prices", "s1", old).is_ok());
  ASSERT_TRUE(hub_->commit("prices", {price("marker", "s1", 0.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices").count == before.count + 1; }));

  auto r = replica("store-1");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(std::get<double>(r->row("prices", "a")->at("price")), 1.1);
  EXPECT_EQ(r->row("prices", "b").status().code(), StatusCode::kNotFound) << "a replayed upsert resurrected b";
  EXPECT_EQ(replica_digest("store-1", "prices"), hub_->digest("prices", "s1"));
  EXPECT_EQ(*r->quarantine_count(), 0u);
  // The four replayed changes are counted as skipped, not applied.
  const std::string metrics = agent_->metrics_text();
  EXPECT_GE(sample(metrics, "deltasync_agent_skipped_changes_total{type=\"prices\"}"), 4) << metrics;
  // (Counted after the replica's commit: wait for it.)
  EXPECT_TRUE(eventually([&] {
    return sample(agent_->metrics_text(), "deltasync_agent_applied_changes_total{type=\"prices\"}") == 5;
  })) << agent_->metrics_text();
}

TEST_F(AgentApplyTest, UndecodableDeltaAndFailingHookAreQuarantinedWhileLaterDeltasApply) {
  start_agent("store-1", std::string(kStore1Prices) +
                             "[[subscriptions]]\ntype = \"products\"\nhook = \"exit 7\"\nhook_retries = 1\n"
                             "hook_timeout_ms = 5000\n");
  ASSERT_TRUE(hub_->publish_raw("prices", "s1", std::string("\xc1 not msgpack", 13), "prices:garbage").is_ok());
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0)}).is_ok());
  ASSERT_TRUE(hub_->commit("products", {{"p1", Op::kUpsert, {{"name", std::string("tea")}}, {}, {}}}).is_ok());
  ASSERT_TRUE(hub_->commit("products", {{"p2", Op::kUpsert, {{"name", std::string("milk")}}, {}, {}}}).is_ok());

  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices", "s1"); }));
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "products") == hub_->digest("products"); }));
  ASSERT_TRUE(eventually([&] {
    auto r = replica("store-1");
    return r && r->quarantine_count().is_ok() && *r->quarantine_count() >= 2;
  }));
  auto r = replica("store-1");
  ASSERT_NE(r, nullptr);
  auto entries = r->quarantined();
  ASSERT_TRUE(entries.is_ok());
  bool undecodable = false;
  bool hook = false;
  for (const QuarantineEntry& e : *entries) {
    if (e.kind == "undecodable" && e.type == "prices") undecodable = true;
    if (e.kind == "hook" && e.type == "products") {
      hook = true;
      EXPECT_NE(e.reason.find("status 7"), std::string::npos) << e.reason;
    }
  }
  EXPECT_TRUE(undecodable);
  EXPECT_TRUE(hook);

  auto replies = hub_->heartbeat("prices", 500);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].status, AgentHealth::kDegraded);
  EXPECT_GE(replies[0].quarantined, 2u);
  // The same entries by type: the undecodable message under prices, the
  // failed hook's batch under products.
  ASSERT_TRUE(replies[0].quarantined_types.has_value());
  EXPECT_GE(replies[0].quarantined_types->count("prices") ? replies[0].quarantined_types->at("prices") : 0, 1u);
  EXPECT_GE(replies[0].quarantined_types->count("products") ? replies[0].quarantined_types->at("products") : 0, 1u);
  uint64_t sum = 0;
  for (const auto& [type, n] : *replies[0].quarantined_types) sum += n;
  EXPECT_EQ(sum, replies[0].quarantined);
  // And in the agent's metrics.
  const std::string metrics = agent_->metrics_text();
  EXPECT_GE(sample(metrics, "deltasync_agent_quarantined_total{type=\"prices\"}"), 1) << metrics;
  EXPECT_GE(sample(metrics, "deltasync_agent_quarantined_total{type=\"products\"}"), 1) << metrics;
  EXPECT_GE(sample(metrics, "deltasync_agent_hook_failures_total{type=\"products\"}"), 1) << metrics;
  EXPECT_EQ(sample(metrics, "deltasync_agent_hook_failures_total{type=\"prices\"}"), 0) << metrics;
  EXPECT_GE(sample(metrics, "deltasync_agent_quarantine_entries"), 2) << metrics;
}

// A broker restarted under the agent: it reconnects by itself, counts the
// reconnect, and applies what comes after.
TEST_F(AgentApplyTest, ReconnectAfterABrokerRestartIsCountedAndDeltasFlowAgain) {
  start_agent("store-1", kStore1Prices);
  EXPECT_EQ(sample(agent_->metrics_text(), "deltasync_agent_nats_reconnects_total"), 0);
  ASSERT_TRUE(server_->restart().is_ok()) << server_->log_text();
  ASSERT_TRUE(eventually([&] { return sample(agent_->metrics_text(), "deltasync_agent_nats_reconnects_total") >= 1; }))
      << agent_->metrics_text();
  ASSERT_TRUE(eventually([&] { return hub_->commit("prices", {price("a", "s1", 1.0)}).is_ok(); }));
  EXPECT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices", "s1"); }));
}

TEST_F(AgentApplyTest, HookCutShortByShutdownRunsAtTheNextStart) {
  const std::string out = dir_.file("hook-out.jsonl");
  // First run: the hook never succeeds (times out), and the agent stops
  // while it waits to retry. The batch is applied and acked already.
  start_agent("store-1", "[[subscriptions]]\ntype = \"products\"\nhook = \"sleep 5\"\nhook_retries = 100\n"
                         "hook_timeout_ms = 100\n");
  ASSERT_TRUE(hub_->commit("products", {{"p1", Op::kUpsert, {{"name", std::string("tea")}}, {}, {}}}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "products") == hub_->digest("products"); }));
  agent_->stop();
  agent_.reset();
  {
    auto r = replica("store-1");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->pending_hooks()->size(), 1u);
    EXPECT_EQ(*r->quarantine_count(), 0u) << "a hook cut short by shutdown is not a failure";
  }

  // Second run, with a hook that works: the batch reaches it before anything new.
  start_agent("store-1", "[[subscriptions]]\ntype = \"products\"\nhook = \"cat >> " + out + "\"\n");
  ASSERT_TRUE(eventually([&] { return dir_.read_file("hook-out.jsonl").find("\"p1\"") != std::string::npos; }));
  ASSERT_TRUE(eventually([&] {
    auto r = replica("store-1");
    return r && r->pending_hooks().is_ok() && r->pending_hooks()->empty();
  }));
}

TEST_F(AgentApplyTest, SnapshotLoadIsFollowedByTheStreamWithoutGap) {
  // 2,500 rows, then the stream loses them: the agent must take a snapshot.
  std::vector<IngestRecord> records;
  for (int i = 0; i < 2500; ++i) records.push_back(price("k" + std::to_string(10000 + i), "s1", i));
  ASSERT_TRUE(hub_->commit("prices", records).is_ok());
  ASSERT_TRUE(hub_->commit("prices", {removal("k10005"), price("other", "s2", 1.0)}).is_ok());
  ASSERT_TRUE(hub_->purge("prices").is_ok());

  start_agent("store-1", kStore1Prices);
  EXPECT_GE(hub_->snapshot_pages_served(), 3u);
  EXPECT_EQ(replica_digest("store-1", "prices"), hub_->digest("prices", "s1"));
  // The stream resumes right after the snapshot's mark.
  ASSERT_TRUE(hub_->commit("prices", {price("k10001", "s1", -1.0), removal("k10002"), price("new", "s1", 5.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices", "s1"); }));
  auto r = replica("store-1");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(std::get<double>(r->row("prices", "k10001")->at("price")), -1.0);
  EXPECT_EQ(r->checkpoints()->at("prices").version, hub_->last_version("prices"));
  // The second registration reported the snapshot's mark.
  auto regs = hub_->registrations();
  ASSERT_GE(regs.size(), 2u);
  EXPECT_EQ(regs.back().subscriptions.at(0).version, 2502u);
}

TEST_F(AgentApplyTest, HeartbeatsReportEveryTypeCheckpoint) {
  start_agent("store-1", std::string(kStore1Prices) + "[[subscriptions]]\ntype = \"products\"\n");
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0), price("b", "s1", 2.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 2; }));
  for (const std::string& agent : {std::string(), std::string("store-1")}) {
    auto replies = hub_->heartbeat("products", 500, agent);
    ASSERT_EQ(replies.size(), 1u) << (agent.empty() ? "broadcast" : "probe");
    const HeartbeatReply& hb = replies[0];
    EXPECT_EQ(hb.agent, "store-1");
    EXPECT_EQ(hb.status, AgentHealth::kOk);
    ASSERT_TRUE(hb.checkpoints.count("prices"));
    ASSERT_TRUE(hb.checkpoints.count("products"));
    EXPECT_EQ(hb.checkpoints.at("prices").version, 2u);
    EXPECT_EQ(hb.checkpoints.at("prices").schema_hash, schema_hash(prices_schema()));
  }
}

TEST_F(AgentApplyTest, RestartedAgentReportsItsReplicaWhenRegistering) {
  start_agent("store-1", kStore1Prices);
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 1; }));
  agent_.reset();
  start_agent("store-1", kStore1Prices);
  auto regs = hub_->registrations();
  ASSERT_GE(regs.size(), 2u);
  const RegisterRequest& last = regs.back();
  EXPECT_EQ(last.agent, "store-1");
  EXPECT_FALSE(last.host.empty());
  ASSERT_EQ(last.subscriptions.size(), 1u);
  EXPECT_EQ(last.subscriptions[0].partition, "s1");
  EXPECT_EQ(last.subscriptions[0].version, 1u);
  EXPECT_EQ(last.subscriptions[0].seq, 1u);
  EXPECT_EQ(last.subscriptions[0].rows, 1u);
}

TEST_F(AgentApplyTest, UnknownTypeRegistrationIsRefusedAndTheAgentKeepsRunning) {
  agent_ = std::make_unique<Agent>(config("store-9", "[[subscriptions]]\ntype = \"nosuch\"\n"));
  ASSERT_TRUE(agent_->start().is_ok());
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); }));
  EXPECT_FALSE(agent_->wait_registered(0, 300));
  auto replies = hub_->heartbeat("nosuch", 500, "store-9");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].status, AgentHealth::kDegraded);
  ASSERT_TRUE(replies[0].error.has_value());
  EXPECT_NE(replies[0].error->find("nosuch"), std::string::npos) << *replies[0].error;
}

}  // namespace
}  // namespace ds::testing
