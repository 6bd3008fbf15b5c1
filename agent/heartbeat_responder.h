#pragma once
// HeartbeatResponder: answers the hub's heartbeat requests, the per-type
// broadcast ds.hb.<type> for each type the agent takes and the direct probe
// ds.agent.<id>.hb, with one HeartbeatReply covering ALL the agent's types,
// published on ds.hub.beat.<id> (a plain publish, never a reply: the hub
// sends its requests without a reply subject and knows the sender by the
// subject's last token, which only this agent's credentials may publish).
// The reply is built from the CheckpointBoard (an in-memory copy under a
// mutex) on the cnats delivery thread, so it never waits behind an apply or a
// snapshot load. A request that does not decode is still answered: the hub
// learns the agent is alive either way. A request with "register" set (the
// hub orders a new registration: snapshot needed or schema changed) calls
// `on_register_ordered`, which must not block (it only wakes the Registrar).
// Each request's hub time goes to the HubClock (tombstone ages are hub time).
//
// Thread-safety: start() once from the owner's thread; the subscriptions
// (destroyed with the object) call back on cnats threads.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/checkpoint_board.h"
#include "agent/hub_clock.h"
#include "shared/names.h"
#include "shared/nats.h"

namespace ds {

class HeartbeatResponder {
 public:
  HeartbeatResponder(Connection& nc, const Subjects& subjects, std::string agent_id, CheckpointBoard& board,
                     HubClock& hub_clock, std::function<void()> on_register_ordered)
      : nc_(nc),
        subjects_(subjects),
        agent_id_(std::move(agent_id)),
        beat_subject_(subjects_.hub_beat(agent_id_)),
        board_(board),
        hub_clock_(hub_clock),
        on_register_ordered_(std::move(on_register_ordered)) {}

  // Subscribes ds.hb.<type> for each of `types` and ds.agent.<id>.hb.
  Status start(const std::vector<std::string>& types);

 private:
  void answer(const Message& request);

  Connection& nc_;
  Subjects subjects_;
  std::string agent_id_;
  std::string beat_subject_;  // ds.hub.beat.<id>
  CheckpointBoard& board_;
  HubClock& hub_clock_;
  std::function<void()> on_register_ordered_;
  std::vector<std::unique_ptr<Subscription>> subs_;
};

}  // namespace ds
