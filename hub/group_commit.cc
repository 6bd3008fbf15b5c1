#include "hub/group_commit.h"

#include <fmt/format.h>

#include "hub/retry_key_header.h"
#include "shared/codec.h"
#include "shared/names.h"

namespace ds {

Result<GroupCommit> GroupCommitter::run(const std::vector<CommitBatch>& batches, std::optional<Transaction>* held) {
  result_ = GroupCommit{};
  result_.outcomes.resize(batches.size());
  open_batches_.clear();
  const std::map<std::string, uint64_t> heads_before = log_.heads();
  if (Status s = run_group(batches, held); !s.is_ok()) {
    log_.set_heads(heads_before);
    return s.with_context("commit");
  }
  return std::move(result_);
}

Status GroupCommitter::exec_cached(std::string_view sql) {
  DS_ASSIGN_OR_RETURN(Statement * s, statements_.get(sql));
  StatementUse use(*s);
  return use->run();
}

Status GroupCommitter::run_group(const std::vector<CommitBatch>& batches, std::optional<Transaction>* held) {
  // Acknowledged means fsynced: say so here, whatever a mark left set.
  DS_RETURN_IF_ERROR(log_.set_synchronous(true));
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  for (size_t b = 0; b < batches.size(); ++b) {
    DS_RETURN_IF_ERROR(store_batch(batches[b], result_.outcomes[b]));
  }
  if (held == nullptr) return tx.commit();
  held->emplace(std::move(tx));
  return Status::ok();
}

Result<bool> GroupCommitter::seen_before(const CommitBatch& batch, BatchOutcome& out) {
  DS_ASSIGN_OR_RETURN(std::optional<RetryKey> key,
                      log_.find_retry_key(batch.producer, batch.type, *batch.seq));
  if (!key) return false;
  out.first_version = key->first_version;
  out.last_version = key->last_version;
  if (!key->digest || *key->digest == batch.digest) {
    out.retried = true;
  } else {
    out.status = Status::already_exists(
        fmt::format("seq {} of producer '{}' for type '{}' was already used for other records, stored as "
                    "versions {}..{}; a retry must resend the same records, new records need a new seq",
                    *batch.seq, batch.producer, batch.type, out.first_version, out.last_version));
  }
  return true;
}

Status GroupCommitter::store_batch(const CommitBatch& batch, BatchOutcome& out) {
  const TypeConfig* type = records_.find_type(batch.type);
  if (type == nullptr) {
    out.status = Status::not_found("unknown business type '" + batch.type + "'");
    return Status::ok();
  }
  if (batch.records.empty()) {
    out.status = Status::invalid_argument("records: the batch is empty");
    return Status::ok();
  }
  if (!batch.producer.empty() && batch.seq.has_value()) {
    DS_ASSIGN_OR_RETURN(bool seen, seen_before(batch, out));
    if (seen) return Status::ok();
  }

  DS_RETURN_IF_ERROR(records_.prepare_writes(*type));
  DS_RETURN_IF_ERROR(exec_cached("SAVEPOINT ingest_batch"));
  const uint64_t head_before = log_.head(batch.type);
  const OpenBatches open_before = open_batches_;
  const size_t created_before = result_.batches.size();
  Status failed = store_records(*type, batch, out);
  if (!failed.is_ok()) {
    // Only a rule broken by a record rejects just this batch; anything else
    // (I/O, busy) fails the whole group.
    const bool record_rule = failed.code() == StatusCode::kInvalidArgument && out.index.has_value();
    DS_RETURN_IF_ERROR(exec_cached("ROLLBACK TO ingest_batch"));
    DS_RETURN_IF_ERROR(exec_cached("RELEASE ingest_batch"));
    log_.set_head(batch.type, head_before);
    // Forget this batch's changes in the delta batches too.
    std::vector<PendingBatch>& created = result_.batches;
    created.resize(created_before);
    for (const auto& [where, ob] : open_before) {
      created[ob.index].delta.changes.resize(static_cast<size_t>(ob.count));
    }
    open_batches_ = open_before;
    if (!record_rule) return failed;
    out.status = failed.with_context("records[" + std::to_string(*out.index) + "]");
    return Status::ok();
  }
  DS_RETURN_IF_ERROR(exec_cached("RELEASE ingest_batch"));
  out.first_version = head_before + 1;
  out.last_version = log_.head(batch.type);
  return Status::ok();
}

Status GroupCommitter::store_records(const TypeConfig& type, const CommitBatch& batch, BatchOutcome& out) {
  const uint64_t head_before = log_.head(batch.type);
  const bool keyed = !batch.producer.empty() && batch.seq.has_value();
  size_t holder = 0;  // the delta batch holding the last record's change
  for (size_t i = 0; i < batch.records.size(); ++i) {
    // The key travels with the delta batch of the last change
    // (hub/retry_key_header.h), and counts in its size.
    const size_t extra = keyed && i + 1 == batch.records.size() ? retry_key_header_bound(batch.producer) : 0;
    if (Status s = apply_record(type, batch, batch.records[i], extra, holder); !s.is_ok()) {
      out.index = static_cast<uint32_t>(i);
      return s;
    }
  }
  if (keyed) {
    ProducerRetryKey key{batch.producer, *batch.seq, RetryKey{head_before + 1, log_.head(batch.type), batch.digest}};
    DS_RETURN_IF_ERROR(log_.record_retry_key(key.producer, batch.type, key.seq, key.range));
    result_.batches[holder].retry_keys.push_back(std::move(key));
  }
  return log_.store_head(batch.type);
}

Result<std::string> GroupCommitter::partition_of(const TypeConfig& type, const IngestRecord& r, bool& in_place) {
  in_place = false;
  // No partition rules: every row is in "_all".
  if (!type.schema.partition) return std::string(kAllPartitions);
  // The stored row decides the partition of a patch and forbids moves. A
  // live row pins its partition; a tombstone pins it only for another delete
  // (a deleted key may come back in another partition).
  DS_ASSIGN_OR_RETURN(std::optional<RecordTables::StoredPlace> stored, records_.find_place(type, r.key));
  std::string partition;
  if (stored && (!stored->deleted || r.op == Op::kDelete)) {
    if (r.partition && *r.partition != stored->partition) {
      return Status::invalid_argument("key '" + r.key + "' is in partition '" + stored->partition +
                                      "'; moving it to partition '" + *r.partition + "' is not allowed");
    }
    partition = stored->partition;
  } else if (r.partition) {
    partition = *r.partition;
  } else {
    return Status::invalid_argument("key '" + r.key + "' is new and has no partition: set column '" +
                                    *type.schema.partition + "' or the record's partition");
  }
  in_place = stored && stored->partition == partition;
  return partition;
}

Status GroupCommitter::write_row(const TypeConfig& type, const RecordTables::RowWrite& w, bool known_in_place) {
  // A stored row that stays in its partition is updated in place: an UPDATE
  // that does not name _partition leaves the partition index alone.
  // Otherwise (a new key, or one that changes partition) the upsert. An
  // unpartitioned type tries the update first, as it cannot know.
  if (known_in_place || !type.schema.partition) {
    DS_ASSIGN_OR_RETURN(bool updated, records_.update_in_place(type, w));
    if (updated) return Status::ok();
    if (known_in_place) return Status::internal("key '" + w.key + "': the stored row changed during the commit");
  }
  return records_.upsert(type, w);
}

uint64_t GroupCommitter::add_to_delta_batch(const std::string& type, const std::string& partition,
                                            size_t change_bytes, uint64_t version) {
  OpenBatch& ob = open_batches_[{type, partition}];
  if (ob.first == 0 || !joins_open_batch(limits_, ob.count, ob.bytes, change_bytes) ||
      (limits_.contiguous && version != ob.last + 1)) {
    ob = OpenBatch{version, version, 0, delta_batch_overhead(type), result_.batches.size()};
    PendingBatch pb;
    pb.batch = version;
    pb.partition = partition;
    pb.delta.type = type;
    result_.batches.push_back(std::move(pb));
  }
  ++ob.count;
  ob.bytes += change_bytes;
  ob.last = version;
  return ob.first;
}

Status GroupCommitter::apply_record(const TypeConfig& type, const CommitBatch& batch, const IngestRecord& r,
                                    size_t extra_bytes, size_t& holder) {
  const uint64_t version = log_.take_version(type.name);
  const int64_t ts = r.ts.value_or(hub_ts_);
  bool in_place = false;
  DS_ASSIGN_OR_RETURN(std::string partition, partition_of(type, r, in_place));
  DS_RETURN_IF_ERROR(write_row(type, RecordTables::RowWrite{r.key, partition, version, ts, hub_ts_, r.op, r.fields},
                               in_place));

  Change c;
  c.v = version;
  c.key = r.key;
  c.op = r.op;
  if (r.op == Op::kUpsert) c.f = r.fields;
  c.ts = ts;
  c.hts = hub_ts_;
  // The change joins its (type, partition)'s open delta batch, or starts one.
  const uint64_t first = add_to_delta_batch(type.name, partition, encoded_size(c) + extra_bytes, version);
  DS_RETURN_IF_ERROR(log_.append(type.name, c, partition, first, batch.producer));
  holder = open_batches_[{type.name, partition}].index;
  result_.batches[holder].delta.changes.push_back(std::move(c));
  return Status::ok();
}

}  // namespace ds
