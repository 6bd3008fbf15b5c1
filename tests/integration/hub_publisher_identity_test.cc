// The hub's delta publisher identity (docs/security.md, "What each identity
// may do"): the hub publishes deltas with a key of its own whose seed file
// lies beside the hub's, found without any setting. What the hub does when
// that file is missing or wrong, and the upgrade path from credentials
// written before publisher keys (`deltasync creds rotate` for the hub).
// A real nats-server with the generated auth.conf, the hub in process.

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "hub/hub.h"
#include "shared/codec.h"
#include "shared/identities.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "testing/temp_dir.h"
#include "tests/harness/connect_checks.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_credentials.h"
#include "tests/integration/hub_test_util.h"
#include "tools/creds.h"

namespace ds::testing {
namespace {

class HubPublisherIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto creds = write_test_credentials(creds_dir_.path(), {{IdentityRole::kHub, "hub"},
                                                            {IdentityRole::kProducer, "erp:stock,price"}});
    ASSERT_TRUE(creds.is_ok()) << creds.status().to_string();
  }
  void TearDown() override {
    if (hub_) hub_->stop();
    hub_.reset();
    erp_.reset();
    server_.reset();
  }

  void start_server() {
    server_ = std::make_unique<NatsServer>(include_auth_conf(creds_dir_.path()));
    Status s = server_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  HubConfig hub_config() const {
    HubConfig config = two_type_hub_config(*server_, data_dir_);
    config.nats.nkey_seed_file = creds_dir_.file("hub.nk");
    config.identities_file = creds_identities_file(creds_dir_.path());
    return config;
  }

  // Rewrites the directory as `deltasync creds` wrote it before publisher
  // keys: no publisher key in the registry, no publisher seed file, the old
  // hub permissions in auth.conf.
  void make_credentials_from_before_publisher_keys() {
    auto registry = read_creds_dir(creds_dir_.path());
    ASSERT_TRUE(registry.is_ok()) << registry.status().to_string();
    for (Identity& id : registry->identities) id.publisher_public_key.clear();
    creds_dir_.write_file("identities.json", registry_to_json(*registry));
    auto block = nats_authorization_block(*registry);
    ASSERT_TRUE(block.is_ok());
    creds_dir_.write_file("auth.conf", *block);
    std::filesystem::remove(creds_dir_.file("hub.publisher.nk"));
  }

  // erp ingests one stock row; the reply says it was stored (and published:
  // the hub answers after the stream's ack).
  void ingest_one(uint64_t seq) {
    if (!erp_) {
      ConnectOptions opts = test_connect_options(*server_);
      opts.config.nkey_seed_file = creds_dir_.file("erp.nk");
      opts.inbox_prefix = inbox_prefix("erp");
      auto nc = Connection::connect(std::move(opts));
      ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
      erp_ = std::move(nc).value();
    }
    IngestRequest batch;
    batch.producer = "erp";
    batch.seq = seq;
    batch.records = {stock_record("s1/" + std::to_string(seq), "store-1", static_cast<int64_t>(seq))};
    auto r = ingest(*erp_, "stock", batch);
    ASSERT_TRUE(r.is_ok() && r->ok()) << (r.is_ok() ? r->error->message : r.status().to_string());
  }

  // Messages in DS_STOCK, read with the hub's publisher key when it has one.
  uint64_t stock_messages(const std::string& seed) {
    ConnectOptions opts = test_connect_options(*server_);
    opts.config.nkey_seed_file = creds_dir_.file(seed);
    opts.inbox_prefix = seed == "hub.publisher.nk" ? inbox_prefix("hub") : "";
    auto nc = Connection::connect(std::move(opts));
    EXPECT_TRUE(nc.is_ok()) << nc.status().to_string();
    if (!nc.is_ok()) return 0;
    auto js = (*nc)->jetstream();
    auto state = (*js)->stream_state("DS_STOCK");
    EXPECT_TRUE(state.is_ok()) << state.status().to_string();
    return state.is_ok() ? state->messages : 0;
  }

  TempDir creds_dir_{"deltasync-pubid-creds"};
  TempDir data_dir_{"deltasync-pubid-data"};
  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<Connection> erp_;
};

TEST_F(HubPublisherIdentityTest, TheHubPublishesWithItsPublisherKeyAndStaysQuiet) {
  start_server();
  auto hub = Hub::start(hub_config());
  ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
  hub_ = std::move(hub).value();
  for (uint64_t seq = 1; seq <= 3; ++seq) ingest_one(seq);
  EXPECT_EQ(stock_messages("hub.publisher.nk"), 3u);
  // A broker restart: both connections come back, the streams are reconciled.
  ASSERT_TRUE(server_->restart().is_ok());
  IngestRequest batch;
  batch.producer = "erp";
  batch.seq = 4;
  batch.records = {stock_record("s1/4", "store-1", 4)};
  Result<IngestReply> r = Status::internal("not tried");
  ASSERT_TRUE(wait_until([&] {  // until the hub and erp are back
    r = ingest(*erp_, "stock", batch, 2000);
    return r.is_ok() && r->ok();
  }, 20000, 100)) << (r.is_ok() ? r->error->message : r.status().to_string());
  EXPECT_EQ(stock_messages("hub.publisher.nk"), 4u);
  const std::string log = server_->log_text();
  EXPECT_EQ(count_of(log, "Violation"), 0u) << log;
  EXPECT_EQ(count_of(log, "authentication error"), 0u) << log;
}

TEST_F(HubPublisherIdentityTest, AMissingPublisherSeedStopsTheStartNamingIt) {
  start_server();
  std::filesystem::remove(creds_dir_.file("hub.publisher.nk"));
  auto hub = Hub::start(hub_config());
  ASSERT_FALSE(hub.is_ok());
  EXPECT_EQ(hub.status().code(), StatusCode::kNotFound) << hub.status().to_string();
  EXPECT_NE(hub.status().message().find(creds_dir_.file("hub.publisher.nk")), std::string::npos)
      << hub.status().message();
}

TEST_F(HubPublisherIdentityTest, APublisherSeedOfAnotherKeyStopsTheStart) {
  start_server();
  std::filesystem::copy_file(creds_dir_.file("erp.nk"), creds_dir_.file("hub.publisher.nk"),
                             std::filesystem::copy_options::overwrite_existing);
  auto hub = Hub::start(hub_config());
  ASSERT_FALSE(hub.is_ok());
  EXPECT_EQ(hub.status().code(), StatusCode::kPermissionDenied) << hub.status().to_string();
  EXPECT_NE(hub.status().message().find("is not the delta publisher key of hub 'hub'"), std::string::npos)
      << hub.status().message();
}

// An installation upgraded with its old credentials keeps working; rotating
// the hub gives it the publisher key, and from then on its service key may
// no longer publish into the delta streams.
TEST_F(HubPublisherIdentityTest, CredentialsFromBeforePublisherKeysWorkUntilTheHubIsRotated) {
  make_credentials_from_before_publisher_keys();
  start_server();
  {
    auto hub = Hub::start(hub_config());
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();
  }
  ingest_one(1);
  EXPECT_EQ(stock_messages("hub.nk"), 1u);
  hub_->stop();
  hub_.reset();

  auto rotated = rotate_identity(creds_dir_.path(), "hub");
  ASSERT_TRUE(rotated.is_ok()) << rotated.status().to_string();
  EXPECT_FALSE(rotated->identity.publisher_public_key.empty());
  EXPECT_TRUE(std::filesystem::exists(creds_dir_.file("hub.publisher.nk")));
  EXPECT_EQ(seed_file_state(creds_dir_.path(), rotated->identity), "ok");
  ASSERT_TRUE(signal_nats_reload(server_->pid()).is_ok());
  ASSERT_TRUE(wait_until([&] { return count_of(server_->log_text(), "Reloaded server configuration") >= 1; }))
      << server_->log_text();

  auto hub = Hub::start(hub_config());
  ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
  hub_ = std::move(hub).value();
  ingest_one(2);
  EXPECT_EQ(stock_messages("hub.publisher.nk"), 2u);
  // The rotated service key is refused a delta publish.
  ConnectOptions opts = test_connect_options(*server_);
  opts.config.nkey_seed_file = creds_dir_.file("hub.nk");
  auto service = Connection::connect(std::move(opts));
  ASSERT_TRUE(service.is_ok()) << service.status().to_string();
  auto js = (*service)->jetstream();
  ASSERT_TRUE(js.is_ok());
  EXPECT_FALSE((*js)->publish(Subjects().delta("stock", "store-1"), "forged", "forged-1", 2000).is_ok());
  EXPECT_EQ(stock_messages("hub.publisher.nk"), 2u);
}

}  // namespace
}  // namespace ds::testing
