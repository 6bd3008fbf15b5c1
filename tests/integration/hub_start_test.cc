// deltasync-hub started before nats-server (the boot order is not
// guaranteed): it keeps retrying with backoff, says so in its log, reports
// not ready on GET /readyz until it is fully up, and stops cleanly on
// SIGTERM while it is still waiting.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr const char* kToken = "hub-start-test-token-0123456789";

// One GET on a fresh connection, with the test's token or without.
HttpResponse http_get(int port, const std::string& path, bool with_token) {
  return http(port, "GET", path, {}, with_token ? std::optional<std::string_view>(kToken) : std::nullopt);
}

// Log lines at level error or critical (shared/log.cc's pattern).
std::string error_lines(const std::string& log) {
  std::istringstream in(log);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    if (line.find(" error [") != std::string::npos || line.find(" critical [") != std::string::npos) {
      out += line + "\n";
    }
  }
  return out;
}

class HubStartTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    http_port_ = free_tcp_port();
    const std::string listen = "127.0.0.1:" + std::to_string(http_port_);
    config_ = two_type_hub_config(*server_, dir_);
    hub_ = std::make_unique<HubProcess>(dir_.write_file("hub.toml", two_type_hub_toml(*server_, dir_, listen, kToken)),
                                        dir_.file("hub.log"));
    // The broker is down when the hub starts; it keeps its port.
    ASSERT_TRUE(server_->stop().is_ok());
  }
  void TearDown() override {
    hub_.reset();
    NatsTest::TearDown();
  }

  TempDir dir_{"hub-start-test"};
  HubConfig config_;
  int http_port_ = 0;
  std::unique_ptr<HubProcess> hub_;
};

TEST_F(HubStartTest, HubStartedBeforeNatsServerRetriesThenBecomesReady) {
  ASSERT_TRUE(hub_->launch().is_ok());

  // Not ready, and says why; the API listens already.
  HttpResponse ready;
  ASSERT_TRUE(wait_until([&] {
    ready = http_get(http_port_, "/readyz", false);
    return ready.status == 503 && ready.json().value("reason", "").find("retrying, attempt") != std::string::npos;
  }, 15000)) << ready.status << " " << ready.body << "\n" << hub_->log_text();
  EXPECT_EQ(ready.json().value("ready", true), false) << ready.body;
  EXPECT_EQ(http_get(http_port_, "/healthz", false).status, 200);
  const HttpResponse types = http_get(http_port_, "/v1/types", true);
  EXPECT_EQ(types.status, 503) << types.body;
  EXPECT_EQ(http_get(http_port_, "/v1/types", false).status, 401);  // the token is checked first
  EXPECT_TRUE(hub_->running());
  const std::string retry_line = "cannot connect to " + server_->url() + " yet: retry ";
  ASSERT_TRUE(wait_until([&] { return hub_->log_count(retry_line) >= 2; }, 15000)) << hub_->log_text();

  ASSERT_TRUE(server_->start().is_ok()) << server_->log_text();
  ASSERT_TRUE(wait_until([&] { return http_get(http_port_, "/readyz", false).status == 200; }, 20000))
      << http_get(http_port_, "/readyz", false).body << "\n" << hub_->log_text();
  EXPECT_EQ(hub_->log_count("started: nats"), 1u);
  EXPECT_EQ(http_get(http_port_, "/v1/types", true).status, 200);

  // Ingest works end to end.
  ASSERT_TRUE(wait_until([&] { return nc_->connected(); }));
  IngestRequest req;
  req.producer = "erp";
  req.seq = 1;
  req.records = {price_record("sku-1", 1.5)};
  auto reply = ingest(*nc_, "price", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_TRUE(reply->ok());

  hub_->signal(SIGTERM);
  EXPECT_EQ(hub_->wait_exit(15000), std::optional<int>(0)) << hub_->log_text();
  EXPECT_EQ(error_lines(hub_->log_text()), "");
}

TEST_F(HubStartTest, SigtermWhileWaitingForNatsExitsCleanlyAndQuickly) {
  ASSERT_TRUE(hub_->launch().is_ok());
  ASSERT_TRUE(wait_until([&] { return hub_->log_count("cannot connect to " + server_->url()) >= 1; }, 15000))
      << hub_->log_text();
  const auto sent = std::chrono::steady_clock::now();
  hub_->signal(SIGTERM);
  EXPECT_EQ(hub_->wait_exit(10000), std::optional<int>(0)) << hub_->log_text();
  const auto took = std::chrono::steady_clock::now() - sent;
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_EQ(hub_->log_count("stopped before start completed"), 1u) << hub_->log_text();
  EXPECT_EQ(error_lines(hub_->log_text()), "");
}

}  // namespace
}  // namespace ds::testing
