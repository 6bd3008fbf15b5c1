// The hub's lease (hub/hub_lease.h) on a 3-node JetStream cluster: its bucket
// is created with a copy on every node, and two hubs connected to different
// nodes see one holder: it acquires and renews, the other waits, and takes
// it at once when released.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

#include "hub/hub_lease.h"
#include "shared/nats.h"
#include "tests/harness/fake_env.h"
#include "tests/harness/nats_server.h"
#include "testing/nats_cluster.h"

namespace ds::testing {
namespace {

TEST(HubLeaseClusterTest, TheBucketHasThreeReplicasAndOneHubHoldsTheLease) {
  NatsCluster cluster(DELTASYNC_NATS_SERVER, 3);
  Status started = cluster.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();

  auto connect = [&](int node) {
    ConnectOptions opts;
    opts.config.url = cluster.node(node).url();
    opts.name = "HubLeaseClusterTest-" + std::to_string(node);
    return Connection::connect(opts);
  };
  auto nc_a = connect(0);
  auto nc_b = connect(1);
  ASSERT_TRUE(nc_a.is_ok()) << nc_a.status().to_string();
  ASSERT_TRUE(nc_b.is_ok()) << nc_b.status().to_string();
  auto js_a = (*nc_a)->jetstream();
  auto js_b = (*nc_b)->jetstream();
  ASSERT_TRUE(js_a.is_ok() && js_b.is_ok());

  FakeClock clock_a(1'000'000);
  FakeClock clock_b(9'000);
  HubLeaseOptions opts;
  opts.replicas = 3;
  opts.lease_ms = 3000;
  opts.hub_name = "hub-a";
  auto a = HubLease::open(**js_a, opts, clock_a);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string() << cluster.logs();
  opts.hub_name = "hub-b";
  auto b = HubLease::open(**js_b, opts, clock_b);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();

  auto st = (*js_a)->stream_state(std::string("KV_") + kHubLeaseBucket);
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_EQ(st->replicas, 3);
  std::set<std::string> peers{st->leader};
  for (const StreamFollower& f : st->followers) peers.insert(f.name);
  EXPECT_EQ(peers, (std::set<std::string>{"n1", "n2", "n3"}));

  auto won = (*a)->try_acquire();
  ASSERT_TRUE(won.is_ok()) << won.status().to_string();
  ASSERT_TRUE(*won);
  for (int i = 0; i < 6; ++i) {
    clock_a.advance((*a)->renew_period_ms());
    clock_b.advance((*a)->renew_period_ms());
    Status renewed = (*a)->renew();
    ASSERT_TRUE(renewed.is_ok()) << renewed.to_string();
    auto lost = (*b)->try_acquire();
    ASSERT_TRUE(lost.is_ok()) << lost.status().to_string();
    EXPECT_FALSE(*lost) << "round " << i;
  }
  EXPECT_TRUE((*a)->valid_at(clock_a.now_steady_ms()));

  ASSERT_TRUE((*a)->release().is_ok());
  // b reads through another node; its copy may lag the release a moment.
  bool taken = wait_until([&] {
    auto r = (*b)->try_acquire();
    return r.is_ok() && *r;
  }, 5000, 50);
  ASSERT_TRUE(taken);
  // a reads through its own node, whose copy may lag b's acquisition the
  // same way (a read there answered "no holder" once, in a whole-suite run).
  std::optional<std::string> seen;
  const bool sees_b = wait_until([&] {
    auto holder = (*a)->current_holder();
    if (holder.is_ok()) seen = *holder;
    return holder.is_ok() && *holder == (*b)->holder();
  }, 5000, 50);
  EXPECT_TRUE(sees_b) << "a reads the holder as " << seen.value_or("(no one)") << ", not " << (*b)->holder();
}

}  // namespace
}  // namespace ds::testing
