#pragma once
// The receiving end of a JetStream push consumer taken with a plain core
// subscription on its deliver subject (Connection::subscribe), the way the
// agent and the test agents take their deltas: deltasync does not use cnats'
// JetStream subscriptions for this (see docs/protocol.md, Push delivery).
//
// What it owns: the JetStream push protocol as a subscriber sees it, in one
// place —
//   - the ack (reply) subject of a delivery and what it says about the
//     delivery (parse_ack_subject);
//   - acknowledgements: "+ACK", "-NAK", "+TERM", "+WPI" published on that
//     subject (acknowledge, acknowledge_sync);
//   - the consumer's control messages, which carry no payload and a "100"
//     status: flow-control requests, answered with an empty message on their
//     reply subject, and idle heartbeats, answered only when they say the
//     consumer stalled on flow control (Nats-Consumer-Stalled names the
//     subject that releases it). classify_push_control decides; every
//     Subscription made by Connection::subscribe answers them on receipt
//     and never hands them to its handler (nats.cc).
//
// The rule it keeps: a delivery is acked on its own ack subject, and nothing
// that is not a well-formed $JS.ACK subject is ever published to as an ack
// (InvalidArgument instead, nothing sent). Acks are fire-and-forget by
// default: a lost ack only causes a redelivery, which the receiver must
// tolerate anyway.
//
// Ack subject layouts (nats-server's consumer.go; cnats' js_getMetaData):
//   v1, 9 tokens — what nats-server 2.9.10 sends (jsAckT "$JS.ACK.%s.%s"
//     followed by ".%d.%d.%d.%d.%d"), and the only form it parses itself:
//     $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>
//   v2, 11 tokens or more — later servers (ADR-15), with a JetStream domain
//     ("_" for none) and an account hash in front, and a random token after
//     <pending>; tokens after <pending> are ignored, as both nats-server
//     and cnats 3.4.1 do:
//     $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>[.<random>...]
//   Numbers are unsigned decimals (at most 20 digits, within uint64_t).
//
// Threads: the parsing and classification are pure functions; acknowledge*
// may be called from any thread (Connection and Messaging are thread-safe),
// typically the
// thread that handles the delivery. acknowledge_sync blocks for the server's
// confirmation: never call it on an io thread.

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace ds {

class Connection;
class Messaging;

// What a $JS.ACK subject says about one delivery.
struct AckSubject {
  int version = 1;           // 1 or 2, the layout above
  std::string domain;        // v2 only; "" when none ("_" on the wire)
  std::string account_hash;  // v2 only
  std::string stream;
  std::string consumer;
  uint64_t delivered = 0;     // how often this message was delivered (1 = first time)
  uint64_t stream_seq = 0;
  uint64_t consumer_seq = 0;
  uint64_t timestamp_ns = 0;  // when the message was stored (Unix ns)
  uint64_t pending = 0;       // messages left for the consumer after this one
};

// Parses a delivery's reply subject. InvalidArgument, naming the subject
// and what is wrong with it (not a $JS.ACK subject, the token count, an
// empty stream or consumer, a number that is not one), for anything else.
Result<AckSubject> parse_ack_subject(std::string_view reply);

enum class AckKind {
  kAck,         // "+ACK": processed
  kNak,         // "-NAK": redeliver
  kTerm,        // "+TERM": never redeliver
  kInProgress,  // "+WPI": still working, restart the ack wait
};
// The body that says `kind` on the wire.
std::string_view ack_body(AckKind kind);

// Publishes the acknowledgement of the delivery whose reply subject is
// `reply` through `nc` (fire-and-forget). InvalidArgument, publishing
// nothing, when `reply` is not a $JS.ACK subject.
Status acknowledge(Connection& nc, std::string_view reply, AckKind kind);
// The same through the Messaging seam (shared/messaging.h).
Status acknowledge(Messaging& messaging, std::string_view reply, AckKind kind);
// The same as a request, waiting up to `timeout_ms` for the server's
// confirmation that it took the acknowledgement.
Status acknowledge_sync(Connection& nc, std::string_view reply, AckKind kind, int64_t timeout_ms = 5000);

// A consumer control message as it arrives: its payload size and headers
// (nullptr when absent). cnats turns the "NATS/1.0 100 <text>" status line
// into the headers "Status" ("100") and "Description" ("<text>").
struct PushFrame {
  size_t data_size = 0;
  const char* status = nullptr;       // "Status"
  const char* description = nullptr;  // "Description"
  const char* reply = nullptr;        // the message's reply subject
  const char* stalled = nullptr;      // "Nats-Consumer-Stalled" (idle heartbeats)
};

enum class PushControlKind {
  kData,           // not a control message: hand it to the handler
  kFlowControl,    // "100 FlowControl Request": answer on its reply subject
  kIdleHeartbeat,  // "100 Idle Heartbeat" (or any other "100"): answer when stalled
};

struct PushControl {
  PushControlKind kind = PushControlKind::kData;
  // Where to publish an empty message (the answer), "" when none is due:
  // the flow-control request's reply subject, or the subject a stalled
  // consumer's idle heartbeat names.
  std::string_view answer_to;
};

// Pure: what a message received on a deliver subject is, and what it needs.
PushControl classify_push_control(const PushFrame& frame);

}  // namespace ds
