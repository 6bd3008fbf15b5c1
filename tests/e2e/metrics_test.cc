// Metrics and freshness, end to end with the ecosystem's own tools: a real
// Prometheus (Debian's `prometheus`) scrapes the [metrics] listeners of a
// real hub and agents (processes, loopback ports) from a prometheus.yml this
// test writes; the test then asks Prometheus' HTTP API (/api/v1/query) for
// series, and `promtool check metrics` checks both exposition texts. A
// freshness breach (an agent stopped while its partition changes) shows in
// `deltasync agents`, in the hub's /metrics and in Prometheus, and clears
// when the agent is back.
//
// Bounded: every wait is a wait_until with a deadline; the Prometheus
// process is a ChildProcess of this test (SIGTERM, then SIGKILL, when the
// test ends), so none is left behind.
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "testing/local_host.h"
#include "tests/e2e/fleet.h"
#include "tests/e2e/workload.h"
#include "tools/hub_client.h"

namespace ds::testing {
namespace {

constexpr int64_t kScrapeTimeoutMs = 60000;

// GET http://127.0.0.1:<port><path>, optionally with a bearer token.
Result<HttpResponse> http_get(int port, const std::string& path, const std::string& token = {}) {
  DS_ASSIGN_OR_RETURN(HubClient c, HubClient::create("http://127.0.0.1:" + std::to_string(port), token));
  return c.request("GET", path);
}

// A Prometheus server of our own: config, data and log in `dir`.
class PrometheusProcess {
 public:
  PrometheusProcess(const TempDir& dir, const std::vector<std::pair<std::string, int>>& targets) : dir_(dir) {
    std::string yml =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n";
    for (const auto& [job, port] : targets) {
      yml += "  - job_name: " + job + "\n    static_configs:\n      - targets: ['127.0.0.1:" + std::to_string(port) +
             "']\n";
    }
    config_ = dir_.write_file("prometheus.yml", yml);
  }

  Status start() {
    DS_ASSIGN_OR_RETURN(port_, free_loopback_port());
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"prometheus", "--config.file=" + config_,
                                 "--storage.tsdb.path=" + dir_.file("prometheus-data"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
        dir_.file("prometheus.log"));
    return process_->start();
  }

  // The result vector of an instant query; an error for a failed query.
  Result<nlohmann::json> query(const std::string& promql) const {
    DS_ASSIGN_OR_RETURN(HttpResponse r, http_get(port_, "/api/v1/query?query=" + url_encode(promql)));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (r.status != 200 || j.is_discarded() || j.value("status", "") != "success") {
      return Status::internal("query " + promql + ": HTTP " + std::to_string(r.status) + ": " + r.body);
    }
    return j["data"]["result"];
  }

  // The first sample's value of `promql`, nullopt when the result is empty.
  std::optional<double> value(const std::string& promql) const {
    auto r = query(promql);
    if (!r.is_ok() || !r->is_array() || r->empty()) return std::nullopt;
    return std::stod((*r)[0]["value"][1].get<std::string>());
  }

  std::string log() const { return process_ ? process_->log_text() : ""; }
  // The query's result (or error) as text, for failure messages.
  std::string dump(const std::string& promql) const {
    auto r = query(promql);
    return r.is_ok() ? r->dump() : r.status().to_string();
  }

 private:
  const TempDir& dir_;
  std::string config_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

// `promtool check metrics` on `text`: "" when it passes, else its output.
std::string promtool_check_metrics(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string file = dir.write_file(name + ".prom", text);
  CommandResult r = run_to_completion({"sh", "-c", "promtool check metrics < '" + file + "'"}, dir.file(name + ".out"));
  return r.exit_code == 0 ? "" : "promtool check metrics (" + name + ") exit " + std::to_string(r.exit_code) + ":\n" +
                                     r.out + r.err;
}

// The families a /metrics text announces (its "# TYPE <name> <kind>" lines).
std::set<std::string> exposed_families(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    const size_t end = line.find(' ', 7);
    out.insert(line.substr(7, end == std::string::npos ? std::string::npos : end - 7));
  }
  return out;
}

// The series docs/operations.md lists in the table under `heading`: every
// `name{labels}` of each row's first cell, labels dropped, with `prefix`.
std::set<std::string> documented_families(const std::string& heading, const std::string& prefix) {
  std::ifstream in(std::string(DELTASYNC_SOURCE_DIR) + "/docs/operations.md");
  std::set<std::string> out;
  std::string line;
  bool in_section = false;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (!in_section) {
      in_section = line == heading;
      continue;
    }
    if (line.rfind("|", 0) != 0) {
      if (in_table) break;  // the table ended
      continue;
    }
    in_table = true;
    const std::string cell = line.substr(1, line.find('|', 1) - 1);
    // Code spans are the odd pieces between backticks.
    size_t open = cell.find('`');
    while (open != std::string::npos) {
      const size_t close = cell.find('`', open + 1);
      if (close == std::string::npos) break;
      const std::string name = cell.substr(open + 1, close - open - 1);
      out.insert(prefix + name.substr(0, name.find('{')));
      open = cell.find('`', close + 1);
    }
  }
  return out;
}

// "a, b" for the names in `a` that are not in `b`.
std::string missing_from(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::string out;
  for (const std::string& name : a) {
    if (b.count(name) == 0) out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

class MetricsEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_.enable_metrics("1s");  // heartbeats every 500 ms
    ASSERT_TRUE(fleet_.start().is_ok()) << fleet_.logs();
  }

  Fleet fleet_;
  TempDir dir_{"deltasync-metrics"};
};

TEST_F(MetricsEndToEnd, PrometheusScrapesHubAndAgentsAndPromtoolAcceptsTheText) {
  Status pushed = fleet_.push("products", product_records(200), 20);
  ASSERT_TRUE(pushed.is_ok()) << pushed.to_string();
  pushed = fleet_.push("prices", price_records("store-1", 50, 1.5), 10);
  ASSERT_TRUE(pushed.is_ok()) << pushed.to_string();

  // The exposition texts are valid for Prometheus' own checker (format and
  // naming lint: base units, _total counters, HELP on every family).
  auto hub_text = http_get(fleet_.metrics_port("hub"), "/metrics");
  ASSERT_TRUE(hub_text.is_ok()) << hub_text.status().to_string();
  ASSERT_EQ(hub_text->status, 200) << hub_text->body;
  EXPECT_EQ(promtool_check_metrics(dir_, "hub", hub_text->body), "");
  auto agent_text = http_get(fleet_.metrics_port("store-1"), "/metrics");
  ASSERT_TRUE(agent_text.is_ok()) << agent_text.status().to_string();
  ASSERT_EQ(agent_text->status, 200) << agent_text->body;
  EXPECT_EQ(promtool_check_metrics(dir_, "agent", agent_text->body), "");
  // Every family is documented in docs/operations.md, and every documented
  // one is exposed.
  const auto hub_documented = documented_families("### Hub series", "deltasync_hub_");
  const auto hub_exposed = exposed_families(hub_text->body);
  EXPECT_GT(hub_documented.size(), 30u);
  EXPECT_EQ(missing_from(hub_exposed, hub_documented), "") << "exposed by the hub, not in operations.md";
  EXPECT_EQ(missing_from(hub_documented, hub_exposed), "") << "in operations.md, not exposed by the hub";
  const auto agent_documented = documented_families("### Agent series", "deltasync_agent_");
  const auto agent_exposed = exposed_families(agent_text->body);
  EXPECT_GT(agent_documented.size(), 10u);
  EXPECT_EQ(missing_from(agent_exposed, agent_documented), "") << "exposed by the agent, not in operations.md";
  EXPECT_EQ(missing_from(agent_documented, agent_exposed), "") << "in operations.md, not exposed by the agent";

  // The [metrics] listener needs no token and serves nothing else; the API's
  // /metrics still wants the token.
  auto other = http_get(fleet_.metrics_port("hub"), "/v1/agents");
  ASSERT_TRUE(other.is_ok());
  EXPECT_EQ(other->status, 404);
  auto api_without_token = http_get(fleet_.http_port(), "/metrics");
  ASSERT_TRUE(api_without_token.is_ok());
  EXPECT_EQ(api_without_token->status, 401);
  auto api_with_token = http_get(fleet_.http_port(), "/metrics", fleet_.token());
  ASSERT_TRUE(api_with_token.is_ok());
  EXPECT_EQ(api_with_token->status, 200);
  EXPECT_NE(api_with_token->body.find("deltasync_hub_ingest_latency_seconds_bucket"), std::string::npos);

  PrometheusProcess prometheus(dir_, {{"deltasync-hub", fleet_.metrics_port("hub")},
                                      {"store-1", fleet_.metrics_port("store-1")},
                                      {"store-2", fleet_.metrics_port("store-2")},
                                      {"hq", fleet_.metrics_port("hq")}});
  ASSERT_TRUE(prometheus.start().is_ok());
  ASSERT_TRUE(wait_until([&] { return prometheus.value("count(up == 1)") == 4.0; }, kScrapeTimeoutMs, 250))
      << prometheus.log() << prometheus.dump("up");

  // Ingest latency: every push was answered, so the histogram counted them.
  EXPECT_TRUE(wait_until(
      [&] {
        auto v = prometheus.value("deltasync_hub_ingest_latency_seconds_count{transport=\"nats\"}");
        return v && *v >= 15;  // 10 product batches + 5 price batches
      },
      kScrapeTimeoutMs, 250))
      << prometheus.dump("deltasync_hub_ingest_latency_seconds_count");
  EXPECT_EQ(prometheus.value("deltasync_hub_ingest_requests_total{transport=\"nats\",code=\"ok\"}"), 15.0);
  EXPECT_EQ(prometheus.value("sum(deltasync_hub_ingest_batch_records_sum)"), 250.0);
  EXPECT_EQ(prometheus.value("deltasync_hub_agents{state=\"live\"}"), 3.0);
  EXPECT_EQ(prometheus.value("deltasync_hub_agents{state=\"dead\"}"), 0.0);
  EXPECT_EQ(prometheus.value("deltasync_hub_freshness_objective_seconds{type=\"prices\"}"), 1.0);
  EXPECT_GT(prometheus.value("deltasync_hub_store_bytes").value_or(0), 0);
  EXPECT_GT(prometheus.value("deltasync_hub_commit_duration_seconds_count").value_or(0), 0);
  EXPECT_GT(prometheus.value("deltasync_hub_publish_duration_seconds_count").value_or(0), 0);
  // The agents applied what was pushed; their own series say so.
  EXPECT_TRUE(wait_until(
      [&] {
        return prometheus.value("deltasync_agent_applied_changes_total{job=\"store-1\",type=\"products\"}") == 200.0 &&
               prometheus.value("deltasync_agent_applied_changes_total{job=\"store-1\",type=\"prices\"}") == 50.0 &&
               prometheus.value("deltasync_agent_checkpoint_version{job=\"hq\",type=\"products\"}") == 200.0;
      },
      kScrapeTimeoutMs, 250))
      << prometheus.dump("deltasync_agent_applied_changes_total");
  EXPECT_GT(prometheus.value("deltasync_agent_apply_duration_seconds_count{job=\"store-1\",type=\"products\"}")
                .value_or(0),
            0);
  EXPECT_GT(prometheus.value("deltasync_agent_replica_bytes{job=\"store-1\"}").value_or(0), 0);
  EXPECT_GE(prometheus.value("deltasync_agent_registrations_total{job=\"store-1\"}").value_or(0), 1.0);
  EXPECT_GT(prometheus.value("deltasync_agent_applied_batches_total{job=\"store-1\",type=\"products\"}").value_or(0),
            0);
  EXPECT_GT(prometheus.value("deltasync_agent_delivery_delay_seconds_count{job=\"store-1\",type=\"products\"}")
                .value_or(0),
            0);
  EXPECT_GT(prometheus.value("deltasync_agent_checkpoint_timestamp_seconds{job=\"hq\",type=\"products\"}")
                .value_or(0),
            0);
  // Nothing went wrong on the way: the error series are there, at 0.
  // (Retries and replays are no error: a loaded machine may cause them.)
  for (const char* zero :
       {"sum(deltasync_agent_quarantined_total)", "sum(deltasync_agent_quarantine_entries)",
        "sum(deltasync_agent_hook_failures_total)", "sum(deltasync_agent_apply_errors_total)",
        "sum(deltasync_agent_delivery_gaps_total)", "sum(deltasync_agent_nats_reconnects_total)",
        "deltasync_hub_publish_failures_total", "deltasync_hub_ingest_dropped_total",
        "deltasync_hub_refused_beats_total", "deltasync_hub_late_registrations_total",
        "deltasync_hub_consumer_copy_repair_orders_total",
        "deltasync_hub_snapshot_errors_total",
        "sum(deltasync_hub_agent_held_back)", "sum(deltasync_hub_agent_awaiting_snapshot)",
        "sum(deltasync_hub_agent_quarantined)"}) {
    EXPECT_EQ(prometheus.value(zero), 0.0) << zero << "\n" << prometheus.dump(zero);
  }
  EXPECT_EQ(prometheus.value("deltasync_hub_ingest_batches_total"), 15.0);
  EXPECT_EQ(prometheus.value("deltasync_hub_published_changes_total"), 250.0);
  EXPECT_GE(prometheus.value("deltasync_hub_published_batches_total").value_or(0), 2.0);
  EXPECT_GE(prometheus.value("deltasync_hub_http_unauthorized_total").value_or(0), 1.0);  // the request above
  EXPECT_GE(prometheus.value("deltasync_hub_http_requests_total").value_or(0), 2.0);
  // Caught up: nobody is stale or behind, and every agent x type has its
  // consumer.
  EXPECT_TRUE(wait_until([&] { return prometheus.value("sum(deltasync_hub_freshness_breach)") == 0.0; },
                         kScrapeTimeoutMs, 250));
  EXPECT_TRUE(wait_until([&] { return prometheus.value("sum(deltasync_hub_agent_lag_versions)") == 0.0; },
                         kScrapeTimeoutMs, 250))
      << prometheus.dump("deltasync_hub_agent_lag_versions");
  EXPECT_EQ(prometheus.value("max(deltasync_hub_agent_lag_seconds)"), 0.0)
      << prometheus.dump("deltasync_hub_agent_lag_seconds");
  // (held_back has a series per agent x type; lag only once the type has changes.)
  const auto pairs = prometheus.value("count(deltasync_hub_agent_held_back)");
  EXPECT_GE(pairs.value_or(0), 3.0);
  // Each pair gets its deltas through a consumer or the live feed.
  EXPECT_EQ(prometheus.value("deltasync_hub_consumers + deltasync_hub_live_feed"), pairs)
      << prometheus.dump("deltasync_hub_consumers") << prometheus.dump("deltasync_hub_live_feed");
  EXPECT_TRUE(fleet_.converged());
}

TEST_F(MetricsEndToEnd, AStoppedAgentBreachesFreshnessUntilItCatchesUp) {
  ASSERT_TRUE(fleet_.push("prices", price_records("store-2", 20, 1.0), 10).is_ok());
  ASSERT_TRUE(fleet_.converged());

  // store-2 is stopped (SIGSTOP: its process and replica stay as they are);
  // its partition of prices changes; after the objective (1 s) it is stale.
  fleet_.agent("store-2").signal(SIGSTOP);
  ASSERT_TRUE(fleet_.push("prices", price_records("store-2", 20, 2.0), 10).is_ok());
  auto breach_of = [&](const std::string& agent, const std::string& type) -> nlohmann::json {
    auto agents = fleet_.agents_by_id();
    if (!agents.is_ok() || agents->count(agent) == 0) return nullptr;
    return (*agents)[agent]["types"][type];
  };
  EXPECT_TRUE(wait_until(
      [&] {
        const nlohmann::json t = breach_of("store-2", "prices");
        return t.is_object() && t.value("freshness_breach", false) && t.value("staleness_ms", int64_t{0}) > 1000 &&
               t.value("freshness_breaches", uint64_t{0}) >= 1;
      },
      kConvergeTimeoutMs, 200))
      << fleet_.cli({"agents"}).out;
  // Only store-2's prices: store-1 has nothing to apply, hq applied store-2's prices.
  EXPECT_EQ(breach_of("store-1", "prices").value("freshness_breach", true), false);
  EXPECT_TRUE(wait_until([&] { return breach_of("hq", "prices").value("freshness_breach", true) == false; },
                         kConvergeTimeoutMs, 200));
  // The CLI's table says so.
  const std::string table = fleet_.cli({"agents"}).out;
  EXPECT_NE(table.find("BREACH"), std::string::npos) << table;
  // And the metrics, as Prometheus sees them.
  PrometheusProcess prometheus(dir_, {{"deltasync-hub", fleet_.metrics_port("hub")}});
  ASSERT_TRUE(prometheus.start().is_ok());
  EXPECT_TRUE(wait_until(
      [&] { return prometheus.value("deltasync_hub_freshness_breach{agent=\"store-2\",type=\"prices\"}") == 1.0; },
      kScrapeTimeoutMs, 250))
      << prometheus.log();
  EXPECT_GT(prometheus.value("deltasync_hub_agent_staleness_seconds{agent=\"store-2\",type=\"prices\"}").value_or(0),
            1.0);
  EXPECT_GE(prometheus.value("deltasync_hub_freshness_breaches_total{agent=\"store-2\",type=\"prices\"}").value_or(0),
            1.0);

  // Back: it applies what it missed and the breach ends (the counter stays).
  fleet_.agent("store-2").signal(SIGCONT);
  EXPECT_TRUE(wait_until(
      [&] { return prometheus.value("deltasync_hub_freshness_breach{agent=\"store-2\",type=\"prices\"}") == 0.0; },
      kConvergeTimeoutMs, 250))
      << fleet_.cli({"agents"}).out;
  EXPECT_EQ(breach_of("store-2", "prices").value("staleness_ms", int64_t{-1}), 0);
  EXPECT_GE(breach_of("store-2", "prices").value("freshness_breaches", uint64_t{0}), 1u);
  EXPECT_TRUE(fleet_.converged());
}

}  // namespace
}  // namespace ds::testing
