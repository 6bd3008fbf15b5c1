// DeliveryManager over a fake broker: what an agent consumer looks like, a
// consumer replaced while a NATS cluster is still applying the delete of the
// old one, the consumer an earlier, unanswered attempt made, and a
// reconnect's check.
#include "hub/delivery_manager.h"

#include <gtest/gtest.h>

#include <memory>

#include "shared/names.h"
#include "tests/harness/fake_env.h"

namespace ds {
namespace {

using ds::testing::FakeConsumerControl;

const std::string kStream = stream_name("price");

HubConfig hub_config(int64_t replicas) {
  HubConfig config;
  TypeConfig price;
  price.name = "price";
  price.schema.key = "sku";
  price.schema.columns = {{"amount", ColumnType::kReal}};
  config.types = {price};
  config.stream_replicas = replicas;
  return config;
}

// Memory storage (the hub recreates a lost consumer from the agent's
// checkpoint), as many copies as the stream.
TEST(DeliveryManagerTest, ConsumersLiveInMemoryWithTheStreamsReplicas) {
  FakeConsumerControl broker;
  for (int64_t replicas : {1, 3}) {
    const HubConfig config = hub_config(replicas);
    const ConsumerSpec spec = DeliveryManager(config, broker).consumer_spec("store-1", "price", "*", 7);
    EXPECT_EQ(spec.replicas, replicas);
    EXPECT_TRUE(spec.memory_storage);
    EXPECT_EQ(spec.start_seq, 8u);
    EXPECT_EQ(spec.durable, consumer_name("store-1"));
  }
}

// A DeliveryManager on `replicas` stream replicas over a fake broker whose
// "price" stream holds 10 messages.
class DeliveryManagerReplaceTest : public ::testing::Test {
 protected:
  void on_replicas(int64_t replicas) {
    config_ = hub_config(replicas);
    broker_.set_stream(kStream, StreamState{.first_seq = 1, .last_seq = 10, .messages = 10});
    delivery_ = std::make_unique<DeliveryManager>(config_, broker_);
  }
  // store-1's consumer opened after seq 3, then replaced by one after seq 5
  // while the broker still finds the deleted one at the create: what that
  // replacement returns.
  Status replace_while_the_delete_lingers() {
    if (Status s = delivery_->open("store-1", "price", "*", 3); !s.is_ok()) return s.with_context("first open");
    broker_.linger_next_delete();
    return delivery_->open("store-1", "price", "*", 5);
  }

  FakeConsumerControl broker_;
  HubConfig config_;
  std::unique_ptr<DeliveryManager> delivery_;
};

// On replicated streams the delete of the consumer being replaced was
// acknowledged, but the create still finds it: unavailable (the
// registration is deferred and retried, not failed with an error), and the
// retry replaces it.
TEST_F(DeliveryManagerReplaceTest, ACreateThatStillFindsTheDeletedConsumerIsUnavailableAndTheRetryOpensIt) {
  on_replicas(3);
  const Status s = replace_while_the_delete_lingers();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_TRUE(s.is_transient());
  EXPECT_NE(s.message().find("the cluster has not finished deleting the consumer it replaces"), std::string::npos)
      << s.to_string();

  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 5).is_ok());
  const auto opened = broker_.consumer(kStream, consumer_name("store-1"));
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->start_seq, 6u);
}

// On a lone server a delete is done when it is answered, so a create that
// still finds the consumer stays an error (someone else made it).
TEST_F(DeliveryManagerReplaceTest, OnOneReplicaACreateThatStillFindsTheConsumerIsAnError) {
  on_replicas(1);
  const Status s = replace_while_the_delete_lingers();
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.to_string();
  EXPECT_FALSE(s.is_transient());
}

// A consumer that is already what the open would create (the same start,
// nothing delivered) is kept; one that delivered, one that starts
// elsewhere and one with a copy online but behind are made again.
TEST_F(DeliveryManagerReplaceTest, AnOpenKeepsTheConsumerItWouldCreateAndRemakesAnyOther) {
  on_replicas(3);
  const std::string name = consumer_name("store-1");
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 3).is_ok());
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 3).is_ok());
  EXPECT_EQ(broker_.added(), 1);
  EXPECT_EQ(broker_.deleted(), 0);

  broker_.deliver(kStream, name, 1);
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 3).is_ok());
  EXPECT_EQ(broker_.added(), 2);
  EXPECT_EQ(broker_.deleted(), 1);

  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 4).is_ok());
  EXPECT_EQ(broker_.added(), 3);
  EXPECT_EQ(broker_.consumer(kStream, name)->start_seq, 5u);

  // An offline copy does not count (a new consumer has one there too).
  broker_.set_followers(kStream, name, {{.name = "n2", .current = false, .offline = true, .lag = 0}});
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 4).is_ok());
  EXPECT_EQ(broker_.added(), 3);
  broker_.set_followers(kStream, name, {{.name = "n2", .current = false, .offline = false, .lag = 7}});
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 4).is_ok());
  EXPECT_EQ(broker_.added(), 4);
}

// On a NATS cluster a create may be carried out but answered too late (the
// new consumer's leader is still being elected): unavailable, and the
// retry keeps the consumer it made instead of drawing again.
TEST_F(DeliveryManagerReplaceTest, ACreateAnsweredTooLateIsUnavailableAndTheRetryKeepsItsConsumer) {
  on_replicas(3);
  broker_.time_out_next_add();
  const Status s = delivery_->open("store-1", "price", "*", 3);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_NE(s.message().find("which the next attempt finds and keeps"), std::string::npos) << s.to_string();

  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 3).is_ok());
  EXPECT_EQ(broker_.added(), 1);
  EXPECT_EQ(broker_.deleted(), 0);
}

// A delete answered too late is done once the consumer is gone; on one
// replica a timeout stays an error.
TEST_F(DeliveryManagerReplaceTest, ADeleteAnsweredTooLateIsDoneWhenTheConsumerIsGone) {
  on_replicas(3);
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 3).is_ok());
  broker_.time_out_next_delete();
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 5).is_ok());
  EXPECT_EQ(broker_.consumer(kStream, consumer_name("store-1"))->start_seq, 6u);

  on_replicas(1);
  ASSERT_TRUE(delivery_->open("store-1", "price", "*", 3).is_ok());
  broker_.time_out_next_delete();
  EXPECT_EQ(delivery_->open("store-1", "price", "*", 5).code(), StatusCode::kDeadlineExceeded);
}

// When an agent's connection comes back, the plan reads whether its
// consumer still exists; the open that recreates a missing one goes on from
// that read instead of asking again.
TEST_F(DeliveryManagerReplaceTest, AReconnectReadsTheConsumerOnceAndRecreatesOneThatIsGone) {
  on_replicas(1);
  PlanInput in;
  in.event = PlanEvent::kReconnected;
  in.sub.type = "price";
  in.sub.delivery.consumer_open = true;
  in.hub_hash = "h";
  const ConsumerPlan plan = delivery_->carry_out("store-1", in);
  EXPECT_EQ(plan.op, ConsumerOp::kOpen);
  EXPECT_TRUE(plan.state.consumer_open) << plan.state.note;
  EXPECT_TRUE(broker_.consumer(kStream, consumer_name("store-1")).has_value());
  EXPECT_EQ(broker_.info_reads(), 1);

  // Present: nothing to do, one more read.
  const ConsumerPlan again = delivery_->carry_out("store-1", in);
  EXPECT_EQ(again.op, ConsumerOp::kKeep);
  EXPECT_EQ(broker_.info_reads(), 2);
  EXPECT_EQ(broker_.added(), 1);
}

}  // namespace
}  // namespace ds
