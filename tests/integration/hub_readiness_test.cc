// GET /readyz fails, with the reason, when the hub's ingest writer thread is
// not running (issue 15, "Health"): the real hub binary, a real nats-server,
// the writer thread ended by the test-only fault hook
// DELTASYNC_FAULT=writer_thread_exit (hub/ingest_writer.h) after its first
// reconciliation, as a bug in its loop would end it. The process goes on:
// /healthz stays 200, /readyz is 503 naming the writer, the ready gauge is 0,
// and an ingest is refused at once with "unavailable" instead of waiting for
// an answer that never comes. (The full store, the other writer cause, is
// tested end to end in tests/faults/disk_full_test.cc.)

#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr const char* kToken = "hub-readiness-test-token-0123456789";
constexpr const char* kWriterNotRunning = "the ingest writer is not running";

class HubReadinessTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    http_port_ = free_tcp_port();
    const std::string listen = "127.0.0.1:" + std::to_string(http_port_);
    hub_ = std::make_unique<HubProcess>(dir_.write_file("hub.toml", two_type_hub_toml(*server_, dir_, listen, kToken)),
                                        dir_.file("hub.log"));
  }
  void TearDown() override {
    hub_.reset();
    NatsTest::TearDown();
  }

  HttpResponse get(const std::string& path) { return http(http_port_, "GET", path, {}, std::string_view(kToken)); }

  TempDir dir_{"hub-readiness-test"};
  int http_port_ = 0;
  std::unique_ptr<HubProcess> hub_;
};

TEST_F(HubReadinessTest, WriterThreadEndedMakesReadyzFailNamingItAndIngestIsRefusedAtOnce) {
  ASSERT_TRUE(hub_->launch({{"DELTASYNC_FAULT", "writer_thread_exit"}}).is_ok());
  HttpResponse ready;
  ASSERT_TRUE(wait_until([&] {
    ready = get("/readyz");
    return ready.status == 503 && ready.json().value("reason", "").find(kWriterNotRunning) != std::string::npos;
  }, 20000)) << ready.status << " " << ready.body << "\n" << hub_->log_text();
  EXPECT_NE(ready.json().value("reason", "").find("restart the hub"), std::string::npos) << ready.body;
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_NE(get("/metrics").body.find("deltasync_hub_ready 0"), std::string::npos);
  EXPECT_EQ(hub_->log_count("ingest writer: its thread ended while the hub runs"), 1u) << hub_->log_text();

  // An ingest is answered at once, refused, naming the cause.
  IngestRequest req;
  req.producer = "erp";
  req.seq = 1;
  req.records = {price_record("sku-1", 1.5)};
  auto reply = ingest(*nc_, "price", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kUnavailable);
  EXPECT_NE(reply->error->message.find("ingest writer is not running"), std::string::npos) << reply->error->message;
  EXPECT_EQ(get("/v1/types/price/records/sku-1").status, 404);

  // Still not ready a while later: only a restart clears it.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(get("/readyz").status, 503);
}

// The same hub without the fault is ready, and stays quiet: the test above
// fails for the writer, not for its setup.
TEST_F(HubReadinessTest, WriterRunningHubIsReady) {
  ASSERT_TRUE(hub_->launch().is_ok());
  HttpResponse ready;
  ASSERT_TRUE(wait_until([&] {
    ready = get("/readyz");
    return ready.status == 200;
  }, 20000)) << ready.status << " " << ready.body << "\n" << hub_->log_text();
  EXPECT_EQ(hub_->log_count("ingest writer: its thread ended"), 0u);
}

}  // namespace
}  // namespace ds::testing
