// nkey authentication through cnats 3.4.1 (shared/nats.h, Connection).
//
// cnats 3.4.1 base64-encodes the nonce signature with an encoder that yields
// nothing when the first byte is zero (nats.c PR #705), so 1 signature in
// 256 went out empty and nats-server refused the connect; two in a row while
// reconnecting made cnats close the connection for good. The first tests
// make that case happen every time: ed25519 is deterministic, so a nonce
// whose signature by the test's key begins with 0x00 is found by trying
// nonces, and a small stand-in server (FakeNatsServer) hands it out. The
// last ones run many connects and restarts against a real nats-server.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sodium.h>

#include "shared/nats.h"
#include "shared/nkeys.h"
#include "testing/temp_dir.h"
#include "tests/harness/connect_checks.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_jwt.h"

namespace ds::testing {
namespace {

// A user key pair, encoded and raw.
struct UserKeys {
  NkeyPair pair;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES] = {};
  unsigned char sk[crypto_sign_SECRETKEYBYTES] = {};
};

UserKeys make_user_keys() {
  UserKeys k;
  auto pair = generate_user_nkey();
  EXPECT_TRUE(pair.is_ok()) << pair.status().to_string();
  if (!pair.is_ok()) return k;
  k.pair = *pair;
  auto decoded = decode_nkey(k.pair.seed);
  EXPECT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  if (decoded.is_ok()) crypto_sign_seed_keypair(k.pk, k.sk, decoded->key.data());
  return k;
}

bool signature_begins_with_zero(const UserKeys& k, const std::string& nonce) {
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(nonce.data()), nonce.size(), k.sk);
  return sig[0] == 0;
}

// The first nonce "<prefix><n>" whose signature by `k` does (or does not)
// begin with a zero byte; "" if none in 100000 tries (1 nonce in 256 does).
std::string find_nonce(const UserKeys& k, const std::string& prefix, bool zero_first_byte) {
  for (int n = 0; n < 100000; ++n) {
    std::string nonce = prefix + std::to_string(n);
    if (signature_begins_with_zero(k, nonce) == zero_first_byte) return nonce;
  }
  return {};
}

// A stand-in for nats-server that speaks just enough of the client protocol
// for cnats to connect with an nkey: an INFO line with the nonce the test
// chose for that connection, a CONNECT checked as nats-server 2.9 checks it
// (a missing, undecodable or wrong "sig" gets -ERR 'Authorization
// Violation' and the connection is closed) and PONG for every PING. One
// client connection at a time, on a thread of its own; loopback only.
class FakeNatsServer {
 public:
  // What one client connection did.
  struct Attempt {
    std::string nonce;
    bool connect_seen = false;  // the client sent CONNECT
    bool sig_present = false;   // ... with a non-empty "sig"
    bool sig_valid = false;     // ... that verifies against the nonce
  };

  // A "nonce" that makes the server hang up at once, before its INFO (a
  // server going down, or not yet up, as a connection reaches it).
  static constexpr std::string_view kHangUp = "(hang up)";

  // Connection i gets nonces[i]; later ones get `fallback` (a nonce whose
  // signature begins with a non-zero byte).
  // With `jwt`, a CONNECT must carry that user JWT (a creds file's) instead
  // of the nkey, as nats-server in operator mode requires.
  FakeNatsServer(const UserKeys& keys, std::vector<std::string> nonces, std::string fallback, std::string jwt = {})
      : keys_(keys), nonces_(std::move(nonces)), fallback_(std::move(fallback)), jwt_(std::move(jwt)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 8) != 0) {
      ADD_FAILURE() << "fake nats-server: cannot listen: " << std::strerror(errno);
      return;
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeNatsServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }
  FakeNatsServer(const FakeNatsServer&) = delete;
  FakeNatsServer& operator=(const FakeNatsServer&) = delete;

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  std::vector<Attempt> attempts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return attempts_;
  }
  // Closes the current client connection, as a broker going away would.
  void drop_client() { drop_ = true; }

 private:
  void run() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      drop_ = false;
      size_t index = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        index = attempts_.size();
        attempts_.push_back(Attempt{index < nonces_.size() ? nonces_[index] : fallback_});
      }
      serve(fd, index);
      ::close(fd);
    }
  }

  void record(size_t index, const Attempt& a) {
    std::lock_guard<std::mutex> lock(mu_);
    attempts_[index] = a;
  }

  void send_all(int fd, const std::string& text) { (void)::send(fd, text.data(), text.size(), MSG_NOSIGNAL); }

  // Serves one client until it leaves, is refused, or is dropped.
  void serve(int fd, size_t index) {
    Attempt a = attempts()[index];
    if (a.nonce == kHangUp) return;
    nlohmann::json info{{"server_id", "FAKE"}, {"server_name", "fake"}, {"version", "2.9.10"},
                        {"proto", 1},          {"host", "127.0.0.1"},    {"port", port_},
                        {"headers", true},     {"auth_required", true},  {"max_payload", 1048576},
                        {"nonce", a.nonce}};
    send_all(fd, "INFO " + info.dump() + "\r\n");
    std::string buffer;
    while (!stop_ && !drop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return;  // the client left
      buffer.append(chunk, static_cast<size_t>(n));
      for (size_t eol = buffer.find("\r\n"); eol != std::string::npos; eol = buffer.find("\r\n")) {
        const std::string line = buffer.substr(0, eol);
        buffer.erase(0, eol + 2);
        if (line.rfind("CONNECT ", 0) == 0) {
          a.connect_seen = true;
          a.sig_valid = verify_connect(line.substr(8), a);
          record(index, a);
          if (!a.sig_valid) {
            send_all(fd, "-ERR 'Authorization Violation'\r\n");
            return;
          }
        } else if (line == "PING") {
          send_all(fd, "PONG\r\n");
        }
      }
    }
  }

  // nats-server's check: the CONNECT's nkey is ours and its sig (base64
  // URL-safe without padding) verifies against the nonce sent.
  bool verify_connect(const std::string& json_text, Attempt& a) const {
    const nlohmann::json connect = nlohmann::json::parse(json_text, nullptr, false);
    if (connect.is_discarded()) return false;
    if (jwt_.empty() ? connect.value("nkey", "") != keys_.pair.public_key : connect.value("jwt", "") != jwt_) {
      return false;
    }
    const std::string sig64 = connect.value("sig", "");
    a.sig_present = !sig64.empty();
    if (sig64.empty()) return false;
    unsigned char sig[crypto_sign_BYTES];
    size_t sig_len = 0;
    if (sodium_base642bin(sig, sizeof sig, sig64.data(), sig64.size(), nullptr, &sig_len, nullptr,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        sig_len != sizeof sig) {
      return false;
    }
    return crypto_sign_verify_detached(sig, reinterpret_cast<const unsigned char*>(a.nonce.data()), a.nonce.size(),
                                       keys_.pk) == 0;
  }

  const UserKeys& keys_;
  const std::vector<std::string> nonces_;
  const std::string fallback_;
  const std::string jwt_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_{false};
  mutable std::mutex mu_;
  std::vector<Attempt> attempts_;  // guarded by mu_
  std::thread thread_;
};

class NkeySignatureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    keys_ = make_user_keys();
    zero_nonce_ = find_nonce(keys_, "zero-", true);
    plain_nonce_ = find_nonce(keys_, "plain-", false);
    ASSERT_FALSE(zero_nonce_.empty());
    ASSERT_FALSE(plain_nonce_.empty());
    seed_file_ = dir_.write_file("user.nk", keys_.pair.seed + "\n");
  }

  ConnectOptions options(const FakeNatsServer& fake) const {
    ConnectOptions opts;
    opts.config.url = fake.url();
    opts.config.nkey_seed_file = seed_file_;
    opts.name = "nkey-signature-test";
    opts.reconnect_wait_ms = 20;
    opts.max_reconnect_wait_ms = 100;
    return opts;
  }

  // Connects to `fake` with `opts`, which hands out a plain nonce and then,
  // after drop_client(), three zero-byte ones in a row (two refusals in a
  // row were enough for cnats 3.4 to close for good) and a plain one: the
  // connection must come back, never closed, and no CONNECT may go out for
  // a zero-byte signature.
  void expect_reconnect_through_zero_byte_signatures(FakeNatsServer& fake, ConnectOptions opts) {
    std::atomic<int> reconnects{0};
    std::atomic<int> closed{0};
    opts.on_reconnected = [&] { ++reconnects; };
    opts.on_closed = [&](const Status&) { ++closed; };
    auto nc = Connection::connect(opts);
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();

    fake.drop_client();
    ASSERT_TRUE(wait_until([&] { return reconnects.load() >= 1 || closed.load() > 0; }, 10000));
    EXPECT_EQ(closed.load(), 0);
    EXPECT_FALSE((*nc)->closed());
    EXPECT_TRUE((*nc)->connected());
    EXPECT_TRUE((*nc)->flush(2000).is_ok());

    const auto attempts = fake.attempts();
    ASSERT_EQ(attempts.size(), 5u);
    for (size_t i = 1; i <= 3; ++i) {
      EXPECT_EQ(attempts[i].nonce, zero_nonce_) << i;
      EXPECT_FALSE(attempts[i].connect_seen) << "attempt " << i << " sent CONNECT";
    }
    EXPECT_TRUE(attempts[4].sig_valid);
  }

  UserKeys keys_;
  std::string zero_nonce_;
  std::string plain_nonce_;
  TempDir dir_{"deltasync-nkey-sig"};
  std::string seed_file_;
};

TEST_F(NkeySignatureTest, ZeroByteSignatureAtConnectIsRetriedWithANewNonce) {
  FakeNatsServer fake(keys_, {zero_nonce_}, plain_nonce_);
  auto nc = Connection::connect(options(fake));
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  EXPECT_TRUE((*nc)->connected());
  EXPECT_TRUE((*nc)->flush(2000).is_ok());

  const auto attempts = fake.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  // The zero-byte signature never reached the server: the attempt ended
  // before CONNECT, and the next connection signed a new nonce.
  EXPECT_EQ(attempts[0].nonce, zero_nonce_);
  EXPECT_FALSE(attempts[0].connect_seen);
  EXPECT_EQ(attempts[1].nonce, plain_nonce_);
  EXPECT_TRUE(attempts[1].sig_valid);
}

// The hub and the agent connect with retry_on_failed_connect (nats-server may
// come up after them); a zero-byte first nonce must not close them either.
TEST_F(NkeySignatureTest, ZeroByteSignatureAtAConnectThatRetriesInTheBackgroundIsRetried) {
  FakeNatsServer fake(keys_, {zero_nonce_}, plain_nonce_);
  std::atomic<int> closed{0};
  ConnectOptions opts = options(fake);
  opts.retry_on_failed_connect = true;
  opts.on_closed = [&](const Status&) { ++closed; };
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  ASSERT_TRUE(wait_until([&] { return (*nc)->connected() || closed.load() > 0; }, 10000));
  EXPECT_EQ(closed.load(), 0);
  EXPECT_FALSE((*nc)->closed());
  EXPECT_TRUE((*nc)->flush(2000).is_ok());
}

// cnats 3.4.1 closed a background-retrying connect for good at once when
// the attempt it made before going to the background reached a server
// whose handshake then failed; the chaos soak met it as an agent started
// while nats-server was being killed. Both first attempts here are hung up.
TEST_F(NkeySignatureTest, AHandshakeCutShortAtAConnectThatRetriesInTheBackgroundIsRetried) {
  const std::string hang_up(FakeNatsServer::kHangUp);
  FakeNatsServer fake(keys_, {hang_up, hang_up}, plain_nonce_);
  std::atomic<int> closed{0};
  ConnectOptions opts = options(fake);
  opts.retry_on_failed_connect = true;
  opts.on_closed = [&](const Status&) { ++closed; };
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  ASSERT_TRUE(wait_until([&] { return (*nc)->connected() || closed.load() > 0; }, 10000));
  EXPECT_EQ(closed.load(), 0);
  EXPECT_FALSE((*nc)->closed());
  EXPECT_TRUE((*nc)->flush(2000).is_ok());
  EXPECT_GE(fake.attempts().size(), 3u);
}

TEST_F(NkeySignatureTest, ZeroByteSignaturesWhileReconnectingNeverCloseTheConnection) {
  FakeNatsServer fake(keys_, {plain_nonce_, zero_nonce_, zero_nonce_, zero_nonce_}, plain_nonce_);
  expect_reconnect_through_zero_byte_signatures(fake, options(fake));
}

TEST_F(NkeySignatureTest, RefusedCredentialsCloseForGoodAndSayWhy) {
  // What cnats 3.4 still does: the server refusing the key twice in a row
  // while reconnecting closes the connection for good. The Connection
  // reports it (on_closed, closed()) so its owner can stop.
  UserKeys other = make_user_keys();
  std::string nonce;  // one neither key's signature of begins with a zero byte
  for (int n = 0; n < 100000 && nonce.empty(); ++n) {
    const std::string candidate = "both-" + std::to_string(n);
    if (!signature_begins_with_zero(keys_, candidate) && !signature_begins_with_zero(other, candidate)) nonce = candidate;
  }
  ASSERT_FALSE(nonce.empty());
  FakeNatsServer fake(keys_, {nonce}, nonce);
  std::mutex mu;
  std::optional<Status> closed_status;
  ConnectOptions opts = options(fake);
  opts.on_closed = [&](const Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    closed_status = s;
  };
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  dir_.write_file("user.nk", other.pair.seed + "\n");  // the seed file is read again at each reconnect
  fake.drop_client();
  ASSERT_TRUE(wait_until([&] { return (*nc)->closed(); }, 10000));
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard<std::mutex> lock(mu);
    return closed_status.has_value();
  }));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(closed_status->code(), StatusCode::kPermissionDenied) << closed_status->to_string();
  EXPECT_NE(closed_status->message().find("Authorization Violation"), std::string::npos) << closed_status->to_string();
}

// The same bug on the JWT path ([nats] creds_file): cnats 3.4.1 signing a
// creds file itself sent a signature beginning with 0x00 empty. The creds
// file's seed now signs through the same callback, so such a nonce ends the
// attempt before CONNECT and the next one succeeds.
class CredsSignatureTest : public NkeySignatureTest {
 protected:
  void SetUp() override {
    NkeySignatureTest::SetUp();
    const TestTrustChain chain = make_test_trust_chain();
    // The fake server checks signatures against keys_: a JWT for that key.
    jwt_ = sign_test_jwt(chain.account, keys_.pair.public_key, "creds-signature-test", "user",
                         {{"pub", nlohmann::json::object()}, {"sub", nlohmann::json::object()}});
    creds_file_ = dir_.write_file("user.creds", creds_text(jwt_, keys_.pair.seed));
  }

  ConnectOptions creds_options(const FakeNatsServer& fake) const {
    ConnectOptions opts = options(fake);
    opts.config.nkey_seed_file.clear();
    opts.config.creds_file = creds_file_;
    return opts;
  }

  std::string jwt_;
  std::string creds_file_;
};

TEST_F(CredsSignatureTest, ZeroByteSignatureOfACredsFileIsRetriedWithANewNonce) {
  FakeNatsServer fake(keys_, {zero_nonce_}, plain_nonce_, jwt_);
  auto nc = Connection::connect(creds_options(fake));
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  EXPECT_TRUE((*nc)->connected());
  EXPECT_TRUE((*nc)->flush(2000).is_ok());

  const auto attempts = fake.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].nonce, zero_nonce_);
  EXPECT_FALSE(attempts[0].connect_seen) << "a CONNECT went out for the zero-byte signature (sig present: "
                                         << attempts[0].sig_present << ")";
  EXPECT_EQ(attempts[1].nonce, plain_nonce_);
  EXPECT_TRUE(attempts[1].sig_valid);
}

TEST_F(CredsSignatureTest, ZeroByteSignaturesOfACredsFileWhileReconnectingNeverCloseTheConnection) {
  FakeNatsServer fake(keys_, {plain_nonce_, zero_nonce_, zero_nonce_, zero_nonce_}, plain_nonce_, jwt_);
  expect_reconnect_through_zero_byte_signatures(fake, creds_options(fake));
}

// --- against a real nats-server --------------------------------------------

std::string nkey_users_config(const std::vector<std::string>& public_keys) {
  std::string users;
  for (const auto& pub : public_keys) users += (users.empty() ? "" : ", ") + ("{ nkey: " + pub + " }");
  return "authorization { users = [ " + users + "] }";
}

// Lines nats-server writes when it refuses a client ("authentication error").
size_t auth_errors(const NatsServer& server) { return count_of(server.log_text(), "authentication error"); }

// A seed file configured against a server without authorization (a
// development broker): the server sends no nonce, cnats still calls the
// signature callback, and the connection is made (it crashed on the missing
// nonce before).
TEST(NkeyConnectTest, SeedFileAgainstAServerWithoutAuthorizationConnects) {
  ASSERT_GE(sodium_init(), 0);
  const UserKeys keys = make_user_keys();
  NatsServer server;
  ASSERT_TRUE(server.start().is_ok()) << server.log_text();
  TempDir dir("deltasync-nkey-open");
  ConnectOptions opts;
  opts.config.url = server.url();
  opts.config.nkey_seed_file = dir.write_file("user.nk", keys.pair.seed + "\n");
  opts.name = "nkey-open";
  auto nc = Connection::connect(opts);
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
  EXPECT_TRUE((*nc)->flush(5000).is_ok());
}

// 5,000 connects, each signing a new nonce: with the cnats bug about 20 of
// them would have been refused (1 in 256).
TEST(NkeyConnectTest, FiveThousandNkeyConnectsAllSucceed) {
  ASSERT_GE(sodium_init(), 0);
  const UserKeys keys = make_user_keys();
  NatsServer server(nkey_users_config({keys.pair.public_key}));
  ASSERT_TRUE(server.start().is_ok()) << server.log_text();
  TempDir dir("deltasync-nkey-5000");
  const std::string seed_file = dir.write_file("user.nk", keys.pair.seed + "\n");

  constexpr int kConnects = 5000;
  ConnectOptions opts;
  opts.config.url = server.url();
  opts.config.nkey_seed_file = seed_file;
  opts.name = "nkey-5000";
  const ConnectRun run = connect_repeatedly(opts, kConnects, 4);
  std::cout << kConnects << " nkey connects in " << run.seconds << " s\n";
  EXPECT_EQ(run.failures, 0) << run.first_failure;
  EXPECT_EQ(auth_errors(server), 0u) << server.log_text().substr(0, 4000);
}

// The hub and two agents stay connected through 30 broker restarts: every
// reconnect signs a new nonce, none is refused, none is closed for good, and
// each one's subscription delivers after the last restart.
TEST(NkeyConnectTest, IdentitiesStayConnectedThroughManyServerRestarts) {
  ASSERT_GE(sodium_init(), 0);
  const std::vector<std::string> names = {"hub", "store-1", "store-2"};
  std::vector<UserKeys> keys;
  std::vector<std::string> public_keys;
  for (size_t i = 0; i < names.size(); ++i) {
    keys.push_back(make_user_keys());
    public_keys.push_back(keys.back().pair.public_key);
  }
  NatsServer server(nkey_users_config(public_keys));
  ASSERT_TRUE(server.start().is_ok()) << server.log_text();
  TempDir dir("deltasync-nkey-restarts");

  struct Identity {
    std::atomic<int> reconnects{0};
    std::atomic<int> closed{0};
    MessageCollector got;
    std::unique_ptr<Connection> nc;
    std::unique_ptr<Subscription> sub;
  };
  std::vector<std::unique_ptr<Identity>> ids;
  for (size_t i = 0; i < names.size(); ++i) {
    auto id = std::make_unique<Identity>();
    Identity* raw = id.get();
    ConnectOptions opts;
    opts.config.url = server.url();
    opts.config.nkey_seed_file = dir.write_file(names[i] + ".nk", keys[i].pair.seed + "\n");
    opts.name = names[i];
    opts.reconnect_wait_ms = 50;
    opts.max_reconnect_wait_ms = 400;
    opts.on_reconnected = [raw] { ++raw->reconnects; };
    opts.on_closed = [raw](const Status&) { ++raw->closed; };
    auto nc = Connection::connect(opts);
    ASSERT_TRUE(nc.is_ok()) << names[i] << ": " << nc.status().to_string();
    id->nc = std::move(nc).value();
    auto sub = id->nc->subscribe("ds.test." + names[i], id->got.handler());
    ASSERT_TRUE(sub.is_ok()) << sub.status().to_string();
    id->sub = std::move(sub).value();
    ASSERT_TRUE(id->nc->flush().is_ok());
    ids.push_back(std::move(id));
  }

  constexpr int kRestarts = 30;
  for (int r = 1; r <= kRestarts; ++r) {
    ASSERT_TRUE(server.restart().is_ok()) << server.log_text();
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(wait_until([&] { return ids[i]->reconnects.load() >= r || ids[i]->closed.load() > 0; }, 20000))
          << names[i] << " did not reconnect after restart " << r;
      ASSERT_EQ(ids[i]->closed.load(), 0) << names[i] << " closed for good after restart " << r;
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_FALSE(ids[i]->nc->closed()) << names[i];
    ASSERT_TRUE(wait_until([&] { return ids[i]->nc->connected(); })) << names[i];
    ASSERT_TRUE(ids[i]->nc->flush().is_ok()) << names[i];  // its SUB is registered again
  }
  for (size_t from = 0; from < ids.size(); ++from) {
    for (size_t to = 0; to < ids.size(); ++to) {
      if (from != to) {
        ASSERT_TRUE(ids[from]->nc->publish("ds.test." + names[to], names[from]).is_ok());
      }
    }
    ASSERT_TRUE(ids[from]->nc->flush().is_ok());
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(ids[i]->got.wait_for(ids.size() - 1)) << names[i] << " got " << ids[i]->got.count();
  }
  EXPECT_EQ(auth_errors(server), 0u);
  for (auto& id : ids) id->sub.reset();
}

}  // namespace
}  // namespace ds::testing
