#pragma once
// A consumer's acknowledgement state as nats-server reports it (consumer
// info), for tests that check what an agent's acks did on the server.

#include <cstdint>
#include <string>

#include <nats/nats.h>

#include "shared/nats.h"

namespace ds::testing {

struct ConsumerAckState {
  uint64_t ack_floor = 0;    // stream sequence of the ack floor
  int64_t ack_pending = -1;  // -1: the consumer info could not be read
  uint64_t delivered = 0;    // stream sequence delivered last
};

inline ConsumerAckState consumer_ack_state(JetStream& js, const std::string& stream, const std::string& consumer) {
  jsConsumerInfo* raw = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetConsumerInfo(&raw, js.raw(), stream.c_str(), consumer.c_str(), nullptr, &jerr);
  const JsConsumerInfoPtr ci(raw);
  if (s != NATS_OK) return {};
  return {ci->AckFloor.Stream, ci->NumAckPending, ci->Delivered.Stream};
}

}  // namespace ds::testing
