#pragma once
// The messages of docs/protocol.md ("Messages") as plain structs.
// shared/codec.h turns them into msgpack maps (string keys) and back. Unknown
// keys are ignored on decode; new keys are added, never repurposed. Times are
// integer ms since the epoch.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/schema.h"
#include "shared/status.h"

namespace ds {

// Bounds enforced by the decoder, so a hostile or broken peer cannot make a
// process allocate without limit.
inline constexpr size_t kMaxBatchRecords = 10000;   // records per ingest / changes per delta batch
inline constexpr size_t kMaxKeyBytes = 512;
inline constexpr size_t kMaxSnapshotPage = 10000;

enum class Op { kUpsert, kDelete };

// An error as carried in a reply: {code, message, index?}.
struct WireError {
  StatusCode code = StatusCode::kInternal;
  std::string message;
  std::optional<uint32_t> index;  // the offending record of a batch

  static WireError from(const Status& s, std::optional<uint32_t> index = std::nullopt);
  Status to_status() const;
  bool operator==(const WireError&) const = default;
};

// ---- ingest: producer -> hub, ds.ingest.<type> ----
struct IngestRecord {
  std::string key;
  Op op = Op::kUpsert;
  Fields fields;                     // upserts: some or all columns (patch)
  std::optional<int64_t> ts;         // source time; the hub uses its clock if absent
  std::optional<std::string> partition;
  bool operator==(const IngestRecord&) const = default;
};
struct IngestRequest {
  std::string producer;              // optional on the wire ("" when absent)
  std::optional<uint64_t> seq;       // (producer, type, seq) makes a retry idempotent
  std::vector<IngestRecord> records;
  bool operator==(const IngestRequest&) const = default;
};
struct IngestReply {
  std::optional<WireError> error;    // set: the whole batch was rejected
  uint64_t first_version = 0;
  uint64_t last_version = 0;
  bool ok() const { return !error.has_value(); }
  bool operator==(const IngestReply&) const = default;
};

// ---- register: agent -> hub, ds.hub.register.<agent> ----
struct SubscriptionReport {
  std::string type;
  std::string partition = "*";       // a partition value or "*"
  uint64_t version = 0;              // last applied version
  uint64_t seq = 0;                  // stream sequence of that delta
  int64_t ts = 0;                    // latest business timestamp
  uint64_t rows = 0;
  // Key "feed", sent only when true: the agent can take the type from the
  // live feed from this checkpoint (docs/protocol.md, "Live feed"); the hub
  // then gives it the feed instead of a consumer if it is current.
  bool feed = false;
  bool operator==(const SubscriptionReport&) const = default;
};
// How long an agent waits for the reply to its registration before it gives
// up and registers again; the hub does not carry out a request that waited
// longer than this in its queue (docs/protocol.md, "Registration timeout").
inline constexpr int64_t kRegisterReplyTimeoutMs = 10000;
struct RegisterRequest {
  std::string agent;
  std::string host;
  std::string version;               // agent software version
  std::vector<SubscriptionReport> subscriptions;
  bool operator==(const RegisterRequest&) const = default;
};
enum class Resume { kStream, kSnapshot };
struct Delivery {
  std::string type;
  std::string subject;               // deliver subject ds.push.<agent>.<type>
  Resume resume = Resume::kStream;
  TypeSchema schema;
  std::string schema_hash;
  // Key "feed", sent only when true: no consumer; `subject` is the live
  // feed (ds.feed.<type>.<partition>, or ds.feed.<type>.> for "*"), taken
  // from the checkpoint the registration reported.
  bool feed = false;
  bool operator==(const Delivery&) const = default;
};
struct RegisterReply {
  std::optional<WireError> error;
  uint32_t heartbeat_ms = 0;
  std::vector<Delivery> deliveries;
  bool ok() const { return !error.has_value(); }
  bool operator==(const RegisterReply&) const = default;
};

// ---- heartbeat: hub -> agents, ds.hb.<type> and ds.agent.<agent>.hb ----
struct HeartbeatRequest {
  std::string hub;
  int64_t ts = 0;
  std::vector<std::string> types;
  // Key "register", sent only when true: the hub orders the agent to register
  // again (its checkpoint left the stream while it was dead, or its schema is
  // out of date), so that the reply to that registration carries a snapshot
  // order or the new schema.
  bool reregister = false;
  bool operator==(const HeartbeatRequest&) const = default;
};
struct Checkpoint {
  uint64_t version = 0;
  uint64_t seq = 0;
  int64_t ts = 0;
  std::string schema_hash;
  // Key "feed", sent only when true: the agent takes the type from the live
  // feed now (it moved there itself, or a registration gave it the feed);
  // the hub then removes its consumer of the type.
  bool feed = false;
  bool operator==(const Checkpoint&) const = default;
};
enum class AgentHealth { kOk, kDegraded };
struct HeartbeatReply {
  std::string agent;
  int64_t ts = 0;
  AgentHealth status = AgentHealth::kOk;
  std::map<std::string, Checkpoint> checkpoints;  // by type
  uint64_t pending = 0;
  uint64_t quarantined = 0;  // entries of every type
  // Entries by type (types with none absent); nullopt from an agent that
  // predates the key, which reports the total only.
  std::optional<std::map<std::string, uint64_t>> quarantined_types;
  std::optional<std::string> error;
  bool operator==(const HeartbeatReply&) const = default;
};

// ---- deltas: hub -> stream DS_<TYPE> -> agent ----
struct Change {
  uint64_t v = 0;
  std::string key;
  Op op = Op::kUpsert;
  Fields f;                          // upsert: changed columns; delete: empty
  int64_t ts = 0;
  int64_t hts = 0;
  bool operator==(const Change&) const = default;
};
struct DeltaBatch {
  std::string type;
  std::vector<Change> changes;       // ascending v
  bool operator==(const DeltaBatch&) const = default;
};

// ---- snapshot: agent -> hub, ds.hub.snapshot.<agent> ----
struct SnapshotRequest {
  std::string type;
  std::string partition = "*";
  std::optional<std::string> after_key;  // keyset paging: keys > after_key
  uint32_t limit = 1000;
  bool operator==(const SnapshotRequest&) const = default;
};
struct SnapshotRecord {
  uint64_t v = 0;
  std::string key;
  Fields f;                          // every column of the current row
  int64_t ts = 0;
  bool operator==(const SnapshotRecord&) const = default;
};
struct SnapshotReply {
  std::optional<WireError> error;
  std::vector<SnapshotRecord> records;  // ascending key
  uint64_t high_version = 0;         // type version the snapshot is consistent with
  uint64_t high_seq = 0;             // stream sequence of high_version
  bool done = false;
  bool operator==(const SnapshotReply&) const = default;
};

// ---- digest: hub -> one agent, ds.agent.<agent>.digest (deltasync verify) ----
struct DigestRequest {
  std::vector<std::string> types;    // empty = every type the agent takes
  uint32_t buckets = 0;              // > 0: also bucket digests over that many buckets (<= 65536)
  std::vector<uint32_t> list{};      // with buckets: list (key, content hash) of these buckets' rows
  bool operator==(const DigestRequest&) const = default;
};
struct TypeDigest {
  std::string partition = "*";       // the agent's subscription partition
  uint64_t version = 0;              // checkpoint version
  int64_t ts = 0;                    // checkpoint business time
  uint64_t rows = 0;                 // live rows
  std::string digest;                // keys digest hex() of the live rows (shared/digest.h)
  std::string content{};             // content digest hex(); "" from agents that predate it
  std::vector<std::pair<uint64_t, uint64_t>> buckets{};     // (rows, sum) per bucket, when asked
  std::vector<std::pair<std::string, uint64_t>> listed{};   // (key, content hash), ascending key
  bool listed_truncated = false;     // listed stops before the end of the listed buckets
  bool operator==(const TypeDigest&) const = default;
};
struct DigestReply {
  std::optional<WireError> error;
  std::string agent;
  std::map<std::string, TypeDigest> types;  // by type
  bool operator==(const DigestReply&) const = default;
};

}  // namespace ds
