#pragma once
// RecordTables: the current state of every record in the hub database, one
// table per business type (docs/architecture.md, "Storage"):
//
//   t_<type>(_key TEXT PRIMARY KEY, "<column>"..., _partition, _version, _ts,
//            _hub_ts, _deleted)
//
// (the record key is `_key`, so a declared column may be called "key").
//
// Owns: those tables (created at open, or upgraded in place by
// add_missing_columns, shared/table_columns.h: columns added to a type in the
// configuration appear, removed ones stay, unused), the prepared writes of
// the commit path per type and column set, and every read of the rows (one
// record, pages of live rows, digests, partition marks).
//
// The rule it keeps: a write here is one step of the group commit
// (hub/group_commit.h), of recovery or of retention, never a transaction of
// its own; the commit and recovery change a row only together with the
// change the change log (hub/change_log.h) appends for it, in the same
// transaction, and retention only drops tombstones older than its horizon. A delete leaves a tombstone
// (_deleted = 1, columns cleared) that keeps the key's partition and version.
//
// Thread: the QueryStore's (one connection used by one thread); it shares the
// QueryStore's Database and StatementCache, which outlive it and whose
// statements it never clears (it keeps pointers to them).

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "shared/config.h"
#include "shared/digest.h"
#include "shared/messages.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// The newest change of one partition of a type (partition "_all" for an
// unpartitioned type): its version and business timestamp. The agent service
// measures each agent's lag against its partition's mark.
struct PartitionMark {
  std::string type;
  std::string partition;
  uint64_t version = 0;
  int64_t ts = 0;
  int64_t hub_ts = 0;  // the hub's wall-clock ms when the newest of these changes was committed
  bool operator==(const PartitionMark&) const = default;
};

// The current state of one record.
struct StoredRecord {
  std::string key;
  std::string partition;
  uint64_t version = 0;
  int64_t ts = 0;
  int64_t hub_ts = 0;
  bool deleted = false;
  Fields fields;                     // every declared column (null when unset)
};

class RecordTables {
 public:
  // Creates t_<type> or adds the declared columns it lacks, and its indexes.
  // In the caller's transaction.
  static Status create_or_upgrade(Database& db, const TypeConfig& type);
  // The quoted name of `type`'s table, for SQL built around it.
  static std::string table_of(std::string_view type);

  RecordTables(Database& db, StatementCache& statements, std::vector<TypeConfig> types)
      : db_(db), statements_(statements), types_(std::move(types)) {}
  RecordTables(const RecordTables&) = delete;
  RecordTables& operator=(const RecordTables&) = delete;

  const TypeConfig* find_type(const std::string& type) const;
  const std::vector<TypeConfig>& types() const { return types_; }

  // ---- writes (in the caller's transaction) ----
  // Prepares the type's write statements now (the group commit does, before
  // its per-batch savepoint, so a failure there fails the group).
  Status prepare_writes(const TypeConfig& type) { return type_statements(type).status(); }
  // Where a stored row of `key` is: its partition, and whether it is a
  // tombstone. nullopt when the type has no row of that key.
  struct StoredPlace {
    std::string partition;
    bool deleted = false;
  };
  Result<std::optional<StoredPlace>> find_place(const TypeConfig& type, const std::string& key);

  // One change to write to its row: an upsert patches the given columns
  // (`fields`), a delete clears every column and sets the tombstone flag.
  struct RowWrite {
    const std::string& key;
    const std::string& partition;
    uint64_t version;
    int64_t ts;
    int64_t hub_ts;
    Op op;
    const Fields& fields;  // upserts only
  };
  // Updates the stored row of w.key only when it is in w.partition (the
  // partition index is left untouched); false when there is no such row.
  Result<bool> update_in_place(const TypeConfig& type, const RowWrite& w);
  // Inserts the row, or rewrites it whatever its partition was.
  Status upsert(const TypeConfig& type, const RowWrite& w);

  // Retention: drops up to `max_rows` tombstones of `type` below version
  // `keep_from` whose hub time is before `before_ms`; returns how many.
  Result<size_t> drop_tombstones(const std::string& type, uint64_t keep_from, int64_t before_ms, size_t max_rows);

  // ---- reads ----
  // See QueryStore for each.
  Result<StoredRecord> get(const std::string& type, const std::string& key);
  Result<std::vector<StoredRecord>> list(const std::string& type, const std::optional<std::string>& partition,
                                         const std::optional<std::string>& after_key, size_t limit);
  Result<Digest> digest(const std::string& type, const std::optional<std::string>& partition);
  Result<TableDigest> table_digest(const std::string& type, const std::optional<std::string>& partition,
                                   const DigestOptions& options);
  Result<std::vector<PartitionMark>> partition_marks();
  Result<uint64_t> partition_version(const std::string& type, const std::string& partition);

 private:
  // The commit path's statements of one type, so a record costs no SQL text
  // building or hashing: upserts and updates are keyed by the set of columns
  // a record carries (their names joined by '\x1f'), pointing into the cache.
  struct TypeStatements {
    Statement* find = nullptr;            // the stored row's partition and tombstone flag
    Statement* tombstone_upsert = nullptr;
    Statement* tombstone_update = nullptr;
    std::unordered_map<std::string, Statement*> upserts;
    std::unordered_map<std::string, Statement*> updates;
  };
  Result<TypeStatements*> type_statements(const TypeConfig& type);
  // The upsert (or, update_only, the in-place UPDATE) for `fields`' columns.
  Result<Statement*> upsert_statement(const TypeConfig& type, TypeStatements& ts, const Fields& fields,
                                      bool update_only);
  Result<Statement*> write_statement(const TypeConfig& type, const RowWrite& w, bool update_only);

  Database& db_;
  StatementCache& statements_;
  std::vector<TypeConfig> types_;
  std::unordered_map<std::string, TypeStatements> statements_by_type_;
};

}  // namespace ds
