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
// Not thread-safe, but for open(): begin() and finish() run on the agent
// service's thread, which owns the registry's writer and the tracker.

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hub/agent_registry.h"
#include "hub/agents_report.h"
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

  // `marks`: the partitions' newest versions, for the live feed's rule
  // (consumer_planner.h); thread-safe, it must outlive the handler.
  RegistrationHandler(const HubConfig& config, Authorizer& authorizer, AgentRegistry& registry,
                      LivenessTracker& tracker, DeliveryManager& delivery, const PartitionMarks& marks,
                      TransitionSink on_transition);

  // Checks the request against the subject, the configuration and the
  // agent's grants.
  Status validate(std::string_view subject, const RegisterRequest& request) const;

  // True while the requesting agent still waits for the reply; checked
  // before each subscription's consumer is planned, so a registration slowed
  // past the agent's reply timeout (a NATS cluster electing leaders) stops
  // instead of recreating consumers nobody waits for. Unset: always true.
  // Called on the thread that opens the registration.
  using AgentWaits = std::function<bool()>;

  // A registration between its three steps: begin() and finish() on the
  // service thread, open() in between on any thread. Several registrations
  // of distinct agents may be between begin() and finish() at once
  // (open_all(); hub/registration_queue.h keeps them distinct). open()
  // reads only its Pending, and meanwhile the service thread does nothing
  // but finish() the batch's registrations as their consumers are done
  // (each finish() changes only its own agent's state).
  struct Pending {
    RegisterRequest request;
    AgentWaits agent_waits;
    std::optional<RegisterReply> answer;  // set by begin(): refused or failed, nothing to open
    std::vector<PlanInput> plans;         // one per subscription, in the request's order
  };
  // What open() carried out: one plan per subscription opened, in order,
  // then the status that stopped it (OK when every one was opened).
  struct Opened {
    std::vector<ConsumerPlan> plans;
    Status status;
  };

  // Decodes `bytes` (the request on `subject`), validates it, removes the
  // consumers of types the agent no longer takes, records the report and
  // the agent's liveness, and plans its subscriptions.
  Pending begin(std::string_view subject, std::string_view bytes, int64_t now_steady_ms, int64_t now_wall_ms,
                AgentWaits agent_waits = {});
  // Carries out the plans in order (the delivery manager's JetStream calls,
  // which are thread-safe; nothing else is touched); stops at the first
  // failure, and before a subscription once the agent stopped waiting.
  Opened open(const Pending& pending) const;
  // open() of each registration, all at once, each on a thread of its own
  // (one alone: on the calling thread; where no thread can be started, in
  // turn); `on_opened` gets each outcome on the calling thread as soon as
  // it is done, in the order they finish, and all threads are joined
  // before it returns. Why: on replicated streams each consumer create
  // waits for its new Raft group to elect a leader, and those waits
  // overlap (hub/agent_service.h, "Registrations in flight").
  using OpenedSink = std::function<void(size_t index, const Opened& opened)>;
  void open_all(const std::vector<Pending>& pending, const OpenedSink& on_opened) const;
  // Stores the deliveries opened and returns the reply: the deliveries, or
  // the failure that stopped open().
  RegisterReply finish(const Pending& pending, const Opened& opened);

  // deltasync verify --repair: the next registration of `agent` that
  // reports `type` is answered resume: snapshot for it, whatever its
  // checkpoint (once; the agent then loads the snapshot, which replaces its
  // rows of the type, and registers again).
  void order_snapshot(const std::string& agent, const std::string& type);

 private:
  const HubConfig& config_;
  Authorizer& authorizer_;
  AgentRegistry& registry_;
  LivenessTracker& tracker_;
  DeliveryManager& delivery_;
  const PartitionMarks& marks_;
  TransitionSink on_transition_;
  std::set<std::pair<std::string, std::string>> snapshot_orders_;  // (agent, type)
};

}  // namespace ds
