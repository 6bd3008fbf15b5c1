#include "hub/delivery_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "hub/stream_publisher.h"

namespace ds {

DeliveryManager::DeliveryManager(const HubConfig& config, ConsumerControl& consumers)
    : config_(config), js_(consumers), subjects_(config.nats.subject_prefix) {}

DeliveryManager::DeliveryManager(const HubConfig& config, JetStream& js)
    : config_(config),
      owned_(std::make_unique<NatsConsumerControl>(js)),
      js_(*owned_),
      subjects_(config.nats.subject_prefix) {}

ConsumerPlan DeliveryManager::carry_out(std::string_view agent, const PlanInput& input) {
  const std::string& type = input.sub.type;
  const std::string stream = stream_name(type);
  BrokerFacts facts;
  // The consumer as read for the plan; open() goes on from it.
  std::optional<Result<std::optional<ConsumerInfo>>> consumer;
  ConsumerPlan plan = plan_consumer(input, facts);
  // Each fact is read at most once, so this ends within three rounds.
  for (int round = 0; round < 3 && plan.need != PlanNeed::kNothing; ++round) {
    switch (plan.need) {
      case PlanNeed::kStreamState:
        facts.stream = js_.stream_state(stream);
        break;
      case PlanNeed::kCheckpointBatch: {
        auto at = js_.get_message(stream, input.sub.seq);
        if (at.is_ok()) {
          facts.checkpoint_batch = Result<std::optional<uint64_t>>(batch_of(*at));
        } else {
          facts.checkpoint_batch = Result<std::optional<uint64_t>>(at.status());
        }
        break;
      }
      case PlanNeed::kConsumerExists:
        consumer = js_.consumer_info(stream, consumer_name(agent), 0);
        facts.consumer_exists = consumer->is_ok() ? Result<bool>(consumer->value().has_value())
                                                  : Result<bool>(consumer->status());
        break;
      case PlanNeed::kNothing:
        break;
    }
    plan = plan_consumer(input, facts);
  }
  if (plan.need != PlanNeed::kNothing) {  // a planner bug; never silently act on half a plan
    plan = ConsumerPlan{};
    plan.error = Status::internal("consumer plan of " + type + " kept asking for broker facts");
    spdlog::error("agent {} type {}: {}", agent, type, plan.error.to_string());
    return plan;
  }
  for (const PlanLog& line : plan.logs) {
    if (line.level == PlanLogLevel::kWarn) {
      spdlog::warn("agent {} type {}: {}", agent, type, line.text);
    } else {
      spdlog::info("agent {} type {}: {}", agent, type, line.text);
    }
  }
  const bool registering = input.event == PlanEvent::kRegistered;
  if (plan.op == ConsumerOp::kClose) {
    if (Status s = close(agent, type); !s.is_ok()) {
      if (registering) {
        plan.error = s;
      } else {
        spdlog::warn("agent {} type {}: {}", agent, type, s.to_string());
      }
    }
  } else if (plan.op == ConsumerOp::kOpen) {
    if (Status s = open(agent, type, input.sub.partition, input.sub.seq, consumer ? &*consumer : nullptr);
        !s.is_ok()) {
      if (registering) {
        plan.error = s;
      } else {
        plan.state.consumer_open = false;
        plan.state.note = s.to_string();
        spdlog::warn("agent {} type {}: {}", agent, type, plan.state.note);
      }
    } else if (!registering) {
      spdlog::info("agent {} type {}: consumer opened after seq {}", agent, type, input.sub.seq);
    }
  }
  return plan;
}

ConsumerSpec DeliveryManager::consumer_spec(std::string_view agent, std::string_view type,
                                            std::string_view partition, uint64_t after_seq) const {
  const TypeConfig* tc = config_.find_type(type);
  const bool partitioned = tc != nullptr && tc->schema.partition.has_value();
  ConsumerSpec spec;
  spec.durable = consumer_name(agent);
  spec.filter_subject = (!partitioned || partition == kAnyPartition) ? subjects_.delta_filter(type)
                                                                     : subjects_.delta(type, partition);
  spec.deliver_subject = subjects_.push(agent, type);
  spec.start_seq = after_seq + 1;
  spec.ack_policy = AckPolicy::kExplicit;  // see the header: acks of a replaced consumer
  spec.max_ack_pending = config_.max_ack_pending;
  spec.max_deliver = 5;
  spec.flow_control = true;
  spec.idle_heartbeat_ms = 5000;
  spec.memory_storage = true;
  // As many copies as the stream ([streams] replicas): an R3 consumer keeps
  // delivering, with its acknowledgement state, when the node that led it
  // is lost; an R1 consumer would sit offline on the lost node, unseen by
  // the hub until that node came back (docs/architecture.md, "A NATS cluster").
  spec.replicas = static_cast<int>(config_.stream_replicas);
  return spec;
}

namespace {

// `found` is what `wanted` would create: the same configuration, nothing
// delivered yet, and no copy online but behind (such a copy is what
// ConsumerCopyWatch orders a new consumer for).
bool same_fresh_consumer(const ConsumerInfo& found, const ConsumerSpec& wanted) {
  const bool copies_fine = std::none_of(found.followers.begin(), found.followers.end(),
                                        [](const StreamFollower& c) { return !c.offline && !c.current; });
  return found.spec == wanted && found.delivered == 0 && copies_fine;
}

}  // namespace

Status DeliveryManager::open(std::string_view agent, std::string_view type, std::string_view partition,
                             uint64_t after_seq, const Result<std::optional<ConsumerInfo>>* read) {
  const std::string stream = stream_name(type);
  const std::string name = consumer_name(agent);
  const ConsumerSpec spec = consumer_spec(agent, type, partition, after_seq);
  // An unreadable consumer is deleted and made again, as an outdated one.
  const Result<std::optional<ConsumerInfo>> found = read != nullptr ? *read : js_.consumer_info(stream, name, 0);
  if (found.is_ok() && found->has_value() && same_fresh_consumer(**found, spec)) {
    spdlog::debug("consumer {} on {} kept: it starts after seq {} and has delivered nothing", name, stream, after_seq);
    return Status::ok();
  }
  if (!found.is_ok() || found->has_value()) DS_RETURN_IF_ERROR(close(agent, type));
  Status s = js_.add_consumer(stream, spec);
  if (s.code() == StatusCode::kAlreadyExists && config_.stream_replicas > 1) {
    // The delete above was acknowledged, but on a NATS cluster the node
    // that took this create had not applied it yet: transient. (On a lone
    // server the delete is done when answered: there it stays an error.)
    return Status::unavailable("create consumer " + name + " on " + stream +
                               ": the cluster has not finished deleting the consumer it replaces (" + s.message() +
                               ")");
  }
  if (s.code() == StatusCode::kDeadlineExceeded && config_.stream_replicas > 1) {
    // The create is under way: the next attempt keeps the consumer it made.
    return Status::unavailable("create consumer " + name + " on " + stream + ": " + s.message() +
                               "; the cluster may still be electing the new consumer's leader, which the next "
                               "attempt finds and keeps");
  }
  if (!s.is_ok()) return s.with_context("create consumer " + name + " on " + stream);
  spdlog::debug("consumer {} on {} opened after seq {}", name, stream, after_seq);
  return Status::ok();
}

Status DeliveryManager::close(std::string_view agent, std::string_view type) {
  const std::string stream = stream_name(type);
  const std::string name = consumer_name(agent);
  Status s = js_.delete_consumer(stream, name);
  if (s.is_ok() || s.code() == StatusCode::kNotFound) return Status::ok();
  if (s.code() == StatusCode::kDeadlineExceeded && config_.stream_replicas > 1) {
    // On a NATS cluster the consumer's leader answers the delete; one
    // without a leader (still electing it) never does, although the
    // cluster carries the delete out. Gone is done.
    if (auto gone = js_.consumer_info(stream, name, 0); gone.is_ok() && !gone->has_value()) return Status::ok();
  }
  return s.with_context("delete consumer " + name + " on " + stream);
}

Result<std::vector<StreamFollower>> DeliveryManager::followers(std::string_view agent, std::string_view type,
                                                              int64_t timeout_ms) {
  const std::string stream = stream_name(type);
  const std::string name = consumer_name(agent);
  DS_ASSIGN_OR_RETURN(std::optional<ConsumerInfo> info, js_.consumer_info(stream, name, timeout_ms));
  if (!info) return Status::not_found("consumer " + name + " on " + stream + " not found");
  return std::move(info->followers);
}

}  // namespace ds
