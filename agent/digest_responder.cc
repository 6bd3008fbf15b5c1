#include "agent/digest_responder.h"

#include <spdlog/spdlog.h>

#include "shared/codec.h"

namespace ds {

Status DigestResponder::start() {
  const Subjects subjects(config_.nats.subject_prefix);
  DS_ASSIGN_OR_RETURN(sub_, nc_.subscribe(subjects.digest(config_.id), [this](Message m) { answer(m); }));
  return Status::ok();
}

Result<DigestReply> DigestResponder::compute(const DigestRequest& request) {
  if (!reader_) {
    DS_ASSIGN_OR_RETURN(reader_, Replica::open(config_.replica_path, /*read_only=*/true));
  }
  DS_ASSIGN_OR_RETURN(auto checkpoints, reader_->checkpoints());
  DigestReply reply;
  reply.agent = config_.id;
  for (const SubscriptionConfig& sub : config_.subscriptions) {
    if (!request.types.empty() &&
        std::find(request.types.begin(), request.types.end(), sub.type) == request.types.end()) {
      continue;
    }
    TypeDigest d;
    d.partition = sub.partition;
    auto cp = checkpoints.find(sub.type);
    if (cp != checkpoints.end()) {
      d.version = cp->second.version;
      d.ts = cp->second.ts;
      DS_ASSIGN_OR_RETURN(Digest digest, reader_->digest(sub.type));
      d.rows = digest.count;
      d.digest = digest.hex();
    } else {
      d.digest = Digest{}.hex();  // nothing received yet: the empty digest
    }
    reply.types.emplace(sub.type, std::move(d));
  }
  return reply;
}

void DigestResponder::answer(const Message& request) {
  DigestReply reply;
  auto decoded = decode_digest_request(request.data());
  if (!decoded) {
    reply.error = WireError::from(decoded.status());
  } else if (auto computed = compute(*decoded); computed) {
    reply = std::move(*computed);
  } else {
    spdlog::warn("digest request: {}", computed.status().to_string());
    reader_.reset();  // reopen next time (e.g. tables created since)
    reply.error = WireError::from(computed.status());
  }
  if (auto s = nc_.respond(request, encode(reply)); !s) spdlog::debug("digest reply: {}", s.to_string());
}

}  // namespace ds
