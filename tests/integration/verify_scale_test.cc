// deltasync verify at fleet scale against a hub running in-process: 1,000
// agents registered for real, their digest requests answered by a minimal
// in-process responder (a few NATS connections in one queue group, each
// answer after a short pause standing for the agent's table scan). The
// verify job completes, reports its progress, and GET /healthz, /readyz and
// /metrics (on the API port and on the separate [metrics] listener) keep
// answering while it runs: the job runs off the threads that serve them
// (hub/verify_service.h). The bound is relative to the job: the slowest of
// those answers takes less than half the job's time, where a verify on the
// HTTP thread would hold one for the whole job. A bound in milliseconds
// failed on the loaded 2-core machine (263 ms for a probe that waited on
// nothing but the scheduler and the metrics text of 1,000 agents).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "hub/hub.h"
#include "shared/digest.h"
#include "shared/version.h"
#include "tests/integration/hub_test_util.h"
#include "tools/hub_client.h"

namespace ds::testing {
namespace {

constexpr size_t kAgents = 1000;
constexpr size_t kResponderConnections = 8;
// 1,000 answers over 8 connections: the job lasts at least 2.5 s.
constexpr auto kScanPause = std::chrono::milliseconds(20);
const std::string kOddAgent = "sim-617";  // reports a content digest of its own

// Answers ds.agent.*.digest for every simulated agent with the hub's own
// digests of "price" (so they match), except kOddAgent.
class DigestResponder {
 public:
  DigestResponder(const NatsServer& server, TypeDigest truth) : truth_(std::move(truth)) {
    for (size_t c = 0; c < kResponderConnections; ++c) {
      ConnectOptions co;
      co.config.url = server.url();
      co.name = "sim-digest-" + std::to_string(c);
      auto nc = Connection::connect(std::move(co));
      EXPECT_TRUE(nc.is_ok()) << nc.status().to_string();
      if (!nc.is_ok()) return;
      Connection* raw = nc->get();
      auto sub = raw->queue_subscribe(Subjects().digest("*"), "sim", [this, raw](Message m) { answer(*raw, m); });
      EXPECT_TRUE(sub.is_ok()) << sub.status().to_string();
      connections_.push_back(std::move(*nc));
      if (sub.is_ok()) subscriptions_.push_back(std::move(*sub));
    }
    for (auto& nc : connections_) EXPECT_TRUE(nc->flush().is_ok());
  }
  ~DigestResponder() { subscriptions_.clear(); }
  uint64_t answered() const { return answered_.load(); }

 private:
  void answer(Connection& nc, const Message& m) {
    std::this_thread::sleep_for(kScanPause);
    const std::string_view subject = m.subject();  // ds.agent.<id>.digest
    const size_t first = subject.find('.', 3);
    const size_t last = subject.rfind('.');
    const std::string agent(subject.substr(first + 1, last - first - 1));
    DigestReply reply;
    auto request = decode_digest_request(m.data());
    if (!request.is_ok() || request->buckets > 0) {
      reply.error = WireError::from(Status::unavailable("the simulated agent has no buckets"));
    } else {
      reply.agent = agent;
      TypeDigest d = truth_;
      if (agent == kOddAgent) d.content = Digest{d.rows, 42}.hex();
      reply.types["price"] = d;
    }
    (void)nc.respond(m, encode(reply));
    answered_.fetch_add(1);
  }

  TypeDigest truth_;
  std::atomic<uint64_t> answered_{0};
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Subscription>> subscriptions_;
};

class VerifyScaleTest : public InProcessHubTest {
 protected:
  void SetUp() override {
    InProcessHubTest::SetUp();
    if (HasFatalFailure()) return;
    config_.heartbeat_interval_ms = 120000;  // the simulated agents stay live without answering heartbeats
    serve_http();
    metrics_port_ = free_tcp_port();
    config_.metrics_listen = "127.0.0.1:" + std::to_string(metrics_port_);
    start_hub();
  }

  // The hub's digest of "price": what an agent equal to the hub answers.
  std::optional<TypeDigest> hub_price_digest() {
    auto reader = open_reader(config_);
    auto digest = reader->table_digest("price", std::nullopt);
    if (!digest.is_ok()) return std::nullopt;
    TypeDigest truth;
    truth.version = reader->type_state("price")->version;
    truth.rows = digest->keys.count;
    truth.digest = digest->keys.hex();
    truth.content = digest->content.hex();
    return truth;
  }

  int metrics_port_ = 0;
};

TEST_F(VerifyScaleTest, ThousandAgentsVerifyWhileHealthAndMetricsKeepAnswering) {
  IngestRequest load;
  for (int i = 0; i < 200; ++i) load.records.push_back(price_record("sku-" + std::to_string(i), 1.0 + i));
  auto stored = ingest(*nc_, "price", load);
  ASSERT_TRUE(stored.is_ok() && stored->ok()) << (stored.is_ok() ? stored->error->message : stored.status().to_string());

  // Register the fleet, 4 requests in flight.
  std::atomic<size_t> next{0};
  std::atomic<size_t> refused{0};
  std::vector<std::thread> registrars;
  for (int t = 0; t < 4; ++t) {
    registrars.emplace_back([&] {
      for (size_t i = next.fetch_add(1); i < kAgents; i = next.fetch_add(1)) {
        RegisterRequest r;
        r.agent = "sim-" + std::to_string(i);
        r.host = "sim";
        r.version = kVersion;
        r.subscriptions.push_back(SubscriptionReport{"price", "*", 0, 0, 0, 0});
        auto reply = nc_->request(Subjects().register_agent(r.agent), encode(r), 30000);
        if (!reply.is_ok() || !decode_register_reply(reply->data()).is_ok() ||
            !decode_register_reply(reply->data())->ok()) {
          refused.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : registrars) t.join();
  ASSERT_EQ(refused.load(), 0u);

  auto truth = hub_price_digest();
  ASSERT_TRUE(truth.has_value());
  DigestResponder responder(*server_, *truth);

  HubClient cli = client(5000);
  auto scraper = HubClient::create("http://127.0.0.1:" + std::to_string(metrics_port_), "", {}, 5000);
  ASSERT_TRUE(scraper.is_ok());
  // Before the verify: what /metrics of 1,000 agents costs by itself (its
  // text has series per agent and type), for the figures printed below.
  int64_t idle_metrics_ms = 0;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = cli.request("GET", "/metrics");
    ASSERT_TRUE(r.is_ok() && r->status == 200);
    idle_metrics_ms = std::max<int64_t>(
        idle_metrics_ms,
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  }
  std::atomic<bool> done{false};
  std::atomic<int64_t> worst_ms{0};
  std::mutex worst_mu;
  std::map<std::string, int64_t> worst_by_path;  // guarded by worst_mu
  std::atomic<int> health_failures{0};
  std::atomic<int> probes{0};
  std::thread prober([&] {
    while (!done.load()) {
      for (const char* path : {"/healthz", "/readyz", "/metrics", "scrape"}) {
        const auto t0 = std::chrono::steady_clock::now();
        const bool scrape = std::string_view(path) == "scrape";
        auto r = scrape ? scraper->request("GET", "/metrics") : cli.request("GET", path);
        const int64_t ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        if (!r.is_ok() || r->status != 200) health_failures.fetch_add(1);
        {
          std::lock_guard lock(worst_mu);
          worst_by_path[path] = std::max(worst_by_path[path], ms);
        }
        int64_t seen = worst_ms.load();
        while (ms > seen && !worst_ms.compare_exchange_weak(seen, ms)) {
        }
        probes.fetch_add(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  const auto t0 = std::chrono::steady_clock::now();
  auto started = cli.request("POST", "/v1/verify");
  ASSERT_TRUE(started.is_ok());
  ASSERT_EQ(started->status, 202) << started->body;
  const std::string id = nlohmann::json::parse(started->body)["id"];
  nlohmann::json report;
  size_t progress_seen = 0;  // distinct agents_done values below the total
  size_t last_done = 0;
  for (int polls = 0; polls < 1200; ++polls) {  // at most 2 minutes
    auto r = cli.get_json("/v1/verify/" + id);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    report = *r;
    const size_t agents_done = report.value("agents_done", size_t{0});
    if (agents_done != last_done && agents_done < kAgents) ++progress_seen;
    last_done = agents_done;
    if (report.value("state", "") != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const int64_t elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  done.store(true);
  prober.join();

  ASSERT_EQ(report.value("state", ""), "done") << report.dump(1).substr(0, 2000);
  std::cout << "verify of " << kAgents << " agents: " << report.value("elapsed_ms", int64_t{0})
            << " ms in the hub, " << elapsed_ms << " ms as polled; /healthz, /readyz, /metrics and the [metrics] listener: " << probes.load()
            << " answers, slowest " << worst_ms.load() << " ms (";
  for (const auto& [path, ms] : worst_by_path) std::cout << " " << path << " " << ms << " ms";
  std::cout << " ); /metrics before the verify: " << idle_metrics_ms << " ms\n";
  EXPECT_EQ(report.value("agents_total", size_t{0}), kAgents);
  EXPECT_EQ(report.value("agents_done", size_t{0}), kAgents);
  EXPECT_GE(progress_seen, 1u) << "progress was never reported between 0 and the total";
  EXPECT_GE(responder.answered(), kAgents);
  EXPECT_FALSE(report.value("ok", true)) << "the odd agent differs";
  size_t matched = 0;
  for (const auto& row : report["rows"]) {
    if (row.value("agent", "") == kOddAgent) {
      EXPECT_FALSE(row.value("match", true)) << row.dump();
      EXPECT_TRUE(row.contains("locate_error")) << row.dump();  // it has no buckets
    } else {
      matched += row.value("match", false) ? 1 : 0;
    }
  }
  EXPECT_EQ(matched, kAgents - 1);
  EXPECT_EQ(health_failures.load(), 0);
  EXPECT_GE(probes.load(), 2);
  EXPECT_LT(worst_ms.load(), report.value("elapsed_ms", int64_t{0}) / 2)
      << "a /healthz, /readyz or /metrics request waited on the verify job";
}

// POST /v1/verify?agent=... (deltasync verify --agent, the rollout's health
// gate): only the named agents are asked and reported; an agent the hub does
// not know makes the job fail instead of passing with no rows.
TEST_F(VerifyScaleTest, VerifyLimitedToAgentsAsksOnlyThemAndFailsForAnUnknownOne) {
  IngestRequest load;
  for (int i = 0; i < 20; ++i) load.records.push_back(price_record("sku-" + std::to_string(i), 1.0 + i));
  auto stored = ingest(*nc_, "price", load);
  ASSERT_TRUE(stored.is_ok() && stored->ok());
  for (const std::string& id : {std::string("sim-1"), std::string("sim-2"), kOddAgent}) {
    RegisterRequest r;
    r.agent = id;
    r.host = "sim";
    r.version = kVersion;
    r.subscriptions.push_back(SubscriptionReport{"price", "*", 0, 0, 0, 0});
    auto reply = nc_->request(Subjects().register_agent(r.agent), encode(r), 30000);
    ASSERT_TRUE(reply.is_ok() && decode_register_reply(reply->data()).is_ok());
  }
  auto truth = hub_price_digest();
  ASSERT_TRUE(truth.has_value());
  DigestResponder responder(*server_, *truth);
  HubClient cli = client(5000);

  auto run = [&](const std::string& query) {
    auto started = cli.request("POST", "/v1/verify" + query);
    EXPECT_TRUE(started.is_ok());
    if (!started.is_ok()) return nlohmann::json();
    if (started->status != 202) return nlohmann::json{{"http_status", started->status}, {"body", started->body}};
    const std::string id = nlohmann::json::parse(started->body)["id"];
    nlohmann::json report;
    for (int polls = 0; polls < 300; ++polls) {  // at most 30 s
      auto r = cli.get_json("/v1/verify/" + id);
      EXPECT_TRUE(r.is_ok());
      if (!r.is_ok()) break;
      report = *r;
      if (report.value("state", "") != "running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return report;
  };
  auto agents_of = [](const nlohmann::json& report) {
    std::set<std::string> out;
    for (const auto& row : report.value("rows", nlohmann::json::array())) out.insert(row.value("agent", ""));
    return out;
  };

  nlohmann::json one = run("?agent=sim-1");
  ASSERT_EQ(one.value("state", ""), "done") << one.dump();
  EXPECT_TRUE(one.value("ok", false)) << one.dump();
  EXPECT_EQ(agents_of(one), std::set<std::string>{"sim-1"});
  EXPECT_EQ(one.value("agents_total", size_t{0}), 1u);

  // The odd agent differs, but a job limited to the others passes.
  nlohmann::json two = run("?agent=sim-1%2Csim-2");
  EXPECT_TRUE(two.value("ok", false)) << two.dump();
  EXPECT_EQ(agents_of(two), (std::set<std::string>{"sim-1", "sim-2"}));
  nlohmann::json odd = run("?agent=" + kOddAgent);
  EXPECT_FALSE(odd.value("ok", true)) << odd.dump();

  nlohmann::json unknown = run("?agent=sim-1%2Cnobody");
  ASSERT_EQ(unknown.value("state", ""), "done") << unknown.dump();
  EXPECT_FALSE(unknown.value("ok", true)) << unknown.dump();
  bool named = false;
  for (const auto& row : unknown["rows"]) {
    if (row.value("agent", "") == "nobody") {
      named = true;
      EXPECT_EQ(row.value("state", ""), "unknown");
      EXPECT_NE(row.value("error", "").find("knows no agent 'nobody'"), std::string::npos) << row.dump();
    }
  }
  EXPECT_TRUE(named) << unknown.dump();

  nlohmann::json bad = run("?agent=no%20spaces");
  EXPECT_EQ(bad.value("http_status", 0), 400) << bad.dump();
}

}  // namespace
}  // namespace ds::testing
