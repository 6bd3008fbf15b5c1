// The hub binary as a process: killed between commit and publish (or between
// publish and marking it) it republishes on restart with no duplicate in the
// stream; SIGTERM drains in-flight ingests and exits 0.
//
// The crash points are made deterministic with the test-only fault hook
// DELTASYNC_FAULT (hub/fault_hook.h), which _exit()s the hub exactly there
// (exit code 86): to the broker and to SQLite that is the same as a SIGKILL.

#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "hub/hub.h"
#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr int kFaultExit = 86;

class HubRecoveryTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    js_ = jetstream(*nc_);
    config_ = two_type_hub_config(*server_, dir_);
    config_path_ = dir_.write_file("hub.toml", two_type_hub_toml(*server_, dir_, "", ""));
    hub_ = std::make_unique<HubProcess>(config_path_, dir_.file("hub.log"));
  }
  void TearDown() override {
    hub_.reset();
    js_.reset();
    NatsTest::TearDown();
  }

  // Polls until `pred` holds or 10 s pass; the result of the last check.
  template <typename Pred>
  bool eventually(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pred();
  }

  uint64_t published_batch(const std::string& type) {
    auto reader = open_reader(config_);
    if (!reader) return 0;
    auto st = reader->type_state(type);
    return st.is_ok() ? st->published_batch : 0;
  }

  IngestRequest two_prices() {
    IngestRequest req;
    req.producer = "erp";
    req.seq = 7;
    req.records = {price_record("sku-1", 1.0), price_record("sku-2", 2.0)};
    return req;
  }

  TempDir dir_{"hub-recovery-test"};
  HubConfig config_;
  std::string config_path_;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(HubRecoveryTest, KilledBetweenCommitAndPublishRepublishesOnRestartWithoutDuplicate) {
  ASSERT_TRUE(hub_->start({{"DELTASYNC_FAULT", "exit_after_commit"}}).is_ok()) << hub_->log_text();
  auto lost_reply = ingest(*nc_, "price", two_prices(), 3000);
  EXPECT_FALSE(lost_reply.is_ok()) << "the hub must die before it replies";
  ASSERT_EQ(hub_->wait_exit(10000), std::optional<int>(kFaultExit)) << hub_->log_text();
  // Committed in SQLite, absent from the stream.
  {
    auto reader = open_reader(config_);
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(reader->type_state("price")->version, 2u);
  }
  EXPECT_EQ(stream_messages(*js_, "DS_PRICE").size(), 0u);

  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_TRUE(eventually([&] { return published_batch("price") == 1; })) << hub_->log_text();
  // The producer's retry is answered with the original range, not stored again.
  auto retry = ingest(*nc_, "price", two_prices());
  ASSERT_TRUE(retry.is_ok()) << retry.status().to_string();
  ASSERT_TRUE(retry->ok()) << retry->error->message;
  EXPECT_EQ(retry->first_version, 1u);
  EXPECT_EQ(retry->last_version, 2u);

  auto messages = stream_messages(*js_, "DS_PRICE");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].msg_id, std::optional<std::string>("price:1"));
  auto batch = decode_delta_batch(messages[0].data);
  ASSERT_TRUE(batch.is_ok());
  ASSERT_EQ(batch->changes.size(), 2u);
  EXPECT_EQ(batch->changes[1].key, "sku-2");
  EXPECT_EQ(hub_->log_count("republished 1 delta batch"), 1u) << hub_->log_text();

  hub_->signal(SIGTERM);
  EXPECT_EQ(hub_->wait_exit(20000), std::optional<int>(0)) << hub_->log_text();
}

TEST_F(HubRecoveryTest, KilledBetweenPublishAndMarkDoesNotPublishAgain) {
  ASSERT_TRUE(hub_->start({{"DELTASYNC_FAULT", "exit_after_publish"}}).is_ok()) << hub_->log_text();
  EXPECT_FALSE(ingest(*nc_, "price", two_prices(), 3000).is_ok());
  ASSERT_EQ(hub_->wait_exit(10000), std::optional<int>(kFaultExit)) << hub_->log_text();
  EXPECT_EQ(stream_messages(*js_, "DS_PRICE").size(), 1u);
  EXPECT_EQ(published_batch("price"), 0u);

  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_TRUE(eventually([&] { return published_batch("price") == 1; })) << hub_->log_text();
  auto retry = ingest(*nc_, "price", two_prices());
  ASSERT_TRUE(retry.is_ok() && retry->ok());
  EXPECT_EQ(retry->first_version, 1u);
  IngestRequest next;
  next.records = {price_record("sku-3", 3.0)};
  auto reply = ingest(*nc_, "price", next);
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_EQ(reply->first_version, 3u);

  auto messages = stream_messages(*js_, "DS_PRICE");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].msg_id, std::optional<std::string>("price:1"));
  EXPECT_EQ(messages[1].msg_id, std::optional<std::string>("price:3"));
  hub_->signal(SIGTERM);
  EXPECT_EQ(hub_->wait_exit(20000), std::optional<int>(0)) << hub_->log_text();
}

TEST_F(HubRecoveryTest, SigtermAnswersEveryIngestAlreadyReceivedAndExitsZero) {
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  constexpr int kRequests = 40;
  const std::string inbox = nc_->new_inbox();
  std::atomic<int> ok{0};
  std::atomic<int> replies{0};
  auto sub = nc_->subscribe(inbox, [&](Message m) {
    auto r = decode_ingest_reply(m.data());
    if (r.is_ok() && r->ok()) ++ok;
    ++replies;
  });
  ASSERT_TRUE(sub.is_ok());
  for (int i = 0; i < kRequests; ++i) {
    IngestRequest req;
    req.records = {price_record("sku-" + std::to_string(i), 1.0)};
    ASSERT_TRUE(nc_->publish_request(Subjects().ingest("price", kTestProducer), inbox, encode(req)).is_ok());
  }
  // Once flushed, the broker has routed every request to the hub, so each
  // was received before the signal.
  ASSERT_TRUE(nc_->flush().is_ok());
  hub_->signal(SIGTERM);
  EXPECT_EQ(hub_->wait_exit(20000), std::optional<int>(0)) << hub_->log_text();
  EXPECT_TRUE(eventually([&] { return replies.load() == kRequests; })) << replies.load();
  EXPECT_EQ(ok.load(), kRequests);
  EXPECT_GT(stream_messages(*js_, "DS_PRICE").size(), 0u);
  auto reader = open_reader(config_);
  EXPECT_EQ(reader->type_state("price")->version, static_cast<uint64_t>(kRequests));
  EXPECT_EQ(reader->type_state("price")->published_version, static_cast<uint64_t>(kRequests));
  EXPECT_EQ(hub_->log_count("hub: stopped"), 1u) << hub_->log_text();
}

// The broker comes back without its store (a lost disk, or nats-server 2.9
// losing messages it acked but had not synced): on reconnect the hub
// recreates the streams and refills them from its change log.
TEST_F(HubRecoveryTest, BrokerThatLostItsStoreIsRefilledFromTheLogOnReconnect) {
  auto started = Hub::start(config_);
  ASSERT_TRUE(started.is_ok()) << started.status().to_string();
  std::unique_ptr<Hub> hub = std::move(started).value();
  ASSERT_TRUE(ingest(*nc_, "price", two_prices())->ok());
  IngestRequest stock;
  stock.records = {stock_record("a", "store-1", 1), stock_record("b", "store-2", 2)};
  ASSERT_TRUE(ingest(*nc_, "stock", stock)->ok());
  ASSERT_EQ(stream_messages(*js_, "DS_STOCK").size(), 2u);

  ASSERT_TRUE(server_->stop().is_ok());
  std::filesystem::remove_all(server_->store_dir());
  std::filesystem::create_directories(server_->store_dir());
  ASSERT_TRUE(server_->start().is_ok());

  ASSERT_TRUE(eventually([&] {
    return stream_messages(*js_, "DS_PRICE").size() == 1 && stream_messages(*js_, "DS_STOCK").size() == 2;
  }));
  auto messages = stream_messages(*js_, "DS_STOCK");
  EXPECT_EQ(messages[0].msg_id, std::optional<std::string>("stock:1"));
  EXPECT_EQ(messages[1].msg_id, std::optional<std::string>("stock:2"));
  // The log's published marks now name the new stream's sequences.
  EXPECT_TRUE(eventually([&] {
    auto reader = open_reader(config_);
    auto st = reader ? reader->type_state("stock") : Result<TypeState>(Status::internal("no reader"));
    return st.is_ok() && st->published_batch == 2 && st->published_seq == 2;
  }));
  // And ingest goes on.
  IngestRequest more;
  more.records = {price_record("sku-3", 3.0)};
  auto reply = ingest(*nc_, "price", more);
  ASSERT_TRUE(reply.is_ok() && reply->ok()) << reply.status().to_string();
  EXPECT_EQ(reply->first_version, 3u);
  hub->stop();
}

}  // namespace
}  // namespace ds::testing
