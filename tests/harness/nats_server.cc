#include "tests/harness/nats_server.h"

#include <chrono>
#include <thread>

#include "shared/jetstream_push.h"

namespace ds::testing {

int64_t ms_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

bool wait_until(const std::function<bool()>& done, int64_t timeout_ms, int64_t poll_ms) {
  const auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (ms_since(start) >= timeout_ms) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return true;
}

MessageHandler MessageCollector::handler(Connection* ack_through) {
  return [this, ack_through](Message m) {
    ReceivedMessage r;
    r.subject = std::string(m.subject());
    r.reply = std::string(m.reply());
    r.data = std::string(m.data());
    if (auto ack = parse_ack_subject(m.reply()); ack.is_ok()) r.stream_seq = ack->stream_seq;
    if (ack_through != nullptr) {
      Status s = acknowledge(*ack_through, m.reply(), AckKind::kAck);
      if (!s.is_ok()) ADD_FAILURE() << "ack failed: " << s.to_string();
    }
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(std::move(r));
  };
}

std::vector<ReceivedMessage> MessageCollector::messages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_;
}

size_t MessageCollector::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_.size();
}

bool MessageCollector::wait_for(size_t n, int64_t timeout_ms) const {
  return wait_until([&] { return count() >= n; }, timeout_ms);
}

ConnectOptions test_connect_options(const NatsServer& server) {
  ConnectOptions opts;
  opts.config.url = server.url();
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  opts.name = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : "test";
  opts.reconnect_wait_ms = 50;
  opts.max_reconnect_wait_ms = 250;
  return opts;
}

void NatsTest::SetUp() {
  server_ = std::make_unique<NatsServer>();
  Status s = server_->start();
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  nc_ = connect(test_connect_options(*server_));
  ASSERT_NE(nc_, nullptr);
}

void NatsTest::TearDown() {
  nc_.reset();
  server_.reset();
}

std::unique_ptr<Connection> NatsTest::connect(ConnectOptions opts) {
  if (opts.config.url.empty() || opts.config.url == NatsConfig().url) opts.config.url = server_->url();
  auto nc = Connection::connect(std::move(opts));
  EXPECT_TRUE(nc.is_ok()) << nc.status().to_string();
  if (!nc.is_ok()) return nullptr;
  return std::move(nc).value();
}

std::unique_ptr<JetStream> NatsTest::jetstream(Connection& nc) {
  auto js = nc.jetstream();
  EXPECT_TRUE(js.is_ok()) << js.status().to_string();
  if (!js.is_ok()) return nullptr;
  return std::move(js).value();
}

}  // namespace ds::testing
