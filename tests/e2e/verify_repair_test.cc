// Scenario: replicas changed behind deltasync's back (a business system
// writing into its replica, a bad disk) are caught by `deltasync verify`,
// which names the agent, the type and the key, and are put right by
// `deltasync verify --repair`, which has each such agent reload the type
// from a snapshot and verifies again.

#include <gtest/gtest.h>

#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "shared/sqlite.h"
#include "tests/e2e/fleet.h"

namespace ds::testing {
namespace {

// Runs one SQL statement on an agent's replica while the agent runs, as
// the business system next to it could.
void tamper(Fleet& fleet, const std::string& agent, const std::string& sql) {
  auto db = Database::open(fleet.replica_path(agent), OpenOptions{.create = false, .synchronous_full = false});
  ASSERT_TRUE(db.is_ok()) << db.status().to_string();
  ASSERT_TRUE((*db)->exec(sql).is_ok()) << sql;
  ASSERT_EQ((*db)->changes(), 1) << sql;
}

Result<std::string> replica_query(Fleet& fleet, const std::string& agent, const std::string& sql) {
  DS_ASSIGN_OR_RETURN(auto db, Database::open(fleet.replica_path(agent), OpenOptions{.read_only = true}));
  DS_ASSIGN_OR_RETURN(Statement st, db->prepare(sql));
  DS_ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return Status::not_found("no row: " + sql);
  return st.column_text(0);
}

// The first column of the first row, or the error's text.
std::string replica_text(Fleet& fleet, const std::string& agent, const std::string& sql) {
  auto r = replica_query(fleet, agent, sql);
  return r.is_ok() ? *r : r.status().to_string();
}

TEST(VerifyRepair, ChangedReplicaRowsAreNamedThenRepairedBySnapshots) {
  Fleet fleet;
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  nlohmann::json products = nlohmann::json::array();
  nlohmann::json prices = nlohmann::json::array();
  for (int i = 0; i < 120; ++i) {
    const std::string sku = fmt::format("sku-{:03}", i);
    products.push_back({{"key", sku},
                        {"op", "upsert"},
                        {"fields", {{"name", "article " + std::to_string(i)}, {"category", "dairy"}, {"active", true},
                                    {"attributes", {{"origin", "EU"}, {"i", i}}}}}});
    for (const std::string store : {"store-1", "store-2"}) {
      prices.push_back({{"key", store + "/" + sku},
                        {"op", "upsert"},
                        {"fields", {{"store_id", store}, {"sku", sku}, {"price", 0.5 + i}}}});
    }
  }
  ASSERT_TRUE(fleet.push("products", products).is_ok());
  ASSERT_TRUE(fleet.push("prices", prices).is_ok());
  ASSERT_TRUE(fleet.converged()) << fleet.logs();

  // One field of one row on store-1 (same key, same version: only the
  // content digest can see it), and one row gone on store-2.
  tamper(fleet, "store-1", "UPDATE products SET name = 'tampered' WHERE sku = 'sku-042'");
  tamper(fleet, "store-2", "DELETE FROM prices WHERE id = 'store-2/sku-007'");

  CommandResult found = fleet.cli({"verify"});
  std::cout << "deltasync verify:\n" << found.out;
  EXPECT_EQ(found.exit_code, 1) << found.out << found.err;
  EXPECT_NE(found.out.find("store-1 products: key 'sku-042': values differ"), std::string::npos) << found.out;
  EXPECT_NE(found.out.find("store-2 prices: key 'store-2/sku-007': missing on the agent"), std::string::npos)
      << found.out;
  size_t differing = 0;
  CommandResult json = fleet.cli({"verify", "--json"});
  EXPECT_EQ(json.exit_code, 1);
  auto parsed = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << json.out;
  for (const auto& row : parsed["rows"]) {
    if (row.value("match", true)) continue;
    ++differing;
    const std::pair<std::string, std::string> at{row["agent"], row["type"]};
    EXPECT_TRUE(at == std::make_pair(std::string("store-1"), std::string("products")) ||
                at == std::make_pair(std::string("store-2"), std::string("prices")))
        << row.dump();
    EXPECT_EQ(row.value("different_rows", 0), 1) << row.dump();
  }
  EXPECT_EQ(differing, 2u) << parsed.dump(1);

  CommandResult repaired = fleet.cli({"verify", "--repair"}, 180000);
  std::cout << "deltasync verify --repair:\n" << repaired.out;
  EXPECT_EQ(repaired.exit_code, 0) << repaired.out << repaired.err << fleet.logs();
  EXPECT_NE(repaired.out.find("repair store-1 products: snapshot reloaded"), std::string::npos) << repaired.out;
  EXPECT_NE(repaired.out.find("repair store-2 prices: snapshot reloaded"), std::string::npos) << repaired.out;
  EXPECT_NE(repaired.out.find("every agent converged"), std::string::npos) << repaired.out;

  EXPECT_EQ(replica_text(fleet, "store-1", "SELECT name FROM products WHERE sku = 'sku-042'"),
            "article 42");
  EXPECT_EQ(replica_text(fleet, "store-2", "SELECT sku FROM prices WHERE id = 'store-2/sku-007'"),
            "sku-007");
  // The repaired agents follow the stream again: a new change reaches them.
  ASSERT_TRUE(fleet.push("products", nlohmann::json::array({{{"key", "sku-042"},
                                                              {"op", "upsert"},
                                                              {"fields", {{"name", "after repair"}}}}}))
                  .is_ok());
  ASSERT_TRUE(fleet.converged()) << fleet.logs();
  EXPECT_EQ(replica_text(fleet, "store-1", "SELECT name FROM products WHERE sku = 'sku-042'"),
            "after repair");
}

}  // namespace
}  // namespace ds::testing
