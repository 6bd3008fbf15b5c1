#pragma once
// QueryStore: the hub's SQLite query store and change log
// (docs/architecture.md, "Storage"; docs/protocol.md, "Semantics"), one
// connection to the hub database. Records are stored classified by business
// type, one current-state table per type (RecordTables, hub/record_tables.h),
// beside the change log, the publishing state and the producer retry keys
// (ChangeLog, hub/change_log.h); an ingest group commit is a GroupCommitter
// (hub/group_commit.h). This class opens the connection, creates or upgrades
// the tables, and keeps the operations that span both parts in one
// transaction (commit, recovery, retention, snapshot pages).
//
// A delta batch holds changes of one type and one partition from one commit,
// ascending by version, at most publish_batch of them and at most
// max_batch_bytes encoded (the broker's max_payload less headroom; see
// BatchLimits); batches are published in ascending order of `batch`, so "the
// last batch in the stream" tells exactly which batches are missing. A batch
// not yet published that no longer fits (the broker's max_payload shrank, or
// an older hub stored it) is cut again in the log (recut_batch) by the same
// rule before it is published.
//
// The agents tables live in a file of their own (hub/agent_registry.h), so
// this file has one writer. A store written by an earlier hub holds them
// until the registry has taken them over and dropped them (at start, before
// the ingest writer runs); they are never touched here.
//
// Thread-safety: none. A QueryStore is one SQLite connection used by one
// thread: the hub has one writer (the ingest writer thread) and one
// read-only QueryStore per reading thread (HTTP, snapshots). WAL mode lets
// the readers run beside the writer.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hub/change_log.h"
#include "hub/group_commit.h"
#include "hub/record_tables.h"
#include "shared/config.h"
#include "shared/digest.h"
#include "shared/messages.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// The marks of the changes in `batches`, one per (type, partition).
std::vector<PartitionMark> partition_marks_of(const std::vector<PendingBatch>& batches);

struct QueryStoreOptions {
  bool read_only = false;            // readers: no schema changes, no writes
  int64_t publish_batch = 500;       // max changes per delta batch
  // Max encoded bytes of a delta batch; the writer sets the broker's current
  // limit before each commit (QueryStore::set_max_batch_bytes).
  size_t max_batch_bytes = 1000000;
  int busy_timeout_ms = 5000;
};

class QueryStore {
 public:
  // Opens the database and, unless read_only, creates or upgrades the tables
  // for `types`. A reader needs the file to exist (the writer opens first).
  static Result<std::unique_ptr<QueryStore>> open(const std::string& path, std::vector<TypeConfig> types,
                                                  QueryStoreOptions options = {});
  ~QueryStore();
  QueryStore(const QueryStore&) = delete;
  QueryStore& operator=(const QueryStore&) = delete;

  // Stores `batches` in ONE transaction, each batch all-or-nothing: per type
  // the next versions are assigned in order, upserts patch the row (only the
  // given columns change), deletes leave a tombstone (columns cleared), every
  // change is appended to the log with its delta batch, and (producer, type, seq)
  // is recorded. A batch whose (producer, type, seq) was stored before stores
  // nothing and reports the stored range (retried). A record that breaks a
  // rule needing the stored row (moving a key to another partition, no
  // partition for a new key of a partitioned type) rejects its batch only,
  // with the record's index. The Result fails only when the transaction
  // itself failed; then nothing of any batch was stored.
  //
  // With `hold` (an HA hub's ingest writer: hub/ingest_writer.h), delta
  // batches hold consecutive versions only (BatchLimits::contiguous), and
  // the transaction stays open when this returns: end_commit() keeps the group
  // (COMMIT, fsynced) or drops it (nothing of it stored, the heads as
  // before). Meanwhile this connection sees the group and may write to it
  // (the published marks; a Transaction begun meanwhile is a savepoint in
  // it, shared/sqlite.h).
  Result<GroupCommit> commit(const std::vector<CommitBatch>& batches, int64_t hub_ts, bool hold = false);
  // Ends a held group commit; OK without one.
  Status end_commit(bool keep);

  // The byte limit of the delta batches the next commits cut (at least 1).
  void set_max_batch_bytes(size_t bytes);

  // Cuts the stored delta batch `batch` of `type` again under the current
  // limits (the BatchLimits rule): its first change keeps the batch's id, the
  // others may move to new batches named by their first version. Only for a
  // batch after the type's published mark (one the stream has never acked:
  // reconciliation runs first). Returns how many batches it became (1: it
  // fits as it is; nothing changed).
  Result<size_t> recut_batch(const std::string& type, uint64_t batch);

  // Up to `max_changes` changes (whole batches; at least one batch) of the
  // batches of `type` after batch `after_batch`, ascending.
  Result<std::vector<PendingBatch>> batches_after(const std::string& type, uint64_t after_batch,
                                                  size_t max_changes = 10000);
  // Recovery after a restore from an older backup (StreamPublisher): stores
  // `changes` of `type`, taken back from its stream, exactly as the commit
  // that made them did: same versions, times, delta batch ids and
  // partitions; rows patched or tombstoned; change log appended; type head
  // advanced. They must continue the log without a gap (the first is the
  // head + 1, each the next), else InvalidArgument and nothing is stored.
  // One transaction, which also records those of `retry_keys` whose last
  // version is among `changes` (the stream carries them with the batch
  // holding their last version, hub/retry_key_header.h; a stream written by
  // a hub from before that carries none).
  struct RecoveredChange {
    uint64_t batch = 0;          // the delta batch (its first version) the change was published in
    std::string partition;       // "_all" when unpartitioned
    Change change;
  };
  Status apply_recovered(const std::string& type, const std::vector<RecoveredChange>& changes,
                         const std::vector<ProducerRetryKey>& retry_keys = {});
  // The logged change of `type` at `version`; nullopt when the log does not
  // hold it (never committed, or compacted away).
  Result<std::optional<Change>> logged_change(const std::string& type, uint64_t version);

  // Retention (docs/operations.md "Retention"): one bounded step of pruning
  // of `type`, in one short transaction on the writer thread.
  //   - Changes at or above `keep_from` (what the stream still holds, and
  //     everything not yet published) are never touched.
  //   - Below it, the log is compacted: a change is dropped when its key has
  //     a newer one (the current row's version is higher) or no row at all
  //     (its tombstone was dropped). The step looks at the next
  //     max_rows rows of the log after after_version only.
  //   - Tombstones (deleted rows) below `keep_from` whose hub time is before
  //     `tombstones_before_ms` are dropped (0: none), at most max_rows
  //     per step, and with them their deletes in the log.
  //   - Producer retry keys whose versions are all below `keep_from` are
  //     dropped (at most max_rows per step).
  struct PruneStep {
    uint64_t scanned_to = 0;        // continue after this; 0 = the pass reached keep_from
    size_t changes_dropped = 0;
    size_t tombstones_dropped = 0;
    size_t retry_keys_dropped = 0;
  };
  Result<PruneStep> prune_step(const std::string& type, uint64_t after_version, uint64_t keep_from,
                               int64_t tombstones_before_ms, size_t max_rows);

  // Records that the stream acked every batch of `type` up to `batch`, the
  // last at stream sequence `seq`; published_version follows from the log.
  // Never moves backwards, except by reconciliation when the stream lost
  // batches it had acknowledged (StreamPublisher). Not fsynced on its own (the next commit's fsync
  // covers it; after a power loss the start-up reconciliation restores it
  // from the stream); commit() always is.
  Status mark_published(const std::string& type, uint64_t batch, uint64_t seq);

  Result<TypeState> type_state(const std::string& type);
  Result<std::map<std::string, TypeState>> type_states();
  // Takes the write lock and gives it back at once (BEGIN IMMEDIATE, then
  // ROLLBACK; nothing is written), without waiting for it: whether a commit
  // could lock the store now.
  Status probe_write_lock();
  // Every partition's mark, from the current-state tables (tombstones
  // included); one scan per type, for start-up.
  Result<std::vector<PartitionMark>> partition_marks();
  // The version of the newest record or tombstone of `partition` of `type`
  // (0 when it has none): what an agent of that partition has at most.
  Result<uint64_t> partition_version(const std::string& type, const std::string& partition);

  // NotFound when the type has no such key (a tombstone is returned, deleted).
  Result<StoredRecord> get(const std::string& type, const std::string& key);
  // Live rows ascending by key, key > after_key, optionally one partition.
  Result<std::vector<StoredRecord>> list(const std::string& type, const std::optional<std::string>& partition,
                                         const std::optional<std::string>& after_key, size_t limit);
  // One snapshot page (protocol: keys > after_key ascending, live rows only,
  // partition "*" = all); high_version/high_seq are the type's published
  // version and its stream sequence, read in the same read transaction. The
  // page holds as many rows as fit in `max_bytes` encoded (at most the
  // request's limit, at least one); `done` only when no row is left. A first
  // row that alone exceeds max_bytes (stored before ingest refused such
  // records, or grown by patches) is an Internal error naming it.
  Result<SnapshotReply> snapshot_page(const SnapshotRequest& request, size_t max_bytes);

  // The keys digest (shared/digest.h) of the live rows of `type`, of one
  // partition when given.
  Result<Digest> digest(const std::string& type, const std::optional<std::string>& partition);
  // Every digest (keys, content, buckets, listed rows; shared/digest.h) of
  // the live rows of `type`, of one partition when given, in one pass.
  Result<TableDigest> table_digest(const std::string& type, const std::optional<std::string>& partition,
                                   const DigestOptions& options = {});

  const TypeConfig* find_type(const std::string& type) const;
  const std::vector<TypeConfig>& types() const;

 private:
  struct Impl;
  explicit QueryStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The partition token a record goes to for a type: its partition column's
// value as text, "_all" for unpartitioned types. Exposed for validation.
std::optional<std::string> partition_value_of(const TypeSchema& schema, const Value& v);

}  // namespace ds
