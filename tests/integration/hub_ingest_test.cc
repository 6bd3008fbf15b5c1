// Ingest over NATS into a hub running in-process against a real nats-server:
// classification by type, validation, idempotent retries, group commit and
// publication to the per-type streams.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "hub/hub.h"
#include "tests/harness/test_agent.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class HubIngestTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    config_ = two_type_hub_config(*server_, dir_);
    auto hub = Hub::start(config_);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();
    js_ = jetstream(*nc_);
  }
  void TearDown() override {
    if (hub_) hub_->stop();
    hub_.reset();
    js_.reset();
    NatsTest::TearDown();
  }

  TempDir dir_{"hub-ingest-test"};
  HubConfig config_;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(HubIngestTest, MsgpackIngestIsStoredByTypeAndPublishedToItsStream) {
  IngestRequest req;
  req.records = {price_record("sku-1", 1.5), price_record("sku-2", 2.5)};
  auto reply = ingest(*nc_, "price", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(reply->ok()) << reply->error->message;
  EXPECT_EQ(reply->first_version, 1u);
  EXPECT_EQ(reply->last_version, 2u);

  auto reader = open_reader(config_);
  auto rec = reader->get("price", "sku-2");
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  EXPECT_EQ(rec->fields.at("amount"), Value(2.5));
  EXPECT_EQ(rec->version, 2u);
  EXPECT_EQ(reader->get("stock", "sku-2").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(reader->type_state("price")->published_version, 2u);

  auto messages = stream_messages(*js_, "DS_PRICE");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].subject, "ds.delta.price._all");
  EXPECT_EQ(messages[0].msg_id, std::optional<std::string>("price:1"));
  auto batch = decode_delta_batch(messages[0].data);
  ASSERT_TRUE(batch.is_ok()) << batch.status().to_string();
  EXPECT_EQ(batch->type, "price");
  ASSERT_EQ(batch->changes.size(), 2u);
  EXPECT_EQ(batch->changes[0].v, 1u);
  EXPECT_EQ(batch->changes[0].key, "sku-1");
  EXPECT_EQ(batch->changes[1].f.at("amount"), Value(2.5));
  EXPECT_EQ(batch->changes[1].ts, 1700000000000);
  EXPECT_GT(batch->changes[1].hts, 0);
  EXPECT_EQ(stream_messages(*js_, "DS_STOCK").size(), 0u);
}

TEST_F(HubIngestTest, JsonIngestIsAcceptedWithItsContentTypeAndAnsweredInJson) {
  const std::string body =
      R"({"producer":"erp","seq":1,"records":[{"key":"sku-9","op":"upsert","fields":{"amount":3,"currency":"USD"}}]})";
  auto reply = nc_->request(Subjects().ingest("price", "erp"), body, 10000, {{"Content-Type", "application/json"}});
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  auto j = nlohmann::json::parse(reply->data());
  EXPECT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["first_version"], 1);
  auto rec = open_reader(config_)->get("price", "sku-9");
  ASSERT_TRUE(rec.is_ok());
  EXPECT_EQ(rec->fields.at("amount"), Value(3.0));  // integer widened to the real column
  EXPECT_EQ(stream_messages(*js_, "DS_PRICE").size(), 1u);
}

TEST_F(HubIngestTest, PartitionedRecordsArePublishedToTheirPartitionSubjects) {
  IngestRequest req;
  req.records = {stock_record("a", "store-1", 1), stock_record("b", "store-2", 2), stock_record("c", "store-1", 3)};
  auto reply = ingest(*nc_, "stock", req);
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  auto messages = stream_messages(*js_, "DS_STOCK");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].subject, "ds.delta.stock.store-1");
  EXPECT_EQ(messages[1].subject, "ds.delta.stock.store-2");
  auto first = decode_delta_batch(messages[0].data);
  ASSERT_TRUE(first.is_ok());
  ASSERT_EQ(first->changes.size(), 2u);
  EXPECT_EQ(first->changes[0].key, "a");
  EXPECT_EQ(first->changes[1].key, "c");
  EXPECT_EQ(open_reader(config_)->get("stock", "b")->partition, "store-2");
}

TEST_F(HubIngestTest, BatchWithOneBadRecordIsRejectedWithItsIndexAndStoresNothing) {
  IngestRequest req;
  req.records = {price_record("sku-1", 1.0), price_record("sku-2", 2.0), price_record("sku-3", 3.0)};
  req.records[1].fields["amount"] = std::string("cheap");
  auto reply = ingest(*nc_, "price", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
  EXPECT_EQ(reply->error->index, std::optional<uint32_t>(1));
  EXPECT_NE(reply->error->message.find("amount"), std::string::npos) << reply->error->message;

  auto reader = open_reader(config_);
  EXPECT_EQ(reader->type_state("price")->version, 0u);
  EXPECT_EQ(reader->get("price", "sku-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(stream_messages(*js_, "DS_PRICE").size(), 0u);
}

TEST_F(HubIngestTest, MovingAKeyToAnotherPartitionIsRejectedWithItsIndex) {
  IngestRequest first;
  first.records = {stock_record("a", "store-1", 1)};
  ASSERT_TRUE(ingest(*nc_, "stock", first)->ok());
  IngestRequest move;
  move.records = {stock_record("b", "store-1", 1), stock_record("a", "store-2", 1)};
  auto reply = ingest(*nc_, "stock", move);
  ASSERT_TRUE(reply.is_ok());
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->index, std::optional<uint32_t>(1));
  EXPECT_EQ(open_reader(config_)->type_state("stock")->version, 1u);
  EXPECT_EQ(stream_messages(*js_, "DS_STOCK").size(), 1u);
}

TEST_F(HubIngestTest, UnknownTypeIsRejected) {
  IngestRequest req;
  req.records = {price_record("sku-1", 1.0)};
  auto reply = ingest(*nc_, "nosuchtype", req);
  ASSERT_TRUE(reply.is_ok());
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kNotFound);
}

TEST_F(HubIngestTest, RetriedProducerSeqIsNotStoredTwice) {
  IngestRequest req;
  req.producer = "erp";
  req.seq = 41;
  req.records = {price_record("sku-1", 1.0), price_record("sku-2", 2.0)};
  auto first = ingest(*nc_, "price", req);
  auto again = ingest(*nc_, "price", req);
  ASSERT_TRUE(first.is_ok() && first->ok());
  ASSERT_TRUE(again.is_ok() && again->ok());
  EXPECT_EQ(again->first_version, first->first_version);
  EXPECT_EQ(again->last_version, first->last_version);
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 2u);
  EXPECT_EQ(stream_messages(*js_, "DS_PRICE").size(), 1u);
  EXPECT_EQ(hub_->metrics().ingest_retries.load(), 1u);
}

// The writer publishes what a commit created from memory, and a reply waits
// for the JetStream ack. With the stream gone nothing acks, so the producer
// hears "unavailable" although its batch is stored; a later batch of the type
// is not published past it; and once the stream exists again a retry
// publishes the backlog from the log, in order, each batch once.
TEST_F(HubIngestTest, NoStreamAckMeansUnavailableAndARetryPublishesTheBacklogInOrder) {
  auto request = [](uint64_t seq, const std::string& key) {
    IngestRequest req;
    req.producer = "erp";
    req.seq = seq;
    req.records = {price_record(key, 1.0)};
    return req;
  };
  auto first = ingest(*nc_, "price", request(1, "a"));
  ASSERT_TRUE(first.is_ok() && first->ok());
  ASSERT_TRUE(js_->delete_stream("DS_PRICE").is_ok());

  auto lost = ingest(*nc_, "price", request(2, "b"));
  ASSERT_TRUE(lost.is_ok()) << lost.status().to_string();
  ASSERT_FALSE(lost->ok());
  EXPECT_EQ(lost->error->code, StatusCode::kUnavailable);
  EXPECT_NE(lost->error->message.find("stored as versions 2..2"), std::string::npos) << lost->error->message;
  auto held = ingest(*nc_, "price", request(3, "c"));
  ASSERT_TRUE(held.is_ok()) << held.status().to_string();
  ASSERT_FALSE(held->ok());
  EXPECT_EQ(held->error->code, StatusCode::kUnavailable);
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 3u);  // both stored

  StreamSpec spec;
  spec.name = "DS_PRICE";
  spec.subjects = {"ds.delta.price.>"};
  spec.duplicate_window_ms = 120000;
  ASSERT_TRUE(js_->ensure_stream(spec).is_ok());
  auto retried = ingest(*nc_, "price", request(3, "c"));
  ASSERT_TRUE(retried.is_ok() && retried->ok()) << (retried.is_ok() ? retried->error->message : "");
  EXPECT_EQ(retried->first_version, 3u);
  auto again = ingest(*nc_, "price", request(2, "b"));
  ASSERT_TRUE(again.is_ok() && again->ok());
  EXPECT_EQ(again->first_version, 2u);
  auto next = ingest(*nc_, "price", request(4, "d"));
  ASSERT_TRUE(next.is_ok() && next->ok());
  EXPECT_EQ(next->first_version, 4u);

  // Batch 1 went with the deleted stream (reconciliation on reconnect would
  // restore it); everything after it arrives once, in version order.
  std::vector<std::string> ids;
  for (const auto& m : stream_messages(*js_, "DS_PRICE")) ids.push_back(m.msg_id.value_or("?"));
  EXPECT_EQ(ids, (std::vector<std::string>{"price:2", "price:3", "price:4"}));
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 4u);
}

TEST_F(HubIngestTest, ConcurrentProducersAreAllAckedWithContiguousVersions) {
  constexpr int kProducers = 8;
  constexpr int kBatchesEach = 20;
  constexpr int kRecords = 5;
  std::vector<std::unique_ptr<Connection>> conns;
  for (int p = 0; p < kProducers; ++p) conns.push_back(connect(test_connect_options(*server_)));
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int b = 0; b < kBatchesEach; ++b) {
        IngestRequest req;
        req.producer = "p" + std::to_string(p);
        req.seq = static_cast<uint64_t>(b);
        for (int r = 0; r < kRecords; ++r) {
          req.records.push_back(price_record("p" + std::to_string(p) + "-" + std::to_string(b * kRecords + r), 1.0));
        }
        auto reply = ingest(*conns[static_cast<size_t>(p)], "price", req);
        if (!reply.is_ok() || !reply->ok()) {
          ++failures;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        ranges.emplace_back(reply->first_version, reply->last_version);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(ranges.size(), static_cast<size_t>(kProducers * kBatchesEach));
  std::sort(ranges.begin(), ranges.end());
  uint64_t next = 1;
  for (const auto& [first, last] : ranges) {
    EXPECT_EQ(first, next);
    EXPECT_EQ(last, first + kRecords - 1);
    next = last + 1;
  }
  constexpr uint64_t kTotal = kProducers * kBatchesEach * kRecords;
  EXPECT_EQ(next, kTotal + 1);

  // The stream holds every change exactly once, ascending.
  uint64_t expected_v = 1;
  for (const StoredMessage& m : stream_messages(*js_, "DS_PRICE")) {
    auto batch = decode_delta_batch(m.data);
    ASSERT_TRUE(batch.is_ok());
    for (const Change& c : batch->changes) EXPECT_EQ(c.v, expected_v++);
  }
  EXPECT_EQ(expected_v, kTotal + 1);
}

TEST_F(HubIngestTest, IngestIsDeliveredToALiveAgentOfItsPartitionOnly) {
  SubscriptionReport sub;
  sub.type = "stock";
  sub.partition = "store-1";
  auto agent = TestAgent::start(test_connect_options(*server_), "store-1-agent", {sub});
  ASSERT_TRUE(agent.is_ok()) << agent.status().to_string();
  auto reg = (*agent)->register_now();
  ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
  ASSERT_TRUE(reg->ok()) << reg->error->message;

  IngestRequest req;
  req.records = {stock_record("a", "store-2", 1), stock_record("b", "store-1", 2), stock_record("c", "store-2", 3)};
  ASSERT_TRUE(ingest(*nc_, "stock", req)->ok());
  IngestRequest more;
  more.records = {stock_record("d", "store-1", 4)};
  ASSERT_TRUE(ingest(*nc_, "stock", more)->ok());

  ASSERT_TRUE(eventually([&] { return (*agent)->checkpoint("stock").version == 4; }))
      << (*agent)->checkpoint("stock").version;
  std::vector<std::string> keys;
  for (const ReceivedBatch& b : (*agent)->received()) {
    for (const Change& c : b.batch.changes) keys.push_back(c.key);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"b", "d"}));
}

}  // namespace
}  // namespace ds::testing
