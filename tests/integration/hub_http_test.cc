// The hub's HTTP API against a hub running in-process: bearer token, ingest
// through the same writer as NATS, queries, types, agents and metrics.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "hub/dashboard_assets.h"
#include "hub/hub.h"
#include "tests/harness/test_agent.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class HubHttpTest : public InProcessHubTest {
 protected:
  void SetUp() override {
    InProcessHubTest::SetUp();
    if (HasFatalFailure()) return;
    serve_http();
    start_hub();
  }
};

TEST_F(HubHttpTest, HealthzNeedsNoToken) {
  auto r = api("GET", "/healthz", {}, std::nullopt);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["ok"], true);
}

TEST_F(HubHttpTest, EveryOtherEndpointWantsTheBearerToken) {
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/types"},
           {"GET", "/v1/types/price/records"},
           {"GET", "/v1/types/price/records/sku-1"},
           {"GET", "/v1/agents"},
           {"GET", "/metrics"},
           {"POST", "/v1/types/price/records"},
           {"POST", "/v1/agents/a1/retire"}}) {
    auto none = api(method, path, "[]", std::nullopt);
    EXPECT_EQ(none.status, 401) << method << " " << path;
    EXPECT_EQ(none.json()["error"]["code"], "permission_denied") << none.body;
    auto wrong = api(method, path, "[]", std::string_view("test-token-0123456789abcdeX"));
    EXPECT_EQ(wrong.status, 401) << method << " " << path;
  }
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 0u);
}

TEST_F(HubHttpTest, PostedRecordsAreStoredPublishedAndQueryable) {
  const std::string body = R"([{"key":"sku-1","op":"upsert","fields":{"amount":1.5,"currency":"EUR"}},
                               {"key":"sku-2","op":"upsert","fields":{"amount":2}}])";
  auto r = api("POST", "/v1/types/price/records?producer=web&seq=5", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["first_version"], 1);
  EXPECT_EQ(r.json()["last_version"], 2);
  auto again = api("POST", "/v1/types/price/records?producer=web&seq=5", body);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json()["last_version"], 2);

  auto js = jetstream(*nc_);
  EXPECT_EQ(stream_messages(*js, "DS_PRICE").size(), 1u);

  auto rec = api("GET", "/v1/types/price/records/sku-1");
  ASSERT_EQ(rec.status, 200) << rec.body;
  EXPECT_EQ(rec.json()["fields"]["amount"], 1.5);
  EXPECT_EQ(rec.json()["version"], 1);
  EXPECT_EQ(api("GET", "/v1/types/price/records/nope").status, 404);
  EXPECT_EQ(api("GET", "/v1/types/nosuch/records/sku-1").status, 404);

  auto types = api("GET", "/v1/types");
  ASSERT_EQ(types.status, 200) << types.body;
  auto j = types.json();
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["name"], "price");
  EXPECT_EQ(j[0]["version"], 2);
  EXPECT_EQ(j[0]["published_version"], 2);
  EXPECT_EQ(j[0]["stream"]["messages"], 1);
}

TEST_F(HubHttpTest, BadRecordIsRejectedWith400AndItsIndex) {
  auto r = api("POST", "/v1/types/price/records",
                R"([{"key":"a","op":"upsert","fields":{"amount":1}},{"key":"b","op":"upsert","fields":{"amount":"x"}}])");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.json()["ok"], false);
  EXPECT_EQ(r.json()["error"]["code"], "invalid_argument");
  EXPECT_EQ(r.json()["error"]["index"], 1);
  EXPECT_EQ(api("POST", "/v1/types/nosuch/records", R"([{"key":"a","op":"delete"}])").status, 404);
  EXPECT_EQ(api("POST", "/v1/types/price/records", "not json").status, 400);
  EXPECT_EQ(open_reader(config_)->type_state("price")->version, 0u);
}

TEST_F(HubHttpTest, ListPagesThroughOnePartition) {
  IngestRequest req;
  req.records = {stock_record("a", "s1", 1), stock_record("b", "s2", 1), stock_record("c", "s1", 1),
                 stock_record("d", "s1", 1)};
  ASSERT_TRUE(ingest(*nc_, "stock", req)->ok());
  std::vector<std::string> keys;
  std::string path = "/v1/types/stock/records?partition=s1&limit=2";
  for (int i = 0; i < 5; ++i) {
    auto r = api("GET", path);
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = r.json();
    for (const auto& rec : j["records"]) keys.push_back(rec["key"]);
    if (j["next_after"].is_null()) break;
    path = "/v1/types/stock/records?partition=s1&limit=2&after=" + j["next_after"].get<std::string>();
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "c", "d"}));
}

TEST_F(HubHttpTest, MetricsAndAgentsAnswerWithTheToken) {
  ASSERT_EQ(api("POST", "/v1/types/price/records", R"([{"key":"a","op":"upsert","fields":{"amount":1}}])").status, 200);
  auto metrics = api("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("deltasync_hub_ingest_records_total 1"), std::string::npos) << metrics.body;
  auto agents = api("GET", "/v1/agents");
  ASSERT_EQ(agents.status, 200) << agents.body;
  EXPECT_TRUE(agents.json().is_array()) << agents.body;
  EXPECT_EQ(api("POST", "/v1/agents/nobody/retire").status, 404);
}

// The dashboard's page needs no token (it asks for it); its data does.
TEST_F(HubHttpTest, DashboardIsServedWithoutTokenItsDataOnlyWithIt) {
  auto page = api("GET", "/", {}, std::nullopt);
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<title>deltasync fleet</title>"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("src=\"dashboard.js\""), std::string::npos);
  auto script = api("GET", "/dashboard.js", {}, std::nullopt);
  ASSERT_EQ(script.status, 200);
  EXPECT_NE(script.body.find("sessionStorage"), std::string::npos);
  EXPECT_EQ(script.body.find("innerHTML"), std::string::npos) << "values go into the DOM as text only";
  EXPECT_EQ(api("GET", "/dashboard.css", {}, std::nullopt).status, 200);
  EXPECT_EQ(api("GET", "/dashboard.map", {}, std::nullopt).status, 404);  // not a dashboard file
  for (const std::string path : {"/v1/fleet/agents", "/v1/fleet/rates"}) {
    EXPECT_EQ(api("GET", path, {}, std::nullopt).status, 401) << path;
    EXPECT_EQ(api("GET", path).status, 200) << path;
  }
}

// Every dashboard file the hub has built in is served with headers that
// keep the page to its own origin, and none of them names another origin:
// the page works offline and a value that slipped through unescaped could
// neither run inline nor load or send anything elsewhere.
TEST_F(HubHttpTest, DashboardFilesCarrySecurityHeadersAndNameNoOtherOrigin) {
  const std::map<std::string, std::string> kTypes = {{"html", "text/html; charset=utf-8"},
                                                     {"js", "text/javascript; charset=utf-8"},
                                                     {"css", "text/css; charset=utf-8"}};
  // URIs that name something without being fetched: the SVG namespace given
  // to createElementNS.
  const std::set<std::string> kNamesNotFetched = {"http://www.w3.org/2000/svg"};
  const std::vector<std::string_view> files = dashboard_file_names();
  ASSERT_GE(files.size(), 3u);
  ASSERT_EQ(files.front(), "index.html");
  for (const std::string_view file : files) {
    const std::string name(file);
    const std::string path = name == "index.html" ? "/" : "/" + name;
    SCOPED_TRACE(path);
    const HttpResponse r = http(port_, "GET", path);
    ASSERT_EQ(r.status, 200) << "a built-in dashboard file the hub does not serve";
    ASSERT_EQ(r.body, *dashboard_file(name));
    EXPECT_EQ(r.header("content-type"), kTypes.at(name.substr(name.rfind('.') + 1)));
    EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
    EXPECT_EQ(r.header("referrer-policy"), "no-referrer");
    EXPECT_EQ(r.header("cache-control"), "no-cache");

    // Content-Security-Policy: every directive, and no source but the page's
    // own origin ('self'), nothing ('none') or inline images (data:).
    std::map<std::string, std::set<std::string>> policy;
    const std::string csp = r.header("content-security-policy");
    size_t begin = 0;
    while (begin < csp.size()) {
      const size_t end = std::min(csp.find(';', begin), csp.size());
      std::istringstream directive(csp.substr(begin, end - begin));
      std::string directive_name, source;
      if (directive >> directive_name) {
        while (directive >> source) policy[directive_name].insert(source);
      }
      begin = end + 1;
    }
    using Sources = std::set<std::string>;
    EXPECT_EQ(policy["default-src"], Sources{"'none'"}) << csp;
    EXPECT_EQ(policy["script-src"], Sources{"'self'"}) << csp;
    EXPECT_EQ(policy["style-src"], Sources{"'self'"}) << csp;
    EXPECT_EQ(policy["connect-src"], Sources{"'self'"}) << csp;
    EXPECT_EQ(policy["img-src"], (Sources{"'self'", "data:"})) << csp;
    EXPECT_EQ(policy["base-uri"], Sources{"'none'"}) << csp;
    EXPECT_EQ(policy["form-action"], Sources{"'none'"}) << csp;
    EXPECT_EQ(policy["frame-ancestors"], Sources{"'none'"}) << csp;
    for (const auto& [directive_name, sources] : policy) {
      for (const std::string& source : sources) {
        EXPECT_TRUE(source == "'self'" || source == "'none'" || source == "data:")
            << directive_name << " allows " << source << ": " << csp;
      }
    }

    // No http:// or https:// URL (an absolute link, a CDN) and no
    // scheme-relative one ("//host/...") in the file itself.
    for (const std::string scheme : {"http://", "https://"}) {
      for (size_t at = r.body.find(scheme); at != std::string::npos; at = r.body.find(scheme, at + 1)) {
        const size_t end = r.body.find_first_of("'\" \t\r\n)>", at);
        const std::string url = r.body.substr(at, end - at);
        EXPECT_TRUE(kNamesNotFetched.count(url)) << name << " names another origin: " << url;
      }
    }
    for (const std::string attribute : {"src=\"//", "href=\"//", "url(//", "url('//", "url(\"//"}) {
      EXPECT_EQ(r.body.find(attribute), std::string::npos) << name << " has a scheme-relative URL: " << attribute;
    }
  }
  // The page loads exactly the built-in files (and data: URIs), nothing else.
  const std::string page(*dashboard_file("index.html"));
  std::set<std::string> loaded;
  for (const std::string attribute : {"src=\"", "href=\""}) {
    for (size_t at = page.find(attribute); at != std::string::npos; at = page.find(attribute, at + 1)) {
      const size_t begin = at + attribute.size();
      loaded.insert(page.substr(begin, page.find('"', begin) - begin));
    }
  }
  for (const std::string& target : loaded) {
    EXPECT_TRUE(target.rfind("data:", 0) == 0 || dashboard_file(target).has_value())
        << "index.html loads " << target << ", which is not built in";
  }
  EXPECT_TRUE(loaded.count("dashboard.js") && loaded.count("dashboard.css"));
}

TEST_F(HubHttpTest, FleetAgentsArePagedSortedAndFilteredOnTheHub) {
  std::vector<std::unique_ptr<TestAgent>> agents;
  for (int i = 0; i < 5; ++i) {
    SubscriptionReport sub;
    sub.type = "price";
    auto agent = TestAgent::start(test_connect_options(*server_), "agent-" + std::to_string(i), {sub});
    ASSERT_TRUE(agent.is_ok()) << agent.status().to_string();
    auto reg = (*agent)->register_now();
    ASSERT_TRUE(reg.is_ok() && reg->ok());
    agents.push_back(std::move(agent).value());
  }
  auto ids = [](const nlohmann::json& page) {
    std::vector<std::string> out;
    for (const auto& a : page["agents"]) out.push_back(a["id"]);
    return out;
  };
  // The page shows the agent service's latest snapshot, published after
  // each change (within its budget): the last registration appears shortly.
  auto first = api("GET", "/v1/fleet/agents?sort=id&order=desc&limit=2");
  for (int i = 0; i < 100 && first.status == 200 && first.json()["total"] != 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    first = api("GET", "/v1/fleet/agents?sort=id&order=desc&limit=2");
  }
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(ids(first.json()), (std::vector<std::string>{"agent-4", "agent-3"}));
  EXPECT_EQ(first.json()["total"], 5);
  EXPECT_EQ(first.json()["matched"], 5);
  EXPECT_EQ(first.json()["counts"]["live"], 5);
  EXPECT_EQ(ids(api("GET", "/v1/fleet/agents?sort=id&order=desc&limit=2&offset=4").json()),
            (std::vector<std::string>{"agent-0"}));
  EXPECT_EQ(ids(api("GET", "/v1/fleet/agents?offset=9").json()), std::vector<std::string>{});
  auto found = api("GET", "/v1/fleet/agents?q=AGENT-3");
  EXPECT_EQ(ids(found.json()), (std::vector<std::string>{"agent-3"})) << found.body;
  EXPECT_EQ(found.json()["matched"], 1);
  EXPECT_EQ(api("GET", "/v1/fleet/agents?state=dead,suspect").json()["matched"], 0);
  EXPECT_EQ(api("GET", "/v1/fleet/agents?problems=1").json()["matched"], 0);
  EXPECT_EQ(api("GET", "/v1/fleet/agents?limit=500").status, 200);
}

TEST_F(HubHttpTest, FleetAgentsRefusesBadParametersWith400NamingThem) {
  for (const auto& [query, named] : std::vector<std::pair<std::string, std::string>>{
           {"limit=0", "limit: expected an integer from 1 to 500"},
           {"limit=501", "limit: expected an integer from 1 to 500, got '501'"},
           {"limit=ten", "limit:"},
           {"offset=-1", "offset: expected a non-negative integer"},
           {"sort=colour", "sort: unknown key 'colour'"},
           {"order=up", "order: expected asc or desc"},
           {"state=zombie", "state: 'zombie' is not a state"},
           {"state=live,", "state: '' is not a state"},
           {"problems=yes", "problems: expected 0 or 1"},
           {"page=2", "unknown parameter 'page'"},
           {"limit=5&limit=6", "limit: given more than once"}}) {
    auto r = api("GET", "/v1/fleet/agents?" + query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "invalid_argument") << r.body;
    EXPECT_NE(r.json()["error"]["message"].get<std::string>().find(named), std::string::npos) << query << ": " << r.body;
  }
}

TEST_F(HubHttpTest, FleetRatesShowWhatWasIngested) {
  ASSERT_EQ(api("POST", "/v1/types/price/records", R"([{"key":"a","op":"upsert","fields":{"amount":1}},
                                                       {"key":"b","op":"upsert","fields":{"amount":2}}])")
                .status,
            200);
  // A point every 2 s; its rates times its span add up to what happened in
  // it, so the points together count the two records, however late a
  // sample came (the first sample was taken at start, before the ingest).
  double ingested = 0;
  double delivered = 0;
  std::string last;
  for (int i = 0; i < 50 && (ingested < 1.5 || delivered < 1.5); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto r = api("GET", "/v1/fleet/rates");
    ASSERT_EQ(r.status, 200) << r.body;
    last = r.body;
    const nlohmann::json rates = r.json();
    EXPECT_EQ(rates["period_ms"], 2000);
    ingested = delivered = 0;
    for (const auto& p : rates["points"]) {
      const double seconds = p["span_ms"].get<double>() / 1000.0;
      ingested += p["ingest_records"].get<double>() * seconds;
      delivered += p["delivered_changes"].get<double>() * seconds;
    }
  }
  EXPECT_NEAR(ingested, 2.0, 1e-6) << last;
  EXPECT_NEAR(delivered, 2.0, 1e-6) << last;
  // It takes no parameters, and says so rather than ignoring them.
  auto with_query = api("GET", "/v1/fleet/rates?minutes=5");
  EXPECT_EQ(with_query.status, 400) << with_query.body;
  EXPECT_NE(with_query.body.find("takes no parameters"), std::string::npos) << with_query.body;
}

}  // namespace
}  // namespace ds::testing
