#include "tests/chaos/chaos_workload.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include <fmt/format.h>

namespace ds::testing {
namespace {

constexpr uint64_t kKeysPerType = 150;
constexpr uint64_t kMaxRecordsPerBatch = 30;

}  // namespace

nlohmann::json ChaosBatches::operator()(uint64_t /*n*/, std::string* type) {
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

}  // namespace ds::testing
