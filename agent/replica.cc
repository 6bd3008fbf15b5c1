#include "agent/replica.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "shared/clock.h"
#include "shared/codec.h"
#include "shared/table_columns.h"

namespace ds {
namespace {

std::string staging_table(const std::string& type) { return "_deltasync_staging_" + type; }

// The CREATE TABLE text of a type's table (also used for its staging table).
std::string create_table_sql(const std::string& table, const TypeSchema& schema) {
  std::string sql = "CREATE TABLE IF NOT EXISTS " + quote_identifier(table) + " (" +
                    quote_identifier(schema.key) + " TEXT PRIMARY KEY NOT NULL";
  for (const Column& c : schema.columns) {
    sql += ", " + quote_identifier(c.name) + " " + std::string(sql_column_type(c.type));
  }
  sql += ", _version INTEGER NOT NULL, _ts INTEGER, _hub_ts INTEGER)";
  return sql;
}

// Every column of a type's table in table order, as a comma-separated list.
std::string column_list(const TypeSchema& schema) {
  std::string s = quote_identifier(schema.key);
  for (const Column& c : schema.columns) s += ", " + quote_identifier(c.name);
  s += ", _version, _ts, _hub_ts";
  return s;
}

}  // namespace

std::string schema_to_json(const TypeSchema& schema) {
  nlohmann::json j;
  j["key"] = schema.key;
  if (schema.partition) j["partition"] = *schema.partition;
  j["columns"] = nlohmann::json::array();
  for (const Column& c : schema.columns) {
    j["columns"].push_back({{"name", c.name}, {"type", std::string(column_type_name(c.type))}});
  }
  return j.dump();
}

Result<TypeSchema> schema_from_json(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("key") || !j["key"].is_string() ||
      !j.contains("columns") || !j["columns"].is_array()) {
    return Status::data_loss("stored schema is not valid: " + json);
  }
  TypeSchema schema;
  schema.key = j["key"].get<std::string>();
  if (j.contains("partition") && j["partition"].is_string()) schema.partition = j["partition"].get<std::string>();
  for (const auto& c : j["columns"]) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string() || !c.contains("type") ||
        !c["type"].is_string()) {
      return Status::data_loss("stored schema has a bad column: " + json);
    }
    DS_ASSIGN_OR_RETURN(ColumnType t, column_type_from_name(c["type"].get<std::string>()));
    schema.columns.push_back(Column{c["name"].get<std::string>(), t});
  }
  return schema;
}

Result<std::unique_ptr<Replica>> Replica::open(const std::string& path, bool read_only) {
  OpenOptions opts;
  opts.read_only = read_only;
  opts.create = !read_only;
  // synchronous=NORMAL: a power loss may roll back the last commits, data and
  // checkpoint together; the agent then reports the older checkpoint when it
  // registers and the hub recreates its consumers from there. Acked-but-lost
  // is therefore a replay, never a gap.
  opts.synchronous_full = false;
  // 16 MiB of page cache instead of SQLite's 2: business keys land all over
  // the key index, and with 2 MiB a catch-up re-reads index pages from disk
  // and spills dirty pages mid-transaction (deltasync-bench catchup: 1,000,000
  // missed updates in 9.7 s instead of 10.8 s). Filled only as pages are
  // touched, so an idle agent's memory is unchanged.
  if (!read_only) opts.cache_kib = 16 * 1024;
  DS_ASSIGN_OR_RETURN(auto db, Database::open(path, opts));
  std::unique_ptr<Replica> r(new Replica(std::move(db), read_only));
  if (!read_only) DS_RETURN_IF_ERROR(r->create_bookkeeping());
  DS_RETURN_IF_ERROR(r->load_schemas());
  return r;
}

Status Replica::create_bookkeeping() {
  DS_RETURN_IF_ERROR(create_tables());
  // Replicas from before tombstone retention: their tombstones get the hub
  // time of this start, so they are kept a whole tombstone_max_age from now.
  DS_RETURN_IF_ERROR(add_missing_columns(*db_, "_deltasync_tombstone", {{"hub_ts", ColumnType::kInteger}}).status());
  const int64_t now_ms = real_clock().now_system_ms();
  DS_RETURN_IF_ERROR(
      db_->exec("UPDATE _deltasync_tombstone SET hub_ts = " + std::to_string(now_ms) + " WHERE hub_ts IS NULL"));
  return db_->exec("CREATE INDEX IF NOT EXISTS _deltasync_tombstone_by_age ON _deltasync_tombstone(hub_ts)");
}

Result<size_t> Replica::prune_tombstones(int64_t before_hub_ts, size_t limit) {
  DS_ASSIGN_OR_RETURN(Statement * st, statements_.get("DELETE FROM _deltasync_tombstone WHERE rowid IN (SELECT rowid"
                                                      " FROM _deltasync_tombstone WHERE hub_ts < ? LIMIT ?)"));
  StatementUse use(*st);
  use->bind(1, before_hub_ts).bind(2, static_cast<int64_t>(limit));
  DS_RETURN_IF_ERROR(use->run().with_context("prune tombstones"));
  return static_cast<size_t>(db_->changes());
}

Status Replica::create_tables() {
  return db_->exec(
      "CREATE TABLE IF NOT EXISTS _deltasync_checkpoint ("
      "  type TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL DEFAULT 0,"
      "  seq INTEGER NOT NULL DEFAULT 0, ts INTEGER NOT NULL DEFAULT 0,"
      "  schema_hash TEXT NOT NULL DEFAULT '', schema TEXT NOT NULL DEFAULT '');"
      "CREATE TABLE IF NOT EXISTS _deltasync_tombstone ("
      "  type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, hub_ts INTEGER,"
      "  PRIMARY KEY (type, key));"
      "CREATE TABLE IF NOT EXISTS _deltasync_quarantine ("
      "  id INTEGER PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL,"
      "  seq INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 0,"
      "  key TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL, payload BLOB, at INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS _deltasync_hook_outbox ("
      "  id INTEGER PRIMARY KEY, type TEXT NOT NULL, payload BLOB NOT NULL);");
}

Status Replica::load_schemas() {
  // A read-only open of a file the agent never initialised has no tables.
  auto exists = query_scalar_int64(
      *db_, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='_deltasync_checkpoint'");
  if (!exists) return exists.status();
  if (*exists == 0) return Status::ok();
  DS_ASSIGN_OR_RETURN(auto stmt, db_->prepare("SELECT type, schema FROM _deltasync_checkpoint WHERE schema != ''"));
  while (true) {
    DS_ASSIGN_OR_RETURN(bool row, stmt.step());
    if (!row) break;
    const std::string type = stmt.column_text(0);
    DS_ASSIGN_OR_RETURN(TypeSchema schema, schema_from_json(stmt.column_text(1)));
    schemas_[type] = std::move(schema);
  }
  return Status::ok();
}

const TypeSchema* Replica::schema(const std::string& type) const {
  auto it = schemas_.find(type);
  return it == schemas_.end() ? nullptr : &it->second;
}

std::vector<std::string> Replica::types() const {
  std::vector<std::string> out;
  for (const auto& [type, schema] : schemas_) out.push_back(type);
  return out;
}

Status Replica::ensure_table(const std::string& type, const TypeSchema& schema) {
  if (read_only_) return Status::permission_denied("replica: opened read-only");
  if (type.empty() || type[0] == '_') return Status::invalid_argument("replica: bad type name '" + type + "'");
  statements_.clear();
  table_sql_.erase(type);
  table_sql_.erase(staging_table(type));
  DS_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*db_));
  DS_RETURN_IF_ERROR(db_->exec(create_table_sql(type, schema)));
  // Existing table: add the columns it lacks. Columns the hub dropped stay.
  DS_RETURN_IF_ERROR(add_missing_columns(*db_, type, schema.columns).status());
  {
    DS_ASSIGN_OR_RETURN(auto up, db_->prepare(
                                     "INSERT INTO _deltasync_checkpoint(type, schema_hash, schema) VALUES (?, ?, ?) "
                                     "ON CONFLICT(type) DO UPDATE SET schema_hash = excluded.schema_hash, "
                                     "schema = excluded.schema"));
    up.bind(1, type).bind(2, schema_hash(schema)).bind(3, schema_to_json(schema));
    DS_RETURN_IF_ERROR(up.run());
  }
  DS_RETURN_IF_ERROR(tx.commit());
  schemas_[type] = schema;
  return Status::ok();
}

const Replica::TableSql& Replica::table_sql(const std::string& table, const TypeSchema& schema) {
  auto it = table_sql_.find(table);
  if (it != table_sql_.end()) return it->second;
  TableSql sql;
  sql.table = quote_identifier(table);
  sql.key_column = quote_identifier(schema.key);
  sql.lookup = "SELECT (SELECT _version FROM " + sql.table + " WHERE " + sql.key_column +
               " = ?1), (SELECT version FROM _deltasync_tombstone WHERE type = ?2 AND key = ?1)";
  sql.remove = "DELETE FROM " + sql.table + " WHERE " + sql.key_column + " = ?";
  for (const Column& c : schema.columns) sql.quoted.emplace(c.name, quote_identifier(c.name));
  return table_sql_.emplace(table, std::move(sql)).first->second;
}

const std::string& Replica::update_sql(const TableSql& sql, const Fields& fields) {
  // Validated fields name only declared columns, all in sql.quoted.
  std::string& out = sql_buffer_;
  out.assign("UPDATE ").append(sql.table).append(" SET ");
  for (const auto& [name, value] : fields) out.append(sql.quoted.at(name)).append(" = ?, ");
  out.append("_version = ?, _ts = ?, _hub_ts = ? WHERE ").append(sql.key_column).append(" = ?");
  return out;
}

const std::string& Replica::insert_sql(std::string_view verb, const TableSql& sql, const Fields& fields) {
  std::string& out = sql_buffer_;
  out.assign(verb).append(" INTO ").append(sql.table).append(" (").append(sql.key_column);
  for (const auto& [name, value] : fields) out.append(", ").append(sql.quoted.at(name));
  out.append(", _version, _ts, _hub_ts) VALUES (?");
  for (size_t i = 0; i < fields.size() + 3; ++i) out.append(", ?");
  out.append(")");
  return out;
}

Result<bool> Replica::apply_one(const std::string& type, const TypeSchema& schema, const Change& change,
                                 bool& wrote) {
  wrote = false;
  if (change.key.empty()) return Status::invalid_argument("empty key");
  if (change.key.size() > kMaxKeyBytes) return Status::invalid_argument("key longer than the limit");
  const TableSql& sql = table_sql(type, schema);

  // The row's version and its tombstone's (NULL when absent), in one lookup.
  bool row_exists = false;
  bool tombstoned = false;
  uint64_t current = 0;
  {
    DS_ASSIGN_OR_RETURN(Statement * st, statements_.get(sql.lookup));
    StatementUse q(*st);
    q->bind(1, change.key).bind(2, type);
    DS_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return Status::internal("replica: version lookup returned no row");
    if (!q->column_is_null(0)) {
      row_exists = true;
      current = static_cast<uint64_t>(q->column_int64(0));
    }
    if (!q->column_is_null(1)) {
      tombstoned = true;
      current = std::max(current, static_cast<uint64_t>(q->column_int64(1)));
    }
  }
  if (change.v <= current) return false;

  if (change.op == Op::kDelete) {
    wrote = true;
    if (row_exists) {
      DS_RETURN_IF_ERROR(run_cached(sql.remove, [&](Statement& del) { del.bind(1, change.key); }));
    }
    DS_RETURN_IF_ERROR(run_cached("INSERT INTO _deltasync_tombstone(type, key, version, hub_ts) VALUES (?, ?, ?, ?) "
                                  "ON CONFLICT(type, key) DO UPDATE SET version = excluded.version,"
                                  " hub_ts = excluded.hub_ts",
                                  [&](Statement& tomb) {
                                    tomb.bind(1, type).bind(2, change.key).bind(3, static_cast<int64_t>(change.v));
                                    tomb.bind(4, change.hts);
                                  }));
    return true;
  }

  // The hub's deltas are normally stored form already: use them in place.
  const Fields* fields = &change.f;
  Fields converted;
  DS_ASSIGN_OR_RETURN(bool as_is, fields_in_stored_form(schema, change.key, change.f));
  if (!as_is) {
    converted = change.f;
    DS_RETURN_IF_ERROR(validate_fields(schema, change.key, converted));
    fields = &converted;
  }
  wrote = true;
  const std::string& upsert = row_exists ? update_sql(sql, *fields) : insert_sql("INSERT", sql, *fields);
  DS_RETURN_IF_ERROR(run_cached(upsert, [&](Statement& st) {
    int i = 1;
    if (!row_exists) st.bind(i++, change.key);
    for (const auto& [name, value] : *fields) st.bind(i++, value);
    st.bind(i++, static_cast<int64_t>(change.v));
    st.bind(i++, change.ts);
    st.bind(i++, change.hts);
    if (row_exists) st.bind(i++, change.key);
  }));
  if (tombstoned) {
    DS_RETURN_IF_ERROR(run_cached("DELETE FROM _deltasync_tombstone WHERE type = ? AND key = ?",
                                  [&](Statement& untomb) { untomb.bind(1, type).bind(2, change.key); }));
  }
  return true;
}

Status Replica::run_cached(std::string_view sql, const std::function<void(Statement&)>& bind) {
  DS_ASSIGN_OR_RETURN(Statement * st, statements_.get(sql));
  StatementUse use(*st);
  bind(*use);
  return use->run();
}

Status Replica::insert_quarantine(const QuarantineEntry& e) {
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare(
                                   "INSERT INTO _deltasync_quarantine(type, kind, seq, version, key, reason, "
                                   "payload, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  st.bind(1, e.type)
      .bind(2, e.kind)
      .bind(3, static_cast<int64_t>(e.seq))
      .bind(4, static_cast<int64_t>(e.version))
      .bind(5, e.key)
      .bind(6, e.reason)
      .bind_blob(7, e.payload)
      .bind(8, e.at != 0 ? e.at : real_clock().now_system_ms());
  return st.run();
}

Result<ApplyOutcome> Replica::apply(const std::string& type, const std::vector<Change>& changes,
                                    uint64_t last_seq, bool keep_for_hook) {
  const TypeSchema* schema = this->schema(type);
  if (schema == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  // Almost every batch applies without a savepoint per change; only when a
  // write itself is refused (a constraint the business system added to the
  // replica, say) is the batch redone with one, to set that change aside.
  DS_ASSIGN_OR_RETURN(std::optional<ApplyOutcome> fast,
                      apply_pass(type, *schema, changes, last_seq, keep_for_hook, /*careful=*/false));
  if (fast) return std::move(*fast);
  DS_ASSIGN_OR_RETURN(std::optional<ApplyOutcome> careful,
                      apply_pass(type, *schema, changes, last_seq, keep_for_hook, /*careful=*/true));
  if (!careful) return Status::internal("replica: careful apply pass gave up");
  return std::move(*careful);
}

Result<std::optional<ApplyOutcome>> Replica::apply_pass(const std::string& type, const TypeSchema& schema,
                                                        const std::vector<Change>& changes, uint64_t last_seq,
                                                        bool keep_for_hook, bool careful) {
  ApplyOutcome out;
  DS_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*db_));
  uint64_t max_version = 0;
  int64_t max_ts = 0;
  for (const Change& change : changes) {
    max_version = std::max(max_version, change.v);
    // Careful: a savepoint per change, so a change whose write is refused is
    // rolled back alone and set aside, and never blocks the changes after it.
    if (careful) DS_RETURN_IF_ERROR(run_cached("SAVEPOINT change", [](Statement&) {}));
    bool wrote = false;
    auto applied = apply_one(type, schema, change, wrote);
    if (applied.is_ok()) {
      if (careful) DS_RETURN_IF_ERROR(run_cached("RELEASE change", [](Statement&) {}));
      if (*applied) {
        max_ts = std::max(max_ts, change.ts);
        ++out.applied;
        if (keep_for_hook) out.hooked.push_back(change);
      } else {
        ++out.skipped;
      }
      continue;
    }
    const StatusCode code = applied.status().code();
    // Transient or internal failures abort the whole batch (it is retried);
    // only a change that can never apply is quarantined.
    if (code != StatusCode::kInvalidArgument && code != StatusCode::kAlreadyExists) return applied.status();
    if (careful) {
      DS_RETURN_IF_ERROR(run_cached("ROLLBACK TO change", [](Statement&) {}));
      DS_RETURN_IF_ERROR(run_cached("RELEASE change", [](Statement&) {}));
    } else if (wrote) {
      return std::optional<ApplyOutcome>();  // part of it may be written: redo carefully
    }
    DeltaBatch one{type, {change}};
    QuarantineEntry e;
    e.type = type;
    e.kind = "apply";
    e.seq = last_seq;
    e.version = change.v;
    e.key = change.key;
    e.reason = applied.status().message();
    e.payload = encode(one);
    DS_RETURN_IF_ERROR(insert_quarantine(e));
    ++out.quarantined;
  }
  DS_ASSIGN_OR_RETURN(auto cp, db_->prepare(
                                   "UPDATE _deltasync_checkpoint SET version = max(version, ?), "
                                   "seq = CASE WHEN ? > 0 THEN ? ELSE seq END, ts = max(ts, ?) WHERE type = ?"));
  cp.bind(1, static_cast<int64_t>(max_version))
      .bind(2, static_cast<int64_t>(last_seq))
      .bind(3, static_cast<int64_t>(last_seq))
      .bind(4, max_ts)
      .bind(5, type);
  DS_RETURN_IF_ERROR(cp.run());
  {
    DS_ASSIGN_OR_RETURN(auto q, db_->prepare(
                                    "SELECT version, seq, ts, schema_hash FROM _deltasync_checkpoint WHERE type = ?"));
    q.bind(1, type);
    DS_ASSIGN_OR_RETURN(bool found, q.step());
    if (!found) return Status::internal("replica: checkpoint row of '" + type + "' vanished");
    out.checkpoint.version = static_cast<uint64_t>(q.column_int64(0));
    out.checkpoint.seq = static_cast<uint64_t>(q.column_int64(1));
    out.checkpoint.ts = q.column_int64(2);
    out.checkpoint.schema_hash = q.column_text(3);
  }
  if (!out.hooked.empty()) {
    DS_RETURN_IF_ERROR(run_cached("INSERT INTO _deltasync_hook_outbox(type, payload) VALUES (?, ?)", [&](Statement& st) {
      st.bind(1, type).bind_blob(2, encode(DeltaBatch{type, out.hooked}));
    }));
    out.hook_entry = db_->last_insert_rowid();
  }
  DS_RETURN_IF_ERROR(tx.commit());
  return std::optional<ApplyOutcome>(std::move(out));
}

Result<std::vector<HookBatch>> Replica::pending_hooks() const {
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT id, type, payload FROM _deltasync_hook_outbox ORDER BY id"));
  std::vector<HookBatch> out;
  while (true) {
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    const int64_t id = st.column_int64(0);
    auto batch = decode_delta_batch(st.column_blob(2));
    if (!batch.is_ok()) {
      return Status::data_loss("replica: hook outbox entry " + std::to_string(id) +
                               " does not decode: " + batch.status().message());
    }
    out.push_back(HookBatch{id, std::move(batch).value()});
  }
  return out;
}

Status Replica::hook_done(int64_t id) {
  return run_cached("DELETE FROM _deltasync_hook_outbox WHERE id = ?", [&](Statement& st) { st.bind(1, id); });
}

Status Replica::begin_snapshot(const std::string& type) {
  const TypeSchema* schema = this->schema(type);
  if (schema == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  statements_.clear();  // some may name the staging table about to be dropped
  table_sql_.erase(staging_table(type));
  DS_RETURN_IF_ERROR(db_->exec("DROP TABLE IF EXISTS " + quote_identifier(staging_table(type))));
  return db_->exec(create_table_sql(staging_table(type), *schema));
}

Status Replica::stage_snapshot_page(const std::string& type, const std::vector<SnapshotRecord>& records) {
  const TypeSchema* schema = this->schema(type);
  if (schema == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  DS_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*db_));
  const TableSql& sql = table_sql(staging_table(type), *schema);
  for (const SnapshotRecord& r : records) {
    const Fields* fields = &r.f;
    Fields converted;
    Status valid = r.key.empty() ? Status::invalid_argument("empty key") : Status::ok();
    if (valid.is_ok()) {
      auto as_is = fields_in_stored_form(*schema, r.key, r.f);
      valid = as_is.status();
      if (as_is.is_ok() && !*as_is) {
        converted = r.f;
        valid = validate_fields(*schema, r.key, converted);
        fields = &converted;
      }
    }
    if (!valid) {
      Change c{r.v, r.key, Op::kUpsert, r.f, r.ts, 0};
      QuarantineEntry e;
      e.type = type;
      e.kind = "apply";
      e.version = r.v;
      e.key = r.key;
      e.reason = "snapshot record: " + valid.message();
      e.payload = encode(DeltaBatch{type, {c}});
      DS_RETURN_IF_ERROR(insert_quarantine(e));
      continue;
    }
    DS_RETURN_IF_ERROR(run_cached(insert_sql("INSERT OR REPLACE", sql, *fields), [&](Statement& st) {
      int i = 1;
      st.bind(i++, r.key);
      for (const auto& [name, value] : *fields) st.bind(i++, value);
      st.bind(i++, static_cast<int64_t>(r.v));
      st.bind(i++, r.ts);
      st.bind(i++, Value{});  // _hub_ts: not known for snapshot rows
    }));
  }
  return tx.commit();
}

Status Replica::finish_snapshot(const std::string& type, uint64_t high_version, uint64_t high_seq) {
  const TypeSchema* schema = this->schema(type);
  if (schema == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  const std::string table = quote_identifier(type);
  const std::string staging = quote_identifier(staging_table(type));
  const std::string cols = column_list(*schema);
  DS_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*db_));
  DS_RETURN_IF_ERROR(db_->exec("DELETE FROM " + table));
  DS_RETURN_IF_ERROR(db_->exec("INSERT INTO " + table + " (" + cols + ") SELECT " + cols + " FROM " + staging));
  {
    // The snapshot is the whole truth as of high_version: deletes before it
    // are already reflected by absence, and the stream resumes after it.
    DS_ASSIGN_OR_RETURN(auto del, db_->prepare("DELETE FROM _deltasync_tombstone WHERE type = ?"));
    del.bind(1, type);
    DS_RETURN_IF_ERROR(del.run());
  }
  {
    DS_ASSIGN_OR_RETURN(auto cp, db_->prepare(
                                     "UPDATE _deltasync_checkpoint SET version = ?, seq = ?, "
                                     "ts = (SELECT coalesce(max(_ts), 0) FROM " + table + ") WHERE type = ?"));
    cp.bind(1, static_cast<int64_t>(high_version)).bind(2, static_cast<int64_t>(high_seq)).bind(3, type);
    DS_RETURN_IF_ERROR(cp.run());
  }
  statements_.clear();
  DS_RETURN_IF_ERROR(db_->exec("DROP TABLE " + staging));
  return tx.commit();
}

Result<int64_t> Replica::quarantine(const QuarantineEntry& entry) {
  DS_RETURN_IF_ERROR(insert_quarantine(entry));
  return db_->last_insert_rowid();
}

namespace {
QuarantineEntry read_quarantine_row(const Statement& st) {
  QuarantineEntry e;
  e.id = st.column_int64(0);
  e.type = st.column_text(1);
  e.kind = st.column_text(2);
  e.seq = static_cast<uint64_t>(st.column_int64(3));
  e.version = static_cast<uint64_t>(st.column_int64(4));
  e.key = st.column_text(5);
  e.reason = st.column_text(6);
  e.payload = st.column_blob(7);
  e.at = st.column_int64(8);
  return e;
}
constexpr std::string_view kQuarantineColumns = "id, type, kind, seq, version, key, reason, payload, at";
}  // namespace

Result<std::vector<QuarantineEntry>> Replica::quarantined() const {
  std::vector<QuarantineEntry> out;
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT " + std::string(kQuarantineColumns) +
                                            " FROM _deltasync_quarantine ORDER BY id"));
  while (true) {
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    out.push_back(read_quarantine_row(st));
  }
  return out;
}

Result<QuarantineEntry> Replica::quarantine_entry(int64_t id) const {
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT " + std::string(kQuarantineColumns) +
                                            " FROM _deltasync_quarantine WHERE id = ?"));
  st.bind(1, id);
  DS_ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return Status::not_found("quarantine entry " + std::to_string(id) + " does not exist");
  return read_quarantine_row(st);
}

Status Replica::drop_quarantined(int64_t id) {
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("DELETE FROM _deltasync_quarantine WHERE id = ?"));
  st.bind(1, id);
  DS_RETURN_IF_ERROR(st.run());
  if (db_->changes() == 0) return Status::not_found("quarantine entry " + std::to_string(id) + " does not exist");
  return Status::ok();
}

Result<uint64_t> Replica::quarantine_count() const {
  auto n = query_scalar_int64(*db_, "SELECT count(*) FROM _deltasync_quarantine");
  if (!n) return n.status();
  return static_cast<uint64_t>(*n);
}

Result<std::map<std::string, uint64_t>> Replica::quarantine_counts() const {
  std::map<std::string, uint64_t> out;
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT type, count(*) FROM _deltasync_quarantine GROUP BY type"));
  while (true) {
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    out[st.column_text(0)] = static_cast<uint64_t>(st.column_int64(1));
  }
  return out;
}

Result<std::map<std::string, ReplicaCheckpoint>> Replica::checkpoints() const {
  std::map<std::string, ReplicaCheckpoint> out;
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT type, version, seq, ts, schema_hash FROM _deltasync_checkpoint"));
  while (true) {
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    ReplicaCheckpoint cp;
    cp.version = static_cast<uint64_t>(st.column_int64(1));
    cp.seq = static_cast<uint64_t>(st.column_int64(2));
    cp.ts = st.column_int64(3);
    cp.schema_hash = st.column_text(4);
    out[st.column_text(0)] = cp;
  }
  return out;
}

Result<uint64_t> Replica::row_count(const std::string& type) const {
  if (schema(type) == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  auto n = query_scalar_int64(*db_, "SELECT count(*) FROM " + quote_identifier(type));
  if (!n) return n.status();
  return static_cast<uint64_t>(*n);
}

Result<std::vector<std::pair<std::string, uint64_t>>> Replica::key_versions(const std::string& type) const {
  const TypeSchema* s = schema(type);
  if (s == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  std::vector<std::pair<std::string, uint64_t>> out;
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT " + quote_identifier(s->key) + ", _version FROM " +
                                            quote_identifier(type) + " ORDER BY 1"));
  while (true) {
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    out.emplace_back(st.column_text(0), static_cast<uint64_t>(st.column_int64(1)));
  }
  return out;
}

Result<Digest> Replica::digest(const std::string& type) const {
  DS_ASSIGN_OR_RETURN(auto rows, key_versions(type));
  Digest d;
  for (const auto& [key, version] : rows) d.add(key, version);
  return d;
}

Result<TableDigest> Replica::table_digest(const std::string& type, const DigestOptions& options) {
  const TypeSchema* s = schema(type);
  if (s == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  DigestTableSpec spec;
  spec.table = quote_identifier(type);
  spec.key_column = quote_identifier(s->key);
  spec.columns = s->columns;
  return digest_table(*db_, spec, options);
}

Result<Fields> Replica::row(const std::string& type, const std::string& key) const {
  const TypeSchema* s = schema(type);
  if (s == nullptr) return Status::not_found("replica: no table for type '" + type + "'");
  std::string cols;
  for (const Column& c : s->columns) cols += (cols.empty() ? "" : ", ") + quote_identifier(c.name);
  if (cols.empty()) cols = "1";
  DS_ASSIGN_OR_RETURN(auto st, db_->prepare("SELECT " + cols + " FROM " + quote_identifier(type) + " WHERE " +
                                            quote_identifier(s->key) + " = ?"));
  st.bind(1, key);
  DS_ASSIGN_OR_RETURN(bool found, st.step());
  if (!found) return Status::not_found("no row '" + key + "' in " + type);
  Fields f;
  for (size_t i = 0; i < s->columns.size(); ++i) {
    f[s->columns[i].name] = st.column_value(static_cast<int>(i), s->columns[i].type);
  }
  return f;
}

}  // namespace ds
