// Authorizer (hub/authorizer.h): each identity is held to the grants of the
// identities file; replies go only into the requester's own inbox.

#include "hub/authorizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "testing/temp_dir.h"

namespace ds {
namespace {

constexpr const char* kRegistry = R"({"format": 1, "subject_prefix": "ds", "identities": [
  {"name": "hub", "role": "hub", "public_key": "UHUB"},
  {"name": "store-1", "role": "agent", "public_key": "U1",
   "grants": [{"type": "stock", "partition": "store-1"}, {"type": "price", "partition": "*"}]},
  {"name": "erp", "role": "producer", "public_key": "UERP", "grants": [{"type": "price"}]}]})";

class AuthorizerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Authorizer> open_with(const std::string& text, const std::string& prefix = "ds") {
    const std::string path = dir_.file("identities.json");
    std::ofstream(path) << text;
    HubConfig config;
    config.nats.subject_prefix = prefix;
    config.identities_file = path;
    auto a = Authorizer::open(config);
    EXPECT_TRUE(a.is_ok()) << a.status().to_string();
    return a.is_ok() ? std::move(a).value() : nullptr;
  }

  TempDir dir_{"deltasync-authorizer"};
};

void expect_denied(const Status& s, const std::string& says) {
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.to_string();
  EXPECT_NE(s.message().find(says), std::string::npos) << s.message();
}

TEST_F(AuthorizerTest, AgentTakesOnlyItsGrantedTypesAndPartition) {
  auto a = open_with(kRegistry);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->may_take("store-1", "stock", "store-1").is_ok());
  EXPECT_TRUE(a->may_take("store-1", "price", "*").is_ok());
  EXPECT_TRUE(a->may_take("store-1", "price", "anything").is_ok());
  expect_denied(a->may_take("store-1", "stock", "store-2"), "only for partition 'store-1'");
  expect_denied(a->may_take("store-1", "stock", "*"), "every partition");
  expect_denied(a->may_take("store-1", "orders", "*"), "may not take type 'orders'");
  expect_denied(a->may_take("store-9", "price", "*"), "not an agent");
  expect_denied(a->may_take("erp", "price", "*"), "not an agent");  // a producer is not an agent
}

TEST_F(AuthorizerTest, ProducerSendsOnlyItsGrantedTypes) {
  auto a = open_with(kRegistry);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->may_ingest("erp", "price").is_ok());
  expect_denied(a->may_ingest("erp", "stock"), "may not send type 'stock'");
  expect_denied(a->may_ingest("store-1", "price"), "not a producer");
  expect_denied(a->may_ingest("pos", "price"), "not a producer");
}

TEST_F(AuthorizerTest, RepliesGoOnlyIntoTheRequestersOwnInbox) {
  auto a = open_with(kRegistry);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->may_reply("erp", "_INBOX_erp.abc.1").is_ok());
  for (const char* bad : {"_INBOX_erp", "_INBOX_erp.", "_INBOX_erp2.x", "_INBOX_pos.x", "_INBOX.x",
                          "ds.delta.price._all", "$JS.API.STREAM.PURGE.DS_PRICE", ""}) {
    expect_denied(a->may_reply("erp", bad), "inbox");
  }
}

TEST_F(AuthorizerTest, WithoutAnIdentitiesFileEveryoneMayUseEveryTypeButRepliesStillStayInInboxes) {
  HubConfig config;
  auto a = Authorizer::open(config);
  ASSERT_TRUE(a.is_ok());
  EXPECT_TRUE((*a)->open_mode());
  EXPECT_TRUE((*a)->may_take("anyone", "stock", "*").is_ok());
  EXPECT_TRUE((*a)->may_ingest("anyone", "stock").is_ok());
  EXPECT_TRUE((*a)->may_reply("anyone", "_INBOX.abc").is_ok());
  EXPECT_TRUE((*a)->may_reply("anyone", "_INBOX_anyone.abc").is_ok());
  expect_denied((*a)->may_reply("anyone", "ds.delta.stock.x"), "inbox");
  expect_denied((*a)->may_reply("anyone", "$JS.API.STREAM.PURGE.DS_STOCK"), "inbox");
}

TEST_F(AuthorizerTest, AFileForAnotherPrefixOrMissingIsRefusedAtOpen) {
  const std::string path = dir_.file("identities.json");
  std::ofstream(path) << kRegistry;
  HubConfig config;
  config.nats.subject_prefix = "acme";
  config.identities_file = path;
  auto wrong_prefix = Authorizer::open(config);
  ASSERT_FALSE(wrong_prefix.is_ok());
  EXPECT_NE(wrong_prefix.status().message().find("--prefix acme"), std::string::npos)
      << wrong_prefix.status().message();
  config.identities_file = dir_.file("missing.json");
  auto missing = Authorizer::open(config);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ds
