#pragma once
// The producer side of ingest: sends batches of records to
// `ds.ingest.<type>.<producer>` and waits for the hub's acknowledgement.
// (producer, type, seq) makes retries of a batch idempotent, so a batch that
// got no answer is sent again unchanged. The connection must use the inbox
// prefix _INBOX_<producer> (or, on an open server, cnats' default).
// Not thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

struct PushOptions {
  std::string producer;            // the subject's last token: identity and retry key
  uint64_t first_seq = 1;          // seq of the first batch; +1 per batch
  int64_t timeout_ms = 10000;      // per attempt
  int attempts = 5;                // transient failures are retried with backoff
};

class Pusher {
 public:
  Pusher(Connection& nc, Subjects subjects, std::string type, PushOptions options);

  // Sends one batch; returns the hub's version range. Retries Unavailable and
  // DeadlineExceeded answers with backoff (safe: same producer and seq).
  Result<IngestReply> push(std::vector<IngestRecord> records);
  uint64_t next_seq() const { return seq_; }

 private:
  Connection& nc_;
  Subjects subjects_;
  std::string type_;
  PushOptions options_;
  uint64_t seq_;
};

}  // namespace ds
