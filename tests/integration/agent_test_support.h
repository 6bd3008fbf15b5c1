#pragma once
// Shared fixture of the agent integration tests: a real nats-server, a
// FakeHub with two types (prices: partitioned by store; products:
// unpartitioned), and helpers to write agent configs and read replicas.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "agent/replica.h"
#include "shared/config.h"
#include "testing/temp_dir.h"
#include "tests/harness/fake_hub.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {

inline TypeSchema prices_schema() {
  TypeSchema s;
  s.key = "sku";
  s.partition = "store";
  s.columns = {{"store", ColumnType::kText}, {"price", ColumnType::kReal}};
  return s;
}
inline TypeSchema products_schema() {
  TypeSchema s;
  s.key = "id";
  s.columns = {{"name", ColumnType::kText}};
  return s;
}

inline IngestRecord price(const std::string& sku, const std::string& store, double p) {
  IngestRecord r;
  r.key = sku;
  r.fields = {{"store", store}, {"price", p}};
  return r;
}
inline IngestRecord removal(const std::string& key) {
  IngestRecord r;
  r.key = key;
  r.op = Op::kDelete;
  return r;
}

// Polls `pred` every 20 ms until it holds or `timeout_ms` passes.
inline bool eventually(const std::function<bool()>& pred, int64_t timeout_ms = 15000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class AgentIntegrationTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    if (HasFatalFailure()) return;
    hub_ = std::make_unique<FakeHub>(*nc_, std::vector<FakeType>{{"prices", prices_schema()},
                                                                {"products", products_schema()}});
    Status s = hub_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }
  void TearDown() override {
    hub_.reset();
    NatsTest::TearDown();
  }

  // Writes an agent.toml and returns its path. `subscriptions` is the TOML of
  // the [[subscriptions]] blocks; `url` the NATS server (empty: server_).
  std::string write_config(const std::string& id, const std::string& subscriptions, const std::string& url = {}) {
    const std::string text = "[agent]\nid = \"" + id + "\"\nlog_level = \"warn\"\n[nats]\nurl = \"" +
                             (url.empty() ? server_->url() : url) + "\"\n[replica]\npath = \"" +
                             dir_.file(id + ".db") + "\"\n" + subscriptions;
    return dir_.write_file(id + ".toml", text);
  }
  AgentConfig config(const std::string& id, const std::string& subscriptions, const std::string& url = {}) {
    auto c = load_agent_config(write_config(id, subscriptions, url));
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    return c.is_ok() ? *c : AgentConfig{};
  }

  // A read-only view of an agent's replica, opened fresh each call.
  std::unique_ptr<Replica> replica(const std::string& id) {
    auto r = Replica::open(dir_.file(id + ".db"), /*read_only=*/true);
    return r.is_ok() ? std::move(r).value() : nullptr;
  }
  // The replica's digest of `type`; count = UINT64_MAX when unreadable.
  Digest replica_digest(const std::string& id, const std::string& type) {
    auto r = replica(id);
    if (!r) return Digest{0, UINT64_MAX};
    auto d = r->digest(type);
    return d.is_ok() ? *d : Digest{0, UINT64_MAX};
  }
  uint64_t replica_version(const std::string& id, const std::string& type) {
    auto r = replica(id);
    if (!r) return 0;
    auto cps = r->checkpoints();
    if (!cps.is_ok() || !cps->count(type)) return 0;
    return cps->at(type).version;
  }

  TempDir dir_{"agent-it"};
  std::unique_ptr<FakeHub> hub_;
};

}  // namespace ds::testing
