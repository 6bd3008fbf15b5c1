// High availability, parts 2 and 3 (label ha): two hubs with [ha] enabled on
// one nats-server (tests/e2e/fleet.h, FleetOptions::ha_lease_ms), the
// second standing by, following the streams into its own store
// (hub/standby.h). Under load:
//   - the active SIGKILLed: the standby takes over, nothing acknowledged is
//     lost or stored twice, agents converge, and the killed hub started
//     again stands by (TakeoverAfterTheActiveIsKilled; it prints the
//     takeover time, the figure docs/scaling.md records over 20 runs);
//   - the active paused (SIGSTOP) past its lease: the standby takes over;
//     resumed, the old active publishes nothing and steps down (exit 3)
//     (FencedOldActive);
//   - the active paused between its lease check and its publication (a
//     test-only fault hook stops it there): resumed, its publication is
//     refused by JetStream, as the new active claimed the streams
//     (HubFenceTest);
//   - the active stopped (SIGTERM): it releases the lease and the standby
//     takes over at once (GracefulHandOver).
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <regex>
#include <sstream>

#include "hub/stream_publisher.h"
#include "shared/config.h"
#include "shared/codec.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "tests/e2e/fleet.h"
#include "tests/e2e/under_load.h"
#include "tests/harness/nats_server.h"
#include "tools/hub_client.h"

namespace ds::testing {
namespace {

// The default [ha] lease_ms: the takeover measured is the one users get.
const int64_t kLeaseMs = HubConfig{}.ha_lease_ms;
constexpr const char* kTypes[] = {"products", "prices", "inventory"};
// The new active's start-up summary (hub/hub.cc) and a standby's catch-up.
constexpr const char* kStarted = "started: nats";
constexpr int kSteppedDown = 3;

using Clock = std::chrono::steady_clock;

FleetOptions ha_options(int cluster_nodes = 0) {
  FleetOptions o;
  o.ha_lease_ms = kLeaseMs;
  o.nats_cluster_nodes = cluster_nodes;
  o.stream_replicas = cluster_nodes == 0 ? 1 : 3;
  return o;
}

// The holder a hub's log names when it wins the lease ("<hub>/<id>").
std::string holder_in(const std::string& log) {
  static const std::regex kHolds(R"(ha: this hub \(([^)]+)\) holds the lease)");
  std::smatch m;
  std::string last;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kHolds); it != std::sregex_iterator(); ++it) {
    last = (*it)[1];
  }
  return last;
}

// Every delta message of every type's stream, in order.
std::vector<StoredMessage> all_messages(Fleet& fleet, const char* type) {
  std::vector<StoredMessage> out;
  ConnectOptions opts;
  opts.config.url = fleet.nats_url();
  opts.name = "ha test reader";
  auto nc = Connection::connect(opts);
  EXPECT_TRUE(nc.is_ok()) << nc.status().to_string();
  if (!nc.is_ok()) return out;
  auto js = (*nc)->jetstream();
  EXPECT_TRUE(js.is_ok());
  auto st = (*js)->stream_state(stream_name(type));
  EXPECT_TRUE(st.is_ok()) << st.status().to_string();
  if (!st.is_ok()) return out;
  for (uint64_t seq = st->first_seq; seq <= st->last_seq; ++seq) {
    auto m = (*js)->get_message(stream_name(type), seq);
    if (m.is_ok()) out.push_back(std::move(m).value());
  }
  return out;
}

// A takeover's claim copies a stream's last batch under the new hub
// (header Ds-Claim); every other message is a batch published once.
bool is_claim(const StoredMessage& m) { return m.header(kClaimHeader).has_value(); }

// Nothing acknowledged stored twice: the streams hold, claims aside, exactly
// as many changes as the producer had acknowledged records, and no version
// twice.
::testing::AssertionResult stored_once(Fleet& fleet, uint64_t acked_records) {
  uint64_t changes = 0;
  for (const char* type : kTypes) {
    std::set<uint64_t> versions;
    for (const StoredMessage& m : all_messages(fleet, type)) {
      if (is_claim(m)) continue;
      auto d = decode_delta_batch(m.data);
      if (!d.is_ok()) return ::testing::AssertionFailure() << "message " << m.seq << ": " << d.status().to_string();
      for (const Change& c : d->changes) {
        if (!versions.insert(c.v).second) {
          return ::testing::AssertionFailure() << type << " version " << c.v << " published twice";
        }
        ++changes;
      }
    }
  }
  if (changes != acked_records) {
    return ::testing::AssertionFailure() << changes << " changes in the streams, " << acked_records
                                         << " records acknowledged";
  }
  return ::testing::AssertionSuccess();
}

// GET `path` of a hub's [http] listener on `port`, with the fleet's token.
Result<HttpResponse> http_get(const Fleet& fleet, int port, const std::string& path) {
  DS_ASSIGN_OR_RETURN(HubClient c, HubClient::create("http://127.0.0.1:" + std::to_string(port), fleet.token()));
  return c.request("GET", path);
}

// GET /metrics of a [metrics] listener.
Result<std::string> scrape(int port) {
  DS_ASSIGN_OR_RETURN(HubClient c, HubClient::create("http://127.0.0.1:" + std::to_string(port), ""));
  DS_ASSIGN_OR_RETURN(HttpResponse r, c.request("GET", "/metrics"));
  if (r.status != 200) return Status::unavailable("GET /metrics: " + std::to_string(r.status));
  return r.body;
}

class HubTakeoverTest : public UnderLoadTest {
 protected:
  explicit HubTakeoverTest(int cluster_nodes = 0) : UnderLoadTest(retail_agents(), ha_options(cluster_nodes)) {}

  void SetUp() override {
    fleet_.enable_metrics();  // both hubs: "hub", and the standby "hub-b"
    UnderLoadTest::SetUp();
  }

  // Waits until the standby starts as the active hub, then until the
  // producer has a batch acknowledged after `since`; returns the ms from
  // `since` to that acknowledgement (the takeover as producers see it).
  int64_t await_takeover(Clock::time_point since, uint64_t acked_before) {
    EXPECT_TRUE(wait_until([&] { return fleet_.standby().log_count(kStarted) > 0; }, kConvergeTimeoutMs, 20))
        << fleet_.logs();
    EXPECT_TRUE(producer_->wait_acked(acked_before + 1)) << fleet_.logs();
    return ms_since(since);
  }

  // SIGKILL of the active at a random point of its renewal period, as a
  // crash would be; the standby takes over (the time printed), and the
  // killed hub comes back as the standby.
  void kill_the_active_and_take_over() {
    std::random_device random;
    std::this_thread::sleep_for(std::chrono::milliseconds(random() % static_cast<uint64_t>(kLeaseMs / 3 + 1)));
    fleet_.hub().signal(SIGKILL);
    const auto killed = Clock::now();
    ASSERT_TRUE(fleet_.hub().wait_exit(10000).has_value());
    const int64_t takeover_ms = await_takeover(killed, producer_->acked_batches());
    std::printf("[ info ] takeover after SIGKILL of the active: %lld ms to the first acknowledged batch (lease %lld "
                "ms)\n",
                static_cast<long long>(takeover_ms), static_cast<long long>(kLeaseMs));
    EXPECT_LE(takeover_ms, 10000) << fleet_.logs();
    fleet_.swap_hubs();
    keep_loading(30);
    const size_t started_before = fleet_.standby().log_count(kStarted);  // its log, kept from its run as active
    ASSERT_TRUE(fleet_.start_standby().is_ok()) << "the killed hub comes back as the standby" << fleet_.logs();
    EXPECT_EQ(fleet_.standby().log_count(kStarted), started_before) << fleet_.logs();
    keep_loading(20);
  }

  // SIGCONT to the paused old active (still hub()): it exits 3.
  void resume_the_old_active_and_see_it_step_down() {
    fleet_.hub().signal(SIGCONT);
    auto exited = fleet_.hub().wait_exit(15000);
    ASSERT_TRUE(exited.has_value()) << fleet_.logs();
    EXPECT_EQ(*exited, kSteppedDown) << fleet_.logs();
  }

  // No stream holds a delta of `old_holder` after one of `new_holder`'s.
  void expect_nothing_after_the_claim(const std::string& old_holder, const std::string& new_holder) {
    for (const char* type : kTypes) {
      bool claimed = false;
      for (const StoredMessage& m : all_messages(fleet_, type)) {
        const std::optional<std::string> by = m.header(kHubHeader);
        if (by == new_holder) claimed = true;
        EXPECT_FALSE(claimed && by == old_holder) << type << " message " << m.seq << " from the old active after "
                                                  << "the takeover" << fleet_.logs();
      }
    }
  }

  // Stops the load and checks everything acknowledged is in the new active
  // once, and the agents converged.
  void finish_once() {
    ASSERT_NO_FATAL_FAILURE(finish());
    EXPECT_TRUE(stored_once(fleet_, producer_->acked_records())) << fleet_.logs();
  }
};

// The pair on a 3-node JetStream cluster with every stream, consumer and
// the lease bucket on 3 replicas: the deployment HA is for.
class HubTakeoverOnClusterTest : public HubTakeoverTest {
 protected:
  HubTakeoverOnClusterTest() : HubTakeoverTest(3) {}
};

TEST_F(HubTakeoverTest, TakeoverAfterTheActiveIsKilled) {
  ASSERT_NO_FATAL_FAILURE(kill_the_active_and_take_over());
  ASSERT_NO_FATAL_FAILURE(finish_once());
}

TEST_F(HubTakeoverOnClusterTest, TakeoverAfterTheActiveIsKilled) {
  ASSERT_NO_FATAL_FAILURE(kill_the_active_and_take_over());
  ASSERT_NO_FATAL_FAILURE(finish_once());
}

TEST_F(HubTakeoverTest, FencedOldActive) {
  const std::string old_holder = holder_in(fleet_.hub().log_text());
  ASSERT_FALSE(old_holder.empty()) << fleet_.logs();
  fleet_.hub().signal(SIGSTOP);
  const auto paused = Clock::now();
  const int64_t takeover_ms = await_takeover(paused, producer_->acked_batches());
  std::printf("[ info ] takeover after SIGSTOP of the active: %lld ms\n", static_cast<long long>(takeover_ms));
  const std::string new_holder = holder_in(fleet_.standby().log_text());
  keep_loading(20);

  // Resumed, the old active steps down without publishing.
  ASSERT_NO_FATAL_FAILURE(resume_the_old_active_and_see_it_step_down());
  EXPECT_EQ(fleet_.hub().log_count("stepped down"), 1u) << fleet_.hub().log_text();
  // How it learned: its lease had run out (a renewal after the pause finds
  // the new holder), or a publication met the fence first.
  std::istringstream old_log(fleet_.hub().log_text());
  for (std::string line; std::getline(old_log, line);) {
    if (line.find("] ha:") != std::string::npos || line.find("fenced") != std::string::npos ||
        line.find("lease") != std::string::npos) {
      std::printf("[ info ] old active: %s\n", line.c_str());
    }
  }
  expect_nothing_after_the_claim(old_holder, new_holder);
  fleet_.swap_hubs();
  ASSERT_TRUE(fleet_.start_standby().is_ok()) << "the old active comes back as the standby" << fleet_.logs();
  keep_loading(20);
  ASSERT_NO_FATAL_FAILURE(finish_once());
}

// The pause at the worst moment: between the old active's lease check and
// its publication (DELTASYNC_FAULT=stop_before_publish, hub/fault_hook.h),
// so only the broker's fence can keep its publication out.
class HubFenceTest : public HubTakeoverTest {
 protected:
  void SetUp() override {
    trigger_ = fleet_.file("stop-before-publish");
    fleet_.add_hub_env("DELTASYNC_FAULT", "stop_before_publish");
    fleet_.add_hub_env("DELTASYNC_FAULT_TRIGGER", trigger_);
    HubTakeoverTest::SetUp();
  }
  std::string trigger_;
};

TEST_F(HubFenceTest, AnOldActivePausedBetweenItsLeaseCheckAndItsPublicationIsRefusedByTheStream) {
  const std::string old_holder = holder_in(fleet_.hub().log_text());
  ASSERT_FALSE(old_holder.empty()) << fleet_.logs();
  { std::ofstream(trigger_) << "stop\n"; }
  ASSERT_TRUE(wait_until([&] { return fleet_.hub().log_count("stopping this process between its lease check") > 0; },
                         kConvergeTimeoutMs, 5))
      << fleet_.logs();
  const auto paused = Clock::now();
  const int64_t takeover_ms = await_takeover(paused, producer_->acked_batches());
  std::printf("[ info ] takeover after the active stopped before a publication: %lld ms\n",
              static_cast<long long>(takeover_ms));
  const std::string new_holder = holder_in(fleet_.standby().log_text());
  keep_loading(20);

  ASSERT_NO_FATAL_FAILURE(resume_the_old_active_and_see_it_step_down());
  // The publication it had begun met the claim: JetStream refused it.
  EXPECT_GE(fleet_.hub().log_count("fenced: stream DS_"), 1u) << fleet_.hub().log_text();
  expect_nothing_after_the_claim(old_holder, new_holder);
  fleet_.swap_hubs();
  ASSERT_TRUE(fleet_.start_standby().is_ok()) << "the old active comes back as the standby" << fleet_.logs();
  keep_loading(20);
  ASSERT_NO_FATAL_FAILURE(finish_once());
}

TEST_F(HubTakeoverTest, GracefulHandOver) {
  // The standby says what it is on its [metrics] listener.
  auto standing = scrape(fleet_.metrics_port("hub-b"));
  ASSERT_TRUE(standing.is_ok()) << standing.status().to_string() << fleet_.logs();
  EXPECT_NE(standing->find("\ndeltasync_hub_ha_active 0\n"), std::string::npos) << *standing;
  EXPECT_NE(standing->find("\ndeltasync_hub_standby_caught_up 1\n"), std::string::npos) << *standing;
  EXPECT_EQ(standing->find("deltasync_hub_ingest"), std::string::npos) << "a standby takes no ingest";
  auto active = scrape(fleet_.metrics_port("hub"));
  ASSERT_TRUE(active.is_ok()) << active.status().to_string();
  EXPECT_NE(active->find("\ndeltasync_hub_ha_active 1\n"), std::string::npos);
  // And on its [http] listener: alive, not ready, and no API but a 503
  // saying why, so a load balancer sends producers to the active hub.
  const int standby_http = fleet_.standby_http_port();
  auto alive = http_get(fleet_, standby_http, "/healthz");
  ASSERT_TRUE(alive.is_ok()) << alive.status().to_string() << fleet_.logs();
  EXPECT_EQ(alive->status, 200);
  auto ready = http_get(fleet_, standby_http, "/readyz");
  ASSERT_TRUE(ready.is_ok()) << ready.status().to_string();
  EXPECT_EQ(ready->status, 503);
  // Caught up or, under this load, a round behind.
  EXPECT_NE(ready->body.find("standby: "), std::string::npos) << ready->body;
  EXPECT_NE(ready->body.find(" the streams; it takes over once the active hub's lease ends"), std::string::npos)
      << ready->body;
  auto types = http_get(fleet_, standby_http, "/v1/types");
  ASSERT_TRUE(types.is_ok()) << types.status().to_string();
  EXPECT_EQ(types->status, 503);
  EXPECT_NE(types->body.find("hub not ready: standby: "), std::string::npos) << types->body;

  const uint64_t acked = producer_->acked_batches();
  fleet_.hub().signal(SIGTERM);
  const auto stopped = Clock::now();
  ASSERT_EQ(fleet_.hub().wait_exit(20000), std::optional<int>(0)) << fleet_.logs();
  EXPECT_EQ(fleet_.hub().log_count("ha: lease released"), 1u) << fleet_.hub().log_text();
  const int64_t takeover_ms = await_takeover(stopped, std::max(acked, producer_->acked_batches()));
  std::printf("[ info ] hand-over after SIGTERM of the active: %lld ms\n", static_cast<long long>(takeover_ms));
  EXPECT_LT(takeover_ms, kLeaseMs + 3000) << "a released lease is taken at once" << fleet_.logs();
  auto taken_over = scrape(fleet_.metrics_port("hub-b"));
  ASSERT_TRUE(taken_over.is_ok()) << taken_over.status().to_string();
  EXPECT_NE(taken_over->find("\ndeltasync_hub_ha_active 1\n"), std::string::npos) << *taken_over;
  // The same listener address, now the active's API: ready once it has
  // confirmed its subscriptions (it already acknowledged a batch).
  Result<HttpResponse> ready_now = Status::unavailable("not asked yet");
  EXPECT_TRUE(wait_until([&] {
    ready_now = http_get(fleet_, standby_http, "/readyz");
    return ready_now.is_ok() && ready_now->status == 200;
  }, 5000, 50)) << (ready_now.is_ok() ? ready_now->body : ready_now.status().to_string()) << fleet_.logs();
  fleet_.swap_hubs();
  ASSERT_TRUE(fleet_.start_standby().is_ok()) << fleet_.logs();
  keep_loading(20);
  ASSERT_NO_FATAL_FAILURE(finish_once());
}

}  // namespace
}  // namespace ds::testing
