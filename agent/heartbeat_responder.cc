#include "agent/heartbeat_responder.h"

#include <set>

#include <spdlog/spdlog.h>

#include "shared/clock.h"
#include "shared/codec.h"

namespace ds {

Status HeartbeatResponder::start(const std::vector<std::string>& types) {
  std::set<std::string> subjects;
  for (const std::string& type : types) subjects.insert(subjects_.heartbeat(type));
  subjects.insert(subjects_.probe(agent_id_));
  for (const std::string& subject : subjects) {
    DS_ASSIGN_OR_RETURN(auto sub, nc_.subscribe(subject, [this](Message m) { answer(m); }));
    subs_.push_back(std::move(sub));
  }
  return Status::ok();
}

void HeartbeatResponder::answer(const Message& request) {
  auto req = decode_heartbeat_request(request.data());
  if (!req.is_ok()) {
    spdlog::debug("heartbeat request on {} does not decode ({}); answering anyway", request.subject(),
                  req.status().message());
  } else {
    hub_clock_.observe(req->ts);
    if (req->reregister) {
      spdlog::info("hub {} orders a new registration", req->hub);
      on_register_ordered_();
    }
  }
  const int64_t now = real_clock().now_system_ms();
  const HeartbeatReply reply = board_.heartbeat(agent_id_, now);
  if (Status s = nc_.publish(beat_subject_, encode(reply)); !s) {
    spdlog::warn("heartbeat reply on {}: {}", beat_subject_, s.message());
  }
}

}  // namespace ds
