#include "hub/ingest_validation.h"

#include <charconv>
#include <limits>
#include <string>

#include "hub/query_store.h"
#include "shared/codec.h"
#include "shared/names.h"

namespace ds {
namespace {

Status record_error(size_t index, const Status& s) { return s.with_context("records[" + std::to_string(index) + "]"); }

// The partition column's value for a partition token, typed as the column.
// An integer's token must be written as the hub writes the column's value
// (no leading zeros, no "-0"): a record that sets the column is partitioned
// by that form, so another spelling would put one store in two partitions.
Result<Value> partition_column_value(const Column& column, const std::string& partition) {
  if (column.type == ColumnType::kText) return Value{partition};
  if (column.type == ColumnType::kInteger) {
    int64_t v = 0;
    const char* end = partition.data() + partition.size();
    auto [ptr, ec] = std::from_chars(partition.data(), end, v);
    if (ec != std::errc() || ptr != end) {
      return Status::invalid_argument("partition '" + partition + "' is not an integer, as column '" + column.name +
                                      "' requires");
    }
    if (const std::string written = std::to_string(v); written != partition) {
      return Status::invalid_argument("partition '" + partition + "' is the integer " + written + " of column '" +
                                      column.name + "', whose partition is written '" + written + "'");
    }
    return Value{v};
  }
  return Status::invalid_argument("partition column '" + column.name + "' must be text or integer");
}

Status validate_record(const TypeSchema& schema, IngestRecord& r) {
  if (r.key.empty()) return Status::invalid_argument("key: empty");
  if (r.key.size() > kMaxKeyBytes) {
    return Status::invalid_argument("key: longer than " + std::to_string(kMaxKeyBytes) + " bytes");
  }
  DS_RETURN_IF_ERROR(validate_fields(schema, r.key, r.fields));
  if (!schema.partition) {
    if (r.partition && *r.partition != kAllPartitions) {
      return Status::invalid_argument("partition: the type is not partitioned (got '" + *r.partition + "')");
    }
    r.partition.reset();
  } else {
    const std::string& pcol = *schema.partition;
    const Column* column = schema.find_column(pcol);
    if (column == nullptr) return Status::internal("partition column '" + pcol + "' is not a declared column");
    std::optional<std::string> from_field;
    if (auto it = r.fields.find(pcol); it != r.fields.end()) {
      if (std::holds_alternative<std::monostate>(it->second)) {
        return Status::invalid_argument("column '" + pcol + "' is the partition column and cannot be null");
      }
      from_field = partition_value_of(schema, it->second);
      if (!from_field) return Status::invalid_argument("partition column '" + pcol + "' must be text or integer");
    }
    if (from_field && r.partition && *from_field != *r.partition) {
      return Status::invalid_argument("partition '" + *r.partition + "' disagrees with column '" + pcol + "' = '" +
                                      *from_field + "'");
    }
    if (from_field) r.partition = from_field;
    if (r.partition) {
      DS_RETURN_IF_ERROR(validate_partition(*r.partition).with_context("partition"));
      DS_ASSIGN_OR_RETURN(Value v, partition_column_value(*column, *r.partition));
      if (r.op == Op::kUpsert && !from_field) r.fields[pcol] = std::move(v);
    }
  }
  // A delete carries no columns (they may only have named its partition).
  if (r.op == Op::kDelete) r.fields.clear();
  return Status::ok();
}

}  // namespace

std::optional<Rejection> validate_ingest_records(const TypeConfig& type, std::vector<IngestRecord>& records,
                                                 size_t max_batch_bytes) {
  if (records.empty()) return Rejection{Status::invalid_argument("records: the batch is empty"), std::nullopt};
  if (records.size() > kMaxBatchRecords) {
    return Rejection{Status::invalid_argument("records: more than " + std::to_string(kMaxBatchRecords) +
                                              " records in one batch"),
                     std::nullopt};
  }
  const size_t overhead = delta_batch_overhead(type.name);
  for (size_t i = 0; i < records.size(); ++i) {
    IngestRecord& r = records[i];
    Status s = validate_record(type.schema, r);
    if (!s.is_ok()) return Rejection{record_error(i, s), static_cast<uint32_t>(i)};
    // The record as the change the commit makes of it, with its version and
    // times at their widest encoding: alone in a delta batch, it must fit.
    Change c;
    c.v = std::numeric_limits<uint64_t>::max();
    c.key = r.key;
    c.op = r.op;
    c.ts = std::numeric_limits<int64_t>::min();
    c.hts = std::numeric_limits<int64_t>::min();
    c.f = std::move(r.fields);
    const size_t bytes = overhead + encoded_size(c);
    r.fields = std::move(c.f);
    if (bytes > max_batch_bytes) {
      return Rejection{record_error(i, Status::invalid_argument(
                                           "the record is " + std::to_string(bytes) +
                                           " bytes as a delta batch, over the limit of " +
                                           std::to_string(max_batch_bytes) +
                                           " bytes one message may carry under the server's max_payload; "
                                           "it could never be published (make it smaller, or raise max_payload in the "
                                           "nats-server configuration)")),
                       static_cast<uint32_t>(i)};
    }
  }
  return std::nullopt;
}

}  // namespace ds
