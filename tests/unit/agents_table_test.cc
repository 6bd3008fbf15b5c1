// The table of `deltasync agents` (tools/agents_table.h): one row per agent
// and type, saying why a type gets no deltas and what it has quarantined.
#include "tools/agents_table.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace ds {
namespace {

// Row `row` of `t` as column name -> cell.
std::map<std::string, std::string> row_of(const Table& t, size_t row) {
  std::map<std::string, std::string> out;
  const auto& header = t.rows().at(0);
  const auto& cells = t.rows().at(row);
  for (size_t i = 0; i < header.size(); ++i) out[header[i]] = cells.at(i);
  return out;
}

TEST(AgentsTable, SaysPerTypeWhyDeltasFlowOrNotAndWhatIsQuarantined) {
  const nlohmann::json agents = nlohmann::json::parse(R"([
    {"id": "store-1", "state": "live", "host": "s1", "last_beat": 9000, "types": {
      "prices": {"partition": "store-1", "version": 7, "lag_versions": 0, "lag_ms": 0, "consumer": true,
                 "held_back": false, "awaiting_snapshot": false, "quarantined": 2, "note": "",
                 "staleness_ms": 0, "freshness_objective_ms": 5000, "freshness_breach": false},
      "products": {"partition": "*", "version": 3, "lag_versions": 4, "lag_ms": 1200, "consumer": false,
                   "held_back": true, "awaiting_snapshot": false, "quarantined": null,
                   "note": "schema differs: the agent has not taken column 'colour'"},
      "stock": {"partition": "store-1", "version": 0, "consumer": false, "held_back": false,
                "awaiting_snapshot": true, "quarantined": 0, "note": ""}}},
    {"id": "store-2", "state": "dead", "host": "s2", "last_beat": 0, "types": {}}
  ])");
  const Table t = agents_table(agents, 10000);
  ASSERT_EQ(t.size(), 4u);

  auto prices = row_of(t, 1);
  EXPECT_EQ(prices["AGENT"], "store-1");
  EXPECT_EQ(prices["TYPE"], "prices");
  EXPECT_EQ(prices["LAST BEAT (ms ago)"], "1000");
  EXPECT_EQ(prices["DELIVERY"], "streaming");
  EXPECT_EQ(prices["QUARANTINED"], "2");
  EXPECT_EQ(prices["FRESHNESS (staleness / objective)"], "ok 0.0s / 5s");

  auto products = row_of(t, 2);
  EXPECT_EQ(products["DELIVERY"], "held back (schema differs: the agent has not taken column 'colour')");
  EXPECT_EQ(products["QUARANTINED"], "-") << "an agent that reports a total only";
  EXPECT_EQ(products["LAG (versions)"], "4");
  EXPECT_EQ(products["FRESHNESS (staleness / objective)"], "-");

  auto stock = row_of(t, 3);
  EXPECT_EQ(stock["DELIVERY"], "awaiting snapshot");
  EXPECT_EQ(stock["QUARANTINED"], "0");

  auto dead = row_of(t, 4);
  EXPECT_EQ(dead["AGENT"], "store-2");
  EXPECT_EQ(dead["STATE"], "dead");
  EXPECT_EQ(dead["LAST BEAT (ms ago)"], "-");
  EXPECT_EQ(dead["TYPE"], "-");
  EXPECT_EQ(dead["DELIVERY"], "-");
}

TEST(AgentsTable, TakesThePagedFormToo) {
  const nlohmann::json page = {{"total", 1}, {"agents", {{{"id", "a"}, {"state", "live"}}}}};
  const Table t = agents_table(page, 0);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(row_of(t, 1)["AGENT"], "a");
}

}  // namespace
}  // namespace ds
