#include "hub/registration_handler.h"

#include <set>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/schema.h"

namespace ds {
namespace {

RegisterReply error_reply(const Status& s) {
  RegisterReply r;
  r.error = WireError::from(s);
  return r;
}

}  // namespace

RegistrationHandler::RegistrationHandler(const HubConfig& config, Authorizer& authorizer, AgentRegistry& registry,
                                         LivenessTracker& tracker, DeliveryManager& delivery,
                                         TransitionSink on_transition)
    : config_(config), authorizer_(authorizer), registry_(registry), tracker_(tracker), delivery_(delivery),
      on_transition_(std::move(on_transition)) {}

Status RegistrationHandler::validate(std::string_view subject, const RegisterRequest& request) const {
  const std::string_view token = Subjects::last_token(subject);
  if (token != request.agent) {
    return Status::permission_denied("register: agent '" + request.agent + "' may only register on " +
                                     Subjects(config_.nats.subject_prefix).register_agent(request.agent) +
                                     ", not on " + std::string(subject));
  }
  DS_RETURN_IF_ERROR(validate_agent_id(request.agent).with_context("register: agent"));
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < request.subscriptions.size(); ++i) {
    const SubscriptionReport& s = request.subscriptions[i];
    const std::string where = "register: subscriptions[" + std::to_string(i) + "]";
    const TypeConfig* tc = config_.find_type(s.type);
    if (tc == nullptr) {
      return Status::invalid_argument(where + ": unknown type '" + s.type + "' (not declared by this hub)");
    }
    if (!seen.insert(s.type).second) {
      return Status::invalid_argument(where + ": type '" + s.type + "' subscribed twice");
    }
    DS_RETURN_IF_ERROR(authorizer_.may_take(request.agent, s.type, s.partition).with_context(where));
    if (s.partition == kAnyPartition) continue;
    if (!tc->schema.partition) {
      return Status::invalid_argument(where + ": type '" + s.type + "' is not partitioned; partition must be \"*\", got '" +
                                      s.partition + "'");
    }
    Status p = validate_partition(s.partition);
    if (!p.is_ok()) {
      return Status::invalid_argument(where + ": type '" + s.type + "': bad partition '" + s.partition +
                                      "': " + p.message());
    }
  }
  return Status::ok();
}

RegisterReply RegistrationHandler::handle(std::string_view subject, std::string_view bytes,
                                          int64_t now_steady_ms, int64_t now_wall_ms, const AgentWaits& agent_waits) {
  auto request = decode_register_request(bytes);
  if (!request.is_ok()) {
    spdlog::warn("register on {}: undecodable request: {}", subject, request.status().message());
    return error_reply(request.status().with_context("register"));
  }
  return handle(subject, *request, now_steady_ms, now_wall_ms, agent_waits);
}

RegisterReply RegistrationHandler::handle(std::string_view subject, const RegisterRequest& request,
                                          int64_t now_steady_ms, int64_t now_wall_ms, const AgentWaits& agent_waits) {
  if (Status v = validate(subject, request); !v.is_ok()) {
    spdlog::warn("registration refused: {}", v.to_string());
    return error_reply(v);
  }

  // Consumers of types the agent no longer takes go first.
  if (auto old = registry_.find(request.agent)) {
    for (const auto& [type, sub] : old->subscriptions) {
      bool kept = false;
      for (const SubscriptionReport& s : request.subscriptions) kept = kept || s.type == type;
      if (!kept) (void)delivery_.carry_out(request.agent, PlanInput{.event = PlanEvent::kDropped, .sub = sub});
    }
  }

  if (Status s = registry_.record_registration(request, now_wall_ms); !s.is_ok()) {
    spdlog::error("register {}: {}", request.agent, s.to_string());
    return error_reply(s.with_context("register: store"));
  }
  if (auto t = tracker_.on_registered(request.agent, now_steady_ms)) on_transition_(*t);

  RegisterReply reply;
  reply.heartbeat_ms = static_cast<uint32_t>(config_.heartbeat_interval_ms);
  if (Status s = open_deliveries(request, reply, agent_waits); !s.is_ok()) {
    // Unavailable (the broker is away, a stream is being recreated, or a
    // cluster has not finished deleting the consumer being replaced), a
    // JetStream API call that timed out (a NATS cluster electing a leader
    // after losing a node) and an agent that stopped waiting are transient:
    // the agent registers again, so not an error of the hub.
    if (s.is_transient()) {
      spdlog::info("register {}: deferred: {}", request.agent, s.message());
    } else {
      spdlog::error("register {}: {}", request.agent, s.to_string());
    }
    return error_reply(s.with_context("register"));
  }
  spdlog::info("agent {} registered from host '{}' (version {}) with {} subscription(s)", request.agent,
               request.host, request.version, request.subscriptions.size());
  return reply;
}

void RegistrationHandler::order_snapshot(const std::string& agent, const std::string& type) {
  snapshot_orders_.insert({agent, type});
}

Status RegistrationHandler::open_deliveries(const RegisterRequest& request, RegisterReply& reply,
                                            const AgentWaits& agent_waits) {
  const Subjects subjects(config_.nats.subject_prefix);
  const auto agent = registry_.find(request.agent);  // recorded just before
  if (!agent) return Status::internal("register " + request.agent + ": not in the registry after recording it");
  for (const SubscriptionReport& s : request.subscriptions) {
    const TypeConfig* tc = config_.find_type(s.type);  // validated above
    auto sub = agent->subscriptions.find(s.type);
    if (sub == agent->subscriptions.end()) {
      return Status::internal("register " + request.agent + ": type " + s.type + " not recorded");
    }
    if (agent_waits && !agent_waits()) {
      return Status::deadline_exceeded("the agent's " + std::to_string(kRegisterReplyTimeoutMs / 1000) +
                                       " s reply timeout passed before the consumer of " + s.type +
                                       " was planned; it registers again");
    }
    const bool repair = snapshot_orders_.contains({request.agent, s.type});
    const ConsumerPlan plan = delivery_.carry_out(request.agent, PlanInput{.event = PlanEvent::kRegistered,
                                                                           .agent_state = agent->state,
                                                                           .sub = sub->second,
                                                                           .hub_hash = schema_hash(tc->schema),
                                                                           .repair_ordered = repair});
    // A failed plan (deleting the old consumer failed) fails the registration
    // and keeps the repair order, so the agent's retry is ordered the snapshot
    // again; a spent order would let it resume from the stream and the repair
    // be reported done with the rows still different.
    DS_RETURN_IF_ERROR(plan.error);
    if (repair && plan.resume == Resume::kSnapshot) snapshot_orders_.erase({request.agent, s.type});
    registry_.set_delivery(request.agent, s.type, plan.state);

    Delivery d;
    d.type = s.type;
    d.subject = subjects.push(request.agent, s.type);
    d.resume = plan.resume;
    d.schema = tc->schema;
    d.schema_hash = schema_hash(tc->schema);
    reply.deliveries.push_back(std::move(d));
  }
  return Status::ok();
}

}  // namespace ds
