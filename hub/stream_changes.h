#pragma once
// Reading a type's changes back from its stream DS_<TYPE>, message by
// message (direct gets; no consumer): what the recovery after a restore
// (StreamPublisher, "Recovery") and a standby hub's following
// (hub/standby_follower.h) both do.
//
// The rule it keeps: every message read must be a delta batch of the type
// (Nats-Msg-Id "<type>:<batch>" or its first change), else DataLoss; each
// upsert's fields are validated against the type's schema, so values are
// stored as the commit stored them. A message gone meanwhile (aged out,
// deleted) is skipped: the caller finds the gap in the versions.
//
// Thread: the caller's; no state.

#include <cstdint>
#include <map>
#include <vector>

#include "hub/change_log.h"
#include "hub/query_store.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/status.h"

namespace ds {

struct StreamChanges {
  // The changes above `above_version`, by version.
  std::map<uint64_t, QueryStore::RecoveredChange> changes;
  // The retry keys the messages carried (header Ds-Retry-Keys), last
  // version above `above_version`.
  std::vector<ProducerRetryKey> retry_keys;
  // Every message read, in stream order.
  struct Read {
    uint64_t seq = 0;
    uint64_t batch = 0;
    uint64_t last_version = 0;  // its highest version
  };
  std::vector<Read> messages;
};

// Reads messages `from_seq`..`to_seq` of the stream of `type`.
Result<StreamChanges> read_stream_changes(StreamReader& js, const TypeConfig& type, uint64_t from_seq,
                                          uint64_t to_seq, uint64_t above_version);

// Moves out of `read` the changes that continue `head` without a gap
// (head + 1, head + 2, ...), in order.
std::vector<QueryStore::RecoveredChange> take_continuing(StreamChanges& read, uint64_t head);

}  // namespace ds
