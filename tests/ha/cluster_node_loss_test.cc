// High availability, part 1 (label ha): deltasync on a 3-node JetStream
// cluster on loopback (testing/nats_cluster.h) with [streams] replicas = 3.
// Every stream and agent consumer has three copies; any one node SIGKILLed
// under load loses nothing acknowledged, the hub, the agents and the
// producer carry on through the other two, the node started again catches
// up, and `deltasync verify` passes (that scenario is not passing yet: see
// below). What is not covered yet (a standby hub, fencing) is listed in
// docs/operations.md, "A NATS cluster".
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "shared/names.h"
#include "shared/nats.h"
#include "tests/e2e/under_load.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

constexpr const char* kTypes[] = {"products", "prices", "inventory"};
constexpr int64_t kCatchUpTimeoutMs = 30000;

using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

nlohmann::json product(const std::string& sku) {
  return {{"key", sku}, {"op", "upsert"}, {"fields", {{"name", sku}, {"category", "ha"}}}};
}

FleetOptions clustered(int replicas) {
  FleetOptions o;
  o.nats_cluster_nodes = 3;
  o.stream_replicas = replicas;
  return o;
}

Result<std::unique_ptr<Connection>> connect_to(Fleet& fleet) {
  ConnectOptions opts;
  opts.config.url = fleet.nats_url();
  opts.name = "ha test";
  return Connection::connect(opts);
}

// Every stream has `replicas` copies, a leader, and every follower is
// online and caught up with it. The reason when not.
::testing::AssertionResult streams_replicated(Fleet& fleet, int replicas) {
  auto nc = connect_to(fleet);
  if (!nc.is_ok()) return ::testing::AssertionFailure() << nc.status().to_string();
  auto js = (*nc)->jetstream();
  if (!js.is_ok()) return ::testing::AssertionFailure() << js.status().to_string();
  for (const char* type : kTypes) {
    auto st = (*js)->stream_state(stream_name(type));
    if (!st.is_ok()) return ::testing::AssertionFailure() << st.status().to_string();
    if (st->replicas != replicas || st->leader.empty() ||
        static_cast<int>(st->followers.size()) != replicas - 1) {
      return ::testing::AssertionFailure() << stream_name(type) << ": " << st->replicas << " replicas, leader '"
                                           << st->leader << "', " << st->followers.size() << " followers";
    }
    for (const StreamFollower& f : st->followers) {
      if (!f.current || f.offline || f.lag != 0) {
        return ::testing::AssertionFailure() << stream_name(type) << ": follower " << f.name << " current "
                                             << f.current << " offline " << f.offline << " lag " << f.lag;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// The node `name` holds a copy of every stream, caught up with its leader.
::testing::AssertionResult node_caught_up(Fleet& fleet, const std::string& name) {
  auto replicated = streams_replicated(fleet, 3);
  if (!replicated) return replicated;
  auto nc = connect_to(fleet);
  if (!nc.is_ok()) return ::testing::AssertionFailure() << nc.status().to_string();
  auto js = (*nc)->jetstream();
  if (!js.is_ok()) return ::testing::AssertionFailure() << js.status().to_string();
  for (const char* type : kTypes) {
    auto st = (*js)->stream_state(stream_name(type));
    if (!st.is_ok()) return ::testing::AssertionFailure() << st.status().to_string();
    std::set<std::string> peers = {st->leader};
    for (const StreamFollower& f : st->followers) peers.insert(f.name);
    if (peers.count(name) == 0) return ::testing::AssertionFailure() << stream_name(type) << " has no copy on " << name;
  }
  return ::testing::AssertionSuccess();
}

class ClusterNodeLoss : public UnderLoadTest {
 protected:
  ClusterNodeLoss() : UnderLoadTest(retail_agents(), clustered(3)) {}
};

// DISABLED: does not pass yet (docs/reliability.md, "A NATS cluster"). After
// the first kill the agents connected to the lost node register again, and
// registration deletes and recreates each of their R3 consumers; those
// JetStream calls time out (5 s each) while the cluster elects leaders, so
// the agents were not all live within 60 s on the loaded 2-core machine.
// Run it with --gtest_also_run_disabled_tests.
TEST_F(ClusterNodeLoss, DISABLED_AnyOneNodeKilledUnderLoadLosesNothingAndComesBackCaughtUp) {
  ASSERT_TRUE(streams_replicated(fleet_, 3));
  NatsCluster& cluster = fleet_.cluster();
  for (int i = 0; i < cluster.size(); ++i) {
    SCOPED_TRACE("node " + cluster.server_name(i) + " killed");
    // Every node holds a current copy of everything before the next loss
    // (else two copies of some group would be missing at once).
    for (int n = 0; n < cluster.size(); ++n) {
      Status current = cluster.wait_current(n, kCatchUpTimeoutMs);
      ASSERT_TRUE(current.is_ok()) << current.to_string() << cluster.logs();
    }
    const auto killed = Clock::now();
    cluster.kill_node(i);
    // The system takes load with the node gone, and every agent stays (or
    // becomes again) live with its consumers.
    ASSERT_NO_FATAL_FAILURE(keep_loading(30));
    const int64_t loaded_ms = ms_since(killed);
    Status live = fleet_.wait_all_live();
    ASSERT_TRUE(live.is_ok()) << live.to_string() << fleet_.logs();
    const int64_t live_ms = ms_since(killed);
    const auto restarted = Clock::now();
    Status back = cluster.start_node(i);
    ASSERT_TRUE(back.is_ok()) << back.to_string();
    ASSERT_NO_FATAL_FAILURE(keep_loading(20));
    // Caught up: its /healthz (meta group, every stream and consumer copy
    // current), and every stream's leader counts it as a current follower.
    Status current = cluster.wait_current(i, kCatchUpTimeoutMs);
    ASSERT_TRUE(current.is_ok()) << current.to_string() << cluster.logs();
    EXPECT_TRUE(wait_until([&] { return bool(node_caught_up(fleet_, cluster.server_name(i))); }, kCatchUpTimeoutMs,
                           200))
        << node_caught_up(fleet_, cluster.server_name(i)).message() << cluster.logs();
    std::printf("[ info ] %s killed: 30 more batches acked after %lld ms, every agent live after %lld ms; "
                "restarted and current (20 batches later) after %lld ms\n",
                cluster.server_name(i).c_str(), static_cast<long long>(loaded_ms), static_cast<long long>(live_ms),
                static_cast<long long>(ms_since(restarted)));
  }
  ASSERT_NO_FATAL_FAILURE(finish());
}

// [streams] replicas changed on a running system: the hub applies it to the
// existing streams when it starts (the server adds or drops copies in place).
TEST(ClusterStreamReplicas, HubRestartedWithThreeReplicasScalesExistingStreamsInPlace) {
  Fleet fleet(retail_agents(), clustered(1));
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  ASSERT_TRUE(streams_replicated(fleet, 1));
  ASSERT_TRUE(fleet.push("products", nlohmann::json::array({product("a-1")})).is_ok());

  fleet.hub().signal(SIGTERM);
  ASSERT_EQ(fleet.hub().wait_exit(30000), std::optional<int>(0)) << fleet.logs();
  std::string toml;
  {
    std::ifstream in(fleet.hub_config_path());
    std::stringstream text;
    text << in.rdbuf();
    toml = text.str();
  }
  const auto at = toml.find("replicas = 1");
  ASSERT_NE(at, std::string::npos) << toml;
  toml.replace(at, 12, "replicas = 3");
  std::ofstream(fleet.hub_config_path()) << toml;
  Status restarted = fleet.start_hub();
  ASSERT_TRUE(restarted.is_ok()) << restarted.to_string();

  EXPECT_TRUE(wait_until([&] { return bool(streams_replicated(fleet, 3)); }, kCatchUpTimeoutMs, 200))
      << streams_replicated(fleet, 3).message();
  ASSERT_TRUE(fleet.push("products", nlohmann::json::array({product("a-2")})).is_ok());
  Status live = fleet.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();
  EXPECT_TRUE(fleet.converged());
}

// Three replicas on a lone nats-server: the hub does not start, and says
// what to change.
TEST(ClusterStreamReplicas, ThreeReplicasOnALoneServerStopTheHubWithTheRemedy) {
  NatsServer nats;
  ASSERT_TRUE(nats.start().is_ok());
  TempDir dir("deltasync-ha");
  const std::string config = dir.write_file(
      "hub.toml", "[nats]\nurl = \"" + nats.url() + "\"\n[store]\npath = \"" + dir.file("hub.db") +
                      "\"\n[http]\nlisten = \"\"\n[streams]\nreplicas = 3\n"
                      "[[types]]\nname = \"products\"\nkey = \"sku\"\ncolumns = [{ name = \"name\", type = \"text\" }]\n");
  CommandResult r = run_to_completion({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "--config", config},
                                      dir.file("hub-run"), {}, 30000);
  EXPECT_NE(r.exit_code, 0);
  const std::string said = r.out + r.err;
  EXPECT_NE(said.find("stream DS_PRODUCTS ([streams] replicas = 3)"), std::string::npos) << said;
  EXPECT_NE(said.find("3 replicas need a JetStream cluster, and this nats-server runs alone"), std::string::npos)
      << said;
}

}  // namespace
}  // namespace ds::testing
