// The real hub and the real agent in one process against a real nats-server:
// what only the two together show. Here: a hub restarted with a new column
// reaches an agent that keeps running, through the registration the hub
// orders on its heartbeat (HeartbeatRequest "register").

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "agent/agent.h"
#include "hub/hub.h"
#include "shared/sqlite.h"
#include "tests/harness/test_agent.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class HubAgentTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    if (HasFatalFailure()) return;
    config_ = two_type_hub_config(*server_, dir_);
    config_.heartbeat_interval_ms = 200;
    start_hub();
  }
  void TearDown() override {
    if (agent_) agent_->stop();
    agent_.reset();
    if (hub_) hub_->stop();
    hub_.reset();
    NatsTest::TearDown();
  }

  void start_hub() {
    auto hub = Hub::start(config_);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();
  }

  void start_agent(const std::string& id, const std::string& subscriptions) {
    const std::string path = dir_.write_file(
        id + ".toml", "[agent]\nid = \"" + id + "\"\nlog_level = \"warn\"\n[nats]\nurl = \"" + server_->url() +
                          "\"\n[replica]\npath = \"" + dir_.file(id + ".db") + "\"\n" + subscriptions);
    auto config = load_agent_config(path);
    ASSERT_TRUE(config.is_ok()) << config.status().to_string();
    agent_ = std::make_unique<Agent>(std::move(config).value());
    Status s = agent_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    ASSERT_TRUE(agent_->wait_registered(0, 15000));
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

  TempDir dir_{"hub-agent-test"};
  HubConfig config_;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(HubAgentTest, ColumnAddedByARestartedHubReachesTheRunningAgentInPlace) {
  start_agent("shop", "[[subscriptions]]\ntype = \"price\"\n");
  ingest_ok("price", price_record("a", 1.5));
  ASSERT_TRUE(eventually([&] { return replica_text("shop", "SELECT currency FROM price WHERE sku = 'a'") == "EUR"; }));
  const uint64_t registrations = agent_->registrations();

  // The operator adds a column to the type and restarts the hub; the agent's
  // connection to the broker never drops, so nothing but the hub's order
  // makes it register again.
  hub_->stop();
  hub_.reset();
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

}  // namespace
}  // namespace ds::testing
