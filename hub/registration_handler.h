#pragma once
// RegistrationHandler: registration (docs/protocol.md, "Semantics") — a request on
// ds.hub.register.<agent> becomes a stored configuration report, a live
// agent, and one delivery per subscription (consumer created from the
// checkpoint, or a snapshot ordered), as the consumer planner decides
// (hub/consumer_planner.h, event "registered").
//
// Refusals (the whole registration; nothing is stored or changed):
//  - the subject's last token differs from the request's `agent`:
//    permission_denied (the token is what NATS permissions bind, so an agent
//    cannot register in another's name);
//  - a subscription beyond the agent's grants (Authorizer::may_take: a type
//    it may not take, another partition, "*" with a one-partition grant):
//    permission_denied naming it;
//  - an undeclared type, a duplicate type, a bad partition value, or a
//    partition on an unpartitioned type: invalid_argument naming the type;
//  - undecodable bytes: invalid_argument naming the field.
// A JetStream failure while creating consumers is replied as that error
// (usually unavailable): the report is stored, the agent retries. So is a
// registration the agent stopped waiting for (deadline_exceeded, see
// AgentWaits), which the agent will not read.
//
// Not thread-safe: runs on the agent service's thread, which owns the
// registry's writer, the tracker and the delivery manager.

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <string_view>

#include "hub/agent_registry.h"
#include "hub/authorizer.h"
#include "hub/delivery_manager.h"
#include "hub/liveness_tracker.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/status.h"

namespace ds {

class RegistrationHandler {
 public:
  // Called with each state change the registration causes, to log and store.
  using TransitionSink = std::function<void(const Transition&)>;

  RegistrationHandler(const HubConfig& config, Authorizer& authorizer, AgentRegistry& registry,
                      LivenessTracker& tracker, DeliveryManager& delivery, TransitionSink on_transition);

  // Checks the request against the subject, the configuration and the
  // agent's grants.
  Status validate(std::string_view subject, const RegisterRequest& request) const;

  // True while the requesting agent still waits for the reply; checked
  // before each subscription's consumer is planned, so a registration slowed
  // past the agent's reply timeout (a NATS cluster electing leaders) stops
  // instead of recreating consumers nobody waits for. Unset: always true.
  using AgentWaits = std::function<bool()>;

  // Handles one encoded request that arrived on `subject`; returns the reply.
  RegisterReply handle(std::string_view subject, std::string_view bytes, int64_t now_steady_ms,
                       int64_t now_wall_ms, const AgentWaits& agent_waits = {});
  RegisterReply handle(std::string_view subject, const RegisterRequest& request, int64_t now_steady_ms,
                       int64_t now_wall_ms, const AgentWaits& agent_waits = {});

  // deltasync verify --repair: the next registration of `agent` that
  // reports `type` is answered resume: snapshot for it, whatever its
  // checkpoint (once; the agent then loads the snapshot, which replaces its
  // rows of the type, and registers again).
  void order_snapshot(const std::string& agent, const std::string& type);

 private:
  Status open_deliveries(const RegisterRequest& request, RegisterReply& reply, const AgentWaits& agent_waits);

  const HubConfig& config_;
  Authorizer& authorizer_;
  AgentRegistry& registry_;
  LivenessTracker& tracker_;
  DeliveryManager& delivery_;
  TransitionSink on_transition_;
  std::set<std::pair<std::string, std::string>> snapshot_orders_;  // (agent, type)
};

}  // namespace ds
