#include "hub/snapshot_server.h"

#include <spdlog/spdlog.h>

#include "shared/codec.h"
#include "shared/names.h"

namespace ds {

Result<std::unique_ptr<SnapshotServer>> SnapshotServer::start(const HubConfig& config, Connection& nc,
                                                              Authorizer& authorizer, HubMetrics& metrics) {
  QueryStoreOptions options;
  options.read_only = true;
  DS_ASSIGN_OR_RETURN(std::unique_ptr<QueryStore> store, QueryStore::open(config.store_path, config.types, options));
  std::unique_ptr<SnapshotServer> s(new SnapshotServer(config, nc, authorizer, metrics, std::move(store)));
  SnapshotServer* self = s.get();
  DS_ASSIGN_OR_RETURN(s->sub_, nc.subscribe(Subjects(config.nats.subject_prefix).snapshot_wildcard(),
                                            [self](Message m) { self->on_message(std::move(m)); }));
  return s;
}

SnapshotServer::~SnapshotServer() { sub_.reset(); }

Result<SnapshotReply> SnapshotServer::page(const std::string& agent, const SnapshotRequest& request) {
  DS_RETURN_IF_ERROR(validate_agent_id(agent).with_context("agent"));
  const TypeConfig* type = config_.find_type(request.type);
  if (type == nullptr) return Status::not_found("unknown business type '" + request.type + "'");
  const std::string_view wanted = request.partition == kAllPartitions ? kAnyPartition : request.partition;
  DS_RETURN_IF_ERROR(authorizer_.may_take(agent, request.type, wanted));
  if (request.partition != kAnyPartition) {
    if (!type->schema.partition) {
      if (request.partition != kAllPartitions) {
        return Status::invalid_argument("partition: type '" + request.type + "' is not partitioned (use \"*\")");
      }
    } else {
      DS_RETURN_IF_ERROR(validate_partition(request.partition).with_context("partition"));
    }
  }
  if (request.limit == 0) return Status::invalid_argument("limit: must be at least 1");
  // Cut by bytes under the max_payload of the server the hub is on now.
  const size_t max_bytes = message_body_limit(nc_.max_payload());
  std::lock_guard<std::mutex> lock(mu_);
  return store_->snapshot_page(request, max_bytes);
}

void SnapshotServer::on_message(Message msg) {
  const std::string agent(Subjects::last_token(msg.subject()));
  if (Status s = authorizer_.may_reply(agent, msg.reply()); !s.is_ok()) {
    ++metrics_.snapshot_errors;
    spdlog::warn("snapshot request on {} dropped unanswered: {}", msg.subject(), s.message());
    return;
  }
  SnapshotReply reply;
  auto request = decode_snapshot_request(msg.data());
  Result<SnapshotReply> result = request.is_ok() ? page(agent, *request) : Result<SnapshotReply>(request.status());
  if (result.is_ok()) {
    reply = std::move(result).value();
    ++metrics_.snapshot_pages;
  } else {
    ++metrics_.snapshot_errors;
    if (result.status().code() == StatusCode::kInternal) {
      // Not the agent's fault (e.g. a row too large for any page): the operator must act.
      spdlog::error("snapshot request from '{}' failed: {}", agent, result.status().to_string());
    } else {
      spdlog::info("snapshot request from '{}' refused: {}", agent, result.status().to_string());
    }
    reply.error = WireError::from(result.status());
  }
  if (Status s = nc_.respond(msg, encode(reply)); !s.is_ok()) {
    spdlog::warn("snapshot reply to '{}' failed: {}", agent, s.to_string());
  }
}

}  // namespace ds
