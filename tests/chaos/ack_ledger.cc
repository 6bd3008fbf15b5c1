#include "tests/chaos/ack_ledger.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include <fmt/format.h>

#include "shared/codec.h"
#include "shared/names.h"
#include "tests/harness/nats_server.h"
#include "tools/pusher.h"

namespace ds::testing {
namespace {

constexpr uint64_t kKeysPerType = 150;
constexpr uint64_t kMaxRecordsPerBatch = 30;
constexpr int64_t kAttemptTimeoutMs = 2000;
constexpr int64_t kRetryPauseMs = 100;
// Steady load rather than a flood of two shared cores: the soak needs
// records in flight at every fault, not throughput.
constexpr int64_t kBatchPauseMs = 5;

int64_t ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void AckLedger::add_batch(uint64_t seq, const std::string& type, const nlohmann::json& records) {
  for (const auto& r : records) entries_.push_back(LedgerEntry{seq, type, r});
}

RecordModel AckLedger::expected() const {
  RecordModel model;
  for (const LedgerEntry& e : entries_) model.apply(e.type, nlohmann::json::array({e.record}));
  return model;
}

ChaosProducer::ChaosProducer(std::string nats_url, std::string producer, uint64_t seed)
    : nats_url_(std::move(nats_url)), producer_(std::move(producer)), rng_(seed ^ 0x9e3779b97f4a7c15ULL) {}

ChaosProducer::~ChaosProducer() { (void)stop(); }

Status ChaosProducer::start() {
  ConnectOptions opts;
  opts.config.url = nats_url_;
  opts.name = "chaos " + producer_;
  opts.reconnect_wait_ms = 50;
  opts.max_reconnect_wait_ms = 250;
  DS_ASSIGN_OR_RETURN(nc_, Connection::connect(std::move(opts)));
  stop_ = false;
  finished_ = false;
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

Status ChaosProducer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  nc_.reset();
  return result_;
}

bool ChaosProducer::wait_acked(uint64_t n, int64_t timeout_ms) const {
  wait_until([&] { return acked_batches_.load() >= n || finished_.load(); }, timeout_ms, 20);
  return acked_batches_.load() >= n;
}

nlohmann::json ChaosProducer::draw_batch(std::string* type) {
  static const char* const kTypes[] = {"products", "prices", "inventory"};
  auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); };
  *type = kTypes[pick(3)];
  // Distinct keys within a batch: a partial sample of the key space.
  std::vector<uint64_t> keys(kKeysPerType);
  std::iota(keys.begin(), keys.end(), 0);
  std::shuffle(keys.begin(), keys.end(), rng_);
  keys.resize(1 + pick(kMaxRecordsPerBatch));

  nlohmann::json records = nlohmann::json::array();
  for (uint64_t k : keys) {
    const std::string sku = fmt::format("sku-{:03}", k);
    const std::string store = fmt::format("store-{}", 1 + k % 2);  // a key never changes partition
    const bool partitioned = *type != "products";
    nlohmann::json r{{"key", partitioned ? store + "/" + sku : sku}, {"op", "upsert"}};
    const uint64_t dice = pick(100);
    if (dice < 12) {
      r["op"] = "delete";
      if (partitioned) r["partition"] = store;
      records.push_back(std::move(r));
      continue;
    }
    const bool patch = dice < 45;  // else a full upsert
    auto maybe = [&] { return !patch || pick(2) == 0; };
    nlohmann::json f = nlohmann::json::object();
    if (*type == "products") {
      if (maybe()) f["name"] = fmt::format("product {} #{}", k, rng_());
      if (maybe()) f["category"] = pick(3) == 0 ? "dairy" : "bakery";
      if (maybe()) f["active"] = pick(2) == 0;
      if (maybe()) f["attributes"] = {{"n", static_cast<int64_t>(pick(1000000))}, {"tags", {"chaos", sku}}};
      if (f.empty()) f["active"] = pick(2) == 0;
    } else if (*type == "prices") {
      f["store_id"] = store;
      if (maybe()) f["sku"] = sku;
      // Cents: exact in JSON text both ways.
      if (maybe() || f.size() == 1) f["price"] = static_cast<double>(pick(100000)) / 100.0;
    } else {
      f["store_id"] = store;
      if (maybe()) f["on_hand"] = static_cast<int64_t>(pick(1ULL << 40)) - (1LL << 39);
      if (maybe() || f.size() == 1) f["reserved"] = static_cast<int64_t>(pick(100));
    }
    r["fields"] = std::move(f);
    records.push_back(std::move(r));
  }
  return records;
}

void ChaosProducer::run() {
  result_ = produce();
  finished_ = true;
}

Status ChaosProducer::produce() {
  for (uint64_t seq = acked_batches_.load() + 1; !stop_.load(); ++seq) {
    std::string type;
    const nlohmann::json records = draw_batch(&type);
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
      if (ms_since(first_attempt) >= kBatchDeadlineMs) {
        return reply.status().with_context("batch " + std::to_string(seq) + " not acknowledged in " +
                                           std::to_string(kBatchDeadlineMs) + " ms");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kRetryPauseMs));
    }
    const int64_t took = ms_since(first_attempt);
    if (took > slowest_ack_ms_.load()) {
      slowest_ack_ms_ = took;
      slowest_ack_seq_ = seq;
    }
    ledger_.add_batch(seq, type, records);
    acked_records_ += records.size();
    ++acked_batches_;
    std::this_thread::sleep_for(std::chrono::milliseconds(kBatchPauseMs));
  }
  return Status::ok();
}

}  // namespace ds::testing
