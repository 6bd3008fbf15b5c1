#pragma once
// GroupCommitter: one group commit of the hub's ingest (docs/architecture.md,
// "Ingest"): the CommitBatches the ingest writer took from its queue, stored
// in ONE transaction, so they share one fsync.
//
// Owns: nothing durable. For the length of one run() it holds the outcome of
// each batch and the delta batches being filled, and drives the record tables
// (hub/record_tables.h) and the change log (hub/change_log.h) it is given.
//
// The rules it keeps, per batch, all-or-nothing (a SAVEPOINT each):
//   - per type the next versions are assigned in order; an upsert patches
//     the row (only the given columns change), a delete leaves a tombstone;
//     every change is appended to the log in its delta batch, cut by the
//     BatchLimits rule per (type, partition);
//   - (producer, type, seq) is recorded with the batch's digest, and given to
//     the delta batch holding the batch's last change (its size counted in
//     that batch's cut, hub/retry_key_header.h); a batch whose
//     key was stored before stores nothing: with the same digest it is a
//     retry and reports the stored range, with another it is refused
//     (AlreadyExists naming that range);
//   - the stored row decides the partition: a live row pins it (a move is
//     refused), a tombstone pins it only for another delete, a new key of a
//     partitioned type must name one. Such a rule broken by a record rejects
//     its batch only, with the record's index; anything else (I/O, busy)
//     fails the whole group and nothing of any batch is stored.
//
// Thread: the QueryStore's (its writer connection); one object per commit.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hub/change_log.h"
#include "hub/record_tables.h"
#include "shared/messages.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// One ingest batch ready to store: its records passed validate_ingest_records
// (fields normalised, partition resolved where the record itself tells it).
struct CommitBatch {
  std::string type;
  std::string producer;              // "" = no idempotency
  std::optional<uint64_t> seq;       // with producer: a retry key
  std::vector<IngestRecord> records;
  // Stored with the retry key, so a reuse of the key for other records is
  // told apart from a retry of the same ones: BLAKE2b-128 of the records'
  // msgpack encoding after validation (IngestWriter::submit).
  std::string digest;
};

// What became of one CommitBatch in a group commit.
struct BatchOutcome {
  Status status;                     // not OK: nothing of the batch was stored
  std::optional<uint32_t> index;     // the offending record, when one caused it
  uint64_t first_version = 0;
  uint64_t last_version = 0;
  bool retried = false;              // (producer, type, seq) was stored before with the same
                                     // content; range is the stored one (other content:
                                     // status already_exists naming that range)
};

// What one group commit stored: an outcome per CommitBatch, in order, and the
// delta batches it created, ascending by batch within each type. Those are
// exactly what batches_after reads back from the log for them, so the writer
// publishes them from memory; the log is read only to republish.
struct GroupCommit {
  std::vector<BatchOutcome> outcomes;
  std::vector<PendingBatch> batches;
};

class GroupCommitter {
 public:
  GroupCommitter(Database& db, StatementCache& statements, RecordTables& records, ChangeLog& log,
                 BatchLimits limits, int64_t hub_ts)
      : db_(db), statements_(statements), records_(records), log_(log), limits_(limits), hub_ts_(hub_ts) {}
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Stores `batches` (QueryStore::commit). The Result fails only when the
  // transaction itself failed; then nothing was stored and the change log's
  // heads are as before. With `held`, the transaction is not committed but
  // handed over there (the caller commits it, or drops it and puts the heads
  // back). Call once.
  Result<GroupCommit> run(const std::vector<CommitBatch>& batches, std::optional<Transaction>* held = nullptr);

 private:
  // The delta batch a (type, partition) is filling: its first version, how
  // many changes it holds, and where it is in result_.batches.
  struct OpenBatch {
    uint64_t first = 0;
    uint64_t last = 0;  // its last version
    int64_t count = 0;
    size_t bytes = 0;  // encoded, delta_batch_overhead included
    size_t index = 0;
  };
  using OpenBatches = std::map<std::pair<std::string, std::string>, OpenBatch>;

  // The transaction; a failure here fails the whole group.
  Status run_group(const std::vector<CommitBatch>& batches, std::optional<Transaction>* held);
  // One batch under its savepoint; a failure here fails the whole group,
  // a batch refused or rejected only sets `out.status`.
  Status store_batch(const CommitBatch& batch, BatchOutcome& out);
  // Whether `batch`'s retry key was stored before (then `out` says so).
  Result<bool> seen_before(const CommitBatch& batch, BatchOutcome& out);
  // The records, the retry key and the type's head, under the savepoint.
  Status store_records(const TypeConfig& type, const CommitBatch& batch, BatchOutcome& out);
  // Stores one record and puts its change into a delta batch, whose index in
  // result_.batches it sets in `holder`; `extra_bytes` (the batch's retry
  // key, with its last record) count in that batch's size.
  Status apply_record(const TypeConfig& type, const CommitBatch& batch, const IngestRecord& r, size_t extra_bytes,
                      size_t& holder);
  // The partition the record's row is in after the change.
  Result<std::string> partition_of(const TypeConfig& type, const IngestRecord& r, bool& in_place);
  Status write_row(const TypeConfig& type, const RecordTables::RowWrite& w, bool known_in_place);
  // Puts `c` into its (type, partition)'s open delta batch, or a new one;
  // returns that batch's first version.
  uint64_t add_to_delta_batch(const std::string& type, const std::string& partition, size_t change_bytes,
                              uint64_t version);
  Status exec_cached(std::string_view sql);

  Database& db_;
  StatementCache& statements_;
  RecordTables& records_;
  ChangeLog& log_;
  const BatchLimits limits_;
  const int64_t hub_ts_;
  GroupCommit result_;
  OpenBatches open_batches_;
};

}  // namespace ds
