#pragma once
// Helpers shared by the hub integration tests (hub_*_test.cc): a two-type
// hub configuration against the test's nats-server, ingest over NATS, and
// reading a stream back.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hub/query_store.h"
#include "shared/codec.h"
#include "shared/config.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "tests/harness/nats_server.h"
#include "tools/temp_dir.h"

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

}  // namespace ds::testing
