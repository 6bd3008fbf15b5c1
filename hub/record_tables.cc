#include "hub/record_tables.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "shared/table_columns.h"

namespace ds {
namespace {

// "_key, "<c1>", ..., _partition, _version, _ts, _hub_ts, _deleted"
std::string record_columns(const TypeConfig& type) {
  std::string cols = "_key";
  for (const Column& c : type.schema.columns) cols += ", " + quote_identifier(c.name);
  return cols + ", _partition, _version, _ts, _hub_ts, _deleted";
}

StoredRecord read_record(Statement& s, const TypeConfig& type) {
  StoredRecord r;
  int i = 0;
  r.key = s.column_text(i++);
  for (const Column& c : type.schema.columns) r.fields[c.name] = s.column_value(i++, c.type);
  r.partition = s.column_text(i++);
  r.version = static_cast<uint64_t>(s.column_int64(i++));
  r.ts = s.column_int64(i++);
  r.hub_ts = s.column_int64(i++);
  r.deleted = s.column_int64(i++) != 0;
  return r;
}

// The key of a record's column set in TypeStatements.
std::string column_set_key(const Fields& fields) {
  std::string key;
  for (const auto& [name, value] : fields) {
    key += name;
    key += '\x1f';
  }
  return key;
}

}  // namespace

// Identifiers come from validated names ([a-z][a-z0-9_]* types and config
// column names), but are quoted anyway so no column name can be read as SQL.
std::string RecordTables::table_of(std::string_view type) { return quote_identifier("t_" + std::string(type)); }

Status RecordTables::create_or_upgrade(Database& db, const TypeConfig& type) {
  DS_ASSIGN_OR_RETURN(std::set<std::string> have, table_columns(db, "t_" + type.name));
  const std::string table = table_of(type.name);
  if (have.empty()) {
    std::string sql = "CREATE TABLE " + table + "(_key TEXT PRIMARY KEY";
    for (const Column& c : type.schema.columns) {
      sql += ", " + quote_identifier(c.name) + " " + std::string(sql_column_type(c.type));
    }
    sql +=
        ", _partition TEXT NOT NULL, _version INTEGER NOT NULL, _ts INTEGER NOT NULL,"
        " _hub_ts INTEGER NOT NULL, _deleted INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID";
    DS_RETURN_IF_ERROR(db.exec(sql));
    spdlog::info("query store: created table for type '{}' ({} columns)", type.name, type.schema.columns.size());
  } else {
    DS_ASSIGN_OR_RETURN(std::vector<std::string> added, add_missing_columns(db, "t_" + type.name, type.schema.columns));
    for (const std::string& name : added) {
      spdlog::info("query store: type '{}': added column '{}' ({})", type.name, name,
                   column_type_name(type.schema.find_column(name)->type));
    }
  }
  DS_RETURN_IF_ERROR(db.exec("CREATE INDEX IF NOT EXISTS " + quote_identifier("t_" + type.name + "_by_partition") +
                             " ON " + table + "(_partition, _key)"));
  // Retention finds old tombstones without a scan; only deleted rows are in it.
  return db.exec("CREATE INDEX IF NOT EXISTS " + quote_identifier("t_" + type.name + "_tombstones") + " ON " + table +
                 "(_hub_ts) WHERE _deleted = 1");
}

const TypeConfig* RecordTables::find_type(const std::string& type) const {
  for (const TypeConfig& t : types_) {
    if (t.name == type) return &t;
  }
  return nullptr;
}

// ---- writes -------------------------------------------------------------------

Result<RecordTables::TypeStatements*> RecordTables::type_statements(const TypeConfig& type) {
  auto it = statements_by_type_.find(type.name);
  if (it != statements_by_type_.end()) return &it->second;
  const std::string table = table_of(type.name);
  TypeStatements ts;
  DS_ASSIGN_OR_RETURN(ts.find, statements_.get("SELECT _partition, _deleted FROM " + table + " WHERE _key = ?"));
  std::string clear;
  for (const Column& c : type.schema.columns) clear += quote_identifier(c.name) + " = NULL, ";
  // Bindings of every write: ?1 key, ?2 partition, ?3 version, ?4 ts, ?5
  // hub_ts, then (upserts) the record's columns in name order from ?6.
  DS_ASSIGN_OR_RETURN(ts.tombstone_upsert,
                      statements_.get("INSERT INTO " + table +
                                      "(_key, _partition, _version, _ts, _hub_ts, _deleted) VALUES(?1, ?2, ?3, ?4, ?5, 1)"
                                      " ON CONFLICT(_key) DO UPDATE SET " +
                                      clear +
                                      "_partition = excluded._partition, _version = excluded._version, "
                                      "_ts = excluded._ts, _hub_ts = excluded._hub_ts, _deleted = 1"));
  // Only for a stored row of the same partition, which leaves the partition
  // index untouched.
  DS_ASSIGN_OR_RETURN(ts.tombstone_update, statements_.get("UPDATE " + table + " SET " + clear +
                                                           "_version = ?3, _ts = ?4, _hub_ts = ?5, _deleted = 1"
                                                           " WHERE _key = ?1 AND _partition = ?2"));
  return &statements_by_type_.emplace(type.name, std::move(ts)).first->second;
}

Result<Statement*> RecordTables::upsert_statement(const TypeConfig& type, TypeStatements& ts, const Fields& fields,
                                                  bool update_only) {
  auto& by_columns = update_only ? ts.updates : ts.upserts;
  std::string key = column_set_key(fields);
  if (auto it = by_columns.find(key); it != by_columns.end()) return it->second;
  const std::string table = table_of(type.name);
  std::string cols;
  std::string vals;
  std::string sets;
  int i = 6;
  for (const auto& [name, value] : fields) {
    const std::string q = quote_identifier(name);
    const std::string param = "?" + std::to_string(i++);
    cols += ", " + q;
    vals += ", " + param;
    sets += q + " = " + (update_only ? param : "excluded." + q) + ", ";
  }
  std::string sql;
  if (update_only) {
    // A stored row of the same partition: the partition index is untouched.
    sql = "UPDATE " + table + " SET " + sets +
          "_version = ?3, _ts = ?4, _hub_ts = ?5, _deleted = 0 WHERE _key = ?1 AND _partition = ?2";
  } else {
    sql = "INSERT INTO " + table + "(_key, _partition, _version, _ts, _hub_ts, _deleted" + cols +
          ") VALUES(?1, ?2, ?3, ?4, ?5, 0" + vals + ") ON CONFLICT(_key) DO UPDATE SET " + sets +
          "_partition = excluded._partition, _version = excluded._version, "
          "_ts = excluded._ts, _hub_ts = excluded._hub_ts, _deleted = 0";
  }
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get(sql));
  by_columns.emplace(std::move(key), s);
  return s;
}

Result<Statement*> RecordTables::write_statement(const TypeConfig& type, const RowWrite& w, bool update_only) {
  DS_ASSIGN_OR_RETURN(TypeStatements * ts, type_statements(type));
  if (w.op == Op::kUpsert) return upsert_statement(type, *ts, w.fields, update_only);
  return update_only ? ts->tombstone_update : ts->tombstone_upsert;
}

namespace {

Status run_write(Statement& s, const RecordTables::RowWrite& w) {
  StatementUse use(s);
  use->bind(1, w.key).bind(2, w.partition).bind(3, static_cast<int64_t>(w.version)).bind(4, w.ts).bind(5, w.hub_ts);
  if (w.op == Op::kUpsert) {
    int i = 6;
    for (const auto& [name, value] : w.fields) use->bind(i++, value);
  }
  return use->run();
}

}  // namespace

Result<std::optional<RecordTables::StoredPlace>> RecordTables::find_place(const TypeConfig& type,
                                                                          const std::string& key) {
  DS_ASSIGN_OR_RETURN(TypeStatements * ts, type_statements(type));
  StatementUse use(*ts->find);
  use->bind(1, key);
  DS_ASSIGN_OR_RETURN(bool row, use->step());
  if (!row) return std::optional<StoredPlace>();
  return std::optional<StoredPlace>(StoredPlace{use->column_text(0), use->column_int64(1) != 0});
}

Result<bool> RecordTables::update_in_place(const TypeConfig& type, const RowWrite& w) {
  DS_ASSIGN_OR_RETURN(Statement * s, write_statement(type, w, /*update_only=*/true));
  DS_RETURN_IF_ERROR(run_write(*s, w));
  return db_.changes() == 1;
}

Status RecordTables::upsert(const TypeConfig& type, const RowWrite& w) {
  DS_ASSIGN_OR_RETURN(Statement * s, write_statement(type, w, /*update_only=*/false));
  return run_write(*s, w);
}

Result<size_t> RecordTables::drop_tombstones(const std::string& type, uint64_t keep_from, int64_t before_ms,
                                             size_t max_rows) {
  const std::string table = table_of(type);
  DS_ASSIGN_OR_RETURN(Statement * t, statements_.get("DELETE FROM " + table + " WHERE _key IN (SELECT _key FROM " +
                                                     table + " WHERE _deleted = 1 AND _hub_ts < ?1 AND _version < ?2"
                                                     " LIMIT ?3)"));
  StatementUse use(*t);
  use->bind(1, before_ms).bind(2, static_cast<int64_t>(keep_from)).bind(3, static_cast<int64_t>(max_rows));
  DS_RETURN_IF_ERROR(use->run());
  return static_cast<size_t>(db_.changes());
}

// ---- reads --------------------------------------------------------------------

Result<StoredRecord> RecordTables::get(const std::string& type, const std::string& key) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  DS_ASSIGN_OR_RETURN(Statement * s,
                      statements_.get("SELECT " + record_columns(*tc) + " FROM " + table_of(type) + " WHERE _key = ?"));
  StatementUse use(*s);
  use->bind(1, key);
  DS_ASSIGN_OR_RETURN(bool row, use->step());
  if (!row) return Status::not_found("type '" + type + "' has no record '" + key + "'");
  return read_record(*use, *tc);
}

Result<std::vector<StoredRecord>> RecordTables::list(const std::string& type,
                                                     const std::optional<std::string>& partition,
                                                     const std::optional<std::string>& after_key, size_t limit) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  std::string sql = "SELECT " + record_columns(*tc) + " FROM " + table_of(type) + " WHERE _deleted = 0 AND _key > ?";
  if (partition) sql += " AND _partition = ?";
  sql += " ORDER BY _key LIMIT ?";
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get(sql));
  StatementUse use(*s);
  int i = 1;
  use->bind(i++, after_key.value_or(""));
  if (partition) use->bind(i++, *partition);
  use->bind(i++, static_cast<int64_t>(limit));
  std::vector<StoredRecord> out;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (!row) break;
    out.push_back(read_record(*use, *tc));
  }
  return out;
}

Result<Digest> RecordTables::digest(const std::string& type, const std::optional<std::string>& partition) {
  if (find_type(type) == nullptr) return Status::not_found("unknown business type '" + type + "'");
  std::string sql = "SELECT _key, _version FROM " + table_of(type) + " WHERE _deleted = 0";
  if (partition) sql += " AND _partition = ?";
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get(sql));
  StatementUse use(*s);
  if (partition) use->bind(1, *partition);
  Digest d;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (!row) break;
    d.add(use->column_text(0), static_cast<uint64_t>(use->column_int64(1)));
  }
  return d;
}

Result<TableDigest> RecordTables::table_digest(const std::string& type, const std::optional<std::string>& partition,
                                               const DigestOptions& options) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  DigestTableSpec spec;
  spec.table = table_of(type);
  spec.key_column = "_key";
  spec.columns = tc->schema.columns;
  spec.where = "_deleted = 0";
  if (partition) {
    spec.where += " AND _partition = ?1";
    spec.where_params.push_back(*partition);
  }
  return digest_table(db_, spec, options);
}

Result<uint64_t> RecordTables::partition_version(const std::string& type, const std::string& partition) {
  if (find_type(type) == nullptr) return Status::not_found("unknown business type '" + type + "'");
  DS_ASSIGN_OR_RETURN(Statement s, db_.prepare("SELECT coalesce(max(_version), 0) FROM " + table_of(type) +
                                               " WHERE _partition = ?1"));
  s.bind(1, partition);
  DS_ASSIGN_OR_RETURN(bool row, s.step());
  return row ? static_cast<uint64_t>(s.column_int64(0)) : 0;
}

Result<std::vector<PartitionMark>> RecordTables::partition_marks() {
  std::vector<PartitionMark> out;
  for (const TypeConfig& type : types_) {
    DS_ASSIGN_OR_RETURN(Statement s, db_.prepare("SELECT _partition, max(_version), max(_ts), max(_hub_ts) FROM " +
                                                 table_of(type.name) + " GROUP BY _partition"));
    for (;;) {
      DS_ASSIGN_OR_RETURN(bool row, s.step());
      if (!row) break;
      out.push_back(PartitionMark{type.name, s.column_text(0), static_cast<uint64_t>(s.column_int64(1)),
                                  s.column_int64(2), s.column_int64(3)});
    }
  }
  return out;
}

}  // namespace ds
