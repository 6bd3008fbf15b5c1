#include "hub/query_store.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "shared/codec.h"
#include "shared/names.h"

namespace ds {

std::optional<std::string> partition_value_of(const TypeSchema& schema, const Value& v) {
  (void)schema;
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  return std::nullopt;
}

// The connection and the parts that share it; declared in this order so the
// parts (which keep references) go before the cache, and the cache before
// the connection.
struct QueryStore::Impl {
  Impl(std::unique_ptr<Database> database, std::vector<TypeConfig> types, QueryStoreOptions opts)
      : db(std::move(database)),
        options(opts),
        statements(*db),
        records(*db, statements, std::move(types)),
        log(*db, statements) {}

  std::unique_ptr<Database> db;
  QueryStoreOptions options;
  StatementCache statements;
  RecordTables records;
  ChangeLog log;
  // A held group commit (commit(hold)): its transaction and the heads before it.
  std::optional<Transaction> held;
  std::map<std::string, uint64_t> heads_before_held;

  BatchLimits limits() const { return BatchLimits{options.publish_batch, options.max_batch_bytes}; }
  Status writable() const {
    return options.read_only ? Status::permission_denied("query store opened read-only") : Status::ok();
  }
};

QueryStore::QueryStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
QueryStore::~QueryStore() = default;

const TypeConfig* QueryStore::find_type(const std::string& type) const { return impl_->records.find_type(type); }
const std::vector<TypeConfig>& QueryStore::types() const { return impl_->records.types(); }

Result<std::unique_ptr<QueryStore>> QueryStore::open(const std::string& path, std::vector<TypeConfig> types,
                                                     QueryStoreOptions options) {
  if (options.publish_batch < 1) return Status::invalid_argument("publish_batch must be at least 1");
  OpenOptions open_options;
  open_options.read_only = options.read_only;
  open_options.create = !options.read_only;
  open_options.synchronous_full = true;
  open_options.busy_timeout_ms = options.busy_timeout_ms;
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Database> db, Database::open(path, open_options));
  if (!options.read_only) {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*db));
    DS_RETURN_IF_ERROR(ChangeLog::create_or_upgrade(*db, types));
    for (const TypeConfig& t : types) {
      DS_RETURN_IF_ERROR(RecordTables::create_or_upgrade(*db, t).with_context("type '" + t.name + "'"));
    }
    DS_RETURN_IF_ERROR(tx.commit());
  }
  auto impl = std::make_unique<Impl>(std::move(db), std::move(types), options);
  DS_RETURN_IF_ERROR(impl->log.load_heads());
  return std::unique_ptr<QueryStore>(new QueryStore(std::move(impl)));
}

// ---- writes -------------------------------------------------------------------

Result<GroupCommit> QueryStore::commit(const std::vector<CommitBatch>& batches, int64_t hub_ts, bool hold) {
  Impl& im = *impl_;
  DS_RETURN_IF_ERROR(im.writable());
  if (im.held) return Status::internal("commit: a held group commit is not ended yet");
  if (hold) im.heads_before_held = im.log.heads();
  BatchLimits limits = im.limits();
  limits.contiguous = hold;  // an HA hub's batches (BatchLimits)
  return GroupCommitter(*im.db, im.statements, im.records, im.log, limits, hub_ts)
      .run(batches, hold ? &im.held : nullptr);
}

Status QueryStore::end_commit(bool keep) {
  Impl& im = *impl_;
  if (!im.held) return Status::ok();
  std::optional<Transaction> tx = std::exchange(im.held, std::nullopt);
  Status s = keep ? tx->commit().with_context("commit") : Status::ok();
  if (!keep || !s.is_ok()) {
    tx.reset();  // rolls back
    im.log.set_heads(im.heads_before_held);
  }
  return s;
}

void QueryStore::set_max_batch_bytes(size_t bytes) { impl_->options.max_batch_bytes = std::max<size_t>(1, bytes); }

Result<size_t> QueryStore::recut_batch(const std::string& type, uint64_t batch) {
  DS_RETURN_IF_ERROR(impl_->writable());
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  return impl_->log.recut_batch(*tc, batch, impl_->limits());
}

Result<std::vector<PendingBatch>> QueryStore::batches_after(const std::string& type, uint64_t after_batch,
                                                            size_t max_changes) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  return impl_->log.batches_after(*tc, after_batch, max_changes);
}

Status QueryStore::apply_recovered(const std::string& type, const std::vector<RecoveredChange>& changes,
                                   const std::vector<ProducerRetryKey>& retry_keys) {
  Impl& im = *impl_;
  DS_RETURN_IF_ERROR(im.writable());
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  if (changes.empty()) return Status::ok();
  const uint64_t head = im.log.head(type);
  Status s = [&]() -> Status {
    DS_RETURN_IF_ERROR(im.log.set_synchronous(true));
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*im.db));
    uint64_t version = head;
    for (const RecoveredChange& rc : changes) {
      const Change& c = rc.change;
      if (c.v != version + 1) {
        return Status::invalid_argument("recover type '" + type + "': change " + std::to_string(c.v) +
                                        " does not follow version " + std::to_string(version));
      }
      version = c.v;
      DS_RETURN_IF_ERROR(im.records.upsert(*tc, RecordTables::RowWrite{c.key, rc.partition, c.v, c.ts, c.hts, c.op, c.f})
                             .with_context("recover type '" + type + "' key '" + c.key + "'"));
      DS_RETURN_IF_ERROR(im.log.append(type, c, rc.partition, rc.batch, "")
                             .with_context("recover type '" + type + "' version " + std::to_string(c.v)));
    }
    std::set<std::pair<std::string, uint64_t>> recorded;  // a batch read twice carries its keys twice
    for (const ProducerRetryKey& k : retry_keys) {
      if (k.range.last_version <= head || k.range.last_version > version) continue;
      if (!recorded.emplace(k.producer, k.seq).second) continue;
      DS_RETURN_IF_ERROR(im.log.record_retry_key(k.producer, type, k.seq, k.range)
                             .with_context("recover type '" + type + "': retry key of producer " +
                                           quoted_for_message(k.producer) + " seq " + std::to_string(k.seq)));
    }
    im.log.set_head(type, version);
    DS_RETURN_IF_ERROR(im.log.store_head(type));
    return tx.commit();
  }();
  if (!s.is_ok()) im.log.set_head(type, head);
  return s;
}

Result<QueryStore::PruneStep> QueryStore::prune_step(const std::string& type, uint64_t after_version,
                                                     uint64_t keep_from, int64_t tombstones_before_ms,
                                                     size_t max_rows) {
  Impl& im = *impl_;
  DS_RETURN_IF_ERROR(im.writable());
  if (find_type(type) == nullptr) return Status::not_found("unknown business type '" + type + "'");
  PruneStep out;
  if (keep_from <= 1 || max_rows == 0) return out;
  // Pruning is not an acknowledgement: no fsync of its own (a power loss
  // only undoes some pruning, which the next pass repeats).
  DS_RETURN_IF_ERROR(im.log.set_synchronous(false));
  Status s = [&]() -> Status {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*im.db));
    if (tombstones_before_ms > 0) {
      DS_ASSIGN_OR_RETURN(out.tombstones_dropped,
                          im.records.drop_tombstones(type, keep_from, tombstones_before_ms, max_rows));
    }
    DS_ASSIGN_OR_RETURN(ChangeLog::Compaction compacted,
                        im.log.compact(type, RecordTables::table_of(type), after_version, keep_from, max_rows));
    out.scanned_to = compacted.scanned_to;
    out.changes_dropped = compacted.dropped;
    DS_ASSIGN_OR_RETURN(out.retry_keys_dropped, im.log.drop_retry_keys(type, keep_from, max_rows));
    return tx.commit();
  }();
  Status restored = im.log.set_synchronous(true);
  if (!s.is_ok()) return s.with_context("prune type '" + type + "'");
  DS_RETURN_IF_ERROR(restored);
  return out;
}

Result<std::optional<Change>> QueryStore::logged_change(const std::string& type, uint64_t version) {
  const TypeConfig* tc = find_type(type);
  if (tc == nullptr) return Status::not_found("unknown business type '" + type + "'");
  return impl_->log.change_at(*tc, version);
}

Status QueryStore::mark_published(const std::string& type, uint64_t batch, uint64_t seq) {
  return impl_->log.mark_published(type, batch, seq);
}

// ---- reads --------------------------------------------------------------------

Result<std::map<std::string, TypeState>> QueryStore::type_states() { return impl_->log.type_states(); }

Result<TypeState> QueryStore::type_state(const std::string& type) { return impl_->log.type_state(type); }

Status QueryStore::probe_write_lock() {
  // Without waiting: the writer thread probes while idle, and a batch may
  // come meanwhile.
  DS_RETURN_IF_ERROR(impl_->db->exec("PRAGMA busy_timeout = 0"));
  Status s = Transaction::begin(*impl_->db).status();  // rolled back at once
  Status restored =
      impl_->db->exec("PRAGMA busy_timeout = " + std::to_string(impl_->options.busy_timeout_ms));
  return s.is_ok() ? restored : s;
}

Result<std::vector<PartitionMark>> QueryStore::partition_marks() { return impl_->records.partition_marks(); }

Result<uint64_t> QueryStore::partition_version(const std::string& type, const std::string& partition) {
  return impl_->records.partition_version(type, partition);
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

Result<StoredRecord> QueryStore::get(const std::string& type, const std::string& key) {
  return impl_->records.get(type, key);
}

Result<std::vector<StoredRecord>> QueryStore::list(const std::string& type, const std::optional<std::string>& partition,
                                                   const std::optional<std::string>& after_key, size_t limit) {
  return impl_->records.list(type, partition, after_key, limit);
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
  return impl_->records.digest(type, partition);
}

Result<TableDigest> QueryStore::table_digest(const std::string& type, const std::optional<std::string>& partition,
                                             const DigestOptions& options) {
  return impl_->records.table_digest(type, partition, options);
}

}  // namespace ds
