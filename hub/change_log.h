#pragma once
// ChangeLog: the hub's change log and publishing state (docs/architecture.md,
// "Storage"; docs/protocol.md, "Semantics"), three tables of the hub database:
//
//   changes(type, version, key, op, partition, batch, fields, ts, hub_ts, producer)
//   type_state(type, version, published_batch, published_version, published_seq)
//   producer_batches(producer, type, seq, first_version, last_version, digest)
//
// Owns: those tables (their schema, created or upgraded at open), every
// change appended to the log, each type's head (last committed version, kept
// in memory as committed), the producer retry keys, the delta batches read
// back for (re)publication and cut again (recut_batch), and the published
// mark. `changes.fields` is the msgpack map of the columns the change set
// (encode_logged_fields, shared/codec.h).
//
// The rule it keeps: `changes.batch` is the first version of the delta batch
// the change is published in, fixed when the change is appended, so every
// (re)publication of that batch carries exactly the same changes under the
// same Nats-Msg-Id "<type>:<batch>" and the stream's duplicate window drops a
// republished copy safely. Batches are published in ascending order of
// `batch`; only a batch after the published mark (one the stream never acked)
// may be cut again. The published mark never moves backwards, except when
// reconciliation finds that the stream lost batches it had acknowledged
// (StreamPublisher moves it back to what the stream still holds).
//
// Thread: the QueryStore's (one connection used by one thread); it shares the
// QueryStore's Database and StatementCache, which outlive it, and opens no
// transaction except in recut_batch: its writes join the caller's.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/messages.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// Per-type counters of the log and of what the stream holds.
struct TypeState {
  uint64_t version = 0;              // last committed version
  uint64_t published_batch = 0;      // first version of the last batch acked by the stream
  uint64_t published_version = 0;    // last version of every batch up to published_batch
  uint64_t published_seq = 0;        // stream sequence of published_batch
};

// A producer retry key's range (producer_batches): the versions the batch
// got and the digest of its records.
struct RetryKey {
  uint64_t first_version = 0;
  uint64_t last_version = 0;
  std::optional<std::string> digest;  // none: stored before keys carried their content
  bool operator==(const RetryKey&) const = default;
};

// A retry key whole: (producer, type, seq) and its range. A delta batch
// carries the keys whose last version it holds to the stream (header
// Ds-Retry-Keys, hub/retry_key_header.h), so a standby hub that follows the
// stream answers a producer's retry as the active did (hub/standby_follower.h).
struct ProducerRetryKey {
  std::string producer;
  uint64_t seq = 0;
  RetryKey range;
  bool operator==(const ProducerRetryKey&) const = default;
};

// A delta batch of the change log, as a commit created it or as read back
// for (re)publication.
struct PendingBatch {
  uint64_t batch = 0;                // first version; Nats-Msg-Id "<type>:<batch>"
  std::string partition;             // "_all" when unpartitioned
  DeltaBatch delta;
  std::vector<ProducerRetryKey> retry_keys{};  // the keys whose last version is in this batch
  uint64_t last_version() const { return delta.changes.empty() ? batch : delta.changes.back().v; }
};

// The rule that cuts the changes of one commit into delta batches, per (type,
// partition), in version order (the group commit, and recut_batch): a change
// joins the open batch unless that batch already holds max_changes changes or
// the change would take its encoding (delta_batch_overhead + the encoded_size
// of each change, shared/codec.h) over max_bytes; then it starts a new batch.
// A change too large for any batch still gets a batch of its own: ingest
// refuses such records, and the publisher reports one stored earlier.
// With `contiguous` (an HA hub's commits: hub/ingest_writer.h), a change
// also starts a new batch unless its version follows the open batch's
// last: then any prefix of the batches, in the order they are published,
// holds every version up to its last, so a stream an active hub stopped
// publishing into halfway through a group never has a hole a standby
// would wait on.
struct BatchLimits {
  int64_t max_changes = 500;
  size_t max_bytes = 1000000;
  bool contiguous = false;
};
// `count` changes of `bytes` encoded bytes (overhead included) are in the
// open batch; whether a change of `change_bytes` joins it.
bool joins_open_batch(const BatchLimits& limits, int64_t count, size_t bytes, size_t change_bytes);

class ChangeLog {
 public:
  // Creates the tables or upgrades them in place (retry keys from before
  // they carried their content get a NULL digest); registers each of
  // `types` in type_state. In the caller's transaction.
  static Status create_or_upgrade(Database& db, const std::vector<TypeConfig>& types);

  ChangeLog(Database& db, StatementCache& statements) : db_(db), statements_(statements) {}
  ChangeLog(const ChangeLog&) = delete;
  ChangeLog& operator=(const ChangeLog&) = delete;

  // ---- heads (last committed version per type, in memory) ----
  Status load_heads();
  uint64_t head(const std::string& type) const;
  // The head's next version, taken in memory; the caller stores it with
  // store_head in its transaction or puts the old head back (set_head) when
  // that transaction does not commit.
  uint64_t take_version(const std::string& type) { return ++heads_[type]; }
  void set_head(const std::string& type, uint64_t version) { heads_[type] = version; }
  const std::map<std::string, uint64_t>& heads() const { return heads_; }
  void set_heads(std::map<std::string, uint64_t> heads) { heads_ = std::move(heads); }
  // Writes the in-memory head of `type` to type_state.
  Status store_head(const std::string& type);

  // synchronous=FULL (fsync at commit) or NORMAL for the next transactions of
  // the connection: an acknowledgement is fsynced, a mark or pruning is not.
  Status set_synchronous(bool full);

  // ---- the log ----
  // Appends `change` of `type` in delta batch `batch` (its first version).
  Status append(const std::string& type, const Change& change, const std::string& partition, uint64_t batch,
                const std::string& producer);
  // Up to `max_changes` changes (whole batches; at least one batch) of the
  // batches of `type` after batch `after_batch`, ascending, each with the
  // retry keys whose last version it holds.
  Result<std::vector<PendingBatch>> batches_after(const TypeConfig& type, uint64_t after_batch, size_t max_changes);
  // Cuts the stored delta batch `batch` of `type` again under `limits`; see
  // QueryStore::recut_batch. One transaction of its own.
  Result<size_t> recut_batch(const TypeConfig& type, uint64_t batch, const BatchLimits& limits);
  // The change of `type` at `version`; nullopt when the log lacks it.
  Result<std::optional<Change>> change_at(const TypeConfig& type, uint64_t version);
  // Gives each of `batches` (of `type`) the retry keys whose last version
  // it holds.
  Status attach_retry_keys(const std::string& type, std::vector<PendingBatch>& batches);

  // ---- producer retry keys ----
  Result<std::optional<RetryKey>> find_retry_key(const std::string& producer, const std::string& type, uint64_t seq);
  Status record_retry_key(const std::string& producer, const std::string& type, uint64_t seq, const RetryKey& key);

  // ---- publishing state ----
  // See QueryStore::mark_published.
  Status mark_published(const std::string& type, uint64_t batch, uint64_t seq);
  Result<std::map<std::string, TypeState>> type_states();
  Result<TypeState> type_state(const std::string& type);

  // ---- retention (QueryStore::prune_step), in the caller's transaction ----
  // Compacts the next `max_rows` rows of the log of `type` after
  // `after_version` below `keep_from`: drops a change whose key has a newer
  // one in `record_table` (the type's quoted current-state table) or no row
  // there at all. Returns where the window ended (0: it reached keep_from).
  struct Compaction {
    uint64_t scanned_to = 0;
    size_t dropped = 0;
  };
  Result<Compaction> compact(const std::string& type, const std::string& record_table, uint64_t after_version,
                             uint64_t keep_from, size_t max_rows);
  // Drops up to `max_rows` retry keys of `type` whose versions are all below
  // `keep_from`; returns how many.
  Result<size_t> drop_retry_keys(const std::string& type, uint64_t keep_from, size_t max_rows);

 private:
  Database& db_;
  StatementCache& statements_;
  std::map<std::string, uint64_t> heads_;
  std::string fields_buffer_;  // reused by every appended change's `fields` blob
};

}  // namespace ds
