#pragma once
// DigestResponder: answers `ds.agent.<id>.digest` (deltasync verify) with the
// row count and the keys and content digests (shared/digest.h) of each type
// the agent takes, and, when asked, the bucket digests and the (key, content
// hash) rows of the listed buckets, all from one pass over the table on its
// own read-only connection to the replica. WAL
// readers never block the apply thread and see only committed transactions,
// so a digest always matches some committed checkpoint.
//
// Thread-safety: start() once; requests are answered on a cnats thread, one
// at a time (the read-only Replica is used by that thread only).

#include <memory>
#include <string>
#include <vector>

#include "agent/replica.h"
#include "shared/config.h"
#include "shared/names.h"
#include "shared/nats.h"

namespace ds {

class DigestResponder {
 public:
  DigestResponder(Connection& nc, const AgentConfig& config) : nc_(nc), config_(config) {}

  Status start();

 private:
  void answer(const Message& request);
  Result<DigestReply> compute(const DigestRequest& request);

  Connection& nc_;
  const AgentConfig& config_;
  std::unique_ptr<Replica> reader_;  // opened per request: the writer creates the file and its tables
  std::unique_ptr<Subscription> sub_;
};

}  // namespace ds
