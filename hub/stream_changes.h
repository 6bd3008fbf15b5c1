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
// Threads: a direct get is one round trip to the broker. Read one by one, a
// standby took about 3,300 messages a second over all its streams on the
// 2-core test machine (0.3 ms each), and under the takeover tests' load of
// one-record batches (one message per version) the active hub committed
// more: the standby fell behind for good (65,000 of 76,000 versions of each
// type after a minute), and a standby that is behind cannot take over in
// time. So the messages are read in windows of kGetWindow,
// kGetsInFlight at a time, each on a short-lived thread of its own (cnats
// carries the requests of several threads on one connection); a window is
// read whole before any of it is used, which bounds memory to kGetWindow
// messages. The caller's thread otherwise; no state.

#include <cstdint>
#include <map>
#include <vector>

#include "hub/change_log.h"
#include "hub/query_store.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/status.h"

namespace ds {

// See "Threads" above.
inline constexpr uint64_t kGetWindow = 64;
inline constexpr size_t kGetsInFlight = 8;

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
