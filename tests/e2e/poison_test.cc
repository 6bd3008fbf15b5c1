// Poison (issue 14, point 7): a record the broker would refuse, end to end
// against a real nats-server whose max_payload is 64 KiB (the fleet of
// tests/e2e/fleet.h: the hub, store-1, store-2 and hq as processes). One
// message carries at most message_body_limit(65536) = 61,440 bytes of delta
// batch. Three ways in, each refused with an error naming the limit and what
// to do, nothing of the batch stored, and the type not wedged: records of the
// same type pushed afterwards reach every agent, and verify passes.
//   - over NATS, a record whose request fits max_payload but whose change
//     does not fit one delta batch: the hub refuses it (invalid_argument,
//     with its index);
//   - `deltasync push` of a record over max_payload itself: the CLI refuses
//     the batch before sending it (cnats would say only "Maximum Payload
//     Exceeded");
//   - HTTP POST /v1/types/products/records of the same record: the hub
//     refuses it (400).
// (An agent that cannot apply a delta quarantines it and its stream goes on:
// AgentApplyTest.UndecodableDeltaAndFailingHookAreQuarantinedWhileLaterDeltasApply.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/sqlite.h"
#include "tests/e2e/fleet.h"
#include "tools/hub_client.h"
#include "tools/pusher.h"
#include "testing/temp_dir.h"

namespace ds::testing {
namespace {

constexpr int64_t kMaxPayload = 65536;

uint64_t products_version(Fleet& fleet) {
  auto types = fleet.cli_json({"types"});
  EXPECT_TRUE(types.is_ok()) << types.status().to_string();
  if (!types.is_ok()) return 0;
  for (const auto& t : *types) {
    if (t.value("name", "") == "products") return t.value("version", uint64_t{0});
  }
  return 0;
}

// Whether the agent's replica holds products row `sku`.
bool replica_has(Fleet& fleet, const std::string& agent, const std::string& sku) {
  auto db = Database::open(fleet.replica_path(agent), OpenOptions{.read_only = true, .create = false});
  if (!db.is_ok()) return false;
  auto st = (*db)->prepare("SELECT count(*) FROM products WHERE sku = ?");
  if (!st.is_ok()) return false;
  st->bind(1, sku);
  auto row = st->step();
  return row.is_ok() && *row && st->column_int64(0) == 1;
}

nlohmann::json product(const std::string& sku, size_t name_bytes) {
  return {{"key", sku}, {"op", "upsert"}, {"fields", {{"name", std::string(name_bytes, 'p')}, {"category", "poison"}}}};
}

TEST(Poison, ARecordTooLargeForOneBrokerMessageIsRefusedClearlyAndTheTypeKeepsFlowing) {
  FleetOptions options;
  options.nats_extra_config = "max_payload: " + std::to_string(kMaxPayload) + "\n";
  Fleet fleet(retail_agents(), options);
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  ASSERT_TRUE(fleet.push("products", nlohmann::json::array({product("before-poison", 20)})).is_ok());
  const uint64_t before = products_version(fleet);
  ASSERT_GT(before, 0u);
  const std::string limit = std::to_string(message_body_limit(kMaxPayload));

  // 1. Over NATS: the request (about 62 KB) fits max_payload, its change does not fit a delta batch.
  {
    auto nc = Connection::connect(test_connect_options(fleet.nats()));
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
    ASSERT_EQ((*nc)->max_payload(), kMaxPayload);
    auto records = decode_ingest_records_json(nlohmann::json::array({product("small-ok", 10), product("big-1", 62000)})
                                                  .dump());
    ASSERT_TRUE(records.is_ok()) << records.status().to_string();
    Pusher pusher(**nc, Subjects(), "products",
                  PushOptions{.producer = "poison", .first_seq = 1, .timeout_ms = 10000, .attempts = 1});
    auto reply = pusher.push(std::move(*records));
    ASSERT_FALSE(reply.is_ok()) << "a record too large to publish was acknowledged";
    const std::string message = reply.status().message();
    EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument) << reply.status().to_string();
    EXPECT_NE(message.find("records[1]"), std::string::npos) << message;
    EXPECT_NE(message.find("over the limit of " + limit + " bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("raise max_payload in the nats-server configuration"), std::string::npos) << message;
  }

  // 2. `deltasync push` of a record over max_payload itself.
  {
    TempDir dir("poison-test");
    const std::string path = dir.write_file("big.jsonl", product("big-2", 100000).dump() + "\n");
    CommandResult r = fleet.cli({"push", "--type", "products", path});
    EXPECT_NE(r.exit_code, 0) << r.out << r.err;
    const std::string said = r.out + r.err;
    EXPECT_NE(said.find("over the broker's max_payload of " + std::to_string(kMaxPayload) + " bytes"),
              std::string::npos)
        << said;
    EXPECT_NE(said.find("make the record smaller, or raise max_payload"), std::string::npos) << said;
  }

  // 3. HTTP ingest of the same record: no max_payload on the way in, refused by the hub.
  {
    auto client = HubClient::create("http://127.0.0.1:" + std::to_string(fleet.http_port()), fleet.token());
    ASSERT_TRUE(client.is_ok()) << client.status().to_string();
    auto r = client->request("POST", "/v1/types/products/records",
                             nlohmann::json::array({product("big-3", 100000)}).dump());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("over the limit of " + limit + " bytes"), std::string::npos) << r->body;
  }

  // Nothing of the refused batches stored (small-ok came with big-1).
  EXPECT_EQ(products_version(fleet), before);
  for (const char* sku : {"small-ok", "big-1", "big-2", "big-3"}) {
    EXPECT_NE(fleet.cli({"get", "products", sku}).exit_code, 0) << sku << " was stored";
  }

  // The type is not wedged: later records reach every agent.
  ASSERT_TRUE(fleet.push("products", nlohmann::json::array({product("after-poison", 20)})).is_ok());
  EXPECT_EQ(products_version(fleet), before + 1);
  for (const AgentSpec& a : fleet.agents()) {
    EXPECT_TRUE(wait_until([&] { return replica_has(fleet, a.id, "after-poison"); }, kConvergeTimeoutMs, 100))
        << a.id << " never got the record pushed after the refused ones\n" << fleet.logs();
    EXPECT_FALSE(replica_has(fleet, a.id, "small-ok")) << a.id;
  }
  EXPECT_TRUE(fleet.converged());
}

}  // namespace
}  // namespace ds::testing
