// DeliveryManager over a fake broker: what an agent consumer looks like,
// and a consumer replaced while a NATS cluster is still applying the delete
// of the old one.
#include "hub/delivery_manager.h"

#include <gtest/gtest.h>

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

// store-1's consumer of "price" opened after seq 3 on `replicas` replicas,
// then replaced by one after seq 5 while the broker still finds the deleted
// one at the create: what that replacement returns.
Status replace_while_the_delete_lingers(FakeConsumerControl& broker, DeliveryManager& delivery) {
  broker.set_stream(kStream, StreamState{.first_seq = 1, .last_seq = 10, .messages = 10});
  if (Status s = delivery.open("store-1", "price", "*", 3); !s.is_ok()) return s.with_context("first open");
  broker.linger_next_delete();
  return delivery.open("store-1", "price", "*", 5);
}

// On replicated streams the delete of the consumer being replaced was
// acknowledged, but the create still finds it: unavailable (the
// registration is deferred and retried, not failed with an error), and the
// retry replaces it.
TEST(DeliveryManagerTest, ACreateThatStillFindsTheDeletedConsumerIsUnavailableAndTheRetryOpensIt) {
  FakeConsumerControl broker;
  const HubConfig config = hub_config(3);
  DeliveryManager delivery(config, broker);
  const Status s = replace_while_the_delete_lingers(broker, delivery);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_TRUE(s.is_transient());
  EXPECT_NE(s.message().find("the cluster has not finished deleting the consumer it replaces"), std::string::npos)
      << s.to_string();

  ASSERT_TRUE(delivery.open("store-1", "price", "*", 5).is_ok());
  const auto opened = broker.consumer(kStream, consumer_name("store-1"));
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->start_seq, 6u);
}

// On a lone server a delete is done when it is answered, so a create that
// still finds the consumer stays an error (someone else made it).
TEST(DeliveryManagerTest, OnOneReplicaACreateThatStillFindsTheConsumerIsAnError) {
  FakeConsumerControl broker;
  const HubConfig config = hub_config(1);
  DeliveryManager delivery(config, broker);
  const Status s = replace_while_the_delete_lingers(broker, delivery);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.to_string();
  EXPECT_FALSE(s.is_transient());
}

}  // namespace
}  // namespace ds
