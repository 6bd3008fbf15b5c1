// VerifyService's repair wait against a stepping hub clock (docs/reliability.md,
// "Clock skew"): a repair counts as done when the agent registered again
// after the order, which the hub counts (AgentRecord::registrations); the
// agent's registered_at, a wall-clock stamp, is not compared with the time
// of the order. The service runs for real (its threads, a real read-only
// SQLite store); the agent service and the agent are fakes behind
// VerifyHooks, the agent reloading 200 ms after the order while the hub's
// wall clock has stepped back an hour (its registered_at an hour before the
// order). Before the fix the job waited out its repair timeout and reported
// the repair unfinished.
//
// And the digest request's timeout grows with the rows the agent should
// hold (VerifyOptions::agent_timeout_per_million_rows_ms).

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "hub/query_store.h"
#include "hub/verify_service.h"
#include "shared/digest.h"
#include "testing/temp_dir.h"

namespace ds::testing {
namespace {

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HubConfig one_type_config(const TempDir& dir) {
  HubConfig c;
  c.store_path = dir.file("hub.db");
  TypeConfig price;
  price.name = "price";
  price.schema.key = "sku";
  price.schema.columns = {{"amount", ColumnType::kReal}};
  c.types = {price};
  return c;
}

// One agent "a1" taking "price" whole, as the agent service and the agent
// would show it. Thread-safe.
class FakeFleet {
 public:
  explicit FakeFleet(std::string hub_content) : hub_content_(std::move(hub_content)) {}

  nlohmann::json agents_json() {
    std::lock_guard lock(mu_);
    if (reload_pending_) {  // the agent is back, with the hub's clock stepped
      reload_pending_ = false;
      registered_at_ = wall_now_ms() - 3600 * 1000;
      ++registrations_;
      awaiting_ = false;
      reloaded_ = true;
    }
    nlohmann::json types{{"price", {{"partition", "*"}, {"consumer", true}, {"awaiting_snapshot", awaiting_}}}};
    return nlohmann::json::array({{{"id", "a1"},
                                   {"state", "live"},
                                   {"registered_at", registered_at_},
                                   {"registrations", registrations_},
                                   {"types", types}}});
  }

  Result<DigestReply> digest(const DigestRequest& request, int64_t timeout_ms) {
    std::lock_guard lock(mu_);
    timeouts_.push_back(timeout_ms);
    DigestReply reply;
    reply.agent = "a1";
    if (request.buckets > 0) {
      reply.error = WireError::from(Status::unavailable("the fake agent has no buckets"));
      return reply;
    }
    TypeDigest d;
    d.rows = 1;
    d.digest = "1:0000000000000001";
    d.content = reloaded_ ? hub_content_ : std::string("1:00000000000000ff");
    reply.types["price"] = d;
    return reply;
  }

  // The order is seen (awaiting); by the next look at the fleet the agent
  // has registered again and reloaded, while the hub's wall clock stepped
  // back an hour: its registered_at is older than the order.
  Status order_snapshot() {
    std::lock_guard lock(mu_);
    awaiting_ = true;
    ++orders_;
    reload_pending_ = true;
    return Status::ok();
  }

  std::vector<int64_t> timeouts() {
    std::lock_guard lock(mu_);
    return timeouts_;
  }
  int orders() {
    std::lock_guard lock(mu_);
    return orders_;
  }

 private:
  std::mutex mu_;
  const std::string hub_content_;
  int64_t registered_at_ = wall_now_ms() - 60000;
  uint64_t registrations_ = 1;
  bool awaiting_ = false;
  bool reloaded_ = false;
  bool reload_pending_ = false;
  int orders_ = 0;
  std::vector<int64_t> timeouts_;
};

// Runs one job to its end (bounded) and returns the final report.
nlohmann::json run_job(VerifyService& service, const VerifyOptions& options) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<nlohmann::json> final_report;
  auto id = service.start(options, [&](const nlohmann::json& r) {
    std::lock_guard lock(mu);
    final_report = r;
    cv.notify_all();
  });
  EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  if (!id.is_ok()) return {};
  std::unique_lock lock(mu);
  cv.wait_for(lock, std::chrono::seconds(30), [&] { return final_report.has_value(); });
  return final_report.value_or(nlohmann::json{{"state", "no final report within 30 s"}});
}

class VerifyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = one_type_config(dir_);
    auto store = QueryStore::open(config_.store_path, config_.types);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    auto digest = (*store)->table_digest("price", std::nullopt);
    ASSERT_TRUE(digest.is_ok()) << digest.status().to_string();
    hub_content_ = digest->content.hex();
  }

  VerifyHooks hooks(FakeFleet& fleet) {
    VerifyHooks h;
    h.agents_json = [&fleet] { return fleet.agents_json(); };
    h.request_digest = [&fleet](const std::string&, const DigestRequest& r, int64_t timeout_ms) {
      return fleet.digest(r, timeout_ms);
    };
    h.order_snapshot = [&fleet](const std::string&, const std::string&) { return fleet.order_snapshot(); };
    return h;
  }

  TempDir dir_{"verify-service-test"};
  HubConfig config_;
  std::string hub_content_;
};

TEST_F(VerifyServiceTest, RepairCompletesWhenTheHubWallClockStepsBackDuringIt) {
  FakeFleet fleet(hub_content_);
  VerifyService service(config_, hooks(fleet));
  VerifyOptions options;
  options.repair = true;
  options.repair_timeout_ms = 5000;
  const nlohmann::json report = run_job(service, options);

  ASSERT_EQ(report.value("state", ""), "done") << report.dump(1);
  EXPECT_EQ(fleet.orders(), 1);
  ASSERT_EQ(report["repairs"].size(), 1u) << report.dump(1);
  const nlohmann::json& repair = report["repairs"][0];
  EXPECT_TRUE(repair.value("ordered", false)) << repair.dump();
  EXPECT_TRUE(repair.value("done", false)) << repair.dump();
  EXPECT_FALSE(repair.contains("error")) << repair.dump();
  EXPECT_TRUE(report.value("ok", false)) << report.dump(1);
}

TEST_F(VerifyServiceTest, DigestRequestTimeoutGrowsWithTheRowsTheAgentShouldHold) {
  // 3,000 rows on the hub: the agent's request waits 2 s + 3,000 x 30 s / 1,000,000.
  auto store = QueryStore::open(config_.store_path, config_.types);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  CommitBatch batch;
  batch.type = "price";
  for (int i = 0; i < 3000; ++i) {
    IngestRecord r;
    r.key = "sku-" + std::to_string(i);
    r.fields = {{"amount", 1.0 * i}};
    batch.records.push_back(std::move(r));
  }
  std::vector<CommitBatch> batches{std::move(batch)};
  auto committed = (*store)->commit(batches, wall_now_ms());
  ASSERT_TRUE(committed.is_ok()) << committed.status().to_string();

  FakeFleet fleet(hub_content_);
  VerifyService service(config_, hooks(fleet));
  VerifyOptions options;
  options.agent_timeout_ms = 2000;
  options.agent_timeout_per_million_rows_ms = 30000;
  const nlohmann::json report = run_job(service, options);
  ASSERT_EQ(report.value("state", ""), "done") << report.dump(1);
  const std::vector<int64_t> timeouts = fleet.timeouts();
  ASSERT_GE(timeouts.size(), 1u);
  EXPECT_EQ(timeouts[0], 2000 + 90);
}

}  // namespace
}  // namespace ds::testing
