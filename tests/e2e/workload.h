#pragma once
// What the end-to-end scenarios write and what they expect back.
//
// RecordModel: the state the hub must hold after a sequence of acknowledged
// ingest records, computed without the hub: per type, key -> fields. An
// upsert merges its fields into the live record (patch semantics), a delete
// removes it, and an upsert after a delete starts from nothing (the hub
// clears a deleted record's columns). Records are ingest records as JSON
// objects ({key, op, fields?, partition?}, docs/protocol.md), the same text
// `deltasync push` reads. Not thread-safe.
//
// LoadProducer: a producer that keeps ingesting on its own thread while the
// test thread kills and restarts processes (that concurrency is the reason
// for the thread). Batch n is sent with (producer, seq = n + 1); a batch
// without an acknowledgement is sent again unchanged until the hub acks it,
// and only then does the producer go on, so acked() is exactly what the hub
// has promised to keep (a batch whose reply was lost or timed out counts
// once, however often it was sent). What the batches hold comes from a
// BatchSource: by default rotating_batch(), the e2e workload (batches rotate
// over products, prices and inventory, with updates of the same keys,
// deletes and re-inserts); the chaos soak plugs in random ones
// (tests/chaos/chaos_workload.h). Every batch's ack latency (first attempt
// to ok reply) is measured.
//
// Thread-safety: the counters are atomic and may be read any time; acked()
// is written by the producer thread only and read after stop().

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shared/nats.h"
#include "shared/status.h"
#include "tests/e2e/fleet.h"

namespace ds::testing {

class RecordModel {
 public:
  void apply(const std::string& type, const nlohmann::json& records);
  // key -> fields of the live records of `type` (empty when none).
  const std::map<std::string, nlohmann::json>& records(const std::string& type) const;
  std::vector<std::string> types() const;
  // Live records of `type` in `partition` ("*": all), by the fleet's
  // partition column store_id.
  size_t count(const std::string& type, const std::string& partition) const;

 private:
  std::map<std::string, std::map<std::string, nlohmann::json>> types_;
};

// Checks with `deltasync list` that the hub holds exactly the model's
// records of every type in it: nothing acknowledged lost, every value the
// last one acknowledged, nothing deleted come back.
::testing::AssertionResult hub_holds_exactly(Fleet& fleet, const RecordModel& model);

// The records of batch `n` (0-based; sent with seq n + 1) and, in `*type`,
// their type, as ingest records in JSON. Called on the producer's thread,
// once per batch and in order of n: a source may draw from an RNG.
using BatchSource = std::function<nlohmann::json(uint64_t n, std::string* type)>;

// The e2e workload: batch `n` of a fixed sequence (see LoadProducer).
nlohmann::json rotating_batch(uint64_t n, std::string* type);

// Fixed content for tests that push a known amount, as ingest records in
// JSON: `n` upserts of prices in store `store` (keys <store>/sku-<i>, each
// at `price`), and upserts of products sku-<from> .. sku-<from + n - 1>.
nlohmann::json price_records(const std::string& store, int n, double price);
nlohmann::json product_records(int n, int from = 0);

struct ProducerOptions {
  // The NATS connection's name: "<name> <producer>".
  std::string name = "e2e";
  // A batch not acknowledged this long after its first attempt ends the run
  // with an error (stop() returns it).
  int64_t batch_deadline_ms = kConvergeTimeoutMs;
  // The pause after each acknowledged batch: steady load rather than a flood
  // of two shared cores; the tests need records in flight during faults,
  // not throughput.
  int64_t batch_pause_ms = 2;
};

class LoadProducer {
 public:
  // `nats_url`: where to ingest; `producer`: the producer identity (subject
  // token and retry key).
  LoadProducer(std::string nats_url, std::string producer, BatchSource source = rotating_batch,
               ProducerOptions options = {});
  ~LoadProducer();
  LoadProducer(const LoadProducer&) = delete;
  LoadProducer& operator=(const LoadProducer&) = delete;

  // Connects and starts the thread; after stop(), starts again with the
  // next batch (and seq), the model kept.
  Status start();
  // Asks the thread to stop once the batch in flight is acknowledged and
  // joins it. An error when a batch was rejected, or got no acknowledgement
  // for options.batch_deadline_ms.
  Status stop();

  uint64_t acked_batches() const { return acked_.load(); }
  uint64_t acked_records() const { return acked_records_.load(); }
  // Attempts that got no acknowledgement (timeouts, no responders, errors).
  uint64_t failed_attempts() const { return failed_.load(); }
  // The slowest acknowledgement so far (ms, first attempt to ok reply) and
  // the seq of its batch.
  int64_t slowest_ack_ms() const { return slowest_ack_ms_.load(); }
  uint64_t slowest_ack_seq() const { return slowest_ack_seq_.load(); }
  // Wait until at least `n` batches are acked / `n` attempts failed in all;
  // false when that did not happen (the thread gave up, or time ran out).
  bool wait_acked(uint64_t n, int64_t timeout_ms = kConvergeTimeoutMs) const;
  bool wait_failed(uint64_t n) const;
  // Everything acknowledged, in acknowledgement order; read it after stop().
  const RecordModel& acked() const { return model_; }

 private:
  void run();
  Status produce();

  std::string nats_url_;
  std::string producer_;
  BatchSource source_;
  ProducerOptions options_;
  std::unique_ptr<Connection> nc_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> acked_records_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<int64_t> slowest_ack_ms_{0};
  std::atomic<uint64_t> slowest_ack_seq_{0};
  std::atomic<bool> finished_{false};  // the thread has returned
  Status result_;        // written by the thread, read after join
  RecordModel model_;    // written by the thread, read after join
};

}  // namespace ds::testing
