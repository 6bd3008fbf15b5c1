// Message sizes against a real nats-server (docs/protocol.md "Limits"): delta
// batches are cut by bytes under the server's max_payload, records that could
// never be published are refused at ingest with their index, batches stored
// under a larger limit are cut again before they are published, and snapshot
// pages are cut by bytes. The hub runs in-process; the limit is the one the
// server announces (one fixture runs nats-server with max_payload 64 KiB).

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "hub/hub.h"
#include "tests/harness/test_agent.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr size_t kMiB = 1 << 20;

// "prices": partitioned by store (the type); "products": one
// partition, rows for snapshots.
HubConfig payload_hub_config(const NatsServer& server, const TempDir& dir) {
  HubConfig c;
  c.name = "payload-hub";
  c.nats.url = server.url();
  c.store_path = dir.file("hub.db");
  c.http_listen = "";
  c.heartbeat_interval_ms = 500;
  TypeConfig prices;
  prices.name = "prices";
  prices.schema.key = "sku";
  prices.schema.partition = "store";
  prices.schema.columns = {{"store", ColumnType::kText}, {"amount", ColumnType::kReal}, {"note", ColumnType::kText}};
  TypeConfig products;
  products.name = "products";
  products.schema.key = "id";
  products.schema.columns = {{"name", ColumnType::kText}, {"descr", ColumnType::kText}};
  c.types = {prices, products};
  return c;
}

IngestRecord price(std::string sku, std::string store, size_t note_bytes) {
  IngestRecord r;
  r.key = std::move(sku);
  r.fields = {{"store", std::move(store)}, {"amount", 1.5}, {"note", std::string(note_bytes, 'n')}};
  r.ts = 1700000000000;
  return r;
}

// A request of exactly `total` encoded bytes: `before` small records, then
// one whose note fills the rest (a note of 64 KiB or more, so its str header
// does not change while it is sized).
IngestRequest request_of_exactly(size_t total, size_t before = 0) {
  IngestRequest req;
  for (size_t i = 0; i < before; ++i) req.records.push_back(price("small-" + std::to_string(i), "p1", 10));
  const size_t start = total > 70000 ? 70000 : 1000;  // str32, or str16, throughout
  req.records.push_back(price("big", "p1", start));
  const size_t base = encode(req).size();
  req.records.back().fields["note"] = std::string(start + (total - base), 'n');
  EXPECT_EQ(encode(req).size(), total);
  return req;
}

// `count` records of one size in store p1, without ts (the hub's clock), as
// large as a request of at most `max_request` bytes allows; their changes
// are larger than their request (each change adds its version and hub time).
IngestRequest medium_records(int count, size_t max_request) {
  IngestRequest req;
  for (size_t note = max_request / static_cast<size_t>(count); note > 0; --note) {
    req.records.clear();
    for (int i = 0; i < count; ++i) {
      req.records.push_back(price("m" + std::to_string(10000 + i), "p1", note));
      req.records.back().ts.reset();
    }
    if (encode(req).size() <= max_request) break;
  }
  return req;
}

// The bytes of one delta batch holding every record of `req`, at least.
size_t one_batch_bytes(const IngestRequest& req) {
  size_t bytes = delta_batch_overhead("prices");
  for (size_t i = 0; i < req.records.size(); ++i) {
    bytes += encoded_size(
        Change{i + 1, req.records[i].key, Op::kUpsert, req.records[i].fields, 1700000000000, 1700000000000});
  }
  return bytes;
}

class PayloadTest : public ::testing::Test {
 protected:
  // nats-server with `extra_config`, a client, and the hub on it.
  void start(const std::string& extra_config = {}) {
    server_ = std::make_unique<NatsServer>(extra_config);
    ASSERT_TRUE(server_->start().is_ok());
    auto nc = Connection::connect(test_connect_options(*server_));
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
    nc_ = std::move(nc).value();
    auto js = nc_->jetstream();
    ASSERT_TRUE(js.is_ok());
    js_ = std::move(js).value();
    config_ = payload_hub_config(*server_, dir_);
    start_hub();
  }
  void start_hub() {
    auto hub = Hub::start(config_);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();
  }
  void restart_hub() {
    hub_->stop();
    hub_.reset();
    start_hub();
  }
  void TearDown() override {
    if (hub_) hub_->stop();
    hub_.reset();
    js_.reset();
    nc_.reset();
    server_.reset();
  }

  // An ordinary ingest into `store` answers ok.
  void expect_ordinary_ingest_ok(const std::string& store, int n) {
    IngestRequest req;
    req.records = {price("ordinary-" + store + "-" + std::to_string(n), store, 20)};
    auto reply = ingest(*nc_, "prices", req);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    EXPECT_TRUE(reply->ok()) << store << ": " << reply->error->message;
  }

  // Every message of DS_<TYPE> fits `limit`; the changes they carry, in order.
  std::vector<Change> stream_changes(const std::string& stream, size_t limit, size_t* messages = nullptr) {
    std::vector<Change> out;
    const auto all = stream_messages(*js_, stream);
    if (messages != nullptr) *messages = all.size();
    for (const StoredMessage& m : all) {
      EXPECT_LE(m.data.size(), limit) << m.msg_id.value_or("?");
      auto batch = decode_delta_batch(m.data);
      EXPECT_TRUE(batch.is_ok()) << batch.status().to_string();
      if (batch.is_ok()) out.insert(out.end(), batch->changes.begin(), batch->changes.end());
    }
    return out;
  }

  // Loads every page of a snapshot of `type`; each reply must arrive and fit.
  std::vector<std::string> snapshot_keys(const std::string& type, size_t limit, int* pages) {
    std::vector<std::string> keys;
    SnapshotRequest req{type, "*", std::nullopt, static_cast<uint32_t>(kMaxSnapshotPage)};
    for (*pages = 1; *pages <= 100; ++*pages) {
      auto m = nc_->request(Subjects().snapshot("snapshot-agent"), encode(req), 10000);
      EXPECT_TRUE(m.is_ok()) << "page " << *pages << ": " << m.status().to_string();
      if (!m.is_ok()) break;
      EXPECT_LE(m->data().size(), limit);
      auto reply = decode_snapshot_reply(m->data());
      EXPECT_TRUE(reply.is_ok() && !reply->error) << (reply.is_ok() ? reply->error->message : "");
      if (!reply.is_ok() || reply->error || reply->records.empty()) break;
      for (const SnapshotRecord& r : reply->records) keys.push_back(r.key);
      if (reply->done) break;
      req.after_key = reply->records.back().key;
    }
    return keys;
  }

  void ingest_products(size_t rows, size_t descr_bytes) {
    // Requests of 300 rows (about 40 KB): they fit a 64 KiB max_payload too.
    for (size_t first = 0; first < rows; first += 300) {
      IngestRequest req;
      for (size_t i = first; i < std::min(rows, first + 300); ++i) {
        IngestRecord r;
        char key[32];
        std::snprintf(key, sizeof key, "p%06zu", i);
        r.key = key;
        r.fields = {{"name", std::string("product ") + key}, {"descr", std::string(descr_bytes, 'd')}};
        req.records.push_back(std::move(r));
      }
      auto reply = ingest(*nc_, "products", req);
      ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
      ASSERT_TRUE(reply->ok()) << reply->error->message;
    }
  }

  TempDir dir_{"hub-payload-test"};
  HubConfig config_;
  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<Connection> nc_;
  std::unique_ptr<JetStream> js_;
  std::unique_ptr<Hub> hub_;
};

// Issue 11, point 7: an ingest of 1,048,512 bytes (under nats-server's 1 MiB
// max_payload) whose delta batch would be over it. It must not be stored and
// then stall the type: it is refused with its index and the limit, and
// ordinary ingests go on in every partition, after a hub restart too.
TEST_F(PayloadTest, TheOneMiBAttackIsRefusedAndPricesKeepFlowingInEveryPartition) {
  start();
  ASSERT_EQ(nc_->max_payload(), static_cast<int64_t>(kMiB));
  auto reply = ingest(*nc_, "prices", request_of_exactly(1048512));
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
  EXPECT_EQ(reply->error->index, std::optional<uint32_t>(0));
  EXPECT_NE(reply->error->message.find("records[0]"), std::string::npos) << reply->error->message;
  EXPECT_NE(reply->error->message.find("over the limit of " + std::to_string(message_body_limit(kMiB)) + " bytes"),
            std::string::npos)
      << reply->error->message;
  EXPECT_EQ(open_reader(config_)->type_state("prices")->version, 0u);  // nothing stored

  for (const char* store : {"p1", "p2", "p3"}) expect_ordinary_ingest_ok(store, 1);
  restart_hub();
  for (const char* store : {"p1", "p2", "p3"}) expect_ordinary_ingest_ok(store, 2);
  EXPECT_EQ(stream_changes("DS_PRICES", kMiB).size(), 6u);
}

TEST_F(PayloadTest, ARecordTooLargeToEverPublishIsRefusedWithItsIndexAndNothingIsStored) {
  start();
  auto reply = ingest(*nc_, "prices", request_of_exactly(1048500, /*before=*/2));
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
  EXPECT_EQ(reply->error->index, std::optional<uint32_t>(2));
  EXPECT_NE(reply->error->message.find("records[2]: the record is "), std::string::npos) << reply->error->message;
  EXPECT_EQ(open_reader(config_)->type_state("prices")->version, 0u);
  EXPECT_EQ(stream_messages(*js_, "DS_PRICES").size(), 0u);
  expect_ordinary_ingest_ok("p1", 1);
}

// 400 records of about 2.6 KB in one request under 1 MiB: their changes together
// are over 1 MiB, so one batch by count (publish_batch 500) would be
// unpublishable. They are cut by bytes; a live agent receives every one.
TEST_F(PayloadTest, ManyMediumRecordsArePublishedInSeveralMessagesAndAnAgentGetsThemAll) {
  start();
  SubscriptionReport sub;
  sub.type = "prices";
  sub.partition = "p1";
  auto agent = TestAgent::start(test_connect_options(*server_), "store-p1", {sub});
  ASSERT_TRUE(agent.is_ok()) << agent.status().to_string();
  auto reg = (*agent)->register_now();
  ASSERT_TRUE(reg.is_ok() && reg->ok());

  const IngestRequest req = medium_records(400, kMiB - 1024);
  ASSERT_LE(encode(req).size(), kMiB - 1024);
  ASSERT_GT(one_batch_bytes(req), kMiB);  // one batch of all of them would not fit
  auto reply = ingest(*nc_, "prices", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(reply->ok()) << reply->error->message;
  EXPECT_EQ(reply->last_version, 400u);

  size_t messages = 0;
  const std::vector<Change> published = stream_changes("DS_PRICES", message_body_limit(kMiB), &messages);
  EXPECT_GE(messages, 2u);
  ASSERT_EQ(published.size(), 400u);
  for (size_t i = 0; i < published.size(); ++i) EXPECT_EQ(published[i].v, i + 1);

  ASSERT_TRUE(eventually([&] { return (*agent)->checkpoint("prices").version == 400; }))
      << (*agent)->checkpoint("prices").version;
  std::set<std::string> keys;
  for (const ReceivedBatch& b : (*agent)->received()) {
    for (const Change& c : b.batch.changes) keys.insert(c.key);
  }
  EXPECT_EQ(keys.size(), 400u);
}

// 10,000 rows whose one page would be about 1.35 MB: served in pages under
// the limit, `done` on the last, every row once.
TEST_F(PayloadTest, ASnapshotOfTenThousandRowsIsServedInPagesUnderTheLimit) {
  start();
  ingest_products(10000, 100);
  size_t page_bytes = 0;
  for (size_t i = 0; i < 10000; ++i) {
    page_bytes += encoded_size(SnapshotRecord{10000, "p000000", {{"name", std::string("product p000000")},
                                                                  {"descr", std::string(100, 'd')}}, 0});
  }
  ASSERT_GT(page_bytes, 1300000u);  // one page of all of them would not fit
  int pages = 0;
  const std::vector<std::string> keys = snapshot_keys("products", message_body_limit(kMiB), &pages);
  EXPECT_GE(pages, 2);
  ASSERT_EQ(keys.size(), 10000u);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 10000u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
}

// With nats-server's max_payload at 64 KiB the hub cuts and refuses by that
// limit, not by an assumed 1 MiB.
TEST_F(PayloadTest, TheLimitIsReadFromTheServer) {
  start("max_payload: 65536\n");
  ASSERT_EQ(nc_->max_payload(), 65536);
  const size_t limit = message_body_limit(65536);

  // A record under 1 MiB by far, but too large for this server.
  auto refused = ingest(*nc_, "prices", request_of_exactly(64000));
  ASSERT_TRUE(refused.is_ok()) << refused.status().to_string();
  ASSERT_FALSE(refused->ok());
  EXPECT_EQ(refused->error->index, std::optional<uint32_t>(0));
  EXPECT_NE(refused->error->message.find("over the limit of " + std::to_string(limit) + " bytes"), std::string::npos)
      << refused->error->message;

  // A request just under 64 KiB whose delta batch is over it: cut in two.
  const IngestRequest req = medium_records(100, 65536 - 256);
  ASSERT_LE(encode(req).size(), 65536u - 256);
  ASSERT_GT(one_batch_bytes(req), 65536u);
  auto reply = ingest(*nc_, "prices", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(reply->ok()) << reply->error->message;
  size_t messages = 0;
  EXPECT_EQ(stream_changes("DS_PRICES", limit, &messages).size(), 100u);
  EXPECT_GE(messages, 2u);

  // Snapshot pages too.
  ingest_products(1000, 100);
  int pages = 0;
  EXPECT_EQ(snapshot_keys("products", limit, &pages).size(), 1000u);
  EXPECT_GE(pages, 2);
}

// A batch stored under a larger limit (by an older hub that cut by count only,
// or before the server's max_payload shrank) does not stall the type: it is
// cut again in the log and published at start, and ingests go on.
TEST_F(PayloadTest, ABatchStoredUnderALargerLimitIsCutAgainAndPublished) {
  server_ = std::make_unique<NatsServer>("max_payload: 65536\n");
  ASSERT_TRUE(server_->start().is_ok());
  config_ = payload_hub_config(*server_, dir_);
  {
    auto store = QueryStore::open(config_.store_path, config_.types);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    CommitBatch batch{"prices", "", std::nullopt, {}, {}};
    for (int i = 0; i < 20; ++i) batch.records.push_back(price("old" + std::to_string(10 + i), "p1", 8000));
    for (IngestRecord& r : batch.records) r.partition = "p1";
    auto committed = (*store)->commit({batch}, 1700000000000);
    ASSERT_TRUE(committed.is_ok()) << committed.status().to_string();
    ASSERT_EQ(committed->batches.size(), 1u);  // 160 KB in one batch
    ASSERT_GT(encode(committed->batches[0].delta).size(), 65536u);
  }
  auto nc = Connection::connect(test_connect_options(*server_));
  ASSERT_TRUE(nc.is_ok());
  nc_ = std::move(nc).value();
  js_ = std::move(nc_->jetstream()).value();
  start_hub();

  const size_t limit = message_body_limit(65536);
  ASSERT_TRUE(eventually([&] { return open_reader(config_)->type_state("prices")->published_version == 20; }))
      << open_reader(config_)->type_state("prices")->published_version;
  size_t messages = 0;
  const std::vector<Change> published = stream_changes("DS_PRICES", limit, &messages);
  ASSERT_EQ(published.size(), 20u);
  for (size_t i = 0; i < published.size(); ++i) EXPECT_EQ(published[i].v, i + 1);
  EXPECT_GE(messages, 3u);
  expect_ordinary_ingest_ok("p1", 1);
  expect_ordinary_ingest_ok("p2", 1);
}

}  // namespace
}  // namespace ds::testing
