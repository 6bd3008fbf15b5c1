#include "hub/registration_handler.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
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
                                         const PartitionMarks& marks, TransitionSink on_transition)
    : config_(config), authorizer_(authorizer), registry_(registry), tracker_(tracker), delivery_(delivery),
      marks_(marks), on_transition_(std::move(on_transition)) {}

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

RegistrationHandler::Pending RegistrationHandler::begin(std::string_view subject, std::string_view bytes,
                                                        int64_t now_steady_ms, int64_t now_wall_ms,
                                                        AgentWaits agent_waits) {
  Pending pending;
  pending.agent_waits = std::move(agent_waits);
  auto request = decode_register_request(bytes);
  if (!request.is_ok()) {
    spdlog::warn("register on {}: undecodable request: {}", subject, request.status().message());
    pending.answer = error_reply(request.status().with_context("register"));
    return pending;
  }
  pending.request = std::move(request).value();
  const RegisterRequest& req = pending.request;
  if (Status v = validate(subject, req); !v.is_ok()) {
    spdlog::warn("registration refused: {}", v.to_string());
    pending.answer = error_reply(v);
    return pending;
  }

  // Consumers of types the agent no longer takes go first.
  if (auto old = registry_.find(req.agent)) {
    for (const auto& [type, sub] : old->subscriptions) {
      bool kept = false;
      for (const SubscriptionReport& s : req.subscriptions) kept = kept || s.type == type;
      if (!kept) (void)delivery_.carry_out(req.agent, PlanInput{.event = PlanEvent::kDropped, .sub = sub});
    }
  }

  if (Status s = registry_.record_registration(req, now_wall_ms); !s.is_ok()) {
    spdlog::error("register {}: {}", req.agent, s.to_string());
    pending.answer = error_reply(s.with_context("register: store"));
    return pending;
  }
  if (auto t = tracker_.on_registered(req.agent, now_steady_ms)) on_transition_(*t);

  const auto agent = registry_.find(req.agent);  // recorded just before
  for (const SubscriptionReport& s : req.subscriptions) {
    const SubscriptionState* sub = nullptr;
    if (agent) {
      if (auto it = agent->subscriptions.find(s.type); it != agent->subscriptions.end()) sub = &it->second;
    }
    if (sub == nullptr) {
      const Status lost =
          Status::internal("register " + req.agent + ": type " + s.type + " not in the registry after recording it");
      spdlog::error("{}", lost.to_string());
      pending.answer = error_reply(lost);
      return pending;
    }
    pending.plans.push_back(PlanInput{.event = PlanEvent::kRegistered,
                                      .agent_state = agent->state,
                                      .sub = *sub,
                                      .hub_hash = schema_hash(config_.find_type(s.type)->schema),  // validated
                                      .repair_ordered = snapshot_orders_.contains({req.agent, s.type}),
                                      .feed_filter = delivery_.subjects().feed_filter(s.type),
                                      .partition_mark = marks_.newest(s.type, s.partition),
                                      .feed_asked = s.feed});
  }
  return pending;
}

RegistrationHandler::Opened RegistrationHandler::open(const Pending& pending) const {
  Opened opened;
  if (pending.answer) return opened;
  for (const PlanInput& input : pending.plans) {
    if (pending.agent_waits && !pending.agent_waits()) {
      opened.status = Status::deadline_exceeded("the agent's " + std::to_string(kRegisterReplyTimeoutMs / 1000) +
                                                " s reply timeout passed before the consumer of " + input.sub.type +
                                                " was planned; it registers again");
      return opened;
    }
    ConsumerPlan plan = delivery_.carry_out(pending.request.agent, input);
    // A failed plan (deleting the old consumer failed) fails the
    // registration and keeps the repair order (finish), so the agent's
    // retry is ordered the snapshot again; a spent order would let it resume
    // from the stream and the repair be reported done with the rows still
    // different.
    if (!plan.error.is_ok()) {
      opened.status = plan.error;
      return opened;
    }
    opened.plans.push_back(std::move(plan));
  }
  return opened;
}

void RegistrationHandler::open_all(const std::vector<Pending>& pending, const OpenedSink& on_opened) const {
  if (pending.size() == 1) return on_opened(0, open(pending[0]));
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<size_t, Opened>> done;  // guarded by mu; in the order they finished
  const auto open_one = [this, &pending](size_t i) {
    try {
      return open(pending[i]);
    } catch (const std::exception& e) {  // never leave the caller waiting for it
      return Opened{.plans = {}, .status = Status::internal("register " + pending[i].request.agent + ": " + e.what())};
    }
  };
  std::vector<std::future<void>> threads;  // after what they use: joined first when destroyed
  for (size_t i = 0; i < pending.size(); ++i) {
    const auto finished = [&, i](Opened opened) {
      std::lock_guard lock(mu);
      done.emplace_back(i, std::move(opened));
      cv.notify_one();
    };
    try {
      threads.push_back(std::async(std::launch::async, [&open_one, finished, i] { finished(open_one(i)); }));
    } catch (const std::system_error& e) {
      spdlog::debug("register {}: opened in turn: no thread: {}", pending[i].request.agent, e.what());
      finished(open_one(i));
    }
  }
  for (size_t handed = 0; handed < pending.size(); ++handed) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return !done.empty(); });
    std::pair<size_t, Opened> next = std::move(done.front());
    done.pop_front();
    lock.unlock();
    on_opened(next.first, next.second);
  }
}

RegisterReply RegistrationHandler::finish(const Pending& pending, const Opened& opened) {
  if (pending.answer) return *pending.answer;
  const RegisterRequest& req = pending.request;
  const Subjects subjects(config_.nats.subject_prefix);
  RegisterReply reply;
  reply.heartbeat_ms = static_cast<uint32_t>(config_.heartbeat_interval_ms);
  for (size_t i = 0; i < opened.plans.size(); ++i) {
    const PlanInput& input = pending.plans[i];
    const ConsumerPlan& plan = opened.plans[i];
    const std::string& type = input.sub.type;
    if (input.repair_ordered && plan.resume == Resume::kSnapshot) snapshot_orders_.erase({req.agent, type});
    registry_.set_delivery(req.agent, type, plan.state);

    const TypeConfig* tc = config_.find_type(type);  // validated in begin()
    Delivery d;
    d.type = type;
    d.feed = plan.state.on_feed;
    d.subject = !d.feed                                  ? subjects.push(req.agent, type)
                : input.sub.partition == kAnyPartition ? subjects.feed_filter(type)
                                                       : subjects.feed(type, input.sub.partition);
    d.resume = plan.resume;
    d.schema = tc->schema;
    d.schema_hash = *input.hub_hash;
    reply.deliveries.push_back(std::move(d));
  }
  if (const Status& s = opened.status; !s.is_ok()) {
    // Unavailable (the broker is away, a stream is being recreated, or a
    // cluster has not finished deleting the consumer being replaced), a
    // JetStream API call that timed out (a NATS cluster electing a leader
    // after losing a node) and an agent that stopped waiting are transient:
    // the agent registers again, so not an error of the hub.
    if (s.is_transient()) {
      spdlog::info("register {}: deferred: {}", req.agent, s.message());
    } else {
      spdlog::error("register {}: {}", req.agent, s.to_string());
    }
    return error_reply(s.with_context("register"));
  }
  spdlog::info("agent {} registered from host '{}' (version {}) with {} subscription(s)", req.agent, req.host,
               req.version, req.subscriptions.size());
  return reply;
}

void RegistrationHandler::order_snapshot(const std::string& agent, const std::string& type) {
  snapshot_orders_.insert({agent, type});
}

}  // namespace ds
