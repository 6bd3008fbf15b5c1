#pragma once
// Realistic sample data for a retail chain (the demo and the benchmarks):
// `products` (the catalogue, unpartitioned), `prices` and `inventory` (one
// row per store and article, partitioned by store_id). Deterministic for a
// given spec, so runs are reproducible. The matching hub type declarations are
// in deploy/demo/hub.toml.

#include <cstdint>
#include <string>
#include <vector>

#include "shared/messages.h"
#include "shared/status.h"

namespace ds {

struct SampleSpec {
  std::string type;          // products | prices | inventory
  uint64_t articles = 1000;  // distinct SKUs
  uint64_t stores = 3;       // store-1 .. store-N (prices, inventory)
  uint64_t round = 0;        // later rounds change values (and delete some rows)
  uint64_t delete_every = 0; // in rounds > 0, delete every Nth record (0 = none)
  uint64_t seed = 1;
};

// The types sample data exists for.
const std::vector<std::string>& sample_types();
Result<std::vector<IngestRecord>> sample_records(const SampleSpec& spec);

}  // namespace ds
