// High availability, part 1 (label ha): deltasync on a 3-node JetStream
// cluster on loopback (testing/nats_cluster.h) with [streams] replicas:
// replicas scaled in place, waited for while the cluster cannot place them,
// refused on a lone server; any one node SIGKILLed under load loses nothing
// acknowledged and comes back caught up (ClusterNodeLoss; nats-server 2.9.10
// leaves some restarted node's consumer copy behind in most runs, and the
// hub repairs it: hub/consumer_copy_watch.h, docs/reliability.md, "A NATS
// cluster"). The standby hub and its fencing are tests/ha/hub_takeover_test.cc.
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "shared/names.h"
#include "shared/nats.h"
#include "tests/e2e/fleet.h"
#include "tests/e2e/under_load.h"
#include "testing/nats_cluster.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

constexpr const char* kTypes[] = {"products", "prices", "inventory"};
// A restarted node's copy the hub must repair takes the repair's 10 s grace
// (kConsumerCopyGraceMs) and a registration on top of the catch-up.
constexpr int64_t kCatchUpTimeoutMs = 60000;
// The hub's warning when it orders an agent to register again because a
// copy of its consumer stayed behind (hub/consumer_copy_watch.h).
constexpr const char* kCopyRepair = "although the node is up, which nats-server does not heal by itself";

using Clock = std::chrono::steady_clock;

nlohmann::json product(const std::string& sku) {
  return {{"key", sku}, {"op", "upsert"}, {"fields", {{"name", sku}, {"category", "ha"}}}};
}

// Agents on consumers unless `live_feed`: these scenarios are about the
// agents' consumers and their copies on the cluster's nodes, which an agent
// that is current does not have on the live feed.
FleetOptions clustered(int replicas, bool live_feed = false) {
  FleetOptions o;
  o.nats_cluster_nodes = 3;
  o.stream_replicas = replicas;
  o.live_feed = live_feed;
  return o;
}

Result<std::unique_ptr<Connection>> connect_to(Fleet& fleet) {
  ConnectOptions opts;
  opts.config.url = fleet.nats_url();
  opts.name = "ha test";
  return Connection::connect(opts);
}

// Reads the state of every type's stream and passes each to `check`; the
// first failure (of reading or of `check`) is the result.
template <typename Check>
::testing::AssertionResult each_stream(Fleet& fleet, Check check) {
  auto nc = connect_to(fleet);
  if (!nc.is_ok()) return ::testing::AssertionFailure() << nc.status().to_string();
  auto js = (*nc)->jetstream();
  if (!js.is_ok()) return ::testing::AssertionFailure() << js.status().to_string();
  for (const char* type : kTypes) {
    auto st = (*js)->stream_state(stream_name(type));
    if (!st.is_ok()) return ::testing::AssertionFailure() << st.status().to_string();
    ::testing::AssertionResult ok = check(stream_name(type), *st);
    if (!ok) return ok;
  }
  return ::testing::AssertionSuccess();
}

// The stream has `replicas` copies, a leader, and every follower is online
// and caught up with it. The reason when not.
::testing::AssertionResult stream_replicated(const std::string& stream, const StreamState& st, int replicas) {
  if (st.replicas != replicas || st.leader.empty() || static_cast<int>(st.followers.size()) != replicas - 1) {
    return ::testing::AssertionFailure() << stream << ": " << st.replicas << " replicas, leader '" << st.leader
                                         << "', " << st.followers.size() << " followers";
  }
  for (const StreamFollower& f : st.followers) {
    if (!f.current || f.offline || f.lag != 0) {
      return ::testing::AssertionFailure() << stream << ": follower " << f.name << " current " << f.current
                                           << " offline " << f.offline << " lag " << f.lag;
    }
  }
  return ::testing::AssertionSuccess();
}

// Every stream is stream_replicated.
::testing::AssertionResult streams_replicated(Fleet& fleet, int replicas) {
  return each_stream(fleet, [replicas](const std::string& stream, const StreamState& st) {
    return stream_replicated(stream, st, replicas);
  });
}

// Every agent consumer of every stream has `copies` copies (its leader and
// followers, from $JS.API.CONSUMER.INFO). The reason when not.
::testing::AssertionResult consumers_replicated(Fleet& fleet, size_t copies) {
  auto nc = connect_to(fleet);
  if (!nc.is_ok()) return ::testing::AssertionFailure() << nc.status().to_string();
  auto js = (*nc)->jetstream();
  if (!js.is_ok()) return ::testing::AssertionFailure() << js.status().to_string();
  size_t seen = 0;
  for (const char* type : kTypes) {
    auto names = (*js)->consumer_names(stream_name(type));
    if (!names.is_ok()) return ::testing::AssertionFailure() << names.status().to_string();
    for (const std::string& name : *names) {
      auto reply = (*nc)->request("$JS.API.CONSUMER.INFO." + stream_name(type) + "." + name, "", 2000);
      if (!reply.is_ok()) return ::testing::AssertionFailure() << name << ": " << reply.status().to_string();
      const auto info = nlohmann::json::parse(reply->data(), nullptr, false);
      const auto& cluster = info.is_object() ? info.value("cluster", nlohmann::json::object()) : nlohmann::json();
      const size_t n = (cluster.contains("leader") ? 1 : 0) + cluster.value("replicas", nlohmann::json::array()).size();
      if (n != copies) return ::testing::AssertionFailure() << stream_name(type) << " " << name << ": " << n
                                                             << " copies: " << reply->data();
      ++seen;
    }
  }
  if (seen == 0) return ::testing::AssertionFailure() << "no agent consumer";
  return ::testing::AssertionSuccess();
}

// What a failed catch-up is explained by, short enough to come first (CI
// keeps the start of a failure's output): every agent consumer's copies as
// its leader reports them, and the hub's last lines about consumers (its
// repairs, failed creates and deletes, deferred registrations; not the
// publish retries of a node loss, which would crowd them out).
std::string copies_report(Fleet& fleet) {
  std::ostringstream out;
  out << "\n--- agent consumers' copies, as their leaders report them ---\n";
  auto nc = connect_to(fleet);
  auto js = nc.is_ok() ? (*nc)->jetstream() : Result<std::unique_ptr<JetStream>>(nc.status());
  if (!js.is_ok()) out << js.status().to_string() << "\n";
  for (const char* type : kTypes) {
    if (!js.is_ok()) break;
    auto names = (*js)->consumer_names(stream_name(type));
    for (const std::string& name : names.is_ok() ? *names : std::vector<std::string>{}) {
      out << stream_name(type) << " > " << name << ":";
      auto info = (*js)->consumer_info(stream_name(type), name);
      if (!info.is_ok() || !info->has_value()) {
        out << " " << (info.is_ok() ? "gone" : info.status().to_string()) << "\n";
        continue;
      }
      out << " delivered " << (*info)->delivered;
      for (const StreamFollower& f : (*info)->followers) {
        out << ", " << f.name << (f.offline ? " offline" : "") << (f.current ? " current" : " behind") << " lag "
            << f.lag;
      }
      out << "\n";
    }
  }
  std::vector<std::string> lines;
  std::istringstream log(fleet.hub().log_text());
  for (std::string line; std::getline(log, line);) {
    if (line.find("consumer") != std::string::npos) lines.push_back(line);
  }
  out << "--- the hub's last lines about consumers (" << lines.size() << " in all) ---\n";
  for (size_t i = lines.size() > 15 ? lines.size() - 15 : 0; i < lines.size(); ++i) {
    out << lines[i].substr(0, 300) << "\n";
  }
  return out.str();
}

// Every stream is replicated 3 times, and the node `name` holds one of its
// copies, caught up with its leader (one read of each stream).
::testing::AssertionResult node_caught_up(Fleet& fleet, const std::string& name) {
  return each_stream(fleet, [&name](const std::string& stream, const StreamState& st) {
    if (auto replicated = stream_replicated(stream, st, 3); !replicated) return replicated;
    std::set<std::string> peers = {st.leader};
    for (const StreamFollower& f : st.followers) peers.insert(f.name);
    if (peers.count(name) == 0) return ::testing::AssertionFailure() << stream << " has no copy on " << name;
    return ::testing::AssertionSuccess();
  });
}

// Parameter: the agents take the live feed (true) or consumers (false). On
// the feed, a node's loss moves a stream's leader, and with it the stream's
// republish: a message whose republish was under way is lost for the feed,
// which the agent notices at the next (agent/feed_order.h) and takes from a
// consumer.
class ClusterNodeLoss : public UnderLoadTest, public ::testing::WithParamInterface<bool> {
 protected:
  ClusterNodeLoss() : UnderLoadTest(retail_agents(), clustered(3, GetParam())) {}
};

// Each node in turn SIGKILLed under load with agents attached, every node
// current before each kill (else two copies of some group would be missing
// at once): 30 batches are acknowledged with the node down, every agent is
// live with its consumers again, the node restarted holds a current copy of
// every stream and consumer, and at the end the hub holds exactly what was
// acknowledged, every replica has converged, and no log has an error line.
TEST_P(ClusterNodeLoss, AnyOneNodeKilledUnderLoadLosesNothingAndComesBackCaughtUp) {
  // Under load a follower may be a message behind at any one moment.
  ASSERT_TRUE(wait_until([&] { return bool(streams_replicated(fleet_, 3)); }, kCatchUpTimeoutMs, 200))
      << streams_replicated(fleet_, 3).message();
  NatsCluster& cluster = fleet_.cluster();
  for (int i = 0; i < cluster.size(); ++i) {
    SCOPED_TRACE("node " + cluster.server_name(i) + " killed");
    // Every node holds a current copy of everything before the next loss
    // (else two copies of some group would be missing at once).
    for (int n = 0; n < cluster.size(); ++n) {
      Status current = cluster.wait_current(n, kCatchUpTimeoutMs);
      ASSERT_TRUE(current.is_ok()) << current.to_string() << copies_report(fleet_) << cluster.logs();
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
    ASSERT_TRUE(current.is_ok()) << current.to_string() << copies_report(fleet_) << cluster.logs();
    EXPECT_TRUE(wait_until([&] { return bool(node_caught_up(fleet_, cluster.server_name(i))); }, kCatchUpTimeoutMs,
                           200))
        << node_caught_up(fleet_, cluster.server_name(i)).message() << cluster.logs();
    const size_t repairs = fleet_.hub().log_count(kCopyRepair);
    std::printf("[ info ] %s killed: 30 more batches acked after %lld ms, every agent live after %lld ms; "
                "restarted and current (20 batches later) after %lld ms; consumer copies repaired so far: %zu\n",
                cluster.server_name(i).c_str(), static_cast<long long>(loaded_ms), static_cast<long long>(live_ms),
                static_cast<long long>(ms_since(restarted)), repairs);
  }
  ASSERT_NO_FATAL_FAILURE(finish());
}

INSTANTIATE_TEST_SUITE_P(Agents, ClusterNodeLoss, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return std::string(param.param ? "OnTheLiveFeed" : "OnConsumers");
                         });

// [streams] replicas changed on a running system: the hub applies it to the
// existing streams when it starts (the server adds or drops copies in place).
TEST(ClusterStreamReplicas, HubRestartedWithThreeReplicasScalesExistingStreamsInPlace) {
  Fleet fleet(retail_agents(), clustered(1));
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  ASSERT_TRUE(streams_replicated(fleet, 1));
  ASSERT_TRUE(fleet.push("products", nlohmann::json::array({product("a-1")})).is_ok());
  ASSERT_TRUE(fleet.wait_all_live().is_ok());
  EXPECT_TRUE(consumers_replicated(fleet, 1));

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
  // The agents' consumers moved with their streams (nats-server remaps a
  // scaled stream's durable consumers onto its new peers).
  EXPECT_TRUE(wait_until([&] { return bool(consumers_replicated(fleet, 3)); }, kCatchUpTimeoutMs, 200))
      << consumers_replicated(fleet, 3).message();
}

// A hub started while its cluster cannot place three copies (a node not up
// yet, as when the whole system boots at once) waits, saying why, and comes
// up with its streams once the node is.
TEST(ClusterStreamReplicas, AHubStartedBeforeItsClusterCanPlaceThreeCopiesWaitsAndComesUp) {
  NatsCluster cluster(DELTASYNC_NATS_SERVER, 3);
  Status started = cluster.start(2);  // n3 not started yet
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  TempDir dir("deltasync-ha");
  const std::string config = dir.write_file(
      "hub.toml", "[nats]\nurl = \"" + cluster.urls() + "\"\n[store]\npath = \"" + dir.file("hub.db") +
                      "\"\n[http]\nlisten = \"\"\n[streams]\nreplicas = 3\n"
                      "[[types]]\nname = \"products\"\nkey = \"sku\"\ncolumns = [{ name = \"name\", type = \"text\" }]\n");
  ChildProcess hub({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "--config", config}, dir.file("hub.log"));
  ASSERT_TRUE(hub.start().is_ok());
  ASSERT_TRUE(wait_until([&] { return hub.log_count("hub: streams not ready yet") > 0 || !hub.running(); }, 30000))
      << hub.log_text();
  ASSERT_TRUE(hub.running()) << hub.log_text();
  EXPECT_NE(hub.log_text().find("stream DS_PRODUCTS ([streams] replicas = 3)"), std::string::npos)
      << hub.log_text();
  EXPECT_NE(hub.log_text().find("start the missing nodes"), std::string::npos) << hub.log_text();
  EXPECT_EQ(hub.log_count("' started: nats "), 0u) << hub.log_text();

  ASSERT_TRUE(cluster.start_node(2).is_ok());
  ASSERT_TRUE(wait_until([&] { return hub.log_count("' started: nats ") > 0 || !hub.running(); }, 30000))
      << hub.log_text() << cluster.logs();
  ASSERT_TRUE(hub.running()) << hub.log_text();
  {
    ConnectOptions opts;
    opts.config.url = cluster.urls();
    opts.name = "ha test";
    auto nc = Connection::connect(opts);
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
    auto js = (*nc)->jetstream();
    ASSERT_TRUE(js.is_ok()) << js.status().to_string();
    auto st = (*js)->stream_state(stream_name("products"));
    ASSERT_TRUE(st.is_ok()) << st.status().to_string();
    EXPECT_EQ(st->replicas, 3);
  }
  EXPECT_EQ(hub.stop(SIGTERM, 30000), std::optional<int>(0)) << hub.log_text();
  EXPECT_EQ(error_line_count(hub.log_text()), 0u) << hub.log_text();
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
