// The core NATS wrappers (shared/nats.h) against a real nats-server:
// publish/subscribe, request/reply, inboxes, errors, reconnects and the
// lifetime guarantees of subscriptions.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <nats/nats.h>
#include <sodium.h>

#include "shared/nats.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

// Encodes a fresh random user nkey seed ("SU..."), independently of the code
// under test: base32 of [seed prefix bytes | 32 random bytes | CRC-16/XMODEM].
std::string random_user_seed() {
  std::vector<uint8_t> raw = {static_cast<uint8_t>((18 << 3) | ((20 << 3) >> 5)),
                              static_cast<uint8_t>(((20 << 3) & 31) << 3)};
  uint8_t seed[32];
  randombytes_buf(seed, sizeof seed);
  raw.insert(raw.end(), seed, seed + sizeof seed);
  uint16_t crc = 0;
  for (uint8_t byte : raw) {
    crc = static_cast<uint16_t>(crc ^ (byte << 8));
    for (int i = 0; i < 8; ++i) {
      crc = static_cast<uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
  }
  raw.push_back(static_cast<uint8_t>(crc & 0xff));
  raw.push_back(static_cast<uint8_t>(crc >> 8));
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t byte : raw) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push_back(kAlphabet[(buffer >> bits) & 31]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

using ConnectionTest = NatsTest;

TEST_F(ConnectionTest, PublishedMessageReachesSubscriberWithHeaders) {
  std::mutex mu;
  std::optional<std::string> header;
  MessageCollector got;
  auto sub = nc_->subscribe("ds.test.>", [&](Message m) {
    {
      std::lock_guard<std::mutex> lock(mu);
      header = m.header("X-Kind");
    }
    got.handler()(std::move(m));
  });
  ASSERT_TRUE(sub.is_ok()) << sub.status().to_string();
  ASSERT_TRUE(nc_->flush().is_ok());

  ASSERT_TRUE(nc_->publish("ds.test.a", "hello", {{"X-Kind", "greeting"}}).is_ok());
  ASSERT_TRUE(got.wait_for(1));
  auto msgs = got.messages();
  EXPECT_EQ(msgs[0].subject, "ds.test.a");
  EXPECT_EQ(msgs[0].data, "hello");
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(header, std::optional<std::string>("greeting"));
}

TEST_F(ConnectionTest, RequestGetsTheResponderReply) {
  auto responder = connect(test_connect_options(*server_));
  ASSERT_NE(responder, nullptr);
  auto sub = responder->subscribe("ds.echo", [&](Message m) {
    std::string body = "echo:" + std::string(m.data()) + ":" + m.header("X-Id").value_or("none");
    Status s = responder->respond(m, body, {{"X-Answered", "yes"}});
    if (!s.is_ok()) ADD_FAILURE() << s.to_string();
  });
  ASSERT_TRUE(sub.is_ok()) << sub.status().to_string();
  ASSERT_TRUE(responder->flush().is_ok());

  auto reply = nc_->request("ds.echo", "ping", 5000, {{"X-Id", "7"}});
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->data(), "echo:ping:7");
  EXPECT_EQ(reply->header("X-Answered"), std::optional<std::string>("yes"));
}

TEST_F(ConnectionTest, RespondToMessageWithoutReplyDoesNothing) {
  MessageCollector got;
  auto sub = nc_->subscribe("ds.noreply", got.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish("ds.noreply", "x").is_ok());
  ASSERT_TRUE(got.wait_for(1));
  // A message built locally has no reply subject either.
  MessageCollector other;
  auto sub2 = nc_->subscribe("ds.noreply.check", [&](Message m) {
    EXPECT_TRUE(m.reply().empty());
    EXPECT_TRUE(nc_->respond(m, "ignored").is_ok());
    other.handler()(std::move(m));
  });
  ASSERT_TRUE(sub2.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish("ds.noreply.check", "y").is_ok());
  EXPECT_TRUE(other.wait_for(1));
}

TEST_F(ConnectionTest, RequestWithoutResponderIsUnavailable) {
  auto reply = nc_->request("ds.nobody.home", "ping", 5000);
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable) << reply.status().to_string();
}

TEST_F(ConnectionTest, RequestWithSilentResponderTimesOut) {
  MessageCollector got;
  auto sub = nc_->subscribe("ds.silent", got.handler());  // never answers
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  auto reply = nc_->request("ds.silent", "ping", 200);
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kDeadlineExceeded) << reply.status().to_string();
  EXPECT_NE(reply.status().message().find("ds.silent"), std::string::npos);
}

TEST_F(ConnectionTest, QueueSubscribersShareTheMessages) {
  MessageCollector a;
  MessageCollector b;
  auto sa = nc_->queue_subscribe("ds.work", "workers", a.handler());
  auto sb = nc_->queue_subscribe("ds.work", "workers", b.handler());
  ASSERT_TRUE(sa.is_ok() && sb.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(nc_->publish("ds.work", std::to_string(i)).is_ok());
  ASSERT_TRUE(wait_until([&] { return a.count() + b.count() >= 20; }));
  ASSERT_TRUE(nc_->flush().is_ok());
  EXPECT_EQ(a.count() + b.count(), 20u);
}

TEST_F(ConnectionTest, CustomInboxPrefixIsUsedForInboxesAndRequests) {
  ConnectOptions opts = test_connect_options(*server_);
  opts.inbox_prefix = "_INBOX_store-1";
  auto agent = connect(opts);
  ASSERT_NE(agent, nullptr);

  const std::string inbox = agent->new_inbox();
  EXPECT_EQ(inbox.rfind("_INBOX_store-1.", 0), 0u) << inbox;
  EXPECT_NE(inbox, agent->new_inbox());

  std::mutex mu;
  std::string seen_reply;
  auto sub = nc_->subscribe("ds.hub.register.store-1", [&](Message m) {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen_reply = std::string(m.reply());
    }
    (void)nc_->respond(m, "ok");
  });
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  auto reply = agent->request("ds.hub.register.store-1", "hi", 5000);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen_reply.rfind("_INBOX_store-1.", 0), 0u) << seen_reply;
}

TEST_F(ConnectionTest, PublishRequestDeliversToTheGivenReplySubject) {
  MessageCollector answers;
  const std::string inbox = nc_->new_inbox();
  auto inbox_sub = nc_->subscribe(inbox, answers.handler());
  auto responder = nc_->subscribe("ds.hb.prices", [&](Message m) { (void)nc_->respond(m, "alive"); });
  ASSERT_TRUE(inbox_sub.is_ok() && responder.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish_request("ds.hb.prices", inbox, "beat").is_ok());
  ASSERT_TRUE(answers.wait_for(1));
  EXPECT_EQ(answers.messages()[0].data, "alive");
}

TEST_F(ConnectionTest, ConnectWithoutServerIsUnavailable) {
  const std::string url = server_->url();
  nc_.reset();
  ASSERT_TRUE(server_->stop().is_ok());
  ConnectOptions opts;
  opts.config.url = url;
  opts.connect_timeout_ms = 500;
  auto nc = Connection::connect(opts);
  ASSERT_FALSE(nc.is_ok());
  EXPECT_EQ(nc.status().code(), StatusCode::kUnavailable) << nc.status().to_string();
  EXPECT_NE(nc.status().message().find(url), std::string::npos) << nc.status().to_string();
}

TEST_F(ConnectionTest, WrongPasswordIsPermissionDenied) {
  NatsServer secured(R"(authorization { users = [ { user: hub, password: "right" } ] })");
  ASSERT_TRUE(secured.start().is_ok());
  ConnectOptions opts = test_connect_options(secured);
  opts.config.user = "hub";
  opts.config.password = "wrong";
  auto nc = Connection::connect(opts);
  ASSERT_FALSE(nc.is_ok());
  EXPECT_EQ(nc.status().code(), StatusCode::kPermissionDenied) << nc.status().to_string();

  opts.config.password = "right";
  auto ok = Connection::connect(opts);
  EXPECT_TRUE(ok.is_ok()) << ok.status().to_string();
}

TEST(NkeyTest, AgentAuthenticatesWithItsSeedFile) {
  ASSERT_GE(sodium_init(), 0);
  const std::string seed = random_user_seed();
  ASSERT_EQ(seed.rfind("SU", 0), 0u) << seed;
  auto pub = nkey_public_key_from_seed(seed);
  ASSERT_TRUE(pub.is_ok()) << pub.status().to_string();
  ASSERT_EQ(pub->size(), 56u);
  ASSERT_EQ((*pub)[0], 'U');

  // The server checks the public key's encoding when it loads the config
  // and the nonce signature (made by cnats from the seed) on connect.
  NatsServer server("authorization { users = [ { nkey: " + *pub + " } ] }");
  Status started = server.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  TempDir dir("deltasync-nkey");
  ConnectOptions opts = test_connect_options(server);
  opts.config.nkey_seed_file = dir.write_file("agent.nk", seed + "\n");
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  EXPECT_TRUE((*nc)->connected());

  // A different seed is refused.
  opts.config.nkey_seed_file = dir.write_file("other.nk", random_user_seed());
  auto other = Connection::connect(opts);
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().code(), StatusCode::kPermissionDenied) << other.status().to_string();
}

TEST(NkeyTest, MalformedSeedsAreRejected) {
  EXPECT_EQ(nkey_public_key_from_seed("SUNOTASEED").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(nkey_public_key_from_seed("").status().code(), StatusCode::kInvalidArgument);
  std::string seed = random_user_seed();
  seed[10] = seed[10] == 'A' ? 'B' : 'A';  // breaks the checksum
  EXPECT_EQ(nkey_public_key_from_seed(seed).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(nkey_public_key_from_seed_file("/nonexistent/agent.nk").status().code(), StatusCode::kNotFound);
}

// Makes a CA and a server certificate for 127.0.0.1 in `dir` with openssl.
void make_test_pki(const TempDir& dir) {
  const std::string d = dir.path();
  const std::string cmd =
      "cd '" + d + "' && "
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=deltasync-test-ca "
      "-keyout ca.key -out ca.pem && "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr && "
      "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-extfile san.ext -out server.pem";
  const std::string quiet = "(" + cmd + ") > '" + d + "/openssl.log' 2>&1";
  ASSERT_EQ(std::system(quiet.c_str()), 0) << "openssl failed, see " << d << "/openssl.log";
}

TEST(TlsTest, ClientTrustingTheCaConnectsOverTls) {
  TempDir pki("deltasync-pki");
  make_test_pki(pki);
  if (::testing::Test::HasFatalFailure()) return;
  NatsServer server("tls { cert_file: \"" + pki.file("server.pem") + "\", key_file: \"" +
                    pki.file("server.key") + "\" }");
  Status started = server.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();

  ConnectOptions opts = test_connect_options(server);
  opts.config.tls_ca_file = pki.file("ca.pem");
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  MessageCollector got;
  auto sub = (*nc)->subscribe("ds.tls", got.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE((*nc)->flush().is_ok());
  ASSERT_TRUE((*nc)->publish("ds.tls", "secret").is_ok());
  ASSERT_TRUE(got.wait_for(1));

  ConnectOptions plain = test_connect_options(server);
  EXPECT_FALSE(Connection::connect(plain).is_ok());
  ConnectOptions untrusting = test_connect_options(server);
  untrusting.config.tls_ca_file = pki.file("server.pem");  // not the issuer
  EXPECT_FALSE(Connection::connect(untrusting).is_ok());
}

TEST_F(ConnectionTest, ServerListAcceptsSeveralUrls) {
  ConnectOptions opts = test_connect_options(*server_);
  // The first entry is a port nothing listens on once the spare server stops.
  NatsServer spare;
  ASSERT_TRUE(spare.start().is_ok());
  const std::string dead = spare.url();
  ASSERT_TRUE(spare.stop().is_ok());
  opts.config.url = dead + ", " + server_->url();
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  EXPECT_TRUE((*nc)->connected());
}

TEST_F(ConnectionTest, ReconnectsAfterServerRestartAndPublishesAgain) {
  std::atomic<int> disconnects{0};
  std::atomic<int> reconnects{0};
  ConnectOptions opts = test_connect_options(*server_);
  opts.on_disconnected = [&] { ++disconnects; };
  opts.on_reconnected = [&] { ++reconnects; };
  auto client = connect(opts);
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(server_->stop().is_ok());
  ASSERT_TRUE(wait_until([&] { return disconnects.load() >= 1; }));
  EXPECT_FALSE(client->connected());
  ASSERT_TRUE(server_->start().is_ok()) << server_->log_text();
  ASSERT_TRUE(wait_until([&] { return reconnects.load() >= 1; }));
  EXPECT_TRUE(client->connected());

  // nc_ reconnected as well; a fresh subscription sees the client's publish.
  ASSERT_TRUE(wait_until([&] { return nc_->connected(); }));
  MessageCollector got;
  auto sub = nc_->subscribe("ds.after.restart", got.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(client->publish("ds.after.restart", "back").is_ok());
  ASSERT_TRUE(client->flush().is_ok());
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(got.messages()[0].data, "back");
}

TEST_F(ConnectionTest, RetryOnFailedConnectConnectsOnceServerAppears) {
  std::atomic<int> connects{0};
  ASSERT_TRUE(server_->stop().is_ok());
  ConnectOptions opts = test_connect_options(*server_);
  opts.retry_on_failed_connect = true;
  opts.on_reconnected = [&] { ++connects; };
  auto client = Connection::connect(opts);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  EXPECT_FALSE((*client)->connected());

  ASSERT_TRUE(server_->start().is_ok());
  ASSERT_TRUE(wait_until([&] { return connects.load() >= 1; }));
  EXPECT_TRUE((*client)->connected());
}

TEST_F(ConnectionTest, NeverConnectedRetryingConnectionClosesCleanly) {
  std::atomic<int> connects{0};
  ASSERT_TRUE(server_->stop().is_ok());
  ConnectOptions opts = test_connect_options(*server_);
  opts.retry_on_failed_connect = true;
  opts.on_reconnected = [&] { ++connects; };
  auto client = Connection::connect(opts);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  EXPECT_FALSE((*client)->connected());
  EXPECT_EQ((*client)->publish("ds.x", "buffered").code(), StatusCode::kOk);
  client->reset();  // closes while still trying; no callback may outlive it
  EXPECT_EQ(connects.load(), 0);
}

TEST_F(ConnectionTest, SubscriptionDestructorWaitsForRunningHandler) {
  std::atomic<bool> entered{false};
  std::atomic<bool> finished{false};
  auto sub = nc_->subscribe("ds.slow", [&](Message) {
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    finished = true;
  });
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish("ds.slow", "x").is_ok());
  ASSERT_TRUE(wait_until([&] { return entered.load(); }));
  sub->reset();
  EXPECT_TRUE(finished.load());
}

TEST_F(ConnectionTest, SubscriptionCanBeDestroyedFromItsOwnHandler) {
  std::unique_ptr<Subscription> sub;
  std::mutex mu;
  std::atomic<int> calls{0};
  auto created = nc_->subscribe("ds.once", [&](Message) {
    ++calls;
    std::lock_guard<std::mutex> lock(mu);
    sub.reset();
  });
  ASSERT_TRUE(created.is_ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    sub = std::move(created).value();
  }
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish("ds.once", "1").is_ok());
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard<std::mutex> lock(mu);
    return sub == nullptr;
  }));
  ASSERT_TRUE(nc_->publish("ds.once", "2").is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  // A control subscription proves later messages were routed by now.
  MessageCollector marker;
  auto control = nc_->subscribe("ds.marker", marker.handler());
  ASSERT_TRUE(control.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish("ds.marker", "m").is_ok());
  ASSERT_TRUE(marker.wait_for(1));
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(ConnectionTest, ThrowingHandlerDoesNotStopDelivery) {
  std::atomic<int> calls{0};
  auto sub = nc_->subscribe("ds.throw", [&](Message) {
    ++calls;
    throw std::runtime_error("handler failure");
  });
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE(nc_->publish("ds.throw", "1").is_ok());
  ASSERT_TRUE(nc_->publish("ds.throw", "2").is_ok());
  EXPECT_TRUE(wait_until([&] { return calls.load() == 2; }));
}

TEST_F(ConnectionTest, SubscriptionOutlivingItsConnectionIsSafe) {
  MessageCollector got;
  auto sub = nc_->subscribe("ds.orphan", got.handler());
  ASSERT_TRUE(sub.is_ok());
  EXPECT_TRUE((*sub)->valid());
  nc_.reset();  // closes the connection and with it the subscription
  EXPECT_FALSE((*sub)->valid());
  sub->reset();  // must neither hang nor crash
}

TEST_F(ConnectionTest, DrainHandlesPendingMessagesThenStops) {
  MessageCollector got;
  auto sub = nc_->subscribe("ds.drain", got.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(nc_->publish("ds.drain", std::to_string(i)).is_ok());
  ASSERT_TRUE(nc_->flush().is_ok());
  ASSERT_TRUE((*sub)->drain().is_ok());
  EXPECT_EQ(got.count(), 5u);
  EXPECT_FALSE((*sub)->valid());
}

TEST(NatsStatusTest, MapsLibraryCodesToStatusCodes) {
  EXPECT_TRUE(nats_status(NATS_OK, "x").is_ok());
  EXPECT_EQ(nats_status(NATS_TIMEOUT, "x").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(nats_status(NATS_NO_SERVER, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(nats_status(NATS_CONNECTION_CLOSED, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(nats_status(NATS_NO_RESPONDERS, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(nats_status(NATS_NOT_FOUND, "x").code(), StatusCode::kNotFound);
  EXPECT_EQ(nats_status(NATS_NOT_PERMITTED, "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(nats_status(NATS_INVALID_ARG, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(nats_status(NATS_ERR, "x").code(), StatusCode::kInternal);
  Status s = nats_status(NATS_TIMEOUT, "request to ds.a");
  EXPECT_EQ(s.message().rfind("request to ds.a: ", 0), 0u) << s.message();
}

}  // namespace
}  // namespace ds::testing
