#include "tests/e2e/workload.h"

#include <chrono>

#include <fmt/format.h>

#include "shared/codec.h"
#include "shared/names.h"
#include "tests/harness/nats_server.h"
#include "tools/pusher.h"

namespace ds::testing {
namespace {

constexpr uint64_t kRecordsPerBatch = 40;
constexpr uint64_t kKeysPerType = 400;
constexpr int64_t kAttemptTimeoutMs = 2000;
constexpr int64_t kRetryPauseMs = 100;

const std::map<std::string, nlohmann::json> kNoRecords;

}  // namespace

void RecordModel::apply(const std::string& type, const nlohmann::json& records) {
  auto& live = types_[type];
  for (const auto& r : records) {
    const std::string key = r.at("key").get<std::string>();
    if (r.value("op", "upsert") == "delete") {
      live.erase(key);
      continue;
    }
    nlohmann::json& fields = live.try_emplace(key, nlohmann::json::object()).first->second;
    const nlohmann::json patch = r.value("fields", nlohmann::json::object());
    for (const auto& [name, value] : patch.items()) {
      if (value.is_null()) fields.erase(name);
      else fields[name] = value;
    }
  }
}

const std::map<std::string, nlohmann::json>& RecordModel::records(const std::string& type) const {
  auto it = types_.find(type);
  return it == types_.end() ? kNoRecords : it->second;
}

size_t RecordModel::count(const std::string& type, const std::string& partition) const {
  size_t n = 0;
  for (const auto& [key, fields] : records(type)) {
    if (partition == "*" || fields.value("store_id", "") == partition) ++n;
  }
  return n;
}

std::vector<std::string> RecordModel::types() const {
  std::vector<std::string> out;
  for (const auto& [type, records] : types_) out.push_back(type);
  return out;
}

::testing::AssertionResult hub_holds_exactly(Fleet& fleet, const RecordModel& model) {
  for (const std::string& type : model.types()) {
    auto hub = fleet.hub_records(type);
    if (!hub.is_ok()) return ::testing::AssertionFailure() << hub.status().to_string();
    const auto& want = model.records(type);
    for (const auto& [key, fields] : want) {
      auto it = hub->find(key);
      if (it == hub->end()) return ::testing::AssertionFailure() << type << " '" << key << "' acked but lost";
      if (it->second != fields) {
        return ::testing::AssertionFailure() << type << " '" << key << "': hub holds " << it->second.dump()
                                             << ", last acked " << fields.dump();
      }
    }
    for (const auto& [key, fields] : *hub) {
      if (!want.contains(key)) {
        return ::testing::AssertionFailure() << type << " '" << key << "' is in the hub (" << fields.dump()
                                             << ") but was deleted or never acked";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

LoadProducer::LoadProducer(std::string nats_url, std::string producer, BatchSource source,
                           ProducerOptions options)
    : nats_url_(std::move(nats_url)),
      producer_(std::move(producer)),
      source_(std::move(source)),
      options_(std::move(options)) {}

LoadProducer::~LoadProducer() { (void)stop(); }

Status LoadProducer::start() {
  ConnectOptions opts;
  opts.config.url = nats_url_;
  opts.name = options_.name + " " + producer_;
  opts.reconnect_wait_ms = 50;
  opts.max_reconnect_wait_ms = 250;
  DS_ASSIGN_OR_RETURN(nc_, Connection::connect(std::move(opts)));
  stop_ = false;
  finished_ = false;
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

Status LoadProducer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  nc_.reset();
  return result_;
}

bool LoadProducer::wait_acked(uint64_t n, int64_t timeout_ms) const {
  wait_until([&] { return acked_.load() >= n || finished_.load(); }, timeout_ms);
  return acked_.load() >= n;
}

bool LoadProducer::wait_failed(uint64_t n) const {
  wait_until([&] { return failed_.load() >= n || finished_.load(); }, kConvergeTimeoutMs);
  return failed_.load() >= n;
}

nlohmann::json price_records(const std::string& store, int n, double price) {
  nlohmann::json out = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    out.push_back({{"op", "upsert"},
                   {"key", store + "/sku-" + std::to_string(i)},
                   {"fields", {{"store_id", store}, {"sku", "sku-" + std::to_string(i)}, {"price", price}}}});
  }
  return out;
}

nlohmann::json product_records(int n, int from) {
  nlohmann::json out = nlohmann::json::array();
  for (int i = from; i < from + n; ++i) {
    out.push_back({{"op", "upsert"},
                   {"key", "sku-" + std::to_string(i)},
                   {"fields", {{"name", "item " + std::to_string(i)}, {"category", "c"}, {"active", true}}}});
  }
  return out;
}

nlohmann::json rotating_batch(uint64_t n, std::string* type) {
  static const char* const kTypes[] = {"products", "prices", "inventory"};
  *type = kTypes[n % 3];
  nlohmann::json records = nlohmann::json::array();
  for (uint64_t i = 0; i < kRecordsPerBatch; ++i) {
    // 13 is prime to kKeysPerType: the keys of one batch are distinct, and
    // successive batches of a type overlap, so keys are updated many times.
    const uint64_t k = (n * 7 + i * 13) % kKeysPerType;
    const std::string sku = fmt::format("sku-{:03}", k);
    const std::string store = fmt::format("store-{}", 1 + k % 2);  // a key never changes partition
    nlohmann::json r{{"op", "upsert"}};
    if (*type == "products") {
      r["key"] = sku;
      if ((n + i) % 11 == 0) {
        r["op"] = "delete";
      } else {
        r["fields"] = {{"name", fmt::format("product {} of batch {}", k, n)},
                       {"category", (k % 3 == 0) ? "dairy" : "bakery"},
                       {"active", (n + i) % 2 == 0},
                       {"attributes", {{"batch", n}, {"tags", {"e2e", sku}}}}};
      }
    } else {
      r["key"] = store + "/" + sku;
      if ((n + i) % 9 == 0) {
        r["op"] = "delete";
        r["partition"] = store;
      } else if (*type == "prices") {
        r["fields"] = {{"store_id", store}, {"sku", sku}, {"price", static_cast<double>(n) + 0.25}};
      } else {
        r["fields"] = {{"store_id", store},
                       {"on_hand", static_cast<int64_t>(n * 100 + i)},
                       {"reserved", static_cast<int64_t>(i % 5)}};
      }
    }
    records.push_back(std::move(r));
  }
  return records;
}

void LoadProducer::run() {
  result_ = produce();
  finished_ = true;
}

Status LoadProducer::produce() {
  // After a stop, start() goes on with the next batch and seq.
  for (uint64_t n = acked_.load(); !stop_.load(); ++n) {
    const uint64_t seq = n + 1;
    std::string type;
    const nlohmann::json records = source_(n, &type);
    auto decoded = decode_ingest_records_json(records.dump());
    if (!decoded.is_ok()) return decoded.status().with_context("batch " + std::to_string(seq));
    Pusher pusher(*nc_, Subjects(), type,
                  PushOptions{.producer = producer_, .first_seq = seq, .timeout_ms = kAttemptTimeoutMs,
                              .attempts = 1});
    const auto first_attempt = std::chrono::steady_clock::now();
    for (;;) {
      auto reply = pusher.push(*decoded);
      if (reply.is_ok()) break;
      ++failed_;
      const StatusCode code = reply.status().code();
      if (code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound) {
        return reply.status().with_context("batch " + std::to_string(seq) + " rejected");
      }
      if (ms_since(first_attempt) >= options_.batch_deadline_ms) {
        return reply.status().with_context("batch " + std::to_string(seq) + " not acknowledged in " +
                                           std::to_string(options_.batch_deadline_ms) + " ms");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kRetryPauseMs));
    }
    const int64_t took = ms_since(first_attempt);
    if (took > slowest_ack_ms_.load()) {
      slowest_ack_ms_ = took;
      slowest_ack_seq_ = seq;
    }
    model_.apply(type, records);
    acked_records_ += records.size();
    ++acked_;
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.batch_pause_ms));
  }
  return Status::ok();
}

}  // namespace ds::testing
