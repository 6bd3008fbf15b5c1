#pragma once
// The producer's side of the chaos soak (tests/chaos/chaos_soak.cc).
//
// AckLedger: every record whose ingest batch the hub acknowledged (reply ok),
// in acknowledgement order, with the batch's producer seq. Only the ledger
// says what the hub promised to keep; a batch whose reply was lost, timed out
// or said unavailable is not in it until a retry of the same batch (same
// producer and seq) is acknowledged, so such a batch counts exactly once
// however often it was sent. expected() folds the ledger into the state the
// hub and every replica must hold (tests/e2e RecordModel: upserts patch,
// deletes remove, an upsert after a delete starts from nothing).
//
// ChaosProducer: a producer on its own thread (the soak's main thread kills
// and restarts processes meanwhile). The records are random but reproducible:
// batch n is drawn from an RNG seeded with the soak's seed, in order, whatever
// the timing; a batch is drawn once and sent unchanged until acknowledged.
// Batches pick a type, then distinct keys from a small key space (so a key is
// updated, patched, deleted and re-created many times and order matters), and
// full upserts, partial upserts (a patch of some columns) and deletes.
// Every batch's ack latency (first attempt to ok reply) is measured.
//
// Thread-safety: the counters are atomic and may be read any time; the
// ledger is written by the producer thread only and read after stop().

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/nats.h"
#include "shared/status.h"
#include "tests/e2e/workload.h"

namespace ds::testing {

struct LedgerEntry {
  uint64_t seq = 0;        // the batch's producer seq
  std::string type;
  nlohmann::json record;   // {key, op, fields?, partition?}
};

class AckLedger {
 public:
  void add_batch(uint64_t seq, const std::string& type, const nlohmann::json& records);
  const std::vector<LedgerEntry>& entries() const { return entries_; }
  // The state the acknowledged records leave, per type.
  RecordModel expected() const;

 private:
  std::vector<LedgerEntry> entries_;
};

class ChaosProducer {
 public:
  // `nats_url`: where to ingest; `producer`: the identity (subject token and
  // retry key); `seed`: the workload's seed.
  ChaosProducer(std::string nats_url, std::string producer, uint64_t seed);
  ~ChaosProducer();
  ChaosProducer(const ChaosProducer&) = delete;
  ChaosProducer& operator=(const ChaosProducer&) = delete;

  Status start();
  // Stops once the batch in flight is acknowledged; joins. An error when a
  // batch was rejected or got no acknowledgement for kBatchDeadlineMs.
  Status stop();

  // No batch may go unacknowledged longer than this: an outage the soak
  // provokes lasts a few seconds.
  static constexpr int64_t kBatchDeadlineMs = 90000;

  uint64_t acked_batches() const { return acked_batches_.load(); }
  uint64_t acked_records() const { return acked_records_.load(); }
  uint64_t failed_attempts() const { return failed_.load(); }
  // Waits up to `timeout_ms` until `n` batches are acked in all.
  bool wait_acked(uint64_t n, int64_t timeout_ms) const;
  // The slowest acknowledgement so far (ms) and the seq of its batch.
  int64_t slowest_ack_ms() const { return slowest_ack_ms_.load(); }
  uint64_t slowest_ack_seq() const { return slowest_ack_seq_.load(); }

  const AckLedger& ledger() const { return ledger_; }

 private:
  void run();
  Status produce();
  nlohmann::json draw_batch(std::string* type);

  std::string nats_url_;
  std::string producer_;
  std::mt19937_64 rng_;
  std::unique_ptr<Connection> nc_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> acked_batches_{0};
  std::atomic<uint64_t> acked_records_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<int64_t> slowest_ack_ms_{0};
  std::atomic<uint64_t> slowest_ack_seq_{0};
  Status result_;     // written by the thread, read after join
  AckLedger ledger_;  // written by the thread, read after join
};

}  // namespace ds::testing
