// shared/jetstream_push.h without a server: ack subjects in both layouts
// (v1 is what nats-server 2.9.10 sends; JetStreamTest checks a real one),
// malformed ones refused with a clear error, and what a subscriber does with
// a consumer's control messages.

#include "shared/jetstream_push.h"

#include <gtest/gtest.h>

#include <string>

namespace ds {
namespace {

// nats-server 2.9.10, consumer.go: jsAckT "$JS.ACK.%s.%s" + ".%d.%d.%d.%d.%d"
// (delivered, stream seq, consumer seq, timestamp, pending).
constexpr const char* kV1 = "$JS.ACK.DS_INVENTORY.ag_a1.3.42.7.1700000000123456789.5";
// ADR-15 / cnats js_getMetaData: domain and account hash in front, a random
// token at the end.
constexpr const char* kV2 = "$JS.ACK.hubdomain.ACCHASH9.DS_INVENTORY.ag_a1.3.42.7.1700000000123456789.5.r4nd0m";

TEST(AckSubjectTest, V1LayoutAsNatsServer2910SendsIt) {
  auto a = parse_ack_subject(kV1);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->version, 1);
  EXPECT_EQ(a->domain, "");
  EXPECT_EQ(a->account_hash, "");
  EXPECT_EQ(a->stream, "DS_INVENTORY");
  EXPECT_EQ(a->consumer, "ag_a1");
  EXPECT_EQ(a->delivered, 3u);
  EXPECT_EQ(a->stream_seq, 42u);
  EXPECT_EQ(a->consumer_seq, 7u);
  EXPECT_EQ(a->timestamp_ns, 1700000000123456789u);
  EXPECT_EQ(a->pending, 5u);
}

TEST(AckSubjectTest, V2LayoutWithDomainAccountHashAndRandomToken) {
  auto a = parse_ack_subject(kV2);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->version, 2);
  EXPECT_EQ(a->domain, "hubdomain");
  EXPECT_EQ(a->account_hash, "ACCHASH9");
  EXPECT_EQ(a->stream, "DS_INVENTORY");
  EXPECT_EQ(a->consumer, "ag_a1");
  EXPECT_EQ(a->delivered, 3u);
  EXPECT_EQ(a->stream_seq, 42u);
  EXPECT_EQ(a->consumer_seq, 7u);
  EXPECT_EQ(a->timestamp_ns, 1700000000123456789u);
  EXPECT_EQ(a->pending, 5u);
}

TEST(AckSubjectTest, V2UnderscoreDomainMeansNone) {
  auto a = parse_ack_subject("$JS.ACK._.ACCHASH9.S.C.1.2.3.4.0.tok");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->domain, "");
  EXPECT_EQ(a->stream_seq, 2u);
}

TEST(AckSubjectTest, V2TokensAfterPendingAreIgnored) {
  // 11 tokens (no random token) and more than 12, as nats-server and cnats read them.
  auto eleven = parse_ack_subject("$JS.ACK._.H.S.C.1.2.3.4.0");
  ASSERT_TRUE(eleven.is_ok()) << eleven.status().to_string();
  EXPECT_EQ(eleven->pending, 0u);
  auto thirteen = parse_ack_subject("$JS.ACK._.H.S.C.1.2.3.4.9.tok.more");
  ASSERT_TRUE(thirteen.is_ok()) << thirteen.status().to_string();
  EXPECT_EQ(thirteen->pending, 9u);
}

TEST(AckSubjectTest, LargestSequenceFits) {
  auto a = parse_ack_subject("$JS.ACK.S.C.1.18446744073709551615.1.0.0");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->stream_seq, UINT64_MAX);
}

// Each malformed subject is refused with InvalidArgument, and the message
// names the subject and says what is wrong.
void expect_refused(const std::string& reply, const std::string& why) {
  auto a = parse_ack_subject(reply);
  ASSERT_FALSE(a.is_ok()) << reply;
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument) << reply;
  EXPECT_NE(a.status().message().find("'" + reply + "'"), std::string::npos) << a.status().message();
  EXPECT_NE(a.status().message().find(why), std::string::npos) << a.status().message();
}

TEST(AckSubjectTest, MalformedSubjectsAreRefusedWithAClearError) {
  expect_refused("", "no reply subject");
  expect_refused("_INBOX.abc", "does not begin with $JS.ACK.");
  expect_refused("$JS.FC.DS_INVENTORY.ag_a1.x7Yz", "does not begin with $JS.ACK.");
  expect_refused("$js.ack.S.C.1.2.3.4.5", "does not begin with $JS.ACK.");
  expect_refused("$JS.ACK.S.C.1.2.3.4", "8 tokens");
  expect_refused("$JS.ACK.S.C.1.2.3.4.5.6", "10 tokens");
  expect_refused("$JS.ACK..C.1.2.3.4.5", "empty stream name");
  expect_refused("$JS.ACK.S..1.2.3.4.5", "empty consumer name");
  expect_refused("$JS.ACK.S.C.1.x2.3.4.5", "stream sequence 'x2'");
  expect_refused("$JS.ACK.S.C.1.-2.3.4.5", "stream sequence '-2'");
  expect_refused("$JS.ACK.S.C..2.3.4.5", "delivered count ''");
  expect_refused("$JS.ACK.S.C.1.2.3.4.5x", "pending count '5x'");
  expect_refused("$JS.ACK.S.C.1.18446744073709551616.3.4.5", "stream sequence '18446744073709551616'");
  expect_refused("$JS.ACK.S.C.1.2.3.123456789012345678901.5", "timestamp");
  expect_refused("$JS.ACK..H.S.C.1.2.3.4.5.tok", "empty domain or account hash");
  expect_refused("$JS.ACK._.H.S.C.1.2.3.4.5z.tok", "pending count '5z'");
}

TEST(AckBodyTest, EachKindHasItsWireBody) {
  EXPECT_EQ(ack_body(AckKind::kAck), "+ACK");
  EXPECT_EQ(ack_body(AckKind::kNak), "-NAK");
  EXPECT_EQ(ack_body(AckKind::kTerm), "+TERM");
  EXPECT_EQ(ack_body(AckKind::kInProgress), "+WPI");
}

// nats-server 2.9.10 consumer.go: sendFlowControl ("NATS/1.0 100 FlowControl
// Request", reply $JS.FC.<stream>.<consumer>.<rand>) and sendIdleHeartbeat
// ("NATS/1.0 100 Idle Heartbeat", plus Nats-Consumer-Stalled: <fc reply>
// while stalled), both without payload.
TEST(PushControlTest, FlowControlRequestIsAnsweredOnItsReply) {
  PushFrame f;
  f.status = "100";
  f.description = "FlowControl Request";
  f.reply = "$JS.FC.DS_INVENTORY.ag_a1.x7Yz";
  const PushControl c = classify_push_control(f);
  EXPECT_EQ(c.kind, PushControlKind::kFlowControl);
  EXPECT_EQ(c.answer_to, "$JS.FC.DS_INVENTORY.ag_a1.x7Yz");
}

TEST(PushControlTest, IdleHeartbeatNeedsNoAnswer) {
  PushFrame f;
  f.status = "100";
  f.description = "Idle Heartbeat";
  const PushControl c = classify_push_control(f);
  EXPECT_EQ(c.kind, PushControlKind::kIdleHeartbeat);
  EXPECT_EQ(c.answer_to, "");
}

TEST(PushControlTest, StalledIdleHeartbeatReleasesTheConsumer) {
  PushFrame f;
  f.status = "100";
  f.description = "Idle Heartbeat";
  f.stalled = "$JS.FC.DS_INVENTORY.ag_a1.x7Yz";
  const PushControl c = classify_push_control(f);
  EXPECT_EQ(c.kind, PushControlKind::kIdleHeartbeat);
  EXPECT_EQ(c.answer_to, "$JS.FC.DS_INVENTORY.ag_a1.x7Yz");
}

TEST(PushControlTest, DeliveriesAndOtherMessagesAreData) {
  PushFrame delivery;  // a payload, whatever the headers say
  delivery.data_size = 12;
  delivery.status = "100";
  delivery.description = "FlowControl Request";
  EXPECT_EQ(classify_push_control(delivery).kind, PushControlKind::kData);

  PushFrame empty;  // an empty message without status
  EXPECT_EQ(classify_push_control(empty).kind, PushControlKind::kData);

  PushFrame no_responders;  // another status: not the consumer's control message
  no_responders.status = "503";
  EXPECT_EQ(classify_push_control(no_responders).kind, PushControlKind::kData);
}

}  // namespace
}  // namespace ds
