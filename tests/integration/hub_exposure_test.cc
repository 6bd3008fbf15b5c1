// What an attacker outside the NATS permissions can do to the hub, against
// the real thing: a nats-server with the credentials `deltasync creds`
// generates, the deltasync-hub and deltasync-agent binaries as processes,
// the deltasync CLI as a process. Each test acts as the attacker would
// (docs/security.md, threat model):
//   - an unauthenticated HTTP client streaming huge bodies at the API, or a
//     token holder sending one above [http] max_body_bytes;
//   - a hostile producer putting a forged log line in a value the hub logs;
//   - a local user reading the hub's and the agent's files;
//   - a network observer: the HTTP API and NATS over TLS with a private CA,
//     which the CLI must be told to trust.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "testing/child_process.h"
#include "testing/local_host.h"
#include "testing/temp_dir.h"
#include "tests/harness/hub_process.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_credentials.h"
#include "tools/creds.h"
#include "tools/hub_client.h"

namespace ds::testing {
namespace {

constexpr char kToken[] = "hardening-test-token-0123456789";

std::string binary(const std::string& name) { return std::string(DELTASYNC_BINARY_DIR) + "/" + name; }

// The hub process's peak resident memory (VmHWM), in bytes; 0 if unknown.
int64_t peak_rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

// A blocking loopback TCP connection with send/receive timeouts, so that no
// call in these tests waits forever on a hub that stopped reading.
class RawConnection {
 public:
  explicit RawConnection(int port, int timeout_ms = 5000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  // Sends all of `data`; false as soon as the peer closed, reset or stopped
  // reading for the timeout.
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // What the peer sends until it closes, resets or goes quiet (bounded).
  std::string read_some(size_t max_bytes = 64 * 1024) {
    std::string out;
    std::array<char, 4096> buf{};
    while (out.size() < max_bytes) {
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      out.append(buf.data(), static_cast<size_t>(n));
      if (out.find("\r\n\r\n") != std::string::npos) break;
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// A CA and a certificate for 127.0.0.1 and localhost signed by it, made
// with the openssl command: ca.pem, server.pem, server.key in `dir`; and
// other-ca.pem, a CA that signed nothing here.
void make_private_ca(const TempDir& dir) {
  const std::string d = dir.path();
  const std::string cmd =
      "cd '" + d + "' && "
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=deltasync-private-ca "
      "-keyout ca.key -out ca.pem && "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr && "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-extfile san.ext -out server.pem && "
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=deltasync-other-ca "
      "-keyout other-ca.key -out other-ca.pem";
  const std::string quiet = "(" + cmd + ") > '" + d + "/openssl.log' 2>&1";
  ASSERT_EQ(std::system(quiet.c_str()), 0) << "openssl failed, see " << d << "/openssl.log";
}

// One hub with generated credentials: identities hub, agent store-1 (price)
// and producer erp (price). The type "price" is keyed by sku: amount, currency.
class HubExposureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto written = write_test_credentials(creds_dir_.path(), {{IdentityRole::kHub, "hub"},
                                                              {IdentityRole::kAgent, "store-1:price"},
                                                              {IdentityRole::kProducer, "erp:price"}});
    ASSERT_TRUE(written.is_ok()) << written.status().to_string();
    identities_file_ = written->identities;
    auto port = free_loopback_port();
    ASSERT_TRUE(port.is_ok());
    http_port_ = *port;
  }

  // nats-server with the generated auth.conf (relative include, as an
  // operator writes it) and `extra` configuration.
  void start_nats(const std::string& extra = {}) {
    nats_ = std::make_unique<NatsServer>(include_auth_conf(creds_dir_.path()) + extra);
    Status s = nats_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  std::string seed(const std::string& name) const { return creds_dir_.file(name + ".nk"); }

  // Starts the hub with `http_extra` in [http] and `nats_extra` in [nats].
  void start_hub(const std::string& http_extra = {}, const std::string& nats_extra = {},
                 const std::string& nats_url = {}) {
    const std::string toml =
        "[hub]\nname = \"test-hub\"\nlog_level = \"info\"\n"
        "[nats]\nurl = \"" + (nats_url.empty() ? nats_->url() : nats_url) + "\"\nnkey_seed_file = \"" +
        seed("hub") + "\"\n" + nats_extra +
        "[store]\npath = \"" + dir_.file("hub.db") + "\"\n"
        "[auth]\nidentities_file = \"" + identities_file_ + "\"\n"
        "[http]\nlisten = \"127.0.0.1:" + std::to_string(http_port_) + "\"\ntoken = \"" + kToken + "\"\n" +
        http_extra +
        "[liveness]\nheartbeat_interval_ms = 500\n"
        "[[types]]\nname = \"price\"\nkey = \"sku\"\n"
        "columns = [{ name = \"amount\", type = \"real\" }, { name = \"currency\", type = \"text\" }]\n";
    hub_ = std::make_unique<HubProcess>(dir_.write_file("hub.toml", toml), dir_.file("hub.log"));
    Status s = hub_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  std::string http_url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }

  CommandResult cli(std::vector<std::string> args, const Environment& env = {}) {
    args.insert(args.begin(), binary("deltasync"));
    return run_to_completion(args, dir_.file("cli"), env, 30000);
  }

  TempDir creds_dir_{"deltasync-creds"};
  std::string identities_file_;
  TempDir dir_{"deltasync-exposure"};
  int http_port_ = 0;
  std::unique_ptr<NatsServer> nats_;
  std::unique_ptr<HubProcess> hub_;
};

// ---- an unauthenticated HTTP client -----------------------------------------

constexpr int64_t kAttackBodyBytes = 100LL << 20;  // per connection
constexpr int kAttackConnections = 8;
// What the hub may grow by while it refuses them all: its read buffers and
// the headers, never the bodies (eight bodies would be 800 MiB).
constexpr int64_t kAttackGrowthBound = 32LL << 20;

// One attacker connection: a POST without a token whose body (Content-Length
// or chunked) is streamed from one small buffer until the hub stops taking
// it. Returns the body bytes the hub accepted from the socket.
int64_t stream_unauthenticated_body(int port, bool chunked, std::string* answer) {
  RawConnection c(port);
  if (!c.connected()) return -1;
  std::string head = "POST /v1/types/price/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  head += chunked ? "Transfer-Encoding: chunked\r\n\r\n"
                  : "Content-Length: " + std::to_string(kAttackBodyBytes) + "\r\n\r\n";
  if (!c.send_all(head)) return 0;
  const std::string piece(64 * 1024, '[');
  const std::string chunk = "10000\r\n" + piece + "\r\n";  // 0x10000 bytes
  int64_t sent = 0;
  while (sent < kAttackBodyBytes && c.send_all(chunked ? chunk : piece)) sent += static_cast<int64_t>(piece.size());
  *answer = c.read_some();
  return sent;
}

TEST_F(HubExposureTest, UnauthenticatedBodiesAreRefusedUnreadWithBoundedMemory) {
  start_nats();
  start_hub();
  if (HasFatalFailure()) return;
  const int64_t before = peak_rss_bytes(hub_->pid());
  ASSERT_GT(before, 0);

  std::vector<int64_t> sent(kAttackConnections, 0);
  std::vector<std::string> answers(kAttackConnections);
  std::vector<std::thread> attackers;
  for (int i = 0; i < kAttackConnections; ++i) {
    attackers.emplace_back([&, i] {
      sent[static_cast<size_t>(i)] = stream_unauthenticated_body(http_port_, i % 2 == 1, &answers[static_cast<size_t>(i)]);
    });
  }
  for (auto& t : attackers) t.join();

  const int64_t after = peak_rss_bytes(hub_->pid());
  std::printf("hub peak RSS %lld KiB before, %lld KiB after %d unauthenticated 100 MiB bodies; sent:",
              static_cast<long long>(before / 1024), static_cast<long long>(after / 1024), kAttackConnections);
  for (int64_t n : sent) std::printf(" %lld", static_cast<long long>(n));
  std::printf("\n");
  EXPECT_LT(after - before, kAttackGrowthBound)
      << "hub peak RSS grew from " << before << " to " << after << " bytes";
  for (int i = 0; i < kAttackConnections; ++i) {
    // What the hub took off the wire is what the kernel buffers hold: the
    // body was not read.
    EXPECT_GE(sent[static_cast<size_t>(i)], 0) << "connection " << i << " could not connect";
    EXPECT_LT(sent[static_cast<size_t>(i)], kAttackGrowthBound) << "connection " << i;
    if (!answers[static_cast<size_t>(i)].empty()) {
      EXPECT_EQ(answers[static_cast<size_t>(i)].rfind("HTTP/1.1 401", 0), 0u) << answers[static_cast<size_t>(i)];
    }
  }

  // A small request without a token reads its 401 as before.
  RawConnection small(http_port_);
  ASSERT_TRUE(small.send_all("POST /v1/types/price/records HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]"));
  EXPECT_EQ(small.read_some().rfind("HTTP/1.1 401", 0), 0u);

  // The hub is up and serves the token holder.
  ASSERT_TRUE(hub_->running());
  auto client = HubClient::create(http_url(), kToken);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  auto types = client->get_json("/v1/types");
  ASSERT_TRUE(types.is_ok()) << types.status().to_string();
  EXPECT_EQ(types->size(), 1u);
}

TEST_F(HubExposureTest, BodyAboveTheCapIsRefusedWith413BeforeItIsSent) {
  start_nats();
  start_hub("max_body_bytes = \"1MiB\"\n");
  if (HasFatalFailure()) return;
  RawConnection c(http_port_);
  ASSERT_TRUE(c.send_all(std::string("POST /v1/types/price/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ") +
                         kToken + "\r\nContent-Type: application/json\r\nContent-Length: " +
                         std::to_string(kAttackBodyBytes) + "\r\n\r\n"));
  // Not one byte of the body is sent: the answer comes from the headers.
  const std::string answer = c.read_some();
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;

  // Under the cap, ingest works as before.
  auto client = HubClient::create(http_url(), kToken);
  ASSERT_TRUE(client.is_ok());
  auto stored = client->post_json("/v1/types/price/records?producer=erp&seq=1",
                                  nlohmann::json::parse(R"([{"key":"a","op":"upsert","fields":{"amount":1}}])"));
  ASSERT_TRUE(stored.is_ok()) << stored.status().to_string();
}

// ---- a hostile producer ---------------------------------------------------------

TEST_F(HubExposureTest, ProducerCannotForgeALineInTheHubLog) {
  start_nats();
  start_hub();
  if (HasFatalFailure()) return;
  ConnectOptions opts = test_connect_options(*nats_);
  opts.config.nkey_seed_file = seed("erp");
  opts.inbox_prefix = inbox_prefix("erp");
  auto nc = Connection::connect(std::move(opts));
  ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();

  // A batch the hub rejects (its body names another producer than the
  // subject), so it logs the body's producer.
  const std::string forged = "2026-01-01T00:00:00.000 critical [hub] forged: replica tampered";
  IngestRequest request;
  request.producer = "erp\n" + forged + "\r\x1b[2K";
  request.seq = 1;
  IngestRecord record;
  record.key = "a";
  record.fields = {{"colour", std::string("red")}};
  request.records.push_back(record);
  auto reply = (*nc)->request(Subjects().ingest("price", "erp"), encode(request), 10000);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();

  ASSERT_TRUE(wait_until([&] { return hub_->log_count("forged: replica tampered") > 0; }));
  const std::string log = hub_->log_text();
  size_t lines_with_forgery = 0;
  size_t start = 0;
  while (start < log.size()) {
    const size_t end = std::min(log.find('\n', start), log.size());
    const std::string line = log.substr(start, end - start);
    if (line.find("forged") != std::string::npos) {
      ++lines_with_forgery;
      EXPECT_NE(line.rfind(forged, 0), 0u) << "forged line in hub.log: " << line;
      // Escaped where it stands, by the log formatter (\n) or by the quoting
      // of values in refusals (\x0a).
      EXPECT_TRUE(line.find("erp\\n" + forged) != std::string::npos ||
                  line.find("erp\\x0a" + forged) != std::string::npos)
          << line;
    }
    EXPECT_EQ(line.find('\r'), std::string::npos) << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
    start = end + 1;
  }
  EXPECT_EQ(lines_with_forgery, 1u) << log;
}

// ---- a local user -----------------------------------------------------------------

TEST_F(HubExposureTest, HubAndAgentFilesAreOwnerOnlyUnderTheUsualUmask) {
  const mode_t saved = ::umask(022);  // the usual umask, inherited by the children
  start_nats();
  start_hub();
  const std::string agent_toml = dir_.write_file(
      "agent.toml", "[agent]\nid = \"store-1\"\nlog_level = \"info\"\n[nats]\nurl = \"" + nats_->url() +
                        "\"\nnkey_seed_file = \"" + seed("store-1") + "\"\n[replica]\npath = \"" +
                        dir_.file("replica.db") + "\"\n[[subscriptions]]\ntype = \"price\"\npartition = \"*\"\n");
  ChildProcess agent({binary("deltasync-agent"), "run", "--config", agent_toml}, dir_.file("agent.log"));
  Status started = agent.start();
  ::umask(saved);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  ASSERT_TRUE(wait_until([&] { return hub_->log_count("agent store-1 registered") > 0; }, 30000))
      << hub_->log_text() << agent.log_text();

  size_t checked = 0;
  for (const std::string name : {"hub.db", "hub.db-wal", "hub.db-shm", "replica.db", "replica.db-wal",
                                 "replica.db-shm"}) {
    struct stat st {};
    ASSERT_EQ(::stat(dir_.file(name).c_str(), &st), 0) << name << " was not created";
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name << " has mode " << std::oct << (st.st_mode & 0777);
    ++checked;
  }
  EXPECT_EQ(checked, 6u);
}

// ---- the network: TLS with a private CA -------------------------------------------

TEST_F(HubExposureTest, CliReachesAnHttpsHubOnlyWhenToldToTrustItsCa) {
  TempDir pki("deltasync-pki");
  make_private_ca(pki);
  if (HasFatalFailure()) return;
  start_nats();
  start_hub("tls_cert_file = \"" + pki.file("server.pem") + "\"\ntls_key_file = \"" + pki.file("server.key") + "\"\n");
  if (HasFatalFailure()) return;
  const std::string https = "https://127.0.0.1:" + std::to_string(http_port_);

  CommandResult trusted = cli({"agents", "--json", "--hub", https, "--token", kToken, "--ca-file", pki.file("ca.pem")});
  EXPECT_EQ(trusted.exit_code, 0) << trusted.err;
  EXPECT_TRUE(nlohmann::json::parse(trusted.out, nullptr, false).is_array()) << trusted.out;
  // The same through the environment, by host name.
  CommandResult by_env = cli({"verify", "--quiet"}, {{"DELTASYNC_HUB", "https://localhost:" + std::to_string(http_port_)},
                                                     {"DELTASYNC_TOKEN", kToken},
                                                     {"DELTASYNC_CA_FILE", pki.file("ca.pem")}});
  EXPECT_EQ(by_env.exit_code, 0) << by_env.err;

  CommandResult untrusted = cli({"agents", "--hub", https, "--token", kToken});
  EXPECT_EQ(untrusted.exit_code, 1);
  EXPECT_NE(untrusted.err.find("TLS"), std::string::npos) << untrusted.err;
  EXPECT_NE(untrusted.err.find("--ca-file"), std::string::npos) << untrusted.err;

  // A CA that did not sign the hub's certificate is no better.
  CommandResult wrong_ca = cli({"agents", "--hub", https, "--token", kToken, "--ca-file", pki.file("other-ca.pem")});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  EXPECT_NE(wrong_ca.err.find("TLS"), std::string::npos) << wrong_ca.err;

  // Plain HTTP gets no answer from the HTTPS listener.
  CommandResult plain = cli({"agents", "--hub", http_url(), "--token", kToken});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
}

TEST_F(HubExposureTest, PushReachesATlsNatsServerOnlyWhenToldToTrustItsCa) {
  TempDir pki("deltasync-pki");
  make_private_ca(pki);
  if (HasFatalFailure()) return;
  start_nats("tls { cert_file: \"" + pki.file("server.pem") + "\", key_file: \"" + pki.file("server.key") + "\" }\n");
  if (HasFatalFailure()) return;
  start_hub({}, "tls_ca_file = \"" + pki.file("ca.pem") + "\"\n");
  if (HasFatalFailure()) return;
  const std::string records = dir_.write_file(
      "prices.jsonl", "{\"key\":\"sku-1\",\"op\":\"upsert\",\"fields\":{\"amount\":2.5,\"currency\":\"EUR\"}}\n");
  const std::vector<std::string> push = {"push", "--type", "price", "--quiet", "--nats", nats_->url(),
                                         "--nkey-seed", seed("erp"), "--producer", "erp", records};

  std::vector<std::string> untrusted = push;
  CommandResult refused = cli(untrusted);
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_NE(refused.err.find("certificate"), std::string::npos) << refused.err;

  std::vector<std::string> trusted = push;
  trusted.insert(trusted.end() - 1, {"--tls-ca", pki.file("ca.pem")});
  CommandResult pushed = cli(trusted);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;

  auto client = HubClient::create(http_url(), kToken);
  ASSERT_TRUE(client.is_ok());
  auto record = client->get_json("/v1/types/price/records/sku-1");
  ASSERT_TRUE(record.is_ok()) << record.status().to_string();
  EXPECT_EQ((*record)["fields"]["amount"], 2.5);

  // --tls-cert without --tls-key is a usage error.
  std::vector<std::string> half = push;
  half.insert(half.end() - 1, {"--tls-cert", pki.file("server.pem")});
  EXPECT_EQ(cli(half).exit_code, 2);
}

}  // namespace
}  // namespace ds::testing
