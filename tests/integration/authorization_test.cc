// The hub is not a confused deputy (docs/security.md, "Threat model"): it
// holds every NATS right, so each request it acts on is authorized by the
// identity NATS authenticated, never by the request's body or reply subject.
//
// A real nats-server with the auth.conf and identities.json that
// `deltasync creds` writes, the real hub (in process) authenticated with its
// own seed, and attackers on their own credentials, acting as they would:
//   store-1  a compromised agent host (grants: stock for partition store-1)
//   pos      a hostile producer (grants: stock)
// and the victims: agent store-2 (stock:store-2, price) and producer erp
// (stock, price).
//
// "Refused" is shown by what did not happen: no row read, no consumer made,
// no message in a stream, the victim's acknowledged data intact. A dropped
// request is told apart from a slow one by a sentinel: the same connection
// sends an allowed request right after it, on the same subscription of the
// hub, which handles them in order.

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "hub/hub.h"
#include "hub/query_store.h"
#include "shared/codec.h"
#include "shared/identities.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "testing/temp_dir.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_credentials.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class AuthorizationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto creds = write_test_credentials(creds_dir_.path(), {{IdentityRole::kHub, "hub"},
                                                            {IdentityRole::kAgent, "store-1:stock:store-1"},
                                                            {IdentityRole::kAgent, "store-2:stock:store-2,price"},
                                                            {IdentityRole::kProducer, "erp:stock,price"},
                                                            {IdentityRole::kProducer, "pos:stock"}});
    ASSERT_TRUE(creds.is_ok()) << creds.status().to_string();
    identities_file_ = creds->identities;
    server_ = std::make_unique<NatsServer>(include_auth_conf(creds_dir_.path()));
    Status s = server_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();

    HubConfig config = two_type_hub_config(*server_, data_dir_);
    config.nats.nkey_seed_file = creds_dir_.file("hub.nk");
    config.identities_file = creds->identities;
    auto hub = Hub::start(config);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();

    erp_ = connect_as("erp");
    pos_ = connect_as("pos");
    store1_ = connect_as("store-1");
    ASSERT_TRUE(erp_ && pos_ && store1_);
    // The victims' data: erp's stock of both stores and a price list.
    IngestRequest seed;
    seed.producer = "erp";
    seed.seq = 1;
    seed.records = {stock_record("s1/a", "store-1", 1), stock_record("s2/a", "store-2", 2),
                    stock_record("s2/b", "store-2", 3)};
    auto r = ingest(*erp_, "stock", seed);
    ASSERT_TRUE(r.is_ok() && r->ok()) << (r.is_ok() ? r->error->message : r.status().to_string());
    seed.seq = 2;
    seed.records = {price_record("sku-1", 9.5)};
    r = ingest(*erp_, "price", seed);
    ASSERT_TRUE(r.is_ok() && r->ok()) << (r.is_ok() ? r->error->message : r.status().to_string());
  }

  void TearDown() override {
    if (hub_) hub_->stop();
    hub_.reset();
    erp_.reset();
    pos_.reset();
    store1_.reset();
    server_.reset();
  }

  std::unique_ptr<Connection> connect_as(const std::string& name) {
    ConnectOptions opts = test_connect_options(*server_);
    opts.config.nkey_seed_file = creds_dir_.file(name + ".nk");
    opts.inbox_prefix = inbox_prefix(name);
    auto nc = Connection::connect(std::move(opts));
    EXPECT_TRUE(nc.is_ok()) << name << ": " << nc.status().to_string();
    return nc.is_ok() ? std::move(nc).value() : nullptr;
  }

  // store-1 asks for a snapshot page on its own subject.
  Result<SnapshotReply> snapshot_as_store1(const std::string& type, const std::string& partition) {
    SnapshotRequest req;
    req.type = type;
    req.partition = partition;
    req.limit = 10000;
    DS_ASSIGN_OR_RETURN(Message m, store1_->request(subjects_.snapshot("store-1"), encode(req), 5000));
    return decode_snapshot_reply(m.data());
  }

  Result<RegisterReply> register_store1(const std::string& type, const std::string& partition) {
    RegisterRequest req;
    req.agent = "store-1";
    req.host = "compromised";
    req.version = "attacker";
    req.subscriptions = {SubscriptionReport{type, partition}};
    DS_ASSIGN_OR_RETURN(Message m, store1_->request(subjects_.register_agent("store-1"), encode(req), 5000));
    return decode_register_reply(m.data());
  }

  uint64_t stream_messages_of(const std::string& stream) {
    auto js = jetstream_as_hub();
    auto state = js->stream_state(stream);
    EXPECT_TRUE(state.is_ok()) << state.status().to_string();
    return state.is_ok() ? state->messages : 0;
  }

  std::unique_ptr<JetStream> jetstream_as_hub() {
    if (!hub_nc_) hub_nc_ = connect_as("hub");
    auto js = hub_nc_->jetstream();
    EXPECT_TRUE(js.is_ok()) << js.status().to_string();
    return std::move(js).value();
  }

  // The live rows of `type` in the hub's store, by key.
  std::map<std::string, Fields> hub_rows(const std::string& type) {
    std::map<std::string, Fields> out;
    auto store = open_reader(two_type_hub_config(*server_, data_dir_));
    if (!store) return out;
    auto page = store->snapshot_page(SnapshotRequest{type, "*", std::nullopt, 10000},
                                     message_body_limit(kDefaultMaxPayload) * 16);
    EXPECT_TRUE(page.is_ok()) << page.status().to_string();
    if (page.is_ok()) {
      for (const auto& r : page->records) out[r.key] = r.f;
    }
    return out;
  }

  std::string identities_file_;
  TempDir creds_dir_{"deltasync-authz-creds"};
  TempDir data_dir_{"deltasync-authz-data"};
  Subjects subjects_;
  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<Connection> erp_, pos_, store1_, hub_nc_;
};

TEST_F(AuthorizationTest, SnapshotServesOnlyTheAgentsOwnTypesAndPartition) {
  auto own = snapshot_as_store1("stock", "store-1");
  ASSERT_TRUE(own.is_ok()) << own.status().to_string();
  ASSERT_FALSE(own->error) << own->error->message;
  ASSERT_EQ(own->records.size(), 1u);
  EXPECT_EQ(own->records[0].key, "s1/a");

  for (auto [type, partition] : {std::pair{"stock", "store-2"}, std::pair{"stock", "*"}, std::pair{"price", "*"}}) {
    auto stolen = snapshot_as_store1(type, partition);
    ASSERT_TRUE(stolen.is_ok()) << stolen.status().to_string();
    ASSERT_TRUE(stolen->error.has_value()) << type << "/" << partition << " was served";
    EXPECT_EQ(stolen->error->code, StatusCode::kPermissionDenied) << stolen->error->message;
    EXPECT_TRUE(stolen->records.empty());
  }
}

TEST_F(AuthorizationTest, RegistrationBeyondTheGrantsMakesNoConsumer) {
  for (auto [type, partition] : {std::pair{"stock", "store-2"}, std::pair{"stock", "*"}, std::pair{"price", "*"}}) {
    auto reply = register_store1(type, partition);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    ASSERT_FALSE(reply->ok()) << type << ":" << partition << " was registered";
    EXPECT_EQ(reply->error->code, StatusCode::kPermissionDenied) << reply->error->message;
  }
  auto js = jetstream_as_hub();
  for (const char* stream : {"DS_STOCK", "DS_PRICE"}) {
    auto exists = js->consumer_exists(stream, consumer_name("store-1"));
    ASSERT_TRUE(exists.is_ok()) << exists.status().to_string();
    EXPECT_FALSE(*exists) << stream << " got a consumer for store-1";
  }
  // Its own grant still works, and delivers only its partition.
  MessageCollector pushed;
  auto sub = store1_->subscribe(subjects_.push("store-1", "stock"), pushed.handler());
  ASSERT_TRUE(sub.is_ok());
  auto reply = register_store1("stock", "store-1");
  ASSERT_TRUE(reply.is_ok() && reply->ok()) << (reply.is_ok() ? reply->error->message : reply.status().to_string());
  ASSERT_TRUE(pushed.wait_for(1));
  for (const auto& m : pushed.messages()) EXPECT_EQ(m.subject, "ds.delta.stock.store-1");
}

TEST_F(AuthorizationTest, RequestsWithAReplySubjectOutsideTheRequestersInboxAreDropped) {
  const uint64_t stock_before = stream_messages_of("DS_STOCK");
  const uint64_t price_before = stream_messages_of("DS_PRICE");
  // store-1 points the hub's answers into store-2's partition of the stream.
  SnapshotRequest snap{"stock", "store-1", std::nullopt, 10};
  ASSERT_TRUE(store1_->publish_request(subjects_.snapshot("store-1"), "ds.delta.stock.store-2", encode(snap)).is_ok());
  RegisterRequest reg{"store-1", "h", "v", {SubscriptionReport{"stock", "store-1"}}};
  ASSERT_TRUE(
      store1_->publish_request(subjects_.register_agent("store-1"), "ds.delta.stock.store-2", encode(reg)).is_ok());
  // A producer aims the ingest reply at a stream and at the JetStream API.
  IngestRequest batch;
  batch.records = {price_record("sku-evil", 0.0)};
  ASSERT_TRUE(erp_->publish_request(subjects_.ingest("price", "erp"), "ds.delta.price._all", encode(batch)).is_ok());
  ASSERT_TRUE(
      erp_->publish_request(subjects_.ingest("price", "erp"), "$JS.API.STREAM.PURGE.DS_STOCK", encode(batch)).is_ok());
  // ...and into another identity's inbox.
  ASSERT_TRUE(erp_->publish_request(subjects_.ingest("price", "erp"), "_INBOX_pos.x", encode(batch)).is_ok());

  // Sentinels on the same subscriptions: answered, so the above were handled.
  auto own = snapshot_as_store1("stock", "store-1");
  ASSERT_TRUE(own.is_ok() && !own->error) << own.status().to_string();
  auto registered = register_store1("stock", "store-1");
  ASSERT_TRUE(registered.is_ok() && registered->ok()) << registered.status().to_string();
  IngestRequest good;
  good.producer = "erp";
  good.seq = 10;
  good.records = {price_record("sku-2", 1.0)};
  auto stored = ingest(*erp_, "price", good);
  ASSERT_TRUE(stored.is_ok() && stored->ok()) << stored.status().to_string();

  EXPECT_EQ(stream_messages_of("DS_STOCK"), stock_before) << "a reply was published into the stream";
  EXPECT_EQ(stream_messages_of("DS_PRICE"), price_before + 1) << "only the sentinel's delta";
  const auto prices = hub_rows("price");
  EXPECT_EQ(prices.count("sku-evil"), 0u) << "a request that cannot be answered is not stored either";
  EXPECT_EQ(prices.count("sku-2"), 1u);
}

// Beneath the reply rule, NATS itself: the hub's service key (every
// request, reply, heartbeat and consumer) may not publish into ds.delta.>;
// only its delta publisher's key may, and that key may do nothing else.
// So even a reply the hub were tricked into sending there is refused by
// nats-server.
TEST_F(AuthorizationTest, OnlyTheHubsPublisherKeyMayPublishIntoTheDeltaStreams) {
  const uint64_t stock_before = stream_messages_of("DS_STOCK");
  auto service = jetstream_as_hub();  // connects hub_nc_ with hub.nk, as the hub's service connection does
  auto forged = service->publish(subjects_.delta("stock", "store-2"), "forged", "forged-1", 2000);
  EXPECT_FALSE(forged.is_ok()) << "the hub's service key published into DS_STOCK";
  ASSERT_TRUE(hub_nc_->publish(subjects_.delta("stock", "store-2"), "forged").is_ok());
  ASSERT_TRUE(hub_nc_->flush().is_ok());

  // The publisher key: its only use is the delta streams.
  ConnectOptions opts = test_connect_options(*server_);
  opts.config.nkey_seed_file = creds_dir_.file("hub.publisher.nk");
  opts.inbox_prefix = inbox_prefix("hub");
  auto publisher = Connection::connect(std::move(opts));
  ASSERT_TRUE(publisher.is_ok()) << publisher.status().to_string();
  MessageCollector overheard;
  auto sub = (*publisher)->subscribe(subjects_.register_wildcard(), overheard.handler());
  ASSERT_TRUE(sub.is_ok());
  RegisterRequest reg{"store-2", "h", "v", {SubscriptionReport{"stock", "store-2"}}};
  ASSERT_TRUE((*publisher)->publish(subjects_.register_agent("store-2"), encode(reg)).is_ok());
  ASSERT_TRUE((*publisher)->publish("$JS.API.STREAM.PURGE.DS_STOCK", "").is_ok());
  ASSERT_TRUE((*publisher)->flush().is_ok());

  // The hub's own publishing still works: erp's batch arrives, and only it.
  IngestRequest good;
  good.producer = "erp";
  good.seq = 11;
  good.records = {stock_record("s2/c", "store-2", 4)};
  auto stored = ingest(*erp_, "stock", good);
  ASSERT_TRUE(stored.is_ok() && stored->ok()) << stored.status().to_string();
  EXPECT_EQ(stream_messages_of("DS_STOCK"), stock_before + 1) << "only erp's delta";
  EXPECT_EQ(overheard.count(), 0u) << "the publisher key subscribed to registrations";
}

TEST_F(AuthorizationTest, IdempotencyIsKeyedByTheSendersIdentityAndContent) {
  // pos writes erp's name into the body to borrow erp's next retry key.
  IngestRequest borrowed;
  borrowed.producer = "erp";
  borrowed.seq = 3;
  borrowed.records = {stock_record("s1/pos", "store-1", 666)};
  auto m = pos_->request(subjects_.ingest("stock", "pos"), encode(borrowed), 5000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto reply = decode_ingest_reply(m->data());
  ASSERT_TRUE(reply.is_ok());
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kPermissionDenied) << reply->error->message;

  // pos's own seq 3 is its own key, not erp's.
  IngestRequest mine;
  mine.producer = "pos";
  mine.seq = 3;
  mine.records = {stock_record("s1/pos", "store-1", 7)};
  auto pos_reply = ingest(*pos_, "stock", mine);
  ASSERT_TRUE(pos_reply.is_ok() && pos_reply->ok()) << pos_reply.status().to_string();

  // erp's real batch with seq 3 is stored with versions of its own.
  IngestRequest real;
  real.producer = "erp";
  real.seq = 3;
  real.records = {stock_record("s2/c", "store-2", 42)};
  auto erp_reply = ingest(*erp_, "stock", real);
  ASSERT_TRUE(erp_reply.is_ok() && erp_reply->ok()) << erp_reply.status().to_string();
  EXPECT_GT(erp_reply->first_version, pos_reply->last_version);
  auto rows = hub_rows("stock");
  ASSERT_EQ(rows.count("s2/c"), 1u) << "erp's acknowledged batch was not stored";
  EXPECT_EQ(std::get<int64_t>(rows["s2/c"]["qty"]), 42);
  EXPECT_EQ(std::get<int64_t>(rows["s1/pos"]["qty"]), 7);

  // A retry of the same records answers the same range; other records
  // under the same key are refused, naming the range, and lose nothing.
  auto retry = ingest(*erp_, "stock", real);
  ASSERT_TRUE(retry.is_ok() && retry->ok()) << retry.status().to_string();
  EXPECT_EQ(retry->first_version, erp_reply->first_version);
  EXPECT_EQ(retry->last_version, erp_reply->last_version);
  IngestRequest reused = real;
  reused.records = {stock_record("s2/d", "store-2", 5)};
  auto conflict = ingest(*erp_, "stock", reused);
  ASSERT_TRUE(conflict.is_ok()) << conflict.status().to_string();
  ASSERT_FALSE(conflict->ok()) << "a reused key with other records was acknowledged";
  EXPECT_EQ(conflict->error->code, StatusCode::kAlreadyExists);
  const std::string range =
      std::to_string(erp_reply->first_version) + ".." + std::to_string(erp_reply->last_version);
  EXPECT_NE(conflict->error->message.find(range), std::string::npos) << conflict->error->message;
  EXPECT_EQ(hub_rows("stock").count("s2/d"), 0u);
}

TEST_F(AuthorizationTest, ARegeneratedIdentitiesFileTakesEffectWithoutARestart) {
  auto before = register_store1("price", "*");
  ASSERT_TRUE(before.is_ok());
  ASSERT_FALSE(before->ok());
  auto registry = load_identities(identities_file_);
  ASSERT_TRUE(registry.is_ok()) << registry.status().to_string();
  for (Identity& id : registry->identities) {
    if (id.name == "store-1") id.grants.push_back(Grant{"price", "*"});
  }
  const std::string tmp = identities_file_ + ".new";
  std::ofstream(tmp) << registry_to_json(*registry);
  ASSERT_EQ(std::rename(tmp.c_str(), identities_file_.c_str()), 0);
  EXPECT_TRUE(wait_until([&] {
    auto after = register_store1("price", "*");
    return after.is_ok() && after->ok();
  }));
}

}  // namespace
}  // namespace ds::testing
