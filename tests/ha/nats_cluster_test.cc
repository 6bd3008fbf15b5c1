// The cluster starter of the ha tests (testing/nats_cluster.h), on its own:
// three nodes form one JetStream cluster, a replicated stream keeps taking
// messages with any node SIGKILLed, and the node started again catches up.
#include "testing/nats_cluster.h"

#include <gtest/gtest.h>

#include <set>

#include "shared/nats.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

// The stream's leader and followers as its leader reports them; "" when
// some follower is offline, behind, or not current.
std::string caught_up_peers(JetStream& js) {
  auto st = js.stream_state("HA_PROBE");
  if (!st.is_ok() || st->leader.empty()) return "";
  std::string peers = st->leader;
  for (const StreamFollower& f : st->followers) {
    if (!f.current || f.offline || f.lag != 0) return "";
    peers += "," + f.name;
  }
  return peers;
}

// Three nodes started, a client connected to all of them, and stream
// HA_PROBE (subject ha.probe) with three replicas.
class NatsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status started = cluster_.start();
    ASSERT_TRUE(started.is_ok()) << started.to_string();
    ASSERT_EQ(cluster_.urls().find(cluster_.node(0).url()), 0u);
    ConnectOptions opts;
    opts.config.url = cluster_.urls();
    opts.name = "NatsClusterTest";
    auto nc = Connection::connect(opts);
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
    nc_ = std::move(*nc);
    auto js = nc_->jetstream();
    ASSERT_TRUE(js.is_ok()) << js.status().to_string();
    js_ = std::move(*js);
    StreamSpec spec;
    spec.name = "HA_PROBE";
    spec.subjects = {"ha.probe"};
    spec.replicas = 3;
    Status created = js_->ensure_stream(spec);
    ASSERT_TRUE(created.is_ok()) << created.to_string() << cluster_.logs();
  }

  NatsCluster cluster_{DELTASYNC_NATS_SERVER, 3};
  std::unique_ptr<Connection> nc_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(NatsClusterTest, ThreeNodesFormOneJetStreamClusterAndAKilledNodeRejoinsCaughtUp) {
  NatsCluster& cluster = cluster_;
  JetStream* js = js_.get();
  ASSERT_TRUE(wait_until([&] { return !caught_up_peers(*js).empty(); }, 30000, 100)) << cluster.logs();
  const std::string all = caught_up_peers(*js);
  for (int i = 0; i < 3; ++i) EXPECT_NE(all.find(cluster.server_name(i)), std::string::npos) << all;

  uint64_t sent = 0;
  auto publish = [&](int n) {
    for (int k = 0; k < n; ++k) {
      ++sent;
      // Acked by a majority; retried while a leader is elected (same id:
      // the stream drops the duplicate).
      const std::string id = "m" + std::to_string(sent);
      bool acked = wait_until([&] { return js->publish("ha.probe", id, id, 2000).is_ok(); }, 30000, 100);
      ASSERT_TRUE(acked) << "message " << sent << cluster.logs();
    }
  };
  for (int i = 0; i < cluster.size(); ++i) {
    SCOPED_TRACE(cluster.server_name(i) + " killed");
    ASSERT_NO_FATAL_FAILURE(publish(10));
    cluster.kill_node(i);
    EXPECT_FALSE(cluster.node(i).running());
    ASSERT_NO_FATAL_FAILURE(publish(10));
    Status back = cluster.start_node(i);
    ASSERT_TRUE(back.is_ok()) << back.to_string();
    ASSERT_TRUE(wait_until([&] { return caught_up_peers(*js).find(cluster.server_name(i)) != std::string::npos; },
                           30000, 100))
        << cluster.logs();
    Status current = cluster.wait_current(i, 30000);
    ASSERT_TRUE(current.is_ok()) << current.to_string();
    auto st = js->stream_state("HA_PROBE");
    ASSERT_TRUE(st.is_ok()) << st.status().to_string();
    EXPECT_EQ(st->messages, sent);
  }
}

// A consumer with three copies reads back as created, followers included
// (the hub keeps a consumer that is already what it would create).
TEST_F(NatsClusterTest, AReplicatedConsumerReadsBackAsCreated) {
  ConsumerSpec spec;
  spec.durable = "ag_probe";
  spec.filter_subject = "ha.probe";
  spec.deliver_subject = "ha.push.probe";
  spec.start_seq = 4;
  spec.replicas = 3;
  Status added = js_->add_consumer("HA_PROBE", spec);
  ASSERT_TRUE(added.is_ok()) << added.to_string() << cluster_.logs();
  auto info = js_->consumer_info("HA_PROBE", "ag_probe");
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->spec, spec);
  EXPECT_EQ((*info)->delivered, 0u);
  EXPECT_EQ((*info)->followers.size(), 2u);
}

}  // namespace
}  // namespace ds::testing
