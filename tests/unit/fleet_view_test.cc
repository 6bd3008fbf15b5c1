// FleetView: the dashboard's page of the fleet, filtered, sorted and paged
// on the hub; its query parameters and their refusals.
#include "hub/fleet_view.h"

#include <gtest/gtest.h>

#include <tuple>

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

// One page as the HTTP thread serves it: of a snapshot built from `fleet`.
nlohmann::json page_of(const nlohmann::json& fleet, const FleetQuery& q, const std::vector<TypeConfig>& types,
                       int64_t now) {
  return nlohmann::json::parse(fleet_page(*FleetSnapshot::build(fleet, now), q, types));
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
  // One snapshot, many pages: as the HTTP thread serves them.
  const auto snapshot = FleetSnapshot::build(fleet, 5000);
  auto page_of_snapshot = [&](const FleetQuery& q) { return nlohmann::json::parse(fleet_page(*snapshot, q, {})); };
  const nlohmann::json page = page_of_snapshot(query({}));
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
        page_of_snapshot(query({{"limit", "500"}, {"offset", std::to_string(offset)}, {"sort", "state"}}));
    ASSERT_EQ(p["agents"].size(), kMaxFleetPageSize);
    for (const auto& id : ids(p)) EXPECT_TRUE(seen.insert(id).second) << id;
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_TRUE(page_of_snapshot(query({{"offset", "10000"}}))["agents"].empty());
}

TEST(FleetViewTest, SortsWorstFirstAndBreaksTiesById) {
  const nlohmann::json fleet = nlohmann::json::array({
      agent("c", "live", 300, 5, 100),
      agent("a", "dead", 100, nullptr, 9000, true),
      agent("b", "suspect", 200, 40, 2000),
      agent("d", "retired", 50, 0, 0),
      agent("e", "live", 300, 5, 100, false, 3),
  });
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "state"}}), {}, 0)),
            (std::vector<std::string>{"a", "b", "c", "e", "d"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "state"}, {"order", "desc"}}), {}, 0)),
            (std::vector<std::string>{"d", "c", "e", "b", "a"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "staleness"}, {"order", "desc"}}), {}, 0)),
            (std::vector<std::string>{"a", "b", "c", "e", "d"}));
  // No lag known (null) sorts below any lag.
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "lag"}}), {}, 0)),
            (std::vector<std::string>{"a", "d", "c", "e", "b"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "last_beat"}, {"order", "desc"}}), {}, 0)),
            (std::vector<std::string>{"c", "e", "b", "a", "d"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "quarantined"}, {"order", "desc"}, {"limit", "1"}}), {}, 0)),
            (std::vector<std::string>{"e"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"sort", "host"}, {"order", "desc"}, {"limit", "2"}}), {}, 0)),
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
  EXPECT_EQ(ids(page_of(fleet, query({{"q", "STORE"}}), {}, 0)),
            (std::vector<std::string>{"Store-1", "store-2", "store-3"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"q", "host-of-h"}}), {}, 0)), (std::vector<std::string>{"hq"}));
  EXPECT_EQ(ids(page_of(fleet, query({{"state", "dead,retired"}}), {}, 0)),
            (std::vector<std::string>{"old", "store-2"}));
  // Dead, in breach, quarantining; retired is not a problem.
  const nlohmann::json problems = page_of(fleet, query({{"problems", "1"}}), {}, 0);
  EXPECT_EQ(ids(problems), (std::vector<std::string>{"hq", "store-2", "store-3"}));
  EXPECT_EQ(problems["matched"], 3);
  EXPECT_EQ(problems["total"], 5);
  EXPECT_EQ(problems["breaches"], 1);
  EXPECT_EQ(ids(page_of(fleet, query({{"problems", "1"}, {"state", "live"}, {"q", "store"}}), {}, 0)),
            (std::vector<std::string>{"store-3"}));
}

TEST(FleetViewTest, ListsTheTypesWithTheirObjectives) {
  TypeConfig prices;
  prices.name = "prices";
  prices.freshness_objective_s = 5;
  const nlohmann::json page = page_of(nlohmann::json::array(), query({}), {prices}, 0);
  EXPECT_EQ(page["types"], nlohmann::json::parse(R"([{"name":"prices","freshness_objective_ms":5000}])"));
  EXPECT_TRUE(page["agents"].empty());
  EXPECT_EQ(page["matched"], 0);
}

// What the HTTP thread needs per page is computed once per snapshot.
TEST(FleetViewTest, SnapshotComputesEachAgentsKeysAndTheCountsOnce) {
  nlohmann::json fleet = nlohmann::json::array({
      agent("Store-1", "live", 300, 5, 100),
      agent("hq", "dead", 100, nullptr, 9000, true),
      agent("old", "retired", 50, 0, 0),
      agent("s2", "suspect", 200, 40, 2000, false, 7),
  });
  fleet[0]["host"] = "HOST-A";
  const auto snapshot = FleetSnapshot::build(fleet, 4242);
  ASSERT_EQ(snapshot->rows.size(), 4u);
  const FleetSnapshot::Row& store = snapshot->rows[0];
  EXPECT_EQ(store.id, "Store-1");
  EXPECT_EQ(store.id_lower, "store-1");
  EXPECT_EQ(store.host_lower, "host-a");
  EXPECT_EQ(store.state_rank, 2);
  EXPECT_EQ(store.last_beat, 300);
  EXPECT_EQ(store.max_lag, 5);
  EXPECT_EQ(store.max_staleness, 100);
  EXPECT_FALSE(store.attention);
  EXPECT_EQ(snapshot->rows[1].max_lag, -1) << "no lag known";
  EXPECT_TRUE(snapshot->rows[1].attention);
  EXPECT_FALSE(snapshot->rows[2].attention) << "retired is not a problem";
  EXPECT_EQ(snapshot->rows[3].quarantined, 7);
  EXPECT_EQ(snapshot->agents, fleet);
  EXPECT_EQ(snapshot->now_ms, 4242);
  EXPECT_EQ(std::make_tuple(snapshot->live, snapshot->suspect, snapshot->dead, snapshot->retired),
            std::make_tuple(1u, 1u, 1u, 1u));
  EXPECT_EQ(snapshot->problems, 2u);
  EXPECT_EQ(snapshot->breaches, 1u);
}

// A page says when its snapshot was taken and what building it cost; the
// whole fleet's text is the snapshot's array.
TEST(FleetViewTest, PageCarriesItsSnapshotsTimeAndBuildCost) {
  const nlohmann::json fleet = nlohmann::json::array({agent("a", "live"), agent("b", "dead")});
  std::shared_ptr<FleetSnapshot> snapshot = FleetSnapshot::build(fleet, 777);
  snapshot->build_ms = 123;
  const nlohmann::json page = nlohmann::json::parse(fleet_page(*snapshot, query({{"limit", "1"}}), {}));
  EXPECT_EQ(page["now"], 777);
  EXPECT_EQ(page["built_ms"], 123);
  EXPECT_EQ(page["agents"], nlohmann::json::array({fleet[0]}));
  EXPECT_EQ(nlohmann::json::parse(fleet_agents_text(*snapshot)), fleet);
  const auto empty = FleetSnapshot::build(nlohmann::json::array(), 0);
  EXPECT_EQ(fleet_agents_text(*empty), "[]");
  EXPECT_TRUE(nlohmann::json::parse(fleet_page(*empty, query({}), {}))["agents"].empty());
}

// Ids and hosts come from agents: bytes that are not UTF-8 are replaced in
// the page, never thrown on (which would fail every page of the fleet).
TEST(FleetViewTest, InvalidUtf8FromAnAgentIsReplacedNotThrown) {
  nlohmann::json fleet = nlohmann::json::array({agent("a", "live")});
  fleet[0]["host"] = std::string("bad\xff");
  const auto snapshot = FleetSnapshot::build(fleet, 0);
  std::string text;
  ASSERT_NO_THROW(text = fleet_page(*snapshot, query({}), {}));
  EXPECT_NE(text.find("bad\xef\xbf\xbd"), std::string::npos) << text;
  ASSERT_NO_THROW(text = fleet_agents_text(*snapshot));
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
