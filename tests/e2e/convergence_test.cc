// Scenario 1: a mixed workload of upserts and deletes, pushed with the
// `deltasync push` CLI over several types, partitioned and not, converges:
// the hub holds exactly what was pushed and every agent's replica matches the
// hub for its partition (`deltasync verify`). The hub's live feed (docs/
// protocol.md, "Live feed") carries the same publication to a plain
// subscriber, without a gap.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <mutex>

#include "agent/feed_order.h"
#include "shared/codec.h"
#include "shared/names.h"
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

// A plain subscription to one live-feed subject, judged as an agent would
// (agent/feed_order.h) from the stream's start.
class FeedWatch {
 public:
  FeedWatch(Connection& nc, const std::string& type, const std::string& partition) : type_(type) {
    const Subjects subjects;
    order_.start(type, 0, partition == kAnyPartition);
    auto sub = nc.subscribe(partition == kAnyPartition ? subjects.feed_filter(type) : subjects.feed(type, partition),
                            [this](Message m) { take(m); });
    EXPECT_TRUE(sub.is_ok()) << sub.status().to_string();
    if (sub.is_ok()) sub_ = std::move(sub).value();
  }
  // Every message so far came in order and decoded.
  std::string problems() const {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }
  std::vector<Change> changes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return changes_;
  }
  uint64_t last_seq() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_seq_;
  }

 private:
  void take(const Message& m) {
    const auto stamp = feed_stamp(m.header(kStreamSequenceHeader), m.header(kLastSubjectSequenceHeader));
    auto batch = decode_delta_batch(m.data());
    std::lock_guard<std::mutex> lock(mu_);
    if (order_.observe(type_, stamp) != FeedOrder::Verdict::kInOrder) {
      problems_ += std::string(m.subject()) + ": out of order\n";
    }
    if (!batch.is_ok()) problems_ += std::string(m.subject()) + ": " + batch.status().to_string() + "\n";
    if (stamp) last_seq_ = stamp->seq;
    if (batch.is_ok()) changes_.insert(changes_.end(), batch->changes.begin(), batch->changes.end());
  }

  const std::string type_;
  mutable std::mutex mu_;
  FeedOrder order_;             // guarded by mu_
  std::string problems_;        // guarded by mu_
  std::vector<Change> changes_;  // guarded by mu_
  uint64_t last_seq_ = 0;       // guarded by mu_
  std::unique_ptr<Subscription> sub_;  // last: unsubscribed (and its handler done) first
};

TEST(Convergence, MixedUpsertsAndDeletesConvergeOnEveryAgent) {
  Fleet fleet;
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  RecordModel model;
  ConnectOptions feed_options = test_connect_options(fleet.nats());
  auto feed_nc = Connection::connect(feed_options);
  ASSERT_TRUE(feed_nc.is_ok()) << feed_nc.status().to_string();
  FeedWatch store1_prices(**feed_nc, "prices", "store-1");
  FeedWatch every_product(**feed_nc, "products", std::string(kAnyPartition));
  ASSERT_TRUE((*feed_nc)->flush().is_ok());

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

  // The live feed: in order from the first message, one partition's
  // changes only, and up to where the agents are.
  auto versions = fleet.replica_versions("store-1");
  ASSERT_TRUE(versions.is_ok()) << versions.status().to_string();
  ASSERT_TRUE(wait_until([&] {
    const std::vector<Change> got = store1_prices.changes();
    return !got.empty() && got.back().v == (*versions)["prices"];
  })) << "the feed of prices/store-1 stops before store-1's replica";
  EXPECT_EQ(store1_prices.problems(), "");
  for (const Change& c : store1_prices.changes()) {
    EXPECT_TRUE(c.key.rfind("store-1/", 0) == 0 || c.key == "promo-1") << c.key << " is not store-1's";
  }
  auto js = (*feed_nc)->jetstream();
  ASSERT_TRUE(js.is_ok());
  auto products_stream = (*js)->stream_state(stream_name("products"));
  ASSERT_TRUE(products_stream.is_ok());
  EXPECT_EQ(products_stream->republish_destination, "ds.feed.products.>");
  ASSERT_TRUE(wait_until([&] { return every_product.last_seq() == products_stream->last_seq; }))
      << "the feed of every product ends at " << every_product.last_seq() << ", the stream at "
      << products_stream->last_seq;
  EXPECT_EQ(every_product.problems(), "");
}

}  // namespace
}  // namespace ds::testing
