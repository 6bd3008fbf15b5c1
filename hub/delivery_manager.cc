#include "hub/delivery_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "hub/stream_publisher.h"

namespace ds {

DeliveryManager::DeliveryManager(const HubConfig& config, JetStream& js)
    : config_(config), js_(js), subjects_(config.nats.subject_prefix) {}

Result<DeliveryPlan> DeliveryManager::plan(std::string_view type, uint64_t seq, uint64_t version) {
  const std::string stream = stream_name(type);
  auto state = js_.stream_state(stream);
  if (!state.is_ok() && state.status().code() == StatusCode::kNotFound) {
    // The hub creates every stream at start and after each reconnect (the
    // broker may have lost its store): gone now means not recreated yet.
    return Status::unavailable("plan delivery of " + std::string(type) + ": stream " + stream +
                               " does not exist (yet): the broker lost it and the hub is recreating it from its "
                               "log; registration is retried (" + state.status().message() + ")");
  }
  if (!state.is_ok()) return state.status().with_context("plan delivery of " + std::string(type));
  if (state->last_seq == 0) return DeliveryPlan{};  // never held data
  if (seq > state->last_seq) {
    return DeliveryPlan{Resume::kSnapshot, fmt::format("checkpoint seq {} is past the stream's end (seq {}): the "
                                                       "stream was recreated since",
                                                       seq, state->last_seq)};
  }
  if (seq + 1 < state->first_seq) {
    return DeliveryPlan{Resume::kSnapshot, fmt::format("checkpoint seq {} is no longer in the stream (first seq {})",
                                                       seq, state->first_seq)};
  }
  if (seq == 0 || seq < state->first_seq) return DeliveryPlan{};
  // The message at the checkpoint must be one the agent has: its batch at
  // or below the agent's version. Past it, the stream was rebuilt with
  // other numbering (see the header).
  auto at = js_.get_message(stream, seq);
  if (!at.is_ok()) {
    if (at.status().code() == StatusCode::kNotFound) return DeliveryPlan{};  // deleted: nothing to compare
    return at.status().with_context("plan delivery of " + std::string(type));
  }
  const std::optional<uint64_t> batch = batch_of(*at);
  if (batch && *batch > version) {
    return DeliveryPlan{Resume::kSnapshot, fmt::format("checkpoint seq {} now holds batch {}, past the checkpoint's "
                                                       "version {}: the stream was rebuilt since",
                                                       seq, *batch, version)};
  }
  return DeliveryPlan{};
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
  spec.replicas = 1;
  return spec;
}

Status DeliveryManager::open(std::string_view agent, std::string_view type, std::string_view partition,
                             uint64_t after_seq) {
  DS_RETURN_IF_ERROR(close(agent, type));
  const std::string stream = stream_name(type);
  Status s = js_.add_consumer(stream, consumer_spec(agent, type, partition, after_seq));
  if (!s.is_ok()) {
    return s.with_context("create consumer " + consumer_name(agent) + " on " + stream);
  }
  spdlog::debug("consumer {} on {} opened after seq {}", consumer_name(agent), stream, after_seq);
  return Status::ok();
}

Status DeliveryManager::close(std::string_view agent, std::string_view type) {
  const std::string stream = stream_name(type);
  Status s = js_.delete_consumer(stream, consumer_name(agent));
  if (s.is_ok() || s.code() == StatusCode::kNotFound) return Status::ok();
  return s.with_context("delete consumer " + consumer_name(agent) + " on " + stream);
}

Result<bool> DeliveryManager::exists(std::string_view agent, std::string_view type) {
  return js_.consumer_exists(stream_name(type), consumer_name(agent));
}

}  // namespace ds
