// Acks that outlive their consumer. The hub replaces an agent's consumer
// (same durable name ag_<agent>) at every registration and whenever the
// agent comes back from dead, while the agent may still hold deliveries of
// the consumer it replaced: an agent resumed after SIGSTOP, or a restarted
// agent that subscribed before registering while the old consumer still had
// room to push. The agent applies them (the data is the stream's) and acks
// them, and those acks reach the new consumer, which has the same name.
//
// With ack policy "all", such an ack carried the old consumer's delivery
// sequence: nats-server 2.9 moved the new consumer's ack floor past its own
// deliveries and then ignored the agent's real acks until redeliveries
// (ack_wait, 30 s) had numbered past it, so the agent stalled for half a
// minute or more (the flaky AgentProcessTest.KilledMidBacklog... run). Under
// ack policy "explicit" an ack names a stream message, which the agent did
// apply, so a stale ack is true and harmless. This test drives the real
// DeltaApplier with consumers made by the real DeliveryManager.
#include <future>

#include <gtest/gtest.h>

#include "agent/checkpoint_board.h"
#include "agent/delta_applier.h"
#include "agent/replica.h"
#include "hub/delivery_manager.h"
#include "tests/harness/consumer_state.h"
#include "tests/integration/agent_test_support.h"

namespace ds::testing {
namespace {

class ConsumerGenerationTest : public AgentIntegrationTest {
 protected:
  void SetUp() override {
    AgentIntegrationTest::SetUp();
    if (HasFatalFailure()) return;
    js_ = jetstream(*nc_);
    ASSERT_NE(js_, nullptr);
  }

  std::unique_ptr<JetStream> js_;
};

TEST_F(ConsumerGenerationTest, AcksOfAReplacedConsumerDoNotStallItsSuccessor) {
  HubConfig hub_config;
  hub_config.types = {TypeConfig{"prices", prices_schema()}};
  DeliveryManager delivery(hub_config, *js_);

  auto opened = Replica::open(dir_.file("store-1.db"));
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  std::unique_ptr<Replica> replica = std::move(opened).value();
  ASSERT_TRUE(replica->ensure_table("prices", prices_schema()).is_ok());
  CheckpointBoard board;
  NatsMessaging messaging(*nc_);
  DeltaApplier applier(*replica, messaging, board, ApplierOptions{});
  ASSERT_TRUE(applier.start().is_ok());

  // 30 deltas of one change each: stream seqs 1..30.
  std::vector<IngestRecord> first;
  for (int i = 0; i < 30; ++i) first.push_back(price("k" + std::to_string(i), "s1", i));
  ASSERT_TRUE(hub_->commit("prices", first, /*batch_size=*/1).is_ok());

  // The apply thread is busy while the first consumer delivers all 30
  // (released on every path, so a failed assertion cannot hang the test).
  struct Gate {
    std::promise<void> promise;
    bool open = false;
    void release() {
      if (!open) promise.set_value();
      open = true;
    }
    ~Gate() { release(); }
  } gate;
  std::shared_future<void> released = gate.promise.get_future().share();
  (void)applier.post([released](Replica&) {
    released.wait();
    return Status::ok();
  });
  std::atomic<int> received{0};
  auto push = messaging.subscribe(Subjects().push("store-1", "prices"), [&](Envelope m) {
    ++received;
    applier.on_push("prices", std::move(m));
  });
  ASSERT_TRUE(push.is_ok()) << push.status().to_string();
  ASSERT_TRUE(delivery.open("store-1", "prices", std::string(kAnyPartition), 0).is_ok());
  ASSERT_TRUE(eventually([&] { return received.load() == 30; })) << received.load();

  // The agent goes quiet (no interest) and the hub replaces the consumer
  // from its checkpoint, seq 20. Then the apply thread catches up and acks
  // what the first consumer delivered.
  (*push).reset();
  ASSERT_TRUE(delivery.open("store-1", "prices", std::string(kAnyPartition), 20).is_ok());
  gate.release();
  ASSERT_TRUE(eventually([&] {
    auto cp = board.checkpoint("prices");
    return cp && cp->seq == 30;
  }));
  ASSERT_TRUE(nc_->flush().is_ok());

  // Back: the new consumer delivers 21..30 again and then 31..60.
  push = messaging.subscribe(Subjects().push("store-1", "prices"),
                             [&](Envelope m) { applier.on_push("prices", std::move(m)); });
  ASSERT_TRUE(push.is_ok()) << push.status().to_string();
  std::vector<IngestRecord> more;
  for (int i = 30; i < 60; ++i) more.push_back(price("k" + std::to_string(i), "s1", i));
  ASSERT_TRUE(hub_->commit("prices", more, /*batch_size=*/1).is_ok());

  // Everything is acknowledged within seconds, not after ack_wait.
  ConsumerAckState st;
  EXPECT_TRUE(eventually(
      [&] {
        st = consumer_ack_state(*js_, stream_name("prices"), consumer_name("store-1"));
        return st.ack_floor == 60 && st.ack_pending == 0;
      },
      10000))
      << "ack floor " << st.ack_floor << ", " << st.ack_pending << " pending, delivered up to " << st.delivered;
  EXPECT_EQ(replica->key_versions("prices")->size(), 60u);
  (*push).reset();
  applier.stop();
}

}  // namespace
}  // namespace ds::testing
