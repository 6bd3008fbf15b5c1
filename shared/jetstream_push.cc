#include "shared/jetstream_push.h"

#include <nats/nats.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <vector>

#include "shared/messaging.h"
#include "shared/nats.h"
#include "shared/nats_internal.h"

namespace ds {
namespace {

constexpr std::string_view kAckPrefix = "$JS.ACK.";
constexpr size_t kV1Tokens = 9;
constexpr size_t kV2MinTokens = 11;

std::vector<std::string_view> split_tokens(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

// An unsigned decimal that fits uint64_t, or nothing.
bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

Status malformed(std::string_view reply, const std::string& why) {
  return Status::invalid_argument("malformed JetStream ack subject '" + std::string(reply) + "': " + why);
}

}  // namespace

Result<AckSubject> parse_ack_subject(std::string_view reply) {
  if (reply.rfind(kAckPrefix, 0) != 0) {
    return malformed(reply, reply.empty() ? "the message has no reply subject (not a JetStream delivery)"
                                          : "it does not begin with $JS.ACK. (not a JetStream delivery)");
  }
  const std::vector<std::string_view> t = split_tokens(reply);
  AckSubject out;
  size_t base = 2;  // index of <stream>
  if (t.size() == kV1Tokens) {
    out.version = 1;
  } else if (t.size() >= kV2MinTokens) {
    out.version = 2;
    base = 4;
    if (t[2] != "_") out.domain = std::string(t[2]);
    out.account_hash = std::string(t[3]);
    if (t[2].empty() || t[3].empty()) return malformed(reply, "empty domain or account hash token");
  } else {
    return malformed(reply, std::to_string(t.size()) + " tokens; a v1 ack subject has " + std::to_string(kV1Tokens) +
                                ", a v2 one " + std::to_string(kV2MinTokens) + " or more");
  }
  if (t[base].empty()) return malformed(reply, "empty stream name");
  if (t[base + 1].empty()) return malformed(reply, "empty consumer name");
  out.stream = std::string(t[base]);
  out.consumer = std::string(t[base + 1]);
  struct Field {
    const char* name;
    uint64_t* value;
  };
  const Field fields[] = {{"delivered count", &out.delivered}, {"stream sequence", &out.stream_seq},
                          {"consumer sequence", &out.consumer_seq}, {"timestamp", &out.timestamp_ns},
                          {"pending count", &out.pending}};
  for (size_t i = 0; i < std::size(fields); ++i) {
    const std::string_view token = t[base + 2 + i];
    if (!parse_u64(token, fields[i].value)) {
      return malformed(reply, std::string(fields[i].name) + " '" + std::string(token) +
                                  "' is not an unsigned decimal number");
    }
  }
  return out;
}

std::string_view ack_body(AckKind kind) {
  switch (kind) {
    case AckKind::kAck: return "+ACK";
    case AckKind::kNak: return "-NAK";
    case AckKind::kTerm: return "+TERM";
    case AckKind::kInProgress: return "+WPI";
  }
  return "+ACK";
}

namespace {

// Only the prefix is checked on the ack path: the subject came from the
// server, and a full parse per delivery would cost for nothing.
Status check_ack_reply(std::string_view reply, AckKind kind) {
  if (reply.rfind(kAckPrefix, 0) == 0) return Status::ok();
  return Status::invalid_argument(std::string(ack_body(kind)) + ": '" + std::string(reply) +
                                  "' is not a JetStream ack subject (not a JetStream delivery); nothing sent");
}

}  // namespace

Status acknowledge(Connection& nc, std::string_view reply, AckKind kind) {
  DS_RETURN_IF_ERROR(check_ack_reply(reply, kind));
  return nc.publish(reply, ack_body(kind));
}

Status acknowledge(Messaging& messaging, std::string_view reply, AckKind kind) {
  DS_RETURN_IF_ERROR(check_ack_reply(reply, kind));
  return messaging.publish(reply, ack_body(kind));
}

Status acknowledge_sync(Connection& nc, std::string_view reply, AckKind kind, int64_t timeout_ms) {
  DS_RETURN_IF_ERROR(check_ack_reply(reply, kind));
  auto confirmation = nc.request(reply, ack_body(kind), timeout_ms);
  if (!confirmation.is_ok()) {
    return confirmation.status().with_context(std::string(ack_body(kind)) + " (waiting for the server)");
  }
  return Status::ok();
}

PushControl classify_push_control(const PushFrame& frame) {
  PushControl out;
  if (frame.data_size > 0 || frame.status == nullptr || std::strcmp(frame.status, "100") != 0) return out;
  if (frame.description != nullptr && std::strncmp(frame.description, "FlowControl", 11) == 0) {
    out.kind = PushControlKind::kFlowControl;
    if (frame.reply != nullptr) out.answer_to = frame.reply;
    return out;
  }
  out.kind = PushControlKind::kIdleHeartbeat;
  if (frame.stalled != nullptr) out.answer_to = frame.stalled;
  return out;
}

bool nats_detail::answer_push_control(natsConnection* nc, natsMsg* m) {
  PushFrame frame;
  const int size = natsMsg_GetDataLength(m);
  frame.data_size = size > 0 ? static_cast<size_t>(size) : 0;
  if (frame.data_size > 0) return false;  // the hot path: a delivery
  if (natsMsgHeader_Get(m, "Status", &frame.status) != NATS_OK) return false;
  (void)natsMsgHeader_Get(m, "Description", &frame.description);
  (void)natsMsgHeader_Get(m, "Nats-Consumer-Stalled", &frame.stalled);
  frame.reply = natsMsg_GetReply(m);
  const PushControl control = classify_push_control(frame);
  if (control.kind == PushControlKind::kData) return false;
  if (!control.answer_to.empty()) {
    const std::string subject(control.answer_to);
    (void)natsConnection_Publish(nc, subject.c_str(), nullptr, 0);
  }
  return true;
}

}  // namespace ds
