#pragma once
// Replica: the agent's local SQLite file (docs/architecture.md, "Storage").
//
// Layout (WAL mode, one file):
//   <type>                       one table per taken type, named after it:
//                                <key column> TEXT PRIMARY KEY, the declared
//                                columns, then _version, _ts, _hub_ts.
//   _deltasync_checkpoint        (type PRIMARY KEY, version, seq, ts,
//                                schema_hash, schema): the last applied
//                                version, the stream sequence of the last
//                                applied message, the latest business time,
//                                and the schema the table was built from (JSON)
//                                so a restarted agent can apply before the hub
//                                answers its registration.
//   _deltasync_tombstone         (type, key, version): the version of each
//                                deleted key. A delete removes the row (so
//                                readers of <type> see only live rows) but must
//                                still block the replay of an older upsert; the
//                                effective version of a key is max(row
//                                _version, tombstone version). Tombstones are
//                                kept until a snapshot replaces the type, or
//                                until they are older (by the delete's hub
//                                time, column hub_ts) than [replica]
//                                tombstone_max_age: by then the stream no
//                                longer holds an older upsert that a replay
//                                could bring (when tombstone_max_age is at
//                                least every taken type's max_age).
//   _deltasync_quarantine        (id, type, kind, seq, version, key, reason,
//                                payload, at): changes set aside. kind is
//                                'undecodable' (payload = raw message bytes),
//                                'apply' (payload = a DeltaBatch holding the one
//                                change that failed) or 'hook' (payload = the
//                                applied batch whose hook failed; its data is in
//                                the table).
//   _deltasync_staging_<type>    transient: snapshot pages before the atomic load.
//
// Convergence rule: a change applies to a key only if its version is greater
// than the key's effective version, so duplicates, replays and out-of-order
// deliveries leave the replica unchanged. An upsert is a patch: only the given
// columns change (a new row gets NULL in the others).
//
// Thread-safety: none. One thread (the agent's apply thread) owns a Replica for
// writing; other processes (the status CLI) open their own read-only Replica.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shared/digest.h"
#include "shared/messages.h"
#include "shared/schema.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// Per-type position of the replica (what heartbeats and registration report).
struct ReplicaCheckpoint {
  uint64_t version = 0;
  uint64_t seq = 0;
  int64_t ts = 0;
  std::string schema_hash;
  bool operator==(const ReplicaCheckpoint&) const = default;
};

// What one apply() did.
struct ApplyOutcome {
  size_t applied = 0;            // changes that changed the replica
  std::vector<Change> hooked;    // those changes, in order, when kept for the hook
  size_t skipped = 0;            // not newer than the key's version
  size_t quarantined = 0;        // failed and set aside
  ReplicaCheckpoint checkpoint;  // the type's checkpoint as committed
  int64_t hook_entry = 0;        // the hook outbox row of `applied`; 0 = none
};

// An applied batch whose hook has not completed yet (hook outbox row).
struct HookBatch {
  int64_t id = 0;
  DeltaBatch batch;
};

struct QuarantineEntry {
  int64_t id = 0;
  std::string type;
  std::string kind;              // undecodable | apply | hook
  uint64_t seq = 0;
  uint64_t version = 0;
  std::string key;
  std::string reason;
  std::string payload;
  int64_t at = 0;                // ms since the epoch
};

class Replica {
 public:
  // Opens (creating) the replica and its bookkeeping tables and loads the
  // stored schemas. read_only opens an existing file without writing to it.
  static Result<std::unique_ptr<Replica>> open(const std::string& path, bool read_only = false);

  // Creates the type's table, or adds the schema's new columns in place
  // (ALTER TABLE ADD COLUMN); records the schema and its hash.
  Status ensure_table(const std::string& type, const TypeSchema& schema);
  // The schema recorded for a type, if ensure_table() was ever called for it.
  const TypeSchema* schema(const std::string& type) const;
  std::vector<std::string> types() const;

  // Applies `changes` (ascending version) and advances the type's checkpoint
  // (version = max applied-or-seen version, seq = last_seq, ts = max business
  // ts) in ONE transaction. A change that breaks the schema or a constraint is
  // quarantined inside the same transaction and the rest still apply.
  // `keep_for_hook` also records the applied changes in the hook outbox in
  // that transaction (outcome.hook_entry), so a hook interrupted by a crash
  // runs after the restart: hooks are at least once.
  // NotFound when the type has no table; other errors leave nothing changed.
  Result<ApplyOutcome> apply(const std::string& type, const std::vector<Change>& changes, uint64_t last_seq,
                             bool keep_for_hook = false);
  // Hook outbox: batches whose hook has not completed, oldest first; and the
  // removal of one once its hook succeeded or it was quarantined.
  Result<std::vector<HookBatch>> pending_hooks() const;
  Status hook_done(int64_t id);

  // Snapshot loading, in three steps: begin (empty staging table), stage each
  // page (committed per page, so memory stays bounded), then finish: replace
  // the table's content with the staging table and set the checkpoint, in one
  // transaction, so readers never see a half-loaded table.
  Status begin_snapshot(const std::string& type);
  Status stage_snapshot_page(const std::string& type, const std::vector<SnapshotRecord>& records);
  Status finish_snapshot(const std::string& type, uint64_t high_version, uint64_t high_seq);

  // Sets a quarantine row aside in its own transaction.
  Result<int64_t> quarantine(const QuarantineEntry& entry);
  Result<std::vector<QuarantineEntry>> quarantined() const;
  Result<QuarantineEntry> quarantine_entry(int64_t id) const;
  Status drop_quarantined(int64_t id);
  Result<uint64_t> quarantine_count() const;
  // Quarantine entries by type; types without an entry are absent.
  Result<std::map<std::string, uint64_t>> quarantine_counts() const;
  // Drops up to `limit` tombstones whose delete's hub time is before
  // `before_hub_ts` (ms); how many it dropped. One statement, autocommit.
  Result<size_t> prune_tombstones(int64_t before_hub_ts, size_t limit);

  Result<std::map<std::string, ReplicaCheckpoint>> checkpoints() const;
  Result<uint64_t> row_count(const std::string& type) const;
  // Live rows as (key, version), ascending key: input for digests.
  Result<std::vector<std::pair<std::string, uint64_t>>> key_versions(const std::string& type) const;
  // The keys digest (shared/digest.h) of the type's live rows.
  Result<Digest> digest(const std::string& type) const;
  // Every digest of the type's live rows (keys, content, buckets, listed
  // rows), in one pass; NotFound when the type has no table.
  Result<TableDigest> table_digest(const std::string& type, const DigestOptions& options = {});
  // One live row's fields (every declared column, NULLs included); NotFound
  // when the key has no live row.
  Result<Fields> row(const std::string& type, const std::string& key) const;

  Database& db() { return *db_; }

 private:
  explicit Replica(std::unique_ptr<Database> db, bool read_only)
      : db_(std::move(db)), read_only_(read_only), statements_(*db_) {}
  Status create_bookkeeping();
  Status create_tables();
  Status load_schemas();
  // One pass of apply() in one transaction. `careful` wraps each change in a
  // savepoint; without it, a refused write returns nullopt (rolled back) so
  // the caller redoes the batch carefully.
  Result<std::optional<ApplyOutcome>> apply_pass(const std::string& type, const TypeSchema& schema,
                                                 const std::vector<Change>& changes, uint64_t last_seq,
                                                 bool keep_for_hook, bool careful);
  // Applies one change inside the caller's transaction: true = applied,
  // false = not newer than the row. InvalidArgument / AlreadyExists for a
  // change that must be quarantined; `wrote` tells whether that came before
  // any write (validation) or from a write.
  Result<bool> apply_one(const std::string& type, const TypeSchema& schema, const Change& change, bool& wrote);
  Status insert_quarantine(const QuarantineEntry& entry);
  // Binds and runs a statement of the apply path, compiled once per SQL text.
  Status run_cached(std::string_view sql, const std::function<void(Statement&)>& bind);

  // The SQL texts of one type's apply path, built once per schema instead of
  // once per change.
  struct TableSql {
    std::string table;       // quoted table name
    std::string key_column;  // quoted key column
    std::string lookup;      // the row's version and its tombstone's
    std::string remove;      // delete the row
    std::map<std::string, std::string, std::less<>> quoted;  // column -> quoted name
  };
  // Of the type's table, or of its staging table (named `table`).
  const TableSql& table_sql(const std::string& table, const TypeSchema& schema);
  // The UPDATE of a row / INSERT (`verb`: "INSERT" or "INSERT OR REPLACE")
  // of exactly `fields`' columns and the bookkeeping ones, built in sql_buffer_.
  const std::string& update_sql(const TableSql& sql, const Fields& fields);
  const std::string& insert_sql(std::string_view verb, const TableSql& sql, const Fields& fields);

  std::unique_ptr<Database> db_;
  bool read_only_ = false;
  StatementCache statements_;  // the apply path's; cleared when tables are created or dropped
  std::map<std::string, TypeSchema> schemas_;
  std::map<std::string, TableSql> table_sql_;  // per table; dropped when its schema changes
  std::string sql_buffer_;                     // reused by update_sql() and insert_sql()
};

// Schema <-> JSON text as stored in _deltasync_checkpoint.schema.
std::string schema_to_json(const TypeSchema& schema);
Result<TypeSchema> schema_from_json(const std::string& json);

}  // namespace ds
