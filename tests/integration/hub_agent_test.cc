// The real hub and the real agent in one process against a real nats-server:
// what only the two together show. Here: a hub restarted with a new column
// reaches an agent that keeps running, through the registration the hub
// orders on its heartbeat (HeartbeatRequest "register").

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "agent/agent.h"
#include "hub/agent_registry.h"
#include "hub/hub.h"
#include "shared/sqlite.h"
#include "tests/harness/test_agent.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class HubAgentTest : public InProcessHubTest {
 protected:
  void SetUp() override {
    InProcessHubTest::SetUp();
    if (HasFatalFailure()) return;
    config_.heartbeat_interval_ms = 200;
    start_hub();
  }

  // One text cell of the agent's replica, "" when the row or the column is
  // not there (yet).
  std::string replica_text(const std::string& id, const std::string& sql) {
    OpenOptions ro;
    ro.read_only = true;
    auto db = Database::open(dir_.file(id + ".db"), ro);
    if (!db.is_ok()) return "";
    auto st = (*db)->prepare(sql);
    if (!st.is_ok()) return "";
    auto row = st->step();
    return row.is_ok() && *row ? st->column_text(0) : "";
  }

  void ingest_ok(const std::string& type, IngestRecord record) {
    IngestRequest req;
    req.records = {std::move(record)};
    auto reply = ingest(*nc_, type, req);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    ASSERT_TRUE(reply->ok()) << reply->error->message;
  }

  // Agent "shop" takes "price" and has applied row "a"; then the hub stops.
  // The agent keeps running, its connection to the broker never drops.
  void running_agent_then_hub_stopped() {
    start_agent("shop", "[[subscriptions]]\ntype = \"price\"\n");
    ingest_ok("price", price_record("a", 1.5));
    ASSERT_TRUE(
        eventually([&] { return replica_text("shop", "SELECT currency FROM price WHERE sku = 'a'") == "EUR"; }));
    hub_->stop();
    hub_.reset();
  }
};

TEST_F(HubAgentTest, ColumnAddedByARestartedHubReachesTheRunningAgentInPlace) {
  ASSERT_NO_FATAL_FAILURE(running_agent_then_hub_stopped());
  const uint64_t registrations = agent_->registrations();

  // The operator adds a column to the type and restarts the hub: nothing
  // but the hub's order makes the agent register again.
  config_.types[0].schema.columns.push_back({"label", ColumnType::kText});
  start_hub();
  IngestRecord b = price_record("b", 2.5);
  b.fields["label"] = std::string("new");
  ingest_ok("price", b);

  ASSERT_TRUE(eventually([&] { return replica_text("shop", "SELECT label FROM price WHERE sku = 'b'") == "new"; }))
      << "the change using the new column never reached the replica";
  // The registration that brought the column counts once it has finished.
  EXPECT_TRUE(eventually([&] { return agent_->registrations() > registrations; }));
  // The rows from before keep their values; the new column is empty there.
  EXPECT_EQ(replica_text("shop", "SELECT currency FROM price WHERE sku = 'a'"), "EUR");
  EXPECT_EQ(replica_text("shop", "SELECT coalesce(label, 'null') FROM price WHERE sku = 'a'"), "null");
}

// The hub lost its agent registry (a new disk, a store restored without
// hub.agents.db) while the agent kept running: the agent has no reason to
// register, but it answers the type's heartbeats, and the hub tells it to.
// It is then known and live again, and changes reach it.
TEST_F(HubAgentTest, AnAgentTheHubForgotIsToldToRegisterAndIsLiveAgain) {
  ASSERT_NO_FATAL_FAILURE(running_agent_then_hub_stopped());
  const uint64_t registrations = agent_->registrations();
  const std::string registry = agent_registry_path(config_.store_path);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((registry + suffix).c_str());
  start_hub();

  ASSERT_TRUE(eventually([&] { return agent_->registrations() > registrations; }))
      << "the forgotten agent was never told to register";
  ASSERT_TRUE(eventually([&] {
    return hub_->metrics_text().find("deltasync_hub_agent_state{agent=\"shop\",state=\"live\"} 1") !=
           std::string::npos;
  })) << "the agent is not live on the hub again: " << hub_->metrics_text();
  ingest_ok("price", price_record("b", 2.5));
  EXPECT_TRUE(eventually([&] { return replica_text("shop", "SELECT currency FROM price WHERE sku = 'b'") == "EUR"; }));
}

}  // namespace
}  // namespace ds::testing
