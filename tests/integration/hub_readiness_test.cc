// GET /readyz fails, with the reason, when the hub's ingest writer thread is
// not running (issue 15, "Health"): the real hub binary, a real nats-server,
// the writer thread ended by the test-only fault hook
// DELTASYNC_FAULT=writer_thread_exit (hub/fault_hook.h) after its first
// reconciliation, as a bug in its loop would end it. The process goes on:
// /healthz stays 200, /readyz is 503 naming the writer, the ready gauge is 0,
// and an ingest is refused at once with "unavailable" instead of waiting for
// an answer that never comes. (The full store, the other writer cause, is
// tested end to end in tests/faults/disk_full_test.cc.) The same for the lost
// NATS connection: nats-server stopped under the running hub.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"
#include "testing/child_process.h"

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
  // Waits (20 s at most) for GET /readyz to answer 200.
  ::testing::AssertionResult wait_ready() {
    HttpResponse ready;
    if (wait_until([&] {
          ready = get("/readyz");
          return ready.status == 200;
        }, 20000)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "/readyz: " << ready.status << " " << ready.body << "\n"
                                         << hub_->log_text();
  }

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
  ASSERT_TRUE(wait_ready());
  EXPECT_EQ(hub_->log_count("ingest writer: its thread ended"), 0u);
}

// nats-server stopped under a running hub: /readyz is 503 naming the lost
// connection while cnats reconnects (/healthz stays 200, the ready gauge is
// 0), and 200 again once the server is back; ingest then works end to end.
TEST_F(HubReadinessTest, NatsStoppedUnderARunningHubIsNamedUntilItIsBack) {
  ASSERT_TRUE(hub_->launch().is_ok());
  ASSERT_TRUE(wait_ready());

  ASSERT_TRUE(server_->stop().is_ok());
  HttpResponse ready;
  ASSERT_TRUE(wait_until([&] {
    ready = get("/readyz");
    return ready.status == 503 && ready.json().value("reason", "").find("nats: disconnected") != std::string::npos;
  }, 10000)) << ready.status << " " << ready.body << "\n" << hub_->log_text();
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_NE(get("/metrics").body.find("deltasync_hub_ready 0"), std::string::npos);

  ASSERT_TRUE(server_->start().is_ok()) << server_->log_text();
  ASSERT_TRUE(wait_ready());
  EXPECT_NE(get("/metrics").body.find("deltasync_hub_ready 1"), std::string::npos);
  ASSERT_TRUE(wait_until([&] { return nc_->connected(); }));
  IngestRequest req;
  req.producer = "erp";
  req.seq = 1;
  req.records = {price_record("sku-1", 1.5)};
  auto reply = ingest(*nc_, "price", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_TRUE(reply->ok()) << reply->error->message;
  EXPECT_EQ(hub_->log_count(" error ["), 0u) << hub_->log_text();
}

// GET /v1/types asks JetStream for each type's stream state. With the
// broker stalled (SIGSTOP: the connection stays up, requests wait out the
// JetStream timeout) that request must not hold the HTTP thread: /readyz and
// /healthz answer at once meanwhile, and /v1/types itself answers once the
// broker is back.
TEST_F(HubReadinessTest, TypesWaitingOnAStalledBrokerDoNotHoldReadyz) {
  ASSERT_TRUE(hub_->launch().is_ok());
  ASSERT_TRUE(wait_ready());

  HttpResponse types;
  std::atomic<bool> answered{false};
  {
    ASSERT_TRUE(stop_process(server_->pid()).is_ok());
    std::thread asker([&] {
      types = get("/v1/types");
      answered = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the request is in
    int64_t slowest_ms = 0;
    for (int i = 0; i < 10; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const int readyz = get("/readyz").status;
      const int healthz = get("/healthz").status;
      slowest_ms = std::max<int64_t>(slowest_ms, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                     std::chrono::steady_clock::now() - t0)
                                                     .count());
      EXPECT_NE(readyz, 0);
      EXPECT_EQ(healthz, 200);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // The request waited on the broker the whole time (else the probes
    // above proved nothing).
    EXPECT_FALSE(answered.load()) << "GET /v1/types did not wait on the stalled broker";
    ::kill(server_->pid(), SIGCONT);
    asker.join();
    std::printf("[ info ] slowest /readyz + /healthz pair while /v1/types waited on the stalled broker: %lld ms\n",
                static_cast<long long>(slowest_ms));
    EXPECT_LT(slowest_ms, 2000) << "/readyz or /healthz waited on GET /v1/types";
  }
  ASSERT_EQ(types.status, 200) << types.body;
  ASSERT_TRUE(wait_until([&] {
    types = get("/v1/types");
    const auto j = types.json();
    return types.status == 200 && j.is_array() && j.size() == 2 && j.at(0).at("stream").contains("last_seq");
  }, 20000)) << types.status << " " << types.body;
}

}  // namespace
}  // namespace ds::testing
