#include "hub/change_log.h"

#include <sqlite3.h>

#include <algorithm>

#include "hub/retry_key_header.h"
#include "shared/codec.h"
#include "shared/logged_fields.h"
#include "shared/table_columns.h"

namespace ds {
namespace {

constexpr std::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS changes(
  type TEXT NOT NULL,
  version INTEGER NOT NULL,
  key TEXT NOT NULL,
  op TEXT NOT NULL,
  partition TEXT NOT NULL,
  batch INTEGER NOT NULL,
  fields BLOB,
  ts INTEGER NOT NULL,
  hub_ts INTEGER NOT NULL,
  producer TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(type, version)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS changes_by_batch ON changes(type, batch, version);
CREATE TABLE IF NOT EXISTS type_state(
  type TEXT PRIMARY KEY,
  version INTEGER NOT NULL DEFAULT 0,
  published_batch INTEGER NOT NULL DEFAULT 0,
  published_version INTEGER NOT NULL DEFAULT 0,
  published_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS producer_batches(
  producer TEXT NOT NULL,
  type TEXT NOT NULL,
  seq INTEGER NOT NULL,
  first_version INTEGER NOT NULL,
  last_version INTEGER NOT NULL,
  digest BLOB,
  PRIMARY KEY(producer, type, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS producer_batches_by_version ON producer_batches(type, last_version);
)sql";

// A change from a row of "SELECT batch, version, key, op, partition, fields,
// ts, hub_ts FROM changes", the columns in that order (every read of the log
// selects them so).
Result<Change> read_change_row(Statement& s, const TypeSchema& schema) {
  Change c;
  c.v = static_cast<uint64_t>(s.column_int64(1));
  c.key = s.column_text(2);
  c.op = s.column_text(3) == "d" ? Op::kDelete : Op::kUpsert;
  DS_ASSIGN_OR_RETURN(c.f, decode_logged_fields(s.column_blob(5), schema));
  c.ts = s.column_int64(6);
  c.hts = s.column_int64(7);
  return c;
}

}  // namespace

bool joins_open_batch(const BatchLimits& limits, int64_t count, size_t bytes, size_t change_bytes) {
  return count < limits.max_changes && bytes + change_bytes <= limits.max_bytes;
}

Status ChangeLog::create_or_upgrade(Database& db, const std::vector<TypeConfig>& types) {
  DS_RETURN_IF_ERROR(db.exec(kSchema).with_context("query store schema"));
  // Stores from before retry keys carried their content: their keys match
  // any content (NULL digest), new ones only their own.
  DS_RETURN_IF_ERROR(add_missing_columns(db, "producer_batches", {{"digest", ColumnType::kBlob}}).status());
  DS_ASSIGN_OR_RETURN(Statement ins, db.prepare("INSERT OR IGNORE INTO type_state(type) VALUES(?)"));
  for (const TypeConfig& t : types) {
    ins.reset();
    ins.bind(1, t.name);
    DS_RETURN_IF_ERROR(ins.run().with_context("type '" + t.name + "'"));
  }
  return Status::ok();
}

Status ChangeLog::load_heads() {
  heads_.clear();
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT type, version FROM type_state"));
  StatementUse use(*s);
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (!row) break;
    heads_[use->column_text(0)] = static_cast<uint64_t>(use->column_int64(1));
  }
  return Status::ok();
}

uint64_t ChangeLog::head(const std::string& type) const {
  auto it = heads_.find(type);
  return it == heads_.end() ? 0 : it->second;
}

Status ChangeLog::store_head(const std::string& type) {
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("UPDATE type_state SET version = ? WHERE type = ?"));
  StatementUse use(*s);
  use->bind(1, static_cast<int64_t>(head(type))).bind(2, type);
  return use->run();
}

Status ChangeLog::set_synchronous(bool full) {
  // SQLite refuses the change inside a transaction: a write joining the
  // caller's (a mark within a held group commit) is synced as that one is.
  if (sqlite3_get_autocommit(db_.raw()) == 0) return Status::ok();
  DS_ASSIGN_OR_RETURN(Statement * s,
                      statements_.get(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  StatementUse use(*s);
  return use->run();
}

Status ChangeLog::append(const std::string& type, const Change& change, const std::string& partition, uint64_t batch,
                         const std::string& producer) {
  DS_ASSIGN_OR_RETURN(Statement * s,
                      statements_.get("INSERT INTO changes(type, version, key, op, partition, batch, fields, ts,"
                                      " hub_ts, producer) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  encode_logged_fields(change.f, fields_buffer_);
  StatementUse use(*s);
  use->bind(1, type).bind(2, static_cast<int64_t>(change.v)).bind(3, change.key);
  use->bind(4, change.op == Op::kUpsert ? "u" : "d").bind(5, partition).bind(6, static_cast<int64_t>(batch));
  use->bind_blob(7, fields_buffer_);
  use->bind(8, change.ts).bind(9, change.hts).bind(10, producer);
  return use->run();
}

Result<std::vector<PendingBatch>> ChangeLog::batches_after(const TypeConfig& type, uint64_t after_batch,
                                                           size_t max_changes) {
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT batch, version, key, op, partition, fields, ts, hub_ts"
                                                     " FROM changes WHERE type = ? AND batch > ?"
                                                     " ORDER BY batch, version"));
  StatementUse use(*s);
  use->bind(1, type.name).bind(2, static_cast<int64_t>(after_batch));
  std::vector<PendingBatch> out;
  size_t total = 0;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (!row) break;
    const auto batch = static_cast<uint64_t>(use->column_int64(0));
    if (out.empty() || out.back().batch != batch) {
      if (total >= max_changes) break;
      PendingBatch pb;
      pb.batch = batch;
      pb.partition = use->column_text(4);
      pb.delta.type = type.name;
      out.push_back(std::move(pb));
    }
    DS_ASSIGN_OR_RETURN(Change c, read_change_row(*use, type.schema));
    out.back().delta.changes.push_back(std::move(c));
    ++total;
  }
  DS_RETURN_IF_ERROR(attach_retry_keys(type.name, out));
  return out;
}

Result<std::optional<Change>> ChangeLog::change_at(const TypeConfig& type, uint64_t version) {
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT batch, version, key, op, partition, fields, ts, hub_ts"
                                                     " FROM changes WHERE type = ? AND version = ?"));
  StatementUse use(*s);
  use->bind(1, type.name).bind(2, static_cast<int64_t>(version));
  DS_ASSIGN_OR_RETURN(bool row, use->step());
  if (!row) return std::optional<Change>();
  DS_ASSIGN_OR_RETURN(Change c, read_change_row(*use, type.schema));
  return std::optional<Change>(std::move(c));
}

Status ChangeLog::attach_retry_keys(const std::string& type, std::vector<PendingBatch>& batches) {
  if (batches.empty()) return Status::ok();
  std::map<uint64_t, size_t> holder;  // version -> index of the batch holding it
  uint64_t lo = UINT64_MAX;
  uint64_t hi = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    for (const Change& c : batches[i].delta.changes) {
      holder.emplace(c.v, i);
      lo = std::min(lo, c.v);
      hi = std::max(hi, c.v);
    }
  }
  if (holder.empty()) return Status::ok();
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT producer, seq, first_version, last_version, digest FROM"
                                                     " producer_batches WHERE type = ? AND last_version BETWEEN ? AND ?"
                                                     " ORDER BY last_version"));
  StatementUse use(*s);
  use->bind(1, type).bind(2, static_cast<int64_t>(lo)).bind(3, static_cast<int64_t>(hi));
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (!row) break;
    ProducerRetryKey k;
    k.producer = use->column_text(0);
    k.seq = static_cast<uint64_t>(use->column_int64(1));
    k.range.first_version = static_cast<uint64_t>(use->column_int64(2));
    k.range.last_version = static_cast<uint64_t>(use->column_int64(3));
    if (!use->column_is_null(4)) k.range.digest = use->column_blob(4);
    auto at = holder.find(k.range.last_version);
    if (at != holder.end()) batches[at->second].retry_keys.push_back(std::move(k));
  }
  return Status::ok();
}

Result<size_t> ChangeLog::recut_batch(const TypeConfig& type, uint64_t batch, const BatchLimits& limits) {
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  DS_ASSIGN_OR_RETURN(TypeState st, type_state(type.name));
  if (batch <= st.published_batch) {
    return Status::internal("type '" + type.name + "': batch " + std::to_string(batch) + " is published (mark " +
                            std::to_string(st.published_batch) + "); it cannot be cut again");
  }
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT batch, version, key, op, partition, fields, ts, hub_ts"
                                                     " FROM changes WHERE type = ? AND batch = ? ORDER BY version"));
  std::vector<PendingBatch> whole(1);  // the batch as it is, with its retry keys
  {
    StatementUse use(*s);
    use->bind(1, type.name).bind(2, static_cast<int64_t>(batch));
    for (;;) {
      DS_ASSIGN_OR_RETURN(bool row, use->step());
      if (!row) break;
      DS_ASSIGN_OR_RETURN(Change c, read_change_row(*use, type.schema));
      whole[0].delta.changes.push_back(std::move(c));
    }
  }
  if (whole[0].delta.changes.empty()) {
    return Status::not_found("type '" + type.name + "' has no batch " + std::to_string(batch));
  }
  DS_RETURN_IF_ERROR(attach_retry_keys(type.name, whole));
  std::map<uint64_t, size_t> key_bytes;  // by last version: the header bytes of its keys
  for (const ProducerRetryKey& k : whole[0].retry_keys) {
    key_bytes[k.range.last_version] += retry_key_header_bound(k.producer);
  }
  // The commit's rule (GroupCommitter), keys counted with their last change.
  std::vector<uint64_t> versions;
  std::vector<uint64_t> new_batch;
  uint64_t open = 0;
  int64_t count = 0;
  size_t bytes = 0;
  for (const Change& c : whole[0].delta.changes) {
    const auto keys = key_bytes.find(c.v);
    const size_t change_bytes = encoded_size(c) + (keys == key_bytes.end() ? 0 : keys->second);
    if (open == 0 || !joins_open_batch(limits, count, bytes, change_bytes)) {
      open = c.v;
      count = 0;
      bytes = delta_batch_overhead(type.name);
    }
    ++count;
    bytes += change_bytes;
    versions.push_back(c.v);
    new_batch.push_back(open);
  }
  size_t batches = 0;
  DS_ASSIGN_OR_RETURN(Statement * upd, statements_.get("UPDATE changes SET batch = ? WHERE type = ? AND version = ?"));
  for (size_t i = 0; i < versions.size(); ++i) {
    if (i == 0 || new_batch[i] != new_batch[i - 1]) ++batches;
    if (new_batch[i] == batch) continue;
    StatementUse use(*upd);
    use->bind(1, static_cast<int64_t>(new_batch[i])).bind(2, type.name).bind(3, static_cast<int64_t>(versions[i]));
    DS_RETURN_IF_ERROR(use->run());
  }
  DS_RETURN_IF_ERROR(tx.commit());
  return batches;
}

Result<std::optional<RetryKey>> ChangeLog::find_retry_key(const std::string& producer, const std::string& type,
                                                          uint64_t seq) {
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT first_version, last_version, digest FROM"
                                                     " producer_batches WHERE producer = ? AND type = ? AND seq = ?"));
  StatementUse use(*s);
  use->bind(1, producer).bind(2, type).bind(3, static_cast<int64_t>(seq));
  DS_ASSIGN_OR_RETURN(bool row, use->step());
  if (!row) return std::optional<RetryKey>();
  RetryKey key;
  key.first_version = static_cast<uint64_t>(use->column_int64(0));
  key.last_version = static_cast<uint64_t>(use->column_int64(1));
  if (!use->column_is_null(2)) key.digest = use->column_blob(2);
  return std::optional<RetryKey>(std::move(key));
}

Status ChangeLog::record_retry_key(const std::string& producer, const std::string& type, uint64_t seq,
                                   const RetryKey& key) {
  DS_ASSIGN_OR_RETURN(Statement * s,
                      statements_.get("INSERT INTO producer_batches(producer, type, seq, first_version, last_version,"
                                      " digest) VALUES(?, ?, ?, ?, ?, ?)"));
  StatementUse use(*s);
  use->bind(1, producer).bind(2, type).bind(3, static_cast<int64_t>(seq));
  use->bind(4, static_cast<int64_t>(key.first_version)).bind(5, static_cast<int64_t>(key.last_version));
  if (key.digest) {
    use->bind_blob(6, *key.digest);
  } else {
    use->bind_null(6);
  }
  return use->run();
}

Status ChangeLog::mark_published(const std::string& type, uint64_t batch, uint64_t seq) {
  // The mark is written without an fsync of its own (synchronous=NORMAL for
  // this statement): the next ingest commit's fsync covers it, and if a power
  // loss takes it first, the start-up reconciliation reads the stream's last
  // batch and marks it again (StreamPublisher::reconcile_type). That spares
  // every ingest reply a second fsync.
  DS_RETURN_IF_ERROR(set_synchronous(false));
  // Batches of earlier commits hold only versions below `batch`; batches of
  // the same commit may hold higher ones (another partition's batch that
  // started earlier), and those all have version >= batch.
  Status marked = [&]() -> Status {
    DS_ASSIGN_OR_RETURN(Statement * s,
                        statements_.get("UPDATE type_state SET published_batch = ?1, published_seq = ?2,"
                                        " published_version = coalesce((SELECT max(version) FROM changes"
                                        " WHERE type = ?3 AND version >= ?1 AND batch <= ?1), 0)"
                                        " WHERE type = ?3"));
    StatementUse use(*s);
    use->bind(1, static_cast<int64_t>(batch)).bind(2, static_cast<int64_t>(seq)).bind(3, type);
    DS_RETURN_IF_ERROR(use->run());
    if (db_.changes() == 0) return Status::not_found("unknown business type '" + type + "'");
    return Status::ok();
  }();
  Status restored = set_synchronous(true);
  return marked.is_ok() ? restored : marked;
}

Result<std::map<std::string, TypeState>> ChangeLog::type_states() {
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get("SELECT type, version, published_batch, published_version,"
                                                     " published_seq FROM type_state"));
  StatementUse use(*s);
  std::map<std::string, TypeState> out;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (!row) break;
    TypeState st;
    st.version = static_cast<uint64_t>(use->column_int64(1));
    st.published_batch = static_cast<uint64_t>(use->column_int64(2));
    st.published_version = static_cast<uint64_t>(use->column_int64(3));
    st.published_seq = static_cast<uint64_t>(use->column_int64(4));
    out[use->column_text(0)] = st;
  }
  return out;
}

Result<TypeState> ChangeLog::type_state(const std::string& type) {
  DS_ASSIGN_OR_RETURN(auto all, type_states());
  auto it = all.find(type);
  if (it == all.end()) return Status::not_found("unknown business type '" + type + "'");
  return it->second;
}

Result<ChangeLog::Compaction> ChangeLog::compact(const std::string& type, const std::string& record_table,
                                                 uint64_t after_version, uint64_t keep_from, size_t max_rows) {
  const auto limit = static_cast<int64_t>(max_rows);
  // The window: the next max_rows rows of the log after after_version below
  // keep_from (rows, not versions: a compacted stretch of the log costs
  // nothing to walk again).
  uint64_t end = after_version;
  int64_t rows = 0;
  {
    DS_ASSIGN_OR_RETURN(Statement * w, statements_.get("SELECT count(*), coalesce(max(version), 0) FROM (SELECT"
                                                       " version FROM changes WHERE type = ?1 AND version > ?2 AND"
                                                       " version < ?3 ORDER BY version LIMIT ?4)"));
    StatementUse use(*w);
    use->bind(1, type).bind(2, static_cast<int64_t>(after_version)).bind(3, static_cast<int64_t>(keep_from));
    use->bind(4, limit);
    DS_ASSIGN_OR_RETURN(bool row, use->step());
    if (row) {
      rows = use->column_int64(0);
      end = std::max<uint64_t>(after_version, static_cast<uint64_t>(use->column_int64(1)));
    }
  }
  Compaction out;
  if (end > after_version) {
    DS_ASSIGN_OR_RETURN(Statement * c,
                        statements_.get("DELETE FROM changes WHERE type = ?1 AND version IN (SELECT c.version FROM"
                                        " changes c LEFT JOIN " + record_table + " r ON r._key = c.key WHERE"
                                        " c.type = ?1 AND c.version > ?2 AND c.version <= ?3 AND"
                                        " (r._key IS NULL OR r._version > c.version))"));
    StatementUse use(*c);
    use->bind(1, type).bind(2, static_cast<int64_t>(after_version)).bind(3, static_cast<int64_t>(end));
    DS_RETURN_IF_ERROR(use->run());
    out.dropped = static_cast<size_t>(db_.changes());
  }
  out.scanned_to = rows < limit ? 0 : end;
  return out;
}

Result<size_t> ChangeLog::drop_retry_keys(const std::string& type, uint64_t keep_from, size_t max_rows) {
  DS_ASSIGN_OR_RETURN(Statement * r, statements_.get("DELETE FROM producer_batches WHERE (producer, type, seq) IN"
                                                     " (SELECT producer, type, seq FROM producer_batches WHERE"
                                                     " type = ?1 AND last_version < ?2 LIMIT ?3)"));
  StatementUse use(*r);
  use->bind(1, type).bind(2, static_cast<int64_t>(keep_from)).bind(3, static_cast<int64_t>(max_rows));
  DS_RETURN_IF_ERROR(use->run());
  return static_cast<size_t>(db_.changes());
}

}  // namespace ds
