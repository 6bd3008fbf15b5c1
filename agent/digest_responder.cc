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
  // Opened per request (a millisecond), so the schemas it reads are the
  // current ones: a column added since must be in the content digest.
  DS_ASSIGN_OR_RETURN(reader_, Replica::open(config_.replica_path, /*read_only=*/true));
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
      DigestOptions options;
      options.buckets = request.buckets;
      options.list = request.list;
      DS_ASSIGN_OR_RETURN(TableDigest digest, reader_->table_digest(sub.type, options));
      d.rows = digest.keys.count;
      d.digest = digest.keys.hex();
      d.content = digest.content.hex();
      for (const Digest& b : digest.buckets) d.buckets.emplace_back(b.count, b.sum);
      for (RowHash& r : digest.listed) d.listed.emplace_back(std::move(r.key), r.hash);
      d.listed_truncated = digest.listed_truncated;
    } else {
      // Nothing received yet: the empty digests.
      d.digest = Digest{}.hex();
      d.content = Digest{}.hex();
      d.buckets.assign(request.buckets, {0, 0});
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
