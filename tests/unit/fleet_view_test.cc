// FleetView: the dashboard's page of the fleet, filtered, sorted and paged
// on the hub; its query parameters and their refusals.
#include "hub/fleet_view.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

// An agent as AgentService::agents_json() describes it, with one type.
nlohmann::json agent(const std::string& id, const std::string& state, int64_t last_beat = 1000,
                     nlohmann::json lag = 0, int64_t staleness = 0, bool breach = false, uint64_t quarantined = 0) {
  return {{"id", id},
          {"host", "host-of-" + id},
          {"state", state},
          {"last_beat", last_beat},
          {"health", "ok"},
          {"quarantined", quarantined},
          {"types",
           {{"prices",
             {{"lag_versions", lag},
              {"staleness_ms", staleness},
              {"freshness_breach", breach},
              {"held_back", false},
              {"awaiting_snapshot", false}}}}}};
}

std::vector<std::string> ids(const nlohmann::json& page) {
  std::vector<std::string> out;
  for (const auto& a : page["agents"]) out.push_back(a["id"]);
  return out;
}

FleetQuery query(const Params& params) {
  auto q = parse_fleet_query(params);
  EXPECT_TRUE(q.is_ok()) << q.status().to_string();
  return q.is_ok() ? *q : FleetQuery{};
}

TEST(FleetViewTest, TenThousandAgentsArriveOnePageAtATime) {
  nlohmann::json fleet = nlohmann::json::array();
  for (int i = 0; i < 10000; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "a%05d", i);
    fleet.push_back(agent(id, i % 100 == 7 ? "dead" : "live"));
  }
  const nlohmann::json page = fleet_page(fleet, query({}), {}, 5000);
  EXPECT_EQ(page["agents"].size(), kDefaultFleetPageSize);
  EXPECT_EQ(page["total"], 10000);
  EXPECT_EQ(page["matched"], 10000);
  EXPECT_EQ(page["counts"]["dead"], 100);
  EXPECT_EQ(page["counts"]["live"], 9900);
  EXPECT_EQ(page["problems"], 100);
  EXPECT_EQ(page["now"], 5000);
  EXPECT_EQ(ids(page).front(), "a00000");

  // Walking every page of the largest size sees each agent once.
  std::set<std::string> seen;
  for (uint64_t offset = 0; offset < 10000; offset += kMaxFleetPageSize) {
    const nlohmann::json p =
        fleet_page(fleet, query({{"limit", "500"}, {"offset", std::to_string(offset)}, {"sort", "state"}}), {}, 0);
    ASSERT_EQ(p["agents"].size(), kMaxFleetPageSize);
    for (const auto& id : ids(p)) EXPECT_TRUE(seen.insert(id).second) << id;
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_TRUE(fleet_page(fleet, query({{"offset", "10000"}}), {}, 0)["agents"].empty());
}

TEST(FleetViewTest, SortsWorstFirstAndBreaksTiesById) {
  const nlohmann::json fleet = nlohmann::json::array({
      agent("c", "live", 300, 5, 100),
      agent("a", "dead", 100, nullptr, 9000, true),
      agent("b", "suspect", 200, 40, 2000),
      agent("d", "retired", 50, 0, 0),
      agent("e", "live", 300, 5, 100, false, 3),
  });
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "state"}}), {}, 0)),
            (std::vector<std::string>{"a", "b", "c", "e", "d"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "state"}, {"order", "desc"}}), {}, 0)),
            (std::vector<std::string>{"d", "c", "e", "b", "a"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "staleness"}, {"order", "desc"}}), {}, 0)),
            (std::vector<std::string>{"a", "b", "c", "e", "d"}));
  // No lag known (null) sorts below any lag.
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "lag"}}), {}, 0)),
            (std::vector<std::string>{"a", "d", "c", "e", "b"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "last_beat"}, {"order", "desc"}}), {}, 0)),
            (std::vector<std::string>{"c", "e", "b", "a", "d"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "quarantined"}, {"order", "desc"}, {"limit", "1"}}), {}, 0)),
            (std::vector<std::string>{"e"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"sort", "host"}, {"order", "desc"}, {"limit", "2"}}), {}, 0)),
            (std::vector<std::string>{"e", "d"}));
}

TEST(FleetViewTest, FiltersByTextStateAndProblems) {
  const nlohmann::json fleet = nlohmann::json::array({
      agent("Store-1", "live"),
      agent("store-2", "dead"),
      agent("hq", "live", 1, 0, 5000, true),
      agent("old", "retired"),
      agent("store-3", "live", 1, 0, 0, false, 2),
  });
  EXPECT_EQ(ids(fleet_page(fleet, query({{"q", "STORE"}}), {}, 0)),
            (std::vector<std::string>{"Store-1", "store-2", "store-3"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"q", "host-of-h"}}), {}, 0)), (std::vector<std::string>{"hq"}));
  EXPECT_EQ(ids(fleet_page(fleet, query({{"state", "dead,retired"}}), {}, 0)),
            (std::vector<std::string>{"old", "store-2"}));
  // Dead, in breach, quarantining; retired is not a problem.
  const nlohmann::json problems = fleet_page(fleet, query({{"problems", "1"}}), {}, 0);
  EXPECT_EQ(ids(problems), (std::vector<std::string>{"hq", "store-2", "store-3"}));
  EXPECT_EQ(problems["matched"], 3);
  EXPECT_EQ(problems["total"], 5);
  EXPECT_EQ(problems["breaches"], 1);
  EXPECT_EQ(ids(fleet_page(fleet, query({{"problems", "1"}, {"state", "live"}, {"q", "store"}}), {}, 0)),
            (std::vector<std::string>{"store-3"}));
}

TEST(FleetViewTest, ListsTheTypesWithTheirObjectives) {
  TypeConfig prices;
  prices.name = "prices";
  prices.freshness_objective_s = 5;
  const nlohmann::json page = fleet_page(nlohmann::json::array(), query({}), {prices}, 0);
  EXPECT_EQ(page["types"], nlohmann::json::parse(R"([{"name":"prices","freshness_objective_ms":5000}])"));
  EXPECT_TRUE(page["agents"].empty());
  EXPECT_EQ(page["matched"], 0);
}

TEST(FleetViewTest, RefusesWhatItDoesNotAccept) {
  for (const auto& [params, message] : std::vector<std::pair<Params, std::string>>{
           {{{"limit", "0"}}, "limit: expected an integer from 1 to 500, got '0'"},
           {{{"limit", "501"}}, "limit: expected an integer from 1 to 500, got '501'"},
           {{{"limit", ""}}, "limit: expected an integer from 1 to 500, got ''"},
           {{{"limit", "5x"}}, "limit: expected an integer from 1 to 500, got '5x'"},
           {{{"offset", "-3"}}, "offset: expected a non-negative integer, got '-3'"},
           {{{"offset", "99999999999999999999999"}}, "offset: expected a non-negative integer"},
           {{{"sort", "name"}}, "sort: unknown key 'name'; expected id, host, state, last_beat, lag, staleness or quarantined"},
           {{{"order", "ASC"}}, "order: expected asc or desc, got 'ASC'"},
           {{{"state", "gone"}}, "state: 'gone' is not a state"},
           {{{"state", ""}}, "state: '' is not a state"},
           {{{"problems", "true"}}, "problems: expected 0 or 1, got 'true'"},
           {{{"Q", "x"}}, "unknown parameter 'Q'"},
           {{{"q", "a"}, {"q", "b"}}, "q: given more than once"},
       }) {
    auto q = parse_fleet_query(params);
    ASSERT_FALSE(q.is_ok()) << message;
    EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(q.status().message().find(message), std::string::npos) << q.status().message();
  }
  auto ok = parse_fleet_query({{"q", "Hq"}, {"state", "live,dead"}, {"problems", "0"}, {"sort", "staleness"},
                               {"order", "desc"}, {"offset", "20"}, {"limit", "500"}});
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->text, "hq");
  EXPECT_EQ(ok->states, (std::set<std::string>{"dead", "live"}));
  EXPECT_EQ(ok->sort, FleetSortKey::kStaleness);
  EXPECT_TRUE(ok->descending);
  EXPECT_EQ(ok->offset, 20u);
  EXPECT_EQ(ok->limit, 500u);
}

}  // namespace
}  // namespace ds
