// JWT credentials ([nats] creds_file) against a real nats-server 2.9.10 in
// operator mode: an operator, an account and users made by the test
// (tests/harness/test_jwt.h), a MEMORY resolver preloaded with the account.
//
// cnats 3.4.1 signed a creds file's nonce itself and sent a signature that
// begins with a zero byte (1 nonce in 256) empty: "Authorization
// Violation". deltasync now reads the creds file and signs through its own
// callback, as for seed files (shared/nats.h, Connection).

#include <atomic>
#include <iostream>
#include <string>

#include <gtest/gtest.h>

#include "shared/nats.h"
#include "testing/temp_dir.h"
#include "tests/harness/connect_checks.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_jwt.h"

namespace ds::testing {
namespace {

class CredsConnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<NatsServer>(chain_.server_config());
    Status started = server_->start();
    ASSERT_TRUE(started.is_ok()) << started.to_string();
    creds_file_ = dir_.write_file("store-1.creds", creds_text(chain_.user_jwt, chain_.user.seed));
  }

  ConnectOptions options(const std::string& creds_file) const {
    ConnectOptions opts;
    opts.config.url = server_->url();
    opts.config.creds_file = creds_file;
    opts.name = "creds-connect-test";
    return opts;
  }

  TestTrustChain chain_ = make_test_trust_chain("store-1");
  TempDir dir_{"deltasync-creds-connect"};
  std::unique_ptr<NatsServer> server_;
  std::string creds_file_;
};

// The server really is in operator mode: without a JWT nobody gets in.
TEST_F(CredsConnectTest, TheServerRefusesAClientWithoutAJwt) {
  ConnectOptions opts = options("");
  auto nc = Connection::connect(opts);
  ASSERT_FALSE(nc.is_ok());
  EXPECT_EQ(nc.status().code(), StatusCode::kPermissionDenied) << nc.status().to_string();
}

// 2,000 connects, each signing a new nonce with the creds file's seed: with
// cnats signing the creds file itself about 8 of them were refused (1 in
// 256), and the chance that none is, 0.996^2000, is below 1 in 2,000.
TEST_F(CredsConnectTest, TwoThousandCredsConnectsAllSucceed) {
  constexpr int kConnects = 2000;
  const ConnectRun run = connect_repeatedly(options(creds_file_), kConnects, 4);
  std::cout << kConnects << " creds connects in " << run.seconds << " s\n";
  EXPECT_EQ(run.failures, 0) << run.first_failure;
  const std::string log = server_->log_text();
  EXPECT_EQ(count_of(log, "authentication error"), 0u) << log.substr(0, 4000);
  EXPECT_EQ(count_of(log, "Violation"), 0u) << log.substr(0, 4000);
}

// Every reconnect reads the creds file and signs a new nonce: 10 broker
// restarts, never closed, and messages flow after the last.
TEST_F(CredsConnectTest, ACredsUserStaysConnectedThroughServerRestarts) {
  std::atomic<int> reconnects{0};
  std::atomic<int> closed{0};
  ConnectOptions opts = options(creds_file_);
  opts.reconnect_wait_ms = 50;
  opts.max_reconnect_wait_ms = 400;
  opts.on_reconnected = [&] { ++reconnects; };
  opts.on_closed = [&](const Status&) { ++closed; };
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  MessageCollector got;
  auto sub = (*nc)->subscribe("ds.test.creds", got.handler());
  ASSERT_TRUE(sub.is_ok()) << sub.status().to_string();
  for (int r = 1; r <= 10; ++r) {
    ASSERT_TRUE(server_->restart().is_ok()) << server_->log_text();
    ASSERT_TRUE(wait_until([&] { return reconnects.load() >= r || closed.load() > 0; }, 20000)) << "restart " << r;
    ASSERT_EQ(closed.load(), 0) << "closed for good after restart " << r;
  }
  ASSERT_TRUE((*nc)->flush().is_ok());
  ASSERT_TRUE((*nc)->publish("ds.test.creds", "after").is_ok());
  EXPECT_TRUE(got.wait_for(1));
  EXPECT_EQ(count_of(server_->log_text(), "authentication error"), 0u);
  sub->reset();
}

TEST_F(CredsConnectTest, AnExpiredJwtIsRefusedAtConnectNamingTheFile) {
  std::string jwt;
  const TestNkey user = chain_.new_user("expired", &jwt, 1700000000);
  const std::string file = dir_.write_file("expired.creds", creds_text(jwt, user.seed));
  auto nc = Connection::connect(options(file));
  ASSERT_FALSE(nc.is_ok());
  EXPECT_EQ(nc.status().code(), StatusCode::kPermissionDenied) << nc.status().to_string();
  EXPECT_NE(nc.status().message().find(file), std::string::npos) << nc.status().message();
  EXPECT_NE(nc.status().message().find("expired"), std::string::npos) << nc.status().message();
}

TEST_F(CredsConnectTest, AMalformedCredsFileIsRefusedNamingTheFile) {
  const std::string file = dir_.write_file("broken.creds", creds_text(chain_.user_jwt, "SUNOTASEED"));
  auto nc = Connection::connect(options(file));
  ASSERT_FALSE(nc.is_ok());
  EXPECT_EQ(nc.status().code(), StatusCode::kInvalidArgument) << nc.status().to_string();
  EXPECT_NE(nc.status().message().find(file), std::string::npos) << nc.status().message();
  EXPECT_NE(nc.status().message().find("does not hold a user nkey seed"), std::string::npos) << nc.status().message();
}

}  // namespace
}  // namespace ds::testing
