#include "hub/query_store.h"

#include <fmt/format.h>
#include <msgpack.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/table_columns.h"

namespace ds {
namespace {

// Identifiers come from validated names ([a-z][a-z0-9_]* types and config
// column names), but are quoted anyway so no column name can be read as SQL.
std::string table_of(std::string_view type) { return quote_identifier("t_" + std::string(type)); }

// ---- the change log's `fields` blob -----------------------------------------
// A msgpack map {column: value}: nil, bool, int64, float64, str, bin. A json
// column's value is stored as its JSON text (str) and read back as JsonText
// by the column's declared type, so the blob needs no ext types.

struct FieldPacker {
  msgpack::packer<msgpack::sbuffer>& pk;
  void operator()(std::monostate) const { pk.pack_nil(); }
  void operator()(bool b) const { b ? pk.pack_true() : pk.pack_false(); }
  void operator()(int64_t i) const { pk.pack_int64(i); }
  void operator()(double d) const { pk.pack_double(d); }
  void operator()(const std::string& s) const { pack_str(s); }
  void operator()(const Blob& b) const {
    pk.pack_bin(static_cast<uint32_t>(b.bytes.size()));
    pk.pack_bin_body(b.bytes.data(), static_cast<uint32_t>(b.bytes.size()));
  }
  void operator()(const JsonText& j) const { pack_str(j.text); }
  void pack_str(const std::string& s) const {
    pk.pack_str(static_cast<uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
};

// Encodes into `buf` (cleared first) and returns a view of its bytes.
std::string_view encode_fields(const Fields& fields, msgpack::sbuffer& buf) {
  buf.clear();
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(static_cast<uint32_t>(fields.size()));
  const FieldPacker packer{pk};
  for (const auto& [name, value] : fields) {
    packer.pack_str(name);
    std::visit(packer, value);
  }
  return std::string_view(buf.data(), buf.size());
}

Result<Fields> decode_fields(std::string_view bytes, const TypeSchema& schema) {
  Fields out;
  try {
    msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
    const msgpack::object& o = oh.get();
    if (o.type != msgpack::type::MAP) return Status::data_loss("change log fields: not a map");
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const msgpack::object_kv& kv = o.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) return Status::data_loss("change log fields: key not a string");
      std::string name(kv.key.via.str.ptr, kv.key.via.str.size);
      const Column* column = schema.find_column(name);
      const msgpack::object& v = kv.val;
      Value value;
      switch (v.type) {
        case msgpack::type::NIL: value = std::monostate{}; break;
        case msgpack::type::BOOLEAN: value = v.via.boolean; break;
        // msgpack-c packs an integral double (2.0) as an integer: a real
        // column's value is read back as the double it was.
        case msgpack::type::POSITIVE_INTEGER:
          if (column != nullptr && column->type == ColumnType::kReal) {
            value = static_cast<double>(v.via.u64);
          } else {
            value = static_cast<int64_t>(v.via.u64);
          }
          break;
        case msgpack::type::NEGATIVE_INTEGER:
          if (column != nullptr && column->type == ColumnType::kReal) {
            value = static_cast<double>(v.via.i64);
          } else {
            value = v.via.i64;
          }
          break;
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64: value = v.via.f64; break;
        case msgpack::type::STR: {
          std::string s(v.via.str.ptr, v.via.str.size);
          if (column != nullptr && column->type == ColumnType::kJson) {
            value = JsonText{std::move(s)};
          } else {
            value = std::move(s);
          }
          break;
        }
        case msgpack::type::BIN: value = Blob{std::string(v.via.bin.ptr, v.via.bin.size)}; break;
        default: return Status::data_loss("change log fields: unexpected value for column '" + name + "'");
      }
      out.emplace(std::move(name), std::move(value));
    }
  } catch (const std::exception& e) {
    return Status::data_loss(std::string("change log fields: ") + e.what());
  }
  return out;
}

constexpr std::string_view kCoreSchema = R"sql(
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

}  // namespace

bool joins_open_batch(const BatchLimits& limits, int64_t count, size_t bytes, size_t change_bytes) {
  return count < limits.max_changes && bytes + change_bytes <= limits.max_bytes;
}

std::optional<std::string> partition_value_of(const TypeSchema& schema, const Value& v) {
  (void)schema;
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  return std::nullopt;
}

struct QueryStore::Impl {
  std::unique_ptr<Database> db;
  QueryStoreOptions options;
  std::unordered_map<std::string, Statement> cache;  // by SQL text
  std::map<std::string, uint64_t> versions;          // last committed version per type

  // The commit path's statements per type, so a record costs no SQL text
  // building or hashing: upserts and updates are keyed by the set of columns
  // a record carries (their names joined by '\x1f'), pointing into `cache`.
  struct TypeStatements {
    Statement* find = nullptr;            // the stored row's partition and tombstone flag
    Statement* tombstone_upsert = nullptr;
    Statement* tombstone_update = nullptr;
    std::unordered_map<std::string, Statement*> upserts;
    std::unordered_map<std::string, Statement*> updates;
  };
  std::unordered_map<std::string, TypeStatements> statements_by_type;
  msgpack::sbuffer fields_buffer;  // reused by every change's `fields` blob

  Result<TypeStatements*> type_statements(const TypeConfig& type);
  // The upsert (or, update_only, the in-place UPDATE) for `fields`' columns.
  Result<Statement*> upsert_statement(const TypeConfig& type, TypeStatements& ts, const Fields& fields,
                                      bool update_only);

  BatchLimits limits() const { return BatchLimits{options.publish_batch, options.max_batch_bytes}; }

  // synchronous=FULL (fsync at commit) or NORMAL for the next transactions.
  Status set_synchronous(bool full) {
    DS_ASSIGN_OR_RETURN(Statement * s, stmt(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    StatementUse use(*s);
    return use->run();
  }

  Result<Statement*> stmt(const std::string& sql) {
    auto it = cache.find(sql);
    if (it == cache.end()) {
      DS_ASSIGN_OR_RETURN(Statement s, db->prepare(sql));
      it = cache.emplace(sql, std::move(s)).first;
    }
    return &it->second;
  }

  Status load_versions() {
    versions.clear();
    DS_ASSIGN_OR_RETURN(Statement * s, stmt("SELECT type, version FROM type_state"));
    StatementUse use(*s);
    for (;;) {
      DS_ASSIGN_OR_RETURN(bool row, use->step());
      if (!row) break;
      versions[use->column_text(0)] = static_cast<uint64_t>(use->column_int64(1));
    }
    return Status::ok();
  }
};

QueryStore::QueryStore(std::unique_ptr<Impl> impl, std::vector<TypeConfig> types)
    : impl_(std::move(impl)), types_(std::move(types)) {}
QueryStore::~QueryStore() = default;

const TypeConfig* QueryStore::find_type(const std::string& type) const {
  for (const TypeConfig& t : types_) {
    if (t.name == type) return &t;
  }
  return nullptr;
}

namespace {

Status create_or_upgrade_type(Database& db, const TypeConfig& type) {
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
  DS_RETURN_IF_ERROR(db.exec("CREATE INDEX IF NOT EXISTS " + quote_identifier("t_" + type.name + "_tombstones") +
                             " ON " + table + "(_hub_ts) WHERE _deleted = 1"));
  DS_ASSIGN_OR_RETURN(Statement ins, db.prepare("INSERT OR IGNORE INTO type_state(type) VALUES(?)"));
  ins.bind(1, type.name);
  return ins.run();
}

}  // namespace

Result<std::unique_ptr<QueryStore>> QueryStore::open(const std::string& path, std::vector<TypeConfig> types,
                                                     QueryStoreOptions options) {
  if (options.publish_batch < 1) return Status::invalid_argument("publish_batch must be at least 1");
  OpenOptions open_options;
  open_options.read_only = options.read_only;
  open_options.create = !options.read_only;
  open_options.synchronous_full = true;
  open_options.busy_timeout_ms = options.busy_timeout_ms;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  DS_ASSIGN_OR_RETURN(impl->db, Database::open(path, open_options));
  if (!options.read_only) {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*impl->db));
    DS_RETURN_IF_ERROR(impl->db->exec(kCoreSchema).with_context("query store schema"));
    // Stores from before retry keys carried their content: their keys match
    // any content (NULL digest), new ones only their own.
    DS_RETURN_IF_ERROR(add_missing_columns(*impl->db, "producer_batches", {{"digest", ColumnType::kBlob}}).status());
    for (const TypeConfig& t : types) {
      DS_RETURN_IF_ERROR(create_or_upgrade_type(*impl->db, t).with_context("type '" + t.name + "'"));
    }
    DS_RETURN_IF_ERROR(tx.commit());
  }
  DS_RETURN_IF_ERROR(impl->load_versions());
  return std::unique_ptr<QueryStore>(new QueryStore(std::move(impl), std::move(types)));
}

// ---- commit -----------------------------------------------------------------

namespace {

// The delta batch a (type, partition) is filling during one commit: its first
// version, how many changes it holds, and where it is in GroupCommit::batches.
struct OpenBatch {
  uint64_t first = 0;
  int64_t count = 0;
  size_t bytes = 0;  // encoded, delta_batch_overhead included
  size_t index = 0;
};
using OpenBatches = std::map<std::pair<std::string, std::string>, OpenBatch>;

// The key of a record's column set in Impl::TypeStatements.
std::string column_set_key(const Fields& fields) {
  std::string key;
  for (const auto& [name, value] : fields) {
    key += name;
    key += '\x1f';
  }
  return key;
}

}  // namespace

Result<QueryStore::Impl::TypeStatements*> QueryStore::Impl::type_statements(const TypeConfig& type) {
  Impl& im = *this;
  auto it = im.statements_by_type.find(type.name);
  if (it != im.statements_by_type.end()) return &it->second;
  const std::string table = table_of(type.name);
  Impl::TypeStatements ts;
  DS_ASSIGN_OR_RETURN(ts.find, im.stmt("SELECT _partition, _deleted FROM " + table + " WHERE _key = ?"));
  std::string clear;
  for (const Column& c : type.schema.columns) clear += quote_identifier(c.name) + " = NULL, ";
  DS_ASSIGN_OR_RETURN(ts.tombstone_upsert,
                      im.stmt("INSERT INTO " + table +
                              "(_key, _partition, _version, _ts, _hub_ts, _deleted) VALUES(?1, ?2, ?3, ?4, ?5, 1)"
                              " ON CONFLICT(_key) DO UPDATE SET " +
                              clear +
                              "_partition = excluded._partition, _version = excluded._version, "
                              "_ts = excluded._ts, _hub_ts = excluded._hub_ts, _deleted = 1"));
  // The same bindings; only for a stored row of the same partition, which
  // leaves the partition index untouched.
  DS_ASSIGN_OR_RETURN(ts.tombstone_update, im.stmt("UPDATE " + table + " SET " + clear +
                                                   "_version = ?3, _ts = ?4, _hub_ts = ?5, _deleted = 1"
                                                   " WHERE _key = ?1 AND _partition = ?2"));
  return &im.statements_by_type.emplace(type.name, std::move(ts)).first->second;
}

Result<Statement*> QueryStore::Impl::upsert_statement(const TypeConfig& type, TypeStatements& ts,
                                                      const Fields& fields, bool update_only) {
  Impl& im = *this;
  auto& by_columns = update_only ? ts.updates : ts.upserts;
  std::string key = column_set_key(fields);
  if (auto it = by_columns.find(key); it != by_columns.end()) return it->second;
  // Bindings: ?1 key, ?2 partition, ?3 version, ?4 ts, ?5 hub_ts, then the
  // record's columns in name order from ?6.
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
  DS_ASSIGN_OR_RETURN(Statement * s, im.stmt(sql));
  by_columns.emplace(std::move(key), s);
  return s;
}

Result<GroupCommit> QueryStore::commit(const std::vector<CommitBatch>& batches, int64_t hub_ts) {
  Impl& im = *impl_;
  if (im.options.read_only) return Status::permission_denied("query store opened read-only");
  GroupCommit result;
  result.outcomes.resize(batches.size());
  std::vector<BatchOutcome>& outcomes = result.outcomes;
  std::vector<PendingBatch>& created = result.batches;
  const std::map<std::string, uint64_t> versions_before = im.versions;
  OpenBatches open_batches;

  auto apply_record = [&](const TypeConfig& type, Impl::TypeStatements& ts, const CommitBatch& batch,
                          const IngestRecord& r) -> Status {
    const uint64_t version = ++im.versions[type.name];
    const int64_t ts_value = r.ts.value_or(hub_ts);
    auto bind_write = [&](Statement& s, const std::string& partition) -> Status {
      StatementUse use(s);
      use->bind(1, r.key).bind(2, partition).bind(3, static_cast<int64_t>(version)).bind(4, ts_value).bind(5, hub_ts);
      if (r.op == Op::kUpsert) {
        int i = 6;
        for (const auto& [name, value] : r.fields) use->bind(i++, value);
      }
      return use->run();
    };
    // A stored row that stays in its partition is updated in place: an
    // UPDATE that does not name _partition leaves the partition index alone.
    // Otherwise (a new key, or one that changes partition) the upsert.
    auto write_row = [&](const std::string& partition, bool known_in_place) -> Status {
      if (known_in_place || !type.schema.partition) {
        Statement* update = nullptr;
        if (r.op == Op::kUpsert) {
          DS_ASSIGN_OR_RETURN(update, im.upsert_statement(type, ts, r.fields, /*update_only=*/true));
        } else {
          update = ts.tombstone_update;
        }
        DS_RETURN_IF_ERROR(bind_write(*update, partition));
        if (im.db->changes() == 1) return Status::ok();
        if (known_in_place) return Status::internal("key '" + r.key + "': the stored row changed during the commit");
      }
      Statement* upsert = nullptr;
      if (r.op == Op::kUpsert) {
        DS_ASSIGN_OR_RETURN(upsert, im.upsert_statement(type, ts, r.fields, /*update_only=*/false));
      } else {
        upsert = ts.tombstone_upsert;
      }
      return bind_write(*upsert, partition);
    };

    std::string partition(kAllPartitions);
    if (!type.schema.partition) {
      // No partition rules: try the in-place update, else the upsert.
      DS_RETURN_IF_ERROR(write_row(partition, false));
    } else {
      // The stored row decides the partition of a patch and forbids moves.
      // A live row pins its partition; a tombstone pins it only for another
      // delete (a deleted key may come back in another partition).
      std::optional<std::string> stored_partition;
      std::optional<std::string> row_partition;  // any stored row's, live or not
      {
        StatementUse use(*ts.find);
        use->bind(1, r.key);
        DS_ASSIGN_OR_RETURN(bool row, use->step());
        if (row) {
          row_partition = use->column_text(0);
          if (use->column_int64(1) == 0 || r.op == Op::kDelete) stored_partition = row_partition;
        }
      }
      if (stored_partition) {
        if (r.partition && *r.partition != *stored_partition) {
          return Status::invalid_argument("key '" + r.key + "' is in partition '" + *stored_partition +
                                          "'; moving it to partition '" + *r.partition + "' is not allowed");
        }
        partition = *stored_partition;
      } else if (r.partition) {
        partition = *r.partition;
      } else {
        return Status::invalid_argument("key '" + r.key + "' is new and has no partition: set column '" +
                                        *type.schema.partition + "' or the record's partition");
      }
      DS_RETURN_IF_ERROR(write_row(partition, row_partition && *row_partition == partition));
    }

    Change c;
    c.v = version;
    c.key = r.key;
    c.op = r.op;
    if (r.op == Op::kUpsert) c.f = r.fields;
    c.ts = ts_value;
    c.hts = hub_ts;

    // The change joins its (type, partition)'s open delta batch, or starts one.
    const size_t change_bytes = encoded_size(c);
    OpenBatch& ob = open_batches[{type.name, partition}];
    if (ob.first == 0 || !joins_open_batch(im.limits(), ob.count, ob.bytes, change_bytes)) {
      ob = OpenBatch{version, 0, delta_batch_overhead(type.name), created.size()};
      PendingBatch pb;
      pb.batch = version;
      pb.partition = partition;
      pb.delta.type = type.name;
      created.push_back(std::move(pb));
    }
    ++ob.count;
    ob.bytes += change_bytes;

    DS_ASSIGN_OR_RETURN(Statement * log,
                        im.stmt("INSERT INTO changes(type, version, key, op, partition, batch, fields, ts, hub_ts,"
                                " producer) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    StatementUse use(*log);
    use->bind(1, type.name).bind(2, static_cast<int64_t>(version)).bind(3, r.key);
    use->bind(4, r.op == Op::kUpsert ? "u" : "d").bind(5, partition).bind(6, static_cast<int64_t>(ob.first));
    use->bind_blob(7, encode_fields(c.f, im.fields_buffer));
    use->bind(8, ts_value).bind(9, hub_ts).bind(10, batch.producer);
    DS_RETURN_IF_ERROR(use->run());
    created[ob.index].delta.changes.push_back(std::move(c));
    return Status::ok();
  };

  auto exec_cached = [&](const char* sql) -> Status {
    DS_ASSIGN_OR_RETURN(Statement * s, im.stmt(sql));
    StatementUse use(*s);
    return use->run();
  };

  // A Status here is a failure of the transaction itself (I/O, busy): every
  // batch of the group fails with it.
  auto run_group = [&]() -> Status {
    // Acknowledged means fsynced: say so here, whatever a mark left set.
    DS_RETURN_IF_ERROR(im.set_synchronous(true));
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*im.db));
    for (size_t b = 0; b < batches.size(); ++b) {
      const CommitBatch& batch = batches[b];
      BatchOutcome& out = outcomes[b];
      const TypeConfig* type = find_type(batch.type);
      if (type == nullptr) {
        out.status = Status::not_found("unknown business type '" + batch.type + "'");
        continue;
      }
      if (batch.records.empty()) {
        out.status = Status::invalid_argument("records: the batch is empty");
        continue;
      }
      const bool idempotent = !batch.producer.empty() && batch.seq.has_value();
      if (idempotent) {
        DS_ASSIGN_OR_RETURN(Statement * seen,
                            im.stmt("SELECT first_version, last_version, digest FROM producer_batches"
                                    " WHERE producer = ? AND type = ? AND seq = ?"));
        StatementUse use(*seen);
        use->bind(1, batch.producer).bind(2, batch.type).bind(3, static_cast<int64_t>(*batch.seq));
        DS_ASSIGN_OR_RETURN(bool row, use->step());
        if (row) {
          out.first_version = static_cast<uint64_t>(use->column_int64(0));
          out.last_version = static_cast<uint64_t>(use->column_int64(1));
          if (use->column_is_null(2) || use->column_blob(2) == batch.digest) {
            out.retried = true;
          } else {
            out.status = Status::already_exists(fmt::format(
                "seq {} of producer '{}' for type '{}' was already used for other records, stored as "
                "versions {}..{}; a retry must resend the same records, new records need a new seq",
                *batch.seq, batch.producer, batch.type, out.first_version, out.last_version));
          }
          continue;
        }
      }
      DS_ASSIGN_OR_RETURN(Impl::TypeStatements * ts, im.type_statements(*type));

      DS_RETURN_IF_ERROR(exec_cached("SAVEPOINT ingest_batch"));
      const uint64_t version_before = im.versions[batch.type];
      const OpenBatches open_before = open_batches;
      const size_t created_before = created.size();
      Status failed;
      for (size_t i = 0; i < batch.records.size() && failed.is_ok(); ++i) {
        failed = apply_record(*type, *ts, batch, batch.records[i]);
        if (!failed.is_ok()) out.index = static_cast<uint32_t>(i);
      }
      if (failed.is_ok() && idempotent) {
        auto rec = im.stmt(
            "INSERT INTO producer_batches(producer, type, seq, first_version, last_version, digest)"
            " VALUES(?, ?, ?, ?, ?, ?)");
        if (!rec.is_ok()) {
          failed = rec.status();
        } else {
          StatementUse use(**rec);
          use->bind(1, batch.producer).bind(2, batch.type).bind(3, static_cast<int64_t>(*batch.seq));
          use->bind(4, static_cast<int64_t>(version_before + 1)).bind(5, static_cast<int64_t>(im.versions[batch.type]));
          use->bind_blob(6, batch.digest);
          failed = use->run();
        }
      }
      if (failed.is_ok()) {
        auto upd = im.stmt("UPDATE type_state SET version = ? WHERE type = ?");
        if (!upd.is_ok()) {
          failed = upd.status();
        } else {
          StatementUse use(**upd);
          use->bind(1, static_cast<int64_t>(im.versions[batch.type])).bind(2, batch.type);
          failed = use->run();
        }
      }
      if (!failed.is_ok()) {
        // Only a rule broken by a record rejects just this batch; anything
        // else (I/O, busy) fails the whole group.
        const bool record_rule = failed.code() == StatusCode::kInvalidArgument && out.index.has_value();
        DS_RETURN_IF_ERROR(exec_cached("ROLLBACK TO ingest_batch"));
        DS_RETURN_IF_ERROR(exec_cached("RELEASE ingest_batch"));
        im.versions[batch.type] = version_before;
        // Forget this batch's changes in the delta batches too.
        created.resize(created_before);
        for (const auto& [where, ob] : open_before) {
          created[ob.index].delta.changes.resize(static_cast<size_t>(ob.count));
        }
        open_batches = open_before;
        if (!record_rule) return failed;
        out.status = failed.with_context("records[" + std::to_string(*out.index) + "]");
        continue;
      }
      DS_RETURN_IF_ERROR(exec_cached("RELEASE ingest_batch"));
      out.first_version = version_before + 1;
      out.last_version = im.versions[batch.type];
    }
    return tx.commit();
  };

  if (Status s = run_group(); !s.is_ok()) {
    im.versions = versions_before;
    return s.with_context("commit");
  }
  return result;
}

// ---- publishing state ---------------------------------------------------------

namespace {

// A change from a row of "SELECT batch, version, key, op, partition, fields,
// ts, hub_ts FROM changes".
Result<Change> read_change_row(Statement& s, const TypeSchema& schema) {
  Change c;
  c.v = static_cast<uint64_t>(s.column_int64(1));
  c.key = s.column_text(2);
  c.op = s.column_text(3) == "d" ? Op::kDelete : Op::kUpsert;
  DS_ASSIGN_OR_RETURN(c.f, decode_fields(s.column_blob(5), schema));
  c.ts = s.column_int64(6);
  c.hts = s.column_int64(7);
  return c;
}

}  // namespace

Result<std::vector<PendingBatch>> QueryStore::batches_after(const std::string& type, uint64_t after_batch,
                                                            size_t max_changes) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  DS_ASSIGN_OR_RETURN(Statement * s, impl_->stmt("SELECT batch, version, key, op, partition, fields, ts, hub_ts"
                                                 " FROM changes WHERE type = ? AND batch > ?"
                                                 " ORDER BY batch, version"));
  StatementUse use(*s);
  use->bind(1, type).bind(2, static_cast<int64_t>(after_batch));
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
      pb.delta.type = type;
      out.push_back(std::move(pb));
    }
    DS_ASSIGN_OR_RETURN(Change c, read_change_row(*use, tc->schema));
    out.back().delta.changes.push_back(std::move(c));
    ++total;
  }
  return out;
}

Status QueryStore::apply_recovered(const std::string& type, const std::vector<RecoveredChange>& changes) {
  Impl& im = *impl_;
  if (im.options.read_only) return Status::permission_denied("query store opened read-only");
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  if (changes.empty()) return Status::ok();
  const uint64_t head = im.versions[type];
  Status s = [&]() -> Status {
    DS_RETURN_IF_ERROR(im.set_synchronous(true));
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*im.db));
    DS_ASSIGN_OR_RETURN(Impl::TypeStatements * ts, im.type_statements(*tc));
    uint64_t version = head;
    for (const RecoveredChange& rc : changes) {
      const Change& c = rc.change;
      if (c.v != version + 1) {
        return Status::invalid_argument("recover type '" + type + "': change " + std::to_string(c.v) +
                                        " does not follow version " + std::to_string(version));
      }
      version = c.v;
      Statement* write = ts->tombstone_upsert;
      if (c.op == Op::kUpsert) {
        DS_ASSIGN_OR_RETURN(write, im.upsert_statement(*tc, *ts, c.f, /*update_only=*/false));
      }
      {
        StatementUse use(*write);
        use->bind(1, c.key).bind(2, rc.partition).bind(3, static_cast<int64_t>(c.v)).bind(4, c.ts).bind(5, c.hts);
        if (c.op == Op::kUpsert) {
          int i = 6;
          for (const auto& [name, value] : c.f) use->bind(i++, value);
        }
        DS_RETURN_IF_ERROR(use->run().with_context("recover type '" + type + "' key '" + c.key + "'"));
      }
      DS_ASSIGN_OR_RETURN(Statement * log,
                          im.stmt("INSERT INTO changes(type, version, key, op, partition, batch, fields, ts, hub_ts,"
                                  " producer) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
      StatementUse use(*log);
      use->bind(1, type).bind(2, static_cast<int64_t>(c.v)).bind(3, c.key);
      use->bind(4, c.op == Op::kUpsert ? "u" : "d").bind(5, rc.partition).bind(6, static_cast<int64_t>(rc.batch));
      use->bind_blob(7, encode_fields(c.f, im.fields_buffer));
      use->bind(8, c.ts).bind(9, c.hts).bind(10, "");
      DS_RETURN_IF_ERROR(use->run().with_context("recover type '" + type + "' version " + std::to_string(c.v)));
    }
    DS_ASSIGN_OR_RETURN(Statement * upd, im.stmt("UPDATE type_state SET version = ? WHERE type = ?"));
    {
      StatementUse use(*upd);
      use->bind(1, static_cast<int64_t>(version)).bind(2, type);
      DS_RETURN_IF_ERROR(use->run());
    }
    DS_RETURN_IF_ERROR(tx.commit());
    im.versions[type] = version;
    return Status::ok();
  }();
  if (!s.is_ok()) im.versions[type] = head;
  return s;
}

Result<QueryStore::PruneStep> QueryStore::prune_step(const std::string& type, uint64_t after_version,
                                                     uint64_t keep_from, int64_t tombstones_before_ms,
                                                     size_t max_rows) {
  Impl& im = *impl_;
  if (im.options.read_only) return Status::permission_denied("query store opened read-only");
  if (find_type(type) == nullptr) return Status::not_found("unknown business type '" + type + "'");
  PruneStep out;
  if (keep_from <= 1 || max_rows == 0) return out;
  const std::string table = table_of(type);
  const auto limit = static_cast<int64_t>(max_rows);
  // Pruning is not an acknowledgement: no fsync of its own (a power loss
  // only undoes some pruning, which the next pass repeats).
  DS_RETURN_IF_ERROR(im.set_synchronous(false));
  Status s = [&]() -> Status {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*im.db));
    if (tombstones_before_ms > 0) {
      DS_ASSIGN_OR_RETURN(Statement * t, im.stmt("DELETE FROM " + table + " WHERE _key IN (SELECT _key FROM " + table +
                                                 " WHERE _deleted = 1 AND _hub_ts < ?1 AND _version < ?2 LIMIT ?3)"));
      StatementUse use(*t);
      use->bind(1, tombstones_before_ms).bind(2, static_cast<int64_t>(keep_from)).bind(3, limit);
      DS_RETURN_IF_ERROR(use->run());
      out.tombstones_dropped = static_cast<size_t>(im.db->changes());
    }
    // The window: the next max_rows rows of the log after after_version
    // below keep_from (rows, not versions: a compacted stretch of the log
    // costs nothing to walk again).
    uint64_t end = after_version;
    int64_t rows = 0;
    {
      DS_ASSIGN_OR_RETURN(Statement * w, im.stmt("SELECT count(*), coalesce(max(version), 0) FROM (SELECT version"
                                                 " FROM changes WHERE type = ?1 AND version > ?2 AND version < ?3"
                                                 " ORDER BY version LIMIT ?4)"));
      StatementUse use(*w);
      use->bind(1, type).bind(2, static_cast<int64_t>(after_version)).bind(3, static_cast<int64_t>(keep_from));
      use->bind(4, limit);
      DS_ASSIGN_OR_RETURN(bool row, use->step());
      if (row) {
        rows = use->column_int64(0);
        end = std::max<uint64_t>(after_version, static_cast<uint64_t>(use->column_int64(1)));
      }
    }
    if (end > after_version) {
      DS_ASSIGN_OR_RETURN(Statement * c,
                          im.stmt("DELETE FROM changes WHERE type = ?1 AND version IN (SELECT c.version FROM changes c"
                                  " LEFT JOIN " + table + " r ON r._key = c.key WHERE c.type = ?1 AND c.version > ?2"
                                  " AND c.version <= ?3 AND (r._key IS NULL OR r._version > c.version))"));
      StatementUse use(*c);
      use->bind(1, type).bind(2, static_cast<int64_t>(after_version)).bind(3, static_cast<int64_t>(end));
      DS_RETURN_IF_ERROR(use->run());
      out.changes_dropped = static_cast<size_t>(im.db->changes());
    }
    out.scanned_to = rows < limit ? 0 : end;
    DS_ASSIGN_OR_RETURN(Statement * r, im.stmt("DELETE FROM producer_batches WHERE (producer, type, seq) IN (SELECT"
                                               " producer, type, seq FROM producer_batches WHERE type = ?1 AND"
                                               " last_version < ?2 LIMIT ?3)"));
    StatementUse use(*r);
    use->bind(1, type).bind(2, static_cast<int64_t>(keep_from)).bind(3, limit);
    DS_RETURN_IF_ERROR(use->run());
    out.retry_keys_dropped = static_cast<size_t>(im.db->changes());
    return tx.commit();
  }();
  Status restored = im.set_synchronous(true);
  if (!s.is_ok()) return s.with_context("prune type '" + type + "'");
  DS_RETURN_IF_ERROR(restored);
  return out;
}

void QueryStore::set_max_batch_bytes(size_t bytes) { impl_->options.max_batch_bytes = std::max<size_t>(1, bytes); }

Result<size_t> QueryStore::recut_batch(const std::string& type, uint64_t batch) {
  Impl& im = *impl_;
  if (im.options.read_only) return Status::permission_denied("query store opened read-only");
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*im.db));
  DS_ASSIGN_OR_RETURN(TypeState st, type_state(type));
  if (batch <= st.published_batch) {
    return Status::internal("type '" + type + "': batch " + std::to_string(batch) +
                            " is published (mark " + std::to_string(st.published_batch) + "); it cannot be cut again");
  }
  DS_ASSIGN_OR_RETURN(Statement * s, im.stmt("SELECT batch, version, key, op, partition, fields, ts, hub_ts"
                                              " FROM changes WHERE type = ? AND batch = ? ORDER BY version"));
  std::vector<uint64_t> versions;
  std::vector<uint64_t> new_batch;
  {
    StatementUse use(*s);
    use->bind(1, type).bind(2, static_cast<int64_t>(batch));
    const BatchLimits limits = im.limits();
    uint64_t open = 0;
    int64_t count = 0;
    size_t bytes = 0;
    for (;;) {
      DS_ASSIGN_OR_RETURN(bool row, use->step());
      if (!row) break;
      DS_ASSIGN_OR_RETURN(Change c, read_change_row(*use, tc->schema));
      const size_t change_bytes = encoded_size(c);
      if (open == 0 || !joins_open_batch(limits, count, bytes, change_bytes)) {
        open = c.v;
        count = 0;
        bytes = delta_batch_overhead(type);
      }
      ++count;
      bytes += change_bytes;
      versions.push_back(c.v);
      new_batch.push_back(open);
    }
  }
  if (versions.empty()) return Status::not_found("type '" + type + "' has no batch " + std::to_string(batch));
  size_t batches = 0;
  DS_ASSIGN_OR_RETURN(Statement * upd, im.stmt("UPDATE changes SET batch = ? WHERE type = ? AND version = ?"));
  for (size_t i = 0; i < versions.size(); ++i) {
    if (i == 0 || new_batch[i] != new_batch[i - 1]) ++batches;
    if (new_batch[i] == batch) continue;
    StatementUse use(*upd);
    use->bind(1, static_cast<int64_t>(new_batch[i])).bind(2, type).bind(3, static_cast<int64_t>(versions[i]));
    DS_RETURN_IF_ERROR(use->run());
  }
  DS_RETURN_IF_ERROR(tx.commit());
  return batches;
}

Status QueryStore::mark_published(const std::string& type, uint64_t batch, uint64_t seq) {
  // The mark is written without an fsync of its own (synchronous=NORMAL for
  // this statement): the next ingest commit's fsync covers it, and if a power
  // loss takes it first, the start-up reconciliation reads the stream's last
  // batch and marks it again (StreamPublisher::reconcile_type). That spares
  // every ingest reply a second fsync.
  DS_RETURN_IF_ERROR(impl_->set_synchronous(false));
  // Batches of earlier commits hold only versions below `batch`; batches of
  // the same commit may hold higher ones (another partition's batch that
  // started earlier), and those all have version >= batch.
  Status marked = [&]() -> Status {
    DS_ASSIGN_OR_RETURN(Statement * s,
                        impl_->stmt("UPDATE type_state SET published_batch = ?1, published_seq = ?2,"
                                    " published_version = coalesce((SELECT max(version) FROM changes"
                                    " WHERE type = ?3 AND version >= ?1 AND batch <= ?1), 0)"
                                    " WHERE type = ?3"));
    StatementUse use(*s);
    use->bind(1, static_cast<int64_t>(batch)).bind(2, static_cast<int64_t>(seq)).bind(3, type);
    DS_RETURN_IF_ERROR(use->run());
    if (impl_->db->changes() == 0) return Status::not_found("unknown business type '" + type + "'");
    return Status::ok();
  }();
  Status restored = impl_->set_synchronous(true);
  return marked.is_ok() ? restored : marked;
}

Result<std::map<std::string, TypeState>> QueryStore::type_states() {
  DS_ASSIGN_OR_RETURN(Statement * s, impl_->stmt("SELECT type, version, published_batch, published_version,"
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

Result<std::vector<PartitionMark>> QueryStore::partition_marks() {
  std::vector<PartitionMark> out;
  for (const TypeConfig& type : types_) {
    DS_ASSIGN_OR_RETURN(Statement s, impl_->db->prepare("SELECT _partition, max(_version), max(_ts), max(_hub_ts) FROM " +
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

std::vector<PartitionMark> partition_marks_of(const std::vector<PendingBatch>& batches) {
  std::map<std::pair<std::string, std::string>, PartitionMark> marks;
  for (const PendingBatch& b : batches) {
    PartitionMark& m = marks[{b.delta.type, b.partition}];
    m.type = b.delta.type;
    m.partition = b.partition;
    for (const Change& c : b.delta.changes) {
      m.version = std::max(m.version, c.v);
      m.ts = std::max(m.ts, c.ts);
      m.hub_ts = std::max(m.hub_ts, c.hts);
    }
  }
  std::vector<PartitionMark> out;
  for (auto& [k, m] : marks) out.push_back(std::move(m));
  return out;
}

Result<TypeState> QueryStore::type_state(const std::string& type) {
  DS_ASSIGN_OR_RETURN(auto all, type_states());
  auto it = all.find(type);
  if (it == all.end()) return Status::not_found("unknown business type '" + type + "'");
  return it->second;
}

// ---- reads --------------------------------------------------------------------

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

}  // namespace

Result<StoredRecord> QueryStore::get(const std::string& type, const std::string& key) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  DS_ASSIGN_OR_RETURN(Statement * s,
                      impl_->stmt("SELECT " + record_columns(*tc) + " FROM " + table_of(type) + " WHERE _key = ?"));
  StatementUse use(*s);
  use->bind(1, key);
  DS_ASSIGN_OR_RETURN(bool row, use->step());
  if (!row) return Status::not_found("type '" + type + "' has no record '" + key + "'");
  return read_record(*use, *tc);
}

Result<std::vector<StoredRecord>> QueryStore::list(const std::string& type, const std::optional<std::string>& partition,
                                                   const std::optional<std::string>& after_key, size_t limit) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  std::string sql = "SELECT " + record_columns(*tc) + " FROM " + table_of(type) + " WHERE _deleted = 0 AND _key > ?";
  if (partition) sql += " AND _partition = ?";
  sql += " ORDER BY _key LIMIT ?";
  DS_ASSIGN_OR_RETURN(Statement * s, impl_->stmt(sql));
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

Result<SnapshotReply> QueryStore::snapshot_page(const SnapshotRequest& request, size_t max_bytes) {
  const TypeConfig* tc = find_type(request.type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + request.type + "'");
  const size_t limit = std::max<size_t>(1, std::min<size_t>(request.limit, kMaxSnapshotPage));
  std::optional<std::string> partition;
  if (request.partition != kAnyPartition && request.partition != kAllPartitions) partition = request.partition;

  // One read transaction, so the high-water mark and the rows agree.
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*impl_->db, Transaction::Kind::kDeferred));
  DS_ASSIGN_OR_RETURN(TypeState st, type_state(request.type));
  DS_ASSIGN_OR_RETURN(std::vector<StoredRecord> rows, list(request.type, partition, request.after_key, limit + 1));
  DS_RETURN_IF_ERROR(tx.commit());

  SnapshotReply reply;
  reply.high_version = st.published_version;
  reply.high_seq = st.published_seq;
  // As many rows as fit the count and the bytes; `done` when none is left.
  size_t bytes = snapshot_reply_overhead();
  for (size_t i = 0; i < rows.size() && i < limit; ++i) {
    StoredRecord& r = rows[i];
    SnapshotRecord record{r.version, std::move(r.key), std::move(r.fields), r.ts};
    const size_t record_bytes = encoded_size(record);
    if (bytes + record_bytes > max_bytes) {
      if (i == 0) {
        return Status::internal("type '" + request.type + "': row '" + record.key + "' is " +
                                std::to_string(record_bytes) + " bytes encoded, more than a snapshot page may hold (" +
                                std::to_string(max_bytes > snapshot_reply_overhead() ? max_bytes - snapshot_reply_overhead() : 0) +
                                " bytes under the server's max_payload): raise max_payload in the nats-server "
                                "configuration, or shrink the row");
      }
      break;
    }
    bytes += record_bytes;
    reply.records.push_back(std::move(record));
  }
  reply.done = reply.records.size() == rows.size();
  return reply;
}

Result<Digest> QueryStore::digest(const std::string& type, const std::optional<std::string>& partition) {
  if (find_type(type) == nullptr) return Status::not_found("unknown business type '" + type + "'");
  std::string sql = "SELECT _key, _version FROM " + table_of(type) + " WHERE _deleted = 0";
  if (partition) sql += " AND _partition = ?";
  DS_ASSIGN_OR_RETURN(Statement * s, impl_->stmt(sql));
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

Result<TableDigest> QueryStore::table_digest(const std::string& type, const std::optional<std::string>& partition,
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
  return digest_table(*impl_->db, spec, options);
}

}  // namespace ds
