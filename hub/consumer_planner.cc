#include "hub/consumer_planner.h"

#include <fmt/format.h>

#include "shared/names.h"

namespace ds {
namespace {

// The resume rule of the header, or the fact it needs first.
struct ResumeDecision {
  PlanNeed need = PlanNeed::kNothing;
  Status error{};
  Resume resume = Resume::kStream;
  std::string why{};  // for a snapshot
};

ResumeDecision snapshot(std::string why) { return {PlanNeed::kNothing, Status::ok(), Resume::kSnapshot, std::move(why)}; }
ResumeDecision failed(Status s) { return {PlanNeed::kNothing, std::move(s), Resume::kStream, {}}; }

ConsumerPlan needs(PlanNeed need) {
  ConsumerPlan plan;
  plan.need = need;
  return plan;
}

ResumeDecision decide_resume(const SubscriptionState& sub, const BrokerFacts& facts) {
  const std::string context = "plan delivery of " + sub.type;
  if (!facts.stream) return {.need = PlanNeed::kStreamState};
  const Result<StreamState>& state = *facts.stream;
  if (!state.is_ok() && state.status().code() == StatusCode::kNotFound) {
    return failed(Status::unavailable(context + ": stream " + stream_name(sub.type) +
                                      " does not exist (yet): the broker lost it and the hub is recreating it from "
                                      "its log; registration is retried (" + state.status().message() + ")"));
  }
  if (!state.is_ok()) return failed(state.status().with_context(context));
  const uint64_t seq = sub.seq;
  if (state->last_seq == 0) return {};  // never held data
  if (seq > state->last_seq) {
    return snapshot(fmt::format("checkpoint seq {} is past the stream's end (seq {}): the stream was recreated since",
                                seq, state->last_seq));
  }
  if (seq + 1 < state->first_seq) {
    return snapshot(fmt::format("checkpoint seq {} is no longer in the stream (first seq {})", seq, state->first_seq));
  }
  if (seq == 0 || seq < state->first_seq) return {};
  // The message at the checkpoint must be one the agent has: its batch at
  // or below the agent's version. Past it, the stream was rebuilt with
  // other numbering (see the header).
  if (!facts.checkpoint_batch) return {.need = PlanNeed::kCheckpointBatch};
  const Result<std::optional<uint64_t>>& batch = *facts.checkpoint_batch;
  if (!batch.is_ok()) {
    if (batch.status().code() == StatusCode::kNotFound) return {};  // deleted: nothing to compare
    return failed(batch.status().with_context(context));
  }
  if (*batch && **batch > sub.version) {
    return snapshot(fmt::format("checkpoint seq {} now holds batch {}, past the checkpoint's version {}: the stream "
                                "was rebuilt since",
                                seq, **batch, sub.version));
  }
  return {};
}

// The stream of the subscription republishes on the live feed the hub
// offers (the stream state was read).
bool feed_available(const PlanInput& in, const BrokerFacts& facts) {
  return !in.feed_filter.empty() && facts.stream && facts.stream->is_ok() &&
         (*facts.stream)->republish_destination == in.feed_filter;
}

ConsumerPlan plan_registered(const PlanInput& in, const BrokerFacts& facts) {
  ConsumerPlan plan;
  ResumeDecision r = decide_resume(in.sub, facts);
  if (r.need != PlanNeed::kNothing) return needs(r.need);
  if (!r.error.is_ok()) {
    plan.error = r.error;
    return plan;
  }
  plan.store = true;
  if (in.repair_ordered || r.resume == Resume::kSnapshot) {
    plan.resume = Resume::kSnapshot;
    plan.op = ConsumerOp::kClose;  // a consumer left from before would push from a point the agent cannot use
    plan.state.awaiting_snapshot = true;
    plan.state.snapshot_ordered = true;
    plan.state.note = in.repair_ordered ? std::string("snapshot ordered by deltasync verify --repair")
                                        : r.why + ": snapshot ordered";
    plan.logs.push_back({PlanLogLevel::kInfo, plan.state.note});
    return plan;
  }
  if (in.feed_asked && feed_available(in, facts) && in.sub.version >= in.partition_mark) {
    plan.op = ConsumerOp::kClose;  // one left from before would hold broker memory for nothing
    plan.state.on_feed = true;
    plan.state.feed_mark_seen = in.partition_mark;
    plan.state.feed_mark_before = in.partition_mark;
    return plan;
  }
  plan.op = ConsumerOp::kOpen;
  plan.state.consumer_open = true;
  return plan;
}

// plan_check for the live feed; nullopt when the type is not (to be) on it.
std::optional<ConsumerPlan> plan_feed_check(const PlanInput& in, ConsumerPlan plan) {
  const SubscriptionState& sub = in.sub;
  DeliveryState& d = plan.state;
  if (sub.feed && !d.on_feed && !in.feed_filter.empty()) {
    plan.logs.push_back({PlanLogLevel::kInfo, "takes the live feed now: its consumer is removed"});
    plan.op = ConsumerOp::kClose;
    d.consumer_open = false;
    d.on_feed = true;
    d.feed_behind = false;
    d.feed_mark_seen = in.partition_mark;
    d.feed_mark_before = in.partition_mark;
    d.note.clear();
    return plan;
  }
  if (!d.on_feed) return std::nullopt;
  // Two replies of slack: a batch committed just before a reply may still
  // be on its way at the next one (a cluster, a busy host).
  if (sub.version < d.feed_mark_before && !d.feed_behind) {
    d.feed_behind = true;
    d.note = fmt::format("on the live feed at version {}, behind version {} of its partition since two replies "
                         "before: ordered to register again",
                         sub.version, d.feed_mark_before);
    plan.logs.push_back({PlanLogLevel::kInfo, d.note});
  }
  d.feed_mark_before = d.feed_mark_seen;
  d.feed_mark_seen = in.partition_mark;
  return plan;
}

// kReported and kReconnected: what a live or suspect agent's subscription
// should have.
ConsumerPlan plan_check(const PlanInput& in, const BrokerFacts& facts) {
  ConsumerPlan plan;
  if (in.agent_state != AgentState::kLive && in.agent_state != AgentState::kSuspect) return plan;
  const SubscriptionState& sub = in.sub;
  DeliveryState& d = plan.state;
  d = sub.delivery;
  plan.store = true;
  if (!in.hub_hash) {
    // Restored from the database, but the type left the configuration.
    d.note = "type '" + sub.type + "' is no longer declared by this hub";
    return plan;
  }
  const std::string& hub_hash = *in.hub_hash;
  if (!sub.schema_hash.empty() && sub.schema_hash != hub_hash) {
    if (!d.held_back || d.consumer_open) {
      plan.logs.push_back({PlanLogLevel::kWarn, "schema hash " + sub.schema_hash + " differs from the hub's " +
                                                    hub_hash + ": deltas held back"});
      plan.op = ConsumerOp::kClose;
    }
    d.consumer_open = false;
    d.held_back = true;
    d.note = "schema hash " + sub.schema_hash + " differs from the hub's " + hub_hash;
    return plan;
  }
  if (d.held_back) {
    plan.logs.push_back({PlanLogLevel::kInfo, "schema hash matches again: delivery resumes"});
    d.held_back = false;
    d.note.clear();
  }
  if (d.awaiting_snapshot) return plan;
  if (auto feed = plan_feed_check(in, plan)) return *feed;
  if (d.consumer_open && in.event == PlanEvent::kReconnected) {
    if (!facts.consumer_exists) return needs(PlanNeed::kConsumerExists);
    const Result<bool>& exists = *facts.consumer_exists;
    if (!exists.is_ok()) {
      // Unknown: leave the belief as it is; the next check asks again.
      ConsumerPlan unknown;
      unknown.logs.push_back({PlanLogLevel::kWarn, exists.status().to_string()});
      return unknown;
    }
    if (!*exists) {
      plan.logs.push_back({PlanLogLevel::kInfo, "consumer missing on the server: recreating"});
      d.consumer_open = false;
    }
  }
  if (d.consumer_open) return plan;
  ResumeDecision r = decide_resume(sub, facts);
  if (r.need != PlanNeed::kNothing) return needs(r.need);
  if (!r.error.is_ok()) {
    d.note = r.error.to_string();
    plan.logs.push_back({PlanLogLevel::kWarn, d.note});
    return plan;
  }
  if (r.resume == Resume::kSnapshot) {
    d.awaiting_snapshot = true;
    d.note = r.why + ": the agent is ordered to register again and snapshot";
    plan.logs.push_back({PlanLogLevel::kWarn, d.note});
    return plan;
  }
  plan.op = ConsumerOp::kOpen;
  d.consumer_open = true;
  d.note.clear();
  return plan;
}

}  // namespace

ConsumerPlan plan_consumer(const PlanInput& in, const BrokerFacts& facts) {
  switch (in.event) {
    case PlanEvent::kRegistered:
      return plan_registered(in, facts);
    case PlanEvent::kReported:
    case PlanEvent::kReconnected:
      return plan_check(in, facts);
    case PlanEvent::kGone: {
      ConsumerPlan plan;
      plan.op = ConsumerOp::kClose;
      plan.store = true;
      plan.state = in.sub.delivery;
      plan.state.consumer_open = false;
      plan.state.on_feed = false;
      plan.state.feed_behind = false;
      plan.state.note = in.gone_reason;
      return plan;
    }
    case PlanEvent::kDropped: {
      ConsumerPlan plan;
      plan.op = ConsumerOp::kClose;
      return plan;
    }
  }
  return {};
}

DeliveryState repair_ordered(DeliveryState state) {
  state.awaiting_snapshot = true;
  state.snapshot_ordered = false;
  state.note = "snapshot ordered by deltasync verify --repair: waiting for the agent to register";
  return state;
}

std::string registration_reasons(const AgentRecord& agent) {
  std::string reasons;
  for (const auto& [type, sub] : agent.subscriptions) {
    const char* why = nullptr;
    if (sub.delivery.awaiting_snapshot && !sub.delivery.snapshot_ordered) why = ": snapshot needed";
    if (sub.delivery.held_back) why = ": schema out of date";
    if (sub.delivery.feed_behind) why = ": behind on the live feed";
    if (why != nullptr) reasons += (reasons.empty() ? "" : ", ") + type + why;
  }
  return reasons;
}

bool may_order_registration(std::optional<int64_t> last_order_ms, int64_t now_ms, int64_t interval_ms) {
  return !last_order_ms || now_ms - *last_order_ms >= interval_ms;
}

}  // namespace ds
