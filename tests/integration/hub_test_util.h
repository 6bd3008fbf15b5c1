#pragma once
// Helpers shared by the hub integration tests (hub_*_test.cc): a two-type
// hub configuration against the test's nats-server, ingest over NATS, and
// reading a stream back.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "hub/hub.h"
#include "hub/query_store.h"
#include "shared/codec.h"
#include "shared/config.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "testing/temp_dir.h"
#include "tests/harness/nats_server.h"
#include "tools/hub_client.h"

namespace ds::testing {

// "price": unpartitioned (sku -> amount real, currency text);
// "stock": partitioned by text column "store" (id -> store, qty integer).
inline HubConfig two_type_hub_config(const NatsServer& server, const TempDir& dir) {
  HubConfig c;
  c.name = "test-hub";
  c.nats.url = server.url();
  c.store_path = dir.file("hub.db");
  c.http_listen = "";
  c.heartbeat_interval_ms = 500;
  TypeConfig price;
  price.name = "price";
  price.schema.key = "sku";
  price.schema.columns = {{"amount", ColumnType::kReal}, {"currency", ColumnType::kText}};
  TypeConfig stock;
  stock.name = "stock";
  stock.schema.key = "id";
  stock.schema.partition = "store";
  stock.schema.columns = {{"store", ColumnType::kText}, {"qty", ColumnType::kInteger}};
  c.types = {price, stock};
  return c;
}

// The same configuration as hub.toml text, for the hub binary.
inline std::string two_type_hub_toml(const NatsServer& server, const TempDir& dir, const std::string& http_listen,
                                     const std::string& token) {
  return "[hub]\nname = \"test-hub\"\nlog_level = \"info\"\n"
         "[nats]\nurl = \"" + server.url() + "\"\n"
         "[store]\npath = \"" + dir.file("hub.db") + "\"\n"
         "[http]\nlisten = \"" + http_listen + "\"\ntoken = \"" + token + "\"\n"
         "[liveness]\nheartbeat_interval_ms = 500\n"
         "[[types]]\nname = \"price\"\nkey = \"sku\"\n"
         "columns = [{ name = \"amount\", type = \"real\" }, { name = \"currency\", type = \"text\" }]\n"
         "[[types]]\nname = \"stock\"\nkey = \"id\"\npartition = \"store\"\n"
         "columns = [{ name = \"store\", type = \"text\" }, { name = \"qty\", type = \"integer\" }]\n";
}

inline IngestRecord price_record(std::string sku, double amount) {
  IngestRecord r;
  r.key = std::move(sku);
  r.fields = {{"amount", amount}, {"currency", std::string("EUR")}};
  r.ts = 1700000000000;
  return r;
}

inline IngestRecord stock_record(std::string id, std::string store, int64_t qty) {
  IngestRecord r;
  r.key = std::move(id);
  r.fields = {{"store", std::move(store)}, {"qty", qty}};
  return r;
}

// The producer the helpers below send as when a request names none.
inline constexpr std::string_view kTestProducer = "test";

// Sends an ingest request (msgpack) as request.producer (or kTestProducer)
// and decodes the reply.
inline Result<IngestReply> ingest(Connection& nc, const std::string& type, const IngestRequest& request,
                                  int64_t timeout_ms = 10000) {
  const std::string_view producer = request.producer.empty() ? kTestProducer : std::string_view(request.producer);
  DS_ASSIGN_OR_RETURN(Message reply, nc.request(Subjects().ingest(type, producer), encode(request), timeout_ms));
  return decode_ingest_reply(reply.data());
}

// Every message of `stream`, by sequence from first to last.
inline std::vector<StoredMessage> stream_messages(JetStream& js, const std::string& stream) {
  std::vector<StoredMessage> out;
  auto state = js.stream_state(stream);
  if (!state.is_ok()) return out;
  for (uint64_t seq = state->first_seq; seq != 0 && seq <= state->last_seq; ++seq) {
    auto m = js.get_message(stream, seq);
    if (m.is_ok()) out.push_back(std::move(m).value());
  }
  return out;
}

// A loopback TCP port that was free a moment ago.
inline int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline std::unique_ptr<QueryStore> open_reader(const HubConfig& config) {
  QueryStoreOptions ro;
  ro.read_only = true;
  auto s = QueryStore::open(config.store_path, config.types, ro);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
  // The value of header `name` (lower case), "" when absent.
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A minimal blocking HTTP/1.1 client to 127.0.0.1:`port`: one request per connection
// (Connection: close), body read to EOF, header fields kept;
// status 0 when nothing listens or the answer is not HTTP/1.1. `token` goes in "Authorization: Bearer".
inline HttpResponse http(int port, const std::string& method, const std::string& path, const std::string& body = {},
                         std::optional<std::string_view> token = std::nullopt) {
  HttpResponse out;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return out;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  if (token) req += "Authorization: Bearer " + std::string(*token) + "\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t header_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || header_end == std::string::npos) return out;
  out.status = std::stoi(raw.substr(9, 3));
  out.body = raw.substr(header_end + 4);
  for (size_t at = raw.find("\r\n"); at < header_end;) {
    const size_t line_end = raw.find("\r\n", at + 2);
    const std::string line = raw.substr(at + 2, line_end - at - 2);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const size_t value = line.find_first_not_of(' ', colon + 1);
      out.headers[name] = value == std::string::npos ? "" : line.substr(value);
    }
    at = line_end;
  }
  return out;
}

// The HTTP token of the hubs InProcessHubTest serves.
inline constexpr std::string_view kTestToken = "test-token-0123456789abcdef";

// A hub in this process, against the fixture's nats-server, configured by
// two_type_hub_config, and optionally one agent. A derived fixture's SetUp
// calls this SetUp, adjusts config_ (serve_http() for the HTTP API) and
// then calls start_hub().
class InProcessHubTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    if (HasFatalFailure()) return;
    config_ = two_type_hub_config(*server_, dir_);
  }
  void TearDown() override {
    if (agent_) agent_->stop();
    agent_.reset();
    if (hub_) hub_->stop();
    hub_.reset();
    NatsTest::TearDown();
  }

  // [http] listen on a free loopback port (port_), with kTestToken.
  void serve_http() {
    port_ = free_tcp_port();
    config_.http_listen = "127.0.0.1:" + std::to_string(port_);
    config_.http_token = std::string(kTestToken);
  }
  void start_hub() {
    auto hub = Hub::start(config_);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    hub_ = std::move(hub).value();
  }

  // Starts agent_ (deltasync-agent in this process) with `subscriptions`
  // (the TOML of its [[subscriptions]] blocks) and waits for its first
  // registration; its replica is <dir_>/<id>.db.
  void start_agent(const std::string& id, const std::string& subscriptions) {
    const std::string path = dir_.write_file(
        id + ".toml", "[agent]\nid = \"" + id + "\"\nlog_level = \"warn\"\n[nats]\nurl = \"" + server_->url() +
                          "\"\n[replica]\npath = \"" + dir_.file(id + ".db") + "\"\n" + subscriptions);
    auto config = load_agent_config(path);
    ASSERT_TRUE(config.is_ok()) << config.status().to_string();
    agent_ = std::make_unique<Agent>(std::move(config).value());
    Status s = agent_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    ASSERT_TRUE(agent_->wait_registered(0, 15000)) << "the agent never registered";
  }

  // A request to this hub's HTTP API, with the token unless told otherwise.
  HttpResponse api(const std::string& method, const std::string& path, const std::string& body = {},
                   std::optional<std::string_view> token = kTestToken) {
    return http(port_, method, path, body, token);
  }
  // The operator CLI's client of this hub's HTTP API.
  HubClient client(int64_t timeout_ms) {
    auto c = HubClient::create("http://127.0.0.1:" + std::to_string(port_), std::string(kTestToken), {}, timeout_ms);
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    return std::move(c).value();
  }

  TempDir dir_{"in-process-hub-test"};
  HubConfig config_;
  int port_ = 0;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<Agent> agent_;
};

}  // namespace ds::testing
