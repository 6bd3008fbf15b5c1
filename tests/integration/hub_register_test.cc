// Registration (step 1) against a real nats-server: consumers created from
// the reported checkpoint with the partition filter, snapshots ordered for
// checkpoints that left the stream, and refusals.

#include <nats/nats.h>

#include <gtest/gtest.h>

#include "shared/codec.h"
#include "shared/schema.h"
#include "tests/harness/test_agent.h"

namespace ds::testing {
namespace {

class HubRegisterTest : public AgentServiceTest {
 protected:
  void SetUp() override {
    AgentServiceTest::SetUp();
    if (HasFatalFailure()) return;
    start_service();
  }

  // The server's view of a consumer's configuration.
  struct ConsumerView {
    std::string filter;
    std::string deliver_subject;
    uint64_t start_seq = 0;
    bool memory = false;
    int64_t max_ack_pending = 0;
    bool flow_control = false;
    jsAckPolicy ack = js_AckNone;
  };
  ConsumerView consumer_view(const std::string& type, const std::string& agent) {
    jsConsumerInfo* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetConsumerInfo(&raw, js_->raw(), stream_name(type).c_str(), consumer_name(agent).c_str(),
                                      nullptr, &jerr);
    EXPECT_EQ(s, NATS_OK) << "consumer info: " << natsStatus_GetText(s) << " " << jerr;
    const JsConsumerInfoPtr ci(raw);
    ConsumerView v;
    if (s != NATS_OK) return v;
    v.filter = ci->Config->FilterSubject != nullptr ? ci->Config->FilterSubject : "";
    v.deliver_subject = ci->Config->DeliverSubject != nullptr ? ci->Config->DeliverSubject : "";
    v.start_seq = ci->Config->OptStartSeq;
    v.memory = ci->Config->MemoryStorage;
    v.max_ack_pending = ci->Config->MaxAckPending;
    v.flow_control = ci->Config->FlowControl;
    v.ack = ci->Config->AckPolicy;
    return v;
  }
};

TEST_F(HubRegisterTest, RegistrationCreatesAConsumerFilteredOnThePartitionFromTheCheckpoint) {
  const uint64_t s1 = publish_change("inventory", "store-1", 1, "a");
  publish_change("inventory", "store-2", 2, "b");
  const uint64_t s3 = publish_change("inventory", "store-1", 3, "c");

  auto agent = make_agent("store-1-agent", {{.type = "inventory", .partition = "store-1", .version = 1, .seq = s1}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(reply->ok()) << reply->error->message;
  EXPECT_EQ(reply->heartbeat_ms, 200u);
  ASSERT_EQ(reply->deliveries.size(), 1u);
  const Delivery& d = reply->deliveries[0];
  EXPECT_EQ(d.type, "inventory");
  EXPECT_EQ(d.subject, "ds.push.store-1-agent.inventory");
  EXPECT_EQ(d.resume, Resume::kStream);
  EXPECT_EQ(d.schema, config_.types[0].schema);
  EXPECT_EQ(d.schema_hash, schema_hash(config_.types[0].schema));

  ASSERT_TRUE(consumer_exists("inventory", "store-1-agent"));
  ConsumerView v = consumer_view("inventory", "store-1-agent");
  EXPECT_EQ(v.filter, "ds.delta.inventory.store-1");
  EXPECT_EQ(v.deliver_subject, "ds.push.store-1-agent.inventory");
  EXPECT_EQ(v.start_seq, s1 + 1);
  EXPECT_TRUE(v.memory);
  EXPECT_TRUE(v.flow_control);
  EXPECT_EQ(v.max_ack_pending, 100);
  EXPECT_EQ(v.ack, js_AckExplicit);

  // Exactly the next change of its partition arrives, nothing of store-2.
  ASSERT_TRUE(eventually([&] { return !agent->received().empty(); }));
  const auto got = agent->received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].stream_seq, s3);
  EXPECT_EQ(got[0].batch.changes.at(0).v, 3u);
}

TEST_F(HubRegisterTest, AnyPartitionAndUnpartitionedTypesFilterOnTheWholeType) {
  auto agent = make_agent("central", {{.type = "inventory", .partition = "*"}, {.type = "prices", .partition = "*"}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_EQ(consumer_view("inventory", "central").filter, "ds.delta.inventory.>");
  EXPECT_EQ(consumer_view("prices", "central").filter, "ds.delta.prices.>");
  // A fresh agent (checkpoint 0) gets everything from the first message.
  EXPECT_EQ(consumer_view("prices", "central").start_seq, 1u);

  publish_change("inventory", "store-1", 1, "a");
  publish_change("inventory", "store-2", 2, "b");
  publish_change("prices", "_all", 1, "p");
  ASSERT_TRUE(eventually([&] { return agent->received().size() == 3; }));
}

TEST_F(HubRegisterTest, RegistrationIsStoredWithItsCheckpoints) {
  auto agent = make_agent("store-9", {{.type = "inventory", .partition = "store-9", .version = 0, .seq = 0,
                                       .ts = 0, .rows = 0}});
  ASSERT_NE(agent, nullptr);
  agent->set_checkpoint("inventory", 0, 0, 0);
  ASSERT_TRUE(agent->register_now().is_ok());

  auto rec = service_->registry().find("store-9");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state, AgentState::kLive);
  EXPECT_EQ(rec->host, "test-host");
  ASSERT_EQ(rec->subscriptions.count("inventory"), 1u);
  EXPECT_EQ(rec->subscriptions.at("inventory").partition, "store-9");
  EXPECT_TRUE(rec->subscriptions.at("inventory").delivery.consumer_open);

  auto events = service_->registry().events("store-9");
  ASSERT_TRUE(events.is_ok()) << events.status().to_string();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ(events->at(0).from_state, "");
  EXPECT_EQ(events->at(0).to_state, "live");
}

TEST_F(HubRegisterTest, UnknownTypeIsRefusedNamingTheType) {
  auto agent = make_agent("a1", {{.type = "inventory", .partition = "store-1"}, {.type = "recipes", .partition = "*"}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
  EXPECT_NE(reply->error->message.find("recipes"), std::string::npos) << reply->error->message;
  // Nothing of a refused registration takes effect.
  EXPECT_FALSE(consumer_exists("inventory", "a1"));
  EXPECT_FALSE(service_->registry().find("a1").has_value());
}

TEST_F(HubRegisterTest, BadPartitionIsRefused) {
  auto agent = make_agent("a1", {{.type = "inventory", .partition = "store 1"}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
  EXPECT_NE(reply->error->message.find("partition"), std::string::npos) << reply->error->message;
  EXPECT_FALSE(consumer_exists("inventory", "a1"));
}

TEST_F(HubRegisterTest, PartitionOfAnUnpartitionedTypeIsRefused) {
  auto agent = make_agent("a1", {{.type = "prices", .partition = "store-1"}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
  EXPECT_NE(reply->error->message.find("not partitioned"), std::string::npos) << reply->error->message;
}

TEST_F(HubRegisterTest, RegisteringInAnotherAgentsNameIsDenied) {
  auto agent = make_agent("a1", {{.type = "prices", .partition = "*"}});
  ASSERT_NE(agent, nullptr);
  RegisterRequest req;
  req.agent = "a1";
  req.subscriptions = {{.type = "prices", .partition = "*"}};
  auto reply = agent->register_raw("ds.hub.register.a2", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kPermissionDenied);
  EXPECT_NE(reply->error->message.find("a2"), std::string::npos) << reply->error->message;
  EXPECT_FALSE(consumer_exists("prices", "a1"));
  EXPECT_FALSE(consumer_exists("prices", "a2"));
}

TEST_F(HubRegisterTest, UndecodableRequestIsRefused) {
  auto agent = make_agent("a1", {});
  ASSERT_NE(agent, nullptr);
  auto m = agent->connection().request("ds.hub.register.a1", "not msgpack", 5000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto reply = decode_register_reply(m->data());
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
}

TEST_F(HubRegisterTest, CheckpointOlderThanTheStreamGetsASnapshotAndNoConsumer) {
  publish_change("inventory", "store-1", 1, "a");
  publish_change("inventory", "store-1", 2, "b");
  const uint64_t s3 = publish_change("inventory", "store-1", 3, "c");
  purge("inventory");  // first_seq becomes 4
  const uint64_t s4 = publish_change("inventory", "store-1", 4, "d");
  publish_change("inventory", "store-1", 5, "e");

  auto agent = make_agent("late", {{.type = "inventory", .partition = "store-1", .version = 1, .seq = 1}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  ASSERT_EQ(reply->deliveries.size(), 1u);
  EXPECT_EQ(reply->deliveries[0].resume, Resume::kSnapshot);
  EXPECT_FALSE(consumer_exists("inventory", "late"));
  EXPECT_TRUE(service_->registry().find("late")->subscriptions.at("inventory").delivery.awaiting_snapshot);

  // After paging the snapshot the agent registers again at the snapshot's
  // high_seq and resumes from the stream right after it.
  agent->set_checkpoint("inventory", 4, s4, 1000);
  reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_EQ(reply->deliveries[0].resume, Resume::kStream);
  EXPECT_TRUE(consumer_exists("inventory", "late"));
  EXPECT_EQ(consumer_view("inventory", "late").start_seq, s4 + 1);
  EXPECT_EQ(s4, s3 + 1);
}

TEST_F(HubRegisterTest, CheckpointJustBeforeTheFirstMessageResumesFromTheStream) {
  publish_change("prices", "_all", 1, "a");
  const uint64_t s2 = publish_change("prices", "_all", 2, "b");
  purge("prices");
  const uint64_t s3 = publish_change("prices", "_all", 3, "c");

  auto agent = make_agent("edge", {{.type = "prices", .partition = "*", .version = 2, .seq = s2}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_EQ(reply->deliveries[0].resume, Resume::kStream);
  ASSERT_TRUE(eventually([&] { return agent->received().size() == 1; }));
  EXPECT_EQ(agent->received()[0].stream_seq, s3);
}

TEST_F(HubRegisterTest, AllMessagesAgedOutStillMeansSnapshotForAnOldCheckpoint) {
  publish_change("prices", "_all", 1, "a");
  publish_change("prices", "_all", 2, "b");
  purge("prices");  // no messages left, but the type has data

  auto agent = make_agent("fresh", {{.type = "prices", .partition = "*"}});
  ASSERT_NE(agent, nullptr);
  auto reply = agent->register_now();
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_EQ(reply->deliveries[0].resume, Resume::kSnapshot);
}

TEST_F(HubRegisterTest, ReRegistrationDropsConsumersOfTypesNoLongerTaken) {
  auto agent = make_agent("shrinking", {{.type = "inventory", .partition = "*"}, {.type = "prices", .partition = "*"}});
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(agent->register_now().is_ok());
  ASSERT_TRUE(consumer_exists("prices", "shrinking"));

  RegisterRequest req;
  req.agent = "shrinking";
  req.subscriptions = {{.type = "inventory", .partition = "*"}};
  auto reply = agent->register_raw("ds.hub.register.shrinking", req);
  ASSERT_TRUE(reply.is_ok() && reply->ok());
  EXPECT_TRUE(consumer_exists("inventory", "shrinking"));
  EXPECT_FALSE(consumer_exists("prices", "shrinking"));
}

}  // namespace
}  // namespace ds::testing
