#pragma once
// The records of the chaos soak (tests/chaos/chaos_soak.cc), a BatchSource
// for the e2e LoadProducer (tests/e2e/workload.h), which sends each batch
// until the hub acknowledges it and folds what was acknowledged into the
// state the hub and every replica must hold.
//
// ChaosBatches: random but reproducible batches: batch n is drawn from an RNG
// seeded with the soak's seed, in order, whatever the timing (the producer
// draws each batch once and sends it unchanged until acknowledged). Batches
// pick a type, then distinct keys from a small key space (so a key is
// updated, patched, deleted and re-created many times and order matters),
// and full upserts, partial upserts (a patch of some columns) and deletes.
//
// Not thread-safe: the producer's thread draws.

#include <cstdint>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/e2e/workload.h"

namespace ds::testing {

class ChaosBatches {
 public:
  explicit ChaosBatches(uint64_t seed) : rng_(seed ^ 0x9e3779b97f4a7c15ULL) {}
  // A BatchSource: the next batch (`n` is not needed: batches are drawn in order).
  nlohmann::json operator()(uint64_t n, std::string* type);

 private:
  std::mt19937_64 rng_;
};

// How the soak's producer runs: no batch may go unacknowledged longer than
// kChaosBatchDeadlineMs (an outage the soak provokes lasts a few seconds).
inline constexpr int64_t kChaosBatchDeadlineMs = 90000;
inline ProducerOptions chaos_producer_options() {
  return ProducerOptions{.name = "chaos", .batch_deadline_ms = kChaosBatchDeadlineMs, .batch_pause_ms = 5};
}

}  // namespace ds::testing
