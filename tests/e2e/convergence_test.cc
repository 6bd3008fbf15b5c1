// Scenario 1: a mixed workload of upserts and deletes, pushed with the
// `deltasync push` CLI over several types, partitioned and not, converges:
// the hub holds exactly what was pushed and every agent's replica matches the
// hub for its partition (`deltasync verify`).
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/fleet.h"
#include "tests/e2e/workload.h"

namespace ds::testing {
namespace {

constexpr int kSkus = 300;

std::string sku(int i) { return fmt::format("sku-{:03}", i); }
std::string item(const std::string& store, int i) { return store + "/" + sku(i); }

nlohmann::json removal(const std::string& key, const std::string& partition = "") {
  nlohmann::json r{{"key", key}, {"op", "delete"}};
  if (!partition.empty()) r["partition"] = partition;
  return r;
}

nlohmann::json upsert(const std::string& key, nlohmann::json fields) {
  return {{"key", key}, {"op", "upsert"}, {"fields", std::move(fields)}};
}

nlohmann::json product(int i, int round) {
  return upsert(sku(i), {{"name", fmt::format("article {} v{}", i, round)},
                         {"category", i % 2 == 0 ? "dairy" : "produce"},
                         {"active", true},
                         {"attributes", {{"round", round}, {"origin", i % 3 == 0 ? "EU" : "local"}}}});
}

nlohmann::json price(const std::string& store, const std::string& key, int i, double value) {
  return upsert(key, {{"store_id", store}, {"sku", sku(i)}, {"price", value}});
}

nlohmann::json stock(const std::string& store, int i, int64_t on_hand) {
  return upsert(item(store, i), {{"store_id", store}, {"on_hand", on_hand}, {"reserved", int64_t{i % 7}}});
}

// Pushes `records` with the CLI and applies them to `model` once acked.
void push(Fleet& fleet, RecordModel& model, const std::string& type, const nlohmann::json& records) {
  Status s = fleet.push(type, records);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  model.apply(type, records);
}

TEST(Convergence, MixedUpsertsAndDeletesConvergeOnEveryAgent) {
  Fleet fleet;
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  RecordModel model;

  // Round 0: the initial load. store-3 has prices but no store agent: only hq takes them.
  nlohmann::json products = nlohmann::json::array(), prices = nlohmann::json::array(),
                 inventory = nlohmann::json::array();
  for (int i = 0; i < kSkus; ++i) {
    products.push_back(product(i, 0));
    for (const std::string store : {"store-1", "store-2", "store-3"}) {
      prices.push_back(price(store, item(store, i), i, 1.5 + i));
    }
    for (const std::string store : {"store-1", "store-2"}) inventory.push_back(stock(store, i, 100 + i));
  }
  push(fleet, model, "products", products);
  push(fleet, model, "prices", prices);
  push(fleet, model, "inventory", inventory);

  // Round 1, products: the same keys updated many times (spanning batches),
  // deletes of existing keys, re-inserts after a delete that set only some
  // columns (the rest must come back empty, not as before), patches of one
  // column, and upsert-delete-upsert of one key inside one batch.
  products = nlohmann::json::array();
  for (int n = 1; n <= 20; ++n) {
    for (int i = 0; i < 50; ++i) products.push_back(product(i, n));
  }
  for (int i = 100; i < 150; ++i) products.push_back(removal(sku(i)));
  for (int i = 100; i < 120; ++i) products.push_back(upsert(sku(i), {{"name", fmt::format("back {}", i)}}));
  for (int i = 200; i < 250; ++i) products.push_back(upsert(sku(i), {{"active", false}}));
  products.push_back(product(250, 1));
  products.push_back(removal(sku(250)));
  products.push_back(product(250, 2));
  push(fleet, model, "products", products);

  // Round 1, prices: deletes with and without the partition named, a key
  // updated 60 times, re-inserts after a delete, price-only patches that
  // name no partition (the stored row decides), and a key deleted in one
  // store and re-created in another.
  prices = nlohmann::json::array();
  for (int i = 0; i < 30; ++i) prices.push_back(removal(item("store-1", i)));
  for (int i = 30; i < 60; ++i) prices.push_back(removal(item("store-2", i), "store-2"));
  for (int n = 0; n < 60; ++n) prices.push_back(price("store-2", item("store-2", 70), 70, 0.5 + n));
  for (int i = 0; i < 10; ++i) prices.push_back(price("store-1", item("store-1", i), i, 9.75));
  for (int i = 100; i < 150; ++i) prices.push_back(upsert(item("store-1", i), {{"price", 0.25 + i}}));
  prices.push_back(price("store-1", "promo-1", 1, 4.5));
  push(fleet, model, "prices", prices);
  push(fleet, model, "prices", nlohmann::json::array({removal("promo-1")}));
  push(fleet, model, "prices", nlohmann::json::array({price("store-2", "promo-1", 1, 3.5)}));

  // Round 1, inventory: deletes, re-inserts and repeated updates per store.
  inventory = nlohmann::json::array();
  for (int i = 0; i < kSkus; i += 3) inventory.push_back(removal(item("store-2", i), "store-2"));
  for (int i = 0; i < kSkus; i += 6) inventory.push_back(stock("store-2", i, 1));
  for (int n = 0; n < 40; ++n) inventory.push_back(stock("store-1", 5, n));
  push(fleet, model, "inventory", inventory);

  nlohmann::json report;
  ASSERT_TRUE(fleet.converged(&report));
  EXPECT_TRUE(hub_holds_exactly(fleet, model));
  // The replicas hold what was pushed, not merely what the hub holds: each
  // agent's row count for its partition is the model's.
  for (const auto& row : report["rows"]) {
    EXPECT_EQ(row.value("agent_rows", uint64_t{0}), model.count(row["type"], row["partition"])) << row.dump();
  }
}

}  // namespace
}  // namespace ds::testing
