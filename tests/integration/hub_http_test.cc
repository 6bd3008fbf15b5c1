// The hub's HTTP API against a hub running in-process: bearer token, ingest
// through the same writer as NATS, queries, types, agents and metrics.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hub/hub.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr std::string_view kToken = "test-token-0123456789abcdef";

class HubHttpTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    config_ = two_type_hub_config(*server_, dir_);
    port_ = free_tcp_port();
    config_.http_listen = "127.0.0.1:" + std::to_string(port_);
    config_.http_token = std::string(kToken);
    auto hub = Hub::start(config_);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();
  }
  void TearDown() override {
    hub_.reset();
    NatsTest::TearDown();
  }

  // A request to this hub, with the token unless told otherwise.
  HttpResponse api(const std::string& method, const std::string& path, const std::string& body = {},
                   std::optional<std::string_view> token = kToken) {
    return http(port_, method, path, body, token);
  }

  TempDir dir_{"hub-http-test"};
  HubConfig config_;
  int port_ = 0;
  std::unique_ptr<Hub> hub_;
};

TEST_F(HubHttpTest, HealthzNeedsNoToken) {
  auto r = api("GET", "/healthz", {}, std::nullopt);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["ok"], true);
}

TEST_F(HubHttpTest, EveryOtherEndpointWantsTheBearerToken) {
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/types"},
           {"GET", "/v1/types/price/records"},
           {"GET", "/v1/types/price/records/sku-1"},
           {"GET", "/v1/agents"},
           {"GET", "/metrics"},
           {"POST", "/v1/types/price/records"},
           {"POST", "/v1/agents/a1/retire"}}) {
    auto none = api(method, path, "[]", std::nullopt);
    EXPECT_EQ(none.status, 401) << method << " " << path;
    EXPECT_EQ(none.json()["error"]["code"], "permission_denied") << none.body;
    auto wrong = api(method, path, "[]", std::string_view("test-token-0123456789abcdeX"));
    EXPECT_EQ(wrong.status, 401) << method << " " << path;
  }
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 0u);
}

TEST_F(HubHttpTest, PostedRecordsAreStoredPublishedAndQueryable) {
  const std::string body = R"([{"key":"sku-1","op":"upsert","fields":{"amount":1.5,"currency":"EUR"}},
                               {"key":"sku-2","op":"upsert","fields":{"amount":2}}])";
  auto r = api("POST", "/v1/types/price/records?producer=web&seq=5", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["first_version"], 1);
  EXPECT_EQ(r.json()["last_version"], 2);
  auto again = api("POST", "/v1/types/price/records?producer=web&seq=5", body);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json()["last_version"], 2);

  auto js = jetstream(*nc_);
  EXPECT_EQ(stream_messages(*js, "DS_PRICE").size(), 1u);

  auto rec = api("GET", "/v1/types/price/records/sku-1");
  ASSERT_EQ(rec.status, 200) << rec.body;
  EXPECT_EQ(rec.json()["fields"]["amount"], 1.5);
  EXPECT_EQ(rec.json()["version"], 1);
  EXPECT_EQ(api("GET", "/v1/types/price/records/nope").status, 404);
  EXPECT_EQ(api("GET", "/v1/types/nosuch/records/sku-1").status, 404);

  auto types = api("GET", "/v1/types");
  ASSERT_EQ(types.status, 200) << types.body;
  auto j = types.json();
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["name"], "price");
  EXPECT_EQ(j[0]["version"], 2);
  EXPECT_EQ(j[0]["published_version"], 2);
  EXPECT_EQ(j[0]["stream"]["messages"], 1);
}

TEST_F(HubHttpTest, BadRecordIsRejectedWith400AndItsIndex) {
  auto r = api("POST", "/v1/types/price/records",
                R"([{"key":"a","op":"upsert","fields":{"amount":1}},{"key":"b","op":"upsert","fields":{"amount":"x"}}])");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.json()["ok"], false);
  EXPECT_EQ(r.json()["error"]["code"], "invalid_argument");
  EXPECT_EQ(r.json()["error"]["index"], 1);
  EXPECT_EQ(api("POST", "/v1/types/nosuch/records", R"([{"key":"a","op":"delete"}])").status, 404);
  EXPECT_EQ(api("POST", "/v1/types/price/records", "not json").status, 400);
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 0u);
}

TEST_F(HubHttpTest, ListPagesThroughOnePartition) {
  IngestRequest req;
  req.records = {stock_record("a", "s1", 1), stock_record("b", "s2", 1), stock_record("c", "s1", 1),
                 stock_record("d", "s1", 1)};
  ASSERT_TRUE(ingest(*nc_, "stock", req)->ok());
  std::vector<std::string> keys;
  std::string path = "/v1/types/stock/records?partition=s1&limit=2";
  for (int i = 0; i < 5; ++i) {
    auto r = api("GET", path);
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = r.json();
    for (const auto& rec : j["records"]) keys.push_back(rec["key"]);
    if (j["next_after"].is_null()) break;
    path = "/v1/types/stock/records?partition=s1&limit=2&after=" + j["next_after"].get<std::string>();
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "c", "d"}));
}

TEST_F(HubHttpTest, MetricsAndAgentsAnswerWithTheToken) {
  ASSERT_EQ(api("POST", "/v1/types/price/records", R"([{"key":"a","op":"upsert","fields":{"amount":1}}])").status, 200);
  auto metrics = api("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("deltasync_hub_ingest_records_total 1"), std::string::npos) << metrics.body;
  auto agents = api("GET", "/v1/agents");
  ASSERT_EQ(agents.status, 200) << agents.body;
  EXPECT_TRUE(agents.json().is_array()) << agents.body;
  EXPECT_EQ(api("POST", "/v1/agents/nobody/retire").status, 404);
}

}  // namespace
}  // namespace ds::testing
