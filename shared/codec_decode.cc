// The decoding half of shared/codec.h: msgpack is unpacked under fixed
// limits (below) and read field by field with shared/msgpack_reader.h, so
// every malformed message is InvalidArgument naming the field; JSON ingest
// is converted to msgpack and decoded by the same code; the change log's
// fields are read back (shared/logged_fields.h). Encoding is shared/codec.cc.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <new>
#include <nlohmann/json.hpp>

#include "shared/codec.h"
#include "shared/json_text.h"
#include "shared/logged_fields.h"
#include "shared/msgpack_reader.h"
#include "shared/names.h"

namespace ds {

using msgpack_reader::field_error;
using msgpack_reader::index_path;
using msgpack_reader::MapReader;
using msgpack_reader::read;
using msgpack_reader::read_array;
using msgpack_reader::type_error;

namespace {

// Unpack limits: far above anything a valid message needs (kMaxBatchRecords
// entries, a handful of nesting levels for json values), low enough that a
// declared length in a tiny buffer cannot make us reserve gigabytes.
constexpr size_t kMaxArrayEntries = 100000;
constexpr size_t kMaxMapEntries = 10000;
constexpr size_t kMaxStringBytes = 16u << 20;
constexpr size_t kMaxBinBytes = 16u << 20;
constexpr size_t kMaxExtBytes = 1024;
constexpr size_t kMaxDepth = 40;

std::string shown(std::string_view s) { return quoted_for_message(s); }


Status check_count(std::string_view path, size_t n, size_t limit, std::string_view noun) {
  if (n <= limit) return Status::ok();
  return field_error(path, "batch of " + std::to_string(n) + " " + std::string(noun) + " exceeds the limit of " +
                               std::to_string(limit));
}

Status check_key(std::string_view path, const std::string& key) {
  if (key.empty()) return field_error(path, "must not be empty");
  if (key.size() > kMaxKeyBytes) {
    return field_error(path, "key of " + std::to_string(key.size()) + " bytes exceeds the limit of " +
                                 std::to_string(kMaxKeyBytes));
  }
  return Status::ok();
}

Status read_record_key(const MapReader& m, std::string_view name, std::string& out) {
  DS_RETURN_IF_ERROR(m.required(name, out));
  return check_key(m.path(name), out);
}

Status read_type_name(const MapReader& m, std::string_view name, std::string& out) {
  DS_RETURN_IF_ERROR(m.required(name, out));
  return validate_type_name(out).with_context(m.path(name));
}

// A subscription or snapshot partition: a partition value or "*".
Status read_partition_filter(const MapReader& m, std::string_view name, std::string& out) {
  DS_RETURN_IF_ERROR(m.required(name, out));
  if (out == kAnyPartition) return Status::ok();
  return validate_partition(out).with_context(m.path(name));
}

// `depth` counts the arrays and maps around `o`; past kMaxJsonDepth the value
// is refused here, as validation refuses such JSON text (schema.cc), so the
// text made from it is canonical (JsonText::canonical).
Result<nlohmann::json> to_json(const msgpack::object& o, const std::string& path, int depth = 0) {
  if ((o.type == msgpack::type::ARRAY || o.type == msgpack::type::MAP) && depth >= kMaxJsonDepth) {
    return field_error(path, "json nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  switch (o.type) {
    case msgpack::type::NIL: return nlohmann::json(nullptr);
    case msgpack::type::BOOLEAN: return nlohmann::json(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER: return nlohmann::json(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER: return nlohmann::json(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      if (!std::isfinite(o.via.f64)) return field_error(path, "a json value cannot hold NaN or infinity");
      return nlohmann::json(o.via.f64);
    case msgpack::type::STR: {
      std::string s(o.via.str.ptr, o.via.str.size);
      if (!is_valid_utf8(s)) return field_error(path, "a json string must be valid UTF-8");
      return nlohmann::json(std::move(s));
    }
    case msgpack::type::ARRAY: {
      nlohmann::json a = nlohmann::json::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) {
        DS_ASSIGN_OR_RETURN(nlohmann::json e, to_json(o.via.array.ptr[i], index_path(path, i), depth + 1));
        a.push_back(std::move(e));
      }
      return a;
    }
    case msgpack::type::MAP: {
      nlohmann::json obj = nlohmann::json::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const msgpack::object_kv& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) return type_error(path, "str keys in a json object", kv.key);
        std::string k(kv.key.via.str.ptr, kv.key.via.str.size);
        if (!is_valid_utf8(k)) return field_error(path, "a json object key must be valid UTF-8");
        DS_ASSIGN_OR_RETURN(nlohmann::json e, to_json(kv.val, msgpack_reader::child_path(path, k), depth + 1));
        obj[std::move(k)] = std::move(e);
      }
      return obj;
    }
    case msgpack::type::BIN:
    case msgpack::type::EXT: break;
  }
  return field_error(path, "a json value cannot hold msgpack " + std::string(msgpack_reader::kind_name(o)));
}

// `path` names the value for error messages; it is built only when needed.
template <typename PathFn>
Result<Value> read_value(const msgpack::object& o, const PathFn& path) {
  switch (o.type) {
    case msgpack::type::NIL: return Value{};
    case msgpack::type::BOOLEAN: return Value{o.via.boolean};
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: {
      int64_t i = 0;
      DS_RETURN_IF_ERROR(read(o, path(), i));
      return Value{i};
    }
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return Value{o.via.f64};
    case msgpack::type::STR: return Value{std::string(o.via.str.ptr, o.via.str.size)};
    case msgpack::type::BIN: return Value{Blob{std::string(o.via.bin.ptr, o.via.bin.size)}};
    case msgpack::type::ARRAY:
    case msgpack::type::MAP: {
      DS_ASSIGN_OR_RETURN(nlohmann::json j, to_json(o, path()));
      return Value{JsonText{dump_json(j), /*canonical=*/true}};
    }
    case msgpack::type::EXT: break;
  }
  return field_error(path(), "msgpack ext values are not supported");
}

Status read_fields(const msgpack::object& o, const std::string& path, Fields& out) {
  if (o.type != msgpack::type::MAP) return type_error(path, "map", o);
  out.clear();
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) return type_error(path, "str column names", kv.key);
    std::string name(kv.key.via.str.ptr, kv.key.via.str.size);
    if (name.empty()) return field_error(path, "empty column name");
    auto value_path = [&] { return msgpack_reader::child_path(path, name); };
    DS_ASSIGN_OR_RETURN(Value v, read_value(kv.val, value_path));
    auto [at, inserted] = out.try_emplace(std::move(name), std::move(v));
    if (!inserted) return field_error(msgpack_reader::child_path(path, at->first), "duplicate key");
  }
  return Status::ok();
}

Status read_optional_fields(const MapReader& m, std::string_view name, Fields& out) {
  out.clear();
  const msgpack::object* o = nullptr;
  DS_RETURN_IF_ERROR(m.find(name, o));
  if (o == nullptr || o->type == msgpack::type::NIL) return Status::ok();
  return read_fields(*o, m.path(name), out);
}

Status read_wire_error(const msgpack::object& o, const std::string& path, WireError& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  std::string code;
  DS_RETURN_IF_ERROR(m.required("code", code));
  out.code = status_code_from_name(code);
  // "ok" is not an error code; a peer that sends it still failed.
  if (out.code == StatusCode::kOk) out.code = StatusCode::kInternal;
  DS_RETURN_IF_ERROR(m.required("message", out.message));
  return m.optional("index", out.index);
}

// Reads the {ok, error} pair of a reply: `error` is set when `ok` is false,
// or, where `ok` is optional, when an error object is present.
Status read_reply_status(const MapReader& m, bool ok_required, std::optional<WireError>& error) {
  error.reset();
  std::optional<bool> ok;
  DS_RETURN_IF_ERROR(m.optional("ok", ok));
  if (ok_required && !ok) return field_error(m.path("ok"), "missing required key");
  const msgpack::object* e = nullptr;
  DS_RETURN_IF_ERROR(m.find("error", e));
  const bool failed = (ok && !*ok) || (!ok && e != nullptr && e->type != msgpack::type::NIL);
  if (!failed) return Status::ok();
  if (e == nullptr) return field_error(m.path("error"), "missing required key");
  WireError w;
  DS_RETURN_IF_ERROR(read_wire_error(*e, m.path("error"), w));
  error = std::move(w);
  return Status::ok();
}

Status read_ingest_record(const msgpack::object& o, const std::string& path, IngestRecord& r) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(read_record_key(m, "key", r.key));
  std::string op;
  DS_RETURN_IF_ERROR(m.required("op", op));
  if (op == "upsert") {
    r.op = Op::kUpsert;
  } else if (op == "delete") {
    r.op = Op::kDelete;
  } else {
    return field_error(m.path("op"), "unknown op " + shown(op) + " (expected upsert or delete)");
  }
  DS_RETURN_IF_ERROR(read_optional_fields(m, "fields", r.fields));
  DS_RETURN_IF_ERROR(m.optional("ts", r.ts));
  DS_RETURN_IF_ERROR(m.optional("partition", r.partition));
  // "_all" names the absence of a partition; whether the type allows that is
  // the ingest handler's call, which knows the schema.
  if (r.partition && *r.partition != kAllPartitions) {
    DS_RETURN_IF_ERROR(validate_partition(*r.partition).with_context(m.path("partition")));
  }
  return Status::ok();
}

// `bad_record`, when given, is set to the index of the record a failure is
// in (an unknown op, a field of the wrong type, ...), so the reply can name it.
Status read_ingest_request(const msgpack::object& o, IngestRequest& out,
                           std::optional<uint32_t>* bad_record = nullptr) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  std::optional<std::string> producer;
  DS_RETURN_IF_ERROR(m.optional("producer", producer));
  out.producer = producer.value_or("");
  DS_RETURN_IF_ERROR(m.optional("seq", out.seq));
  const msgpack::object* records = nullptr;
  DS_RETURN_IF_ERROR(m.required("records", records));
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*records, "records", items));
  DS_RETURN_IF_ERROR(check_count("records", items.size(), kMaxBatchRecords, "records"));
  out.records.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    Status s = read_ingest_record(items[i], index_path("records", i), out.records[i]);
    if (!s.is_ok()) {
      if (bad_record != nullptr) *bad_record = static_cast<uint32_t>(i);
      return s;
    }
  }
  return Status::ok();
}

Status read_ingest_reply(const msgpack::object& o, IngestReply& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_reply_status(m, /*ok_required=*/true, out.error));
  if (out.error) return Status::ok();
  DS_RETURN_IF_ERROR(m.required("first_version", out.first_version));
  return m.required("last_version", out.last_version);
}

// An optional boolean key, false when absent (keys sent only when true).
Status read_flag(const MapReader& m, std::string_view name, bool& out) {
  std::optional<bool> v;
  DS_RETURN_IF_ERROR(m.optional(name, v));
  out = v.value_or(false);
  return Status::ok();
}

Status read_subscription(const msgpack::object& o, const std::string& path, SubscriptionReport& s) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(read_type_name(m, "type", s.type));
  DS_RETURN_IF_ERROR(read_partition_filter(m, "partition", s.partition));
  DS_RETURN_IF_ERROR(m.required("version", s.version));
  DS_RETURN_IF_ERROR(m.required("seq", s.seq));
  DS_RETURN_IF_ERROR(m.required("ts", s.ts));
  DS_RETURN_IF_ERROR(m.required("rows", s.rows));
  return read_flag(m, "feed", s.feed);
}

Status read_register_request(const msgpack::object& o, RegisterRequest& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(m.required("agent", out.agent));
  DS_RETURN_IF_ERROR(validate_agent_id(out.agent).with_context("agent"));
  DS_RETURN_IF_ERROR(m.required("host", out.host));
  DS_RETURN_IF_ERROR(m.required("version", out.version));
  const msgpack::object* subs = nullptr;
  DS_RETURN_IF_ERROR(m.required("subscriptions", subs));
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*subs, "subscriptions", items));
  DS_RETURN_IF_ERROR(check_count("subscriptions", items.size(), kMaxBatchRecords, "subscriptions"));
  out.subscriptions.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DS_RETURN_IF_ERROR(read_subscription(items[i], index_path("subscriptions", i), out.subscriptions[i]));
  }
  return Status::ok();
}

Status read_schema(const msgpack::object& o, const std::string& path, TypeSchema& s) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(m.required("key", s.key));
  if (s.key.empty()) return field_error(m.path("key"), "must not be empty");
  DS_RETURN_IF_ERROR(m.optional("partition", s.partition));
  const msgpack::object* columns = nullptr;
  DS_RETURN_IF_ERROR(m.required("columns", columns));
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*columns, m.path("columns"), items));
  s.columns.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DS_ASSIGN_OR_RETURN(MapReader c, MapReader::open(items[i], index_path(m.path("columns"), i)));
    DS_RETURN_IF_ERROR(c.required("name", s.columns[i].name));
    if (s.columns[i].name.empty()) return field_error(c.path("name"), "must not be empty");
    std::string type;
    DS_RETURN_IF_ERROR(c.required("type", type));
    auto t = column_type_from_name(type);
    if (!t.is_ok()) return t.status().with_context(c.path("type"));
    s.columns[i].type = *t;
  }
  if (s.partition && s.find_column(*s.partition) == nullptr) {
    return field_error(m.path("partition"), "partition column " + shown(*s.partition) + " is not a column");
  }
  return Status::ok();
}

Status read_delivery(const msgpack::object& o, const std::string& path, Delivery& d) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(read_type_name(m, "type", d.type));
  DS_RETURN_IF_ERROR(m.required("subject", d.subject));
  if (d.subject.empty()) return field_error(m.path("subject"), "must not be empty");
  std::string resume;
  DS_RETURN_IF_ERROR(m.required("resume", resume));
  if (resume == "stream") {
    d.resume = Resume::kStream;
  } else if (resume == "snapshot") {
    d.resume = Resume::kSnapshot;
  } else {
    return field_error(m.path("resume"), "unknown resume mode " + shown(resume) + " (expected stream or snapshot)");
  }
  const msgpack::object* schema = nullptr;
  DS_RETURN_IF_ERROR(m.required("schema", schema));
  DS_RETURN_IF_ERROR(read_schema(*schema, m.path("schema"), d.schema));
  DS_RETURN_IF_ERROR(m.required("schema_hash", d.schema_hash));
  return read_flag(m, "feed", d.feed);
}

Status read_register_reply(const msgpack::object& o, RegisterReply& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_reply_status(m, /*ok_required=*/true, out.error));
  if (out.error) return Status::ok();
  DS_RETURN_IF_ERROR(m.required("heartbeat_ms", out.heartbeat_ms));
  const msgpack::object* deliveries = nullptr;
  DS_RETURN_IF_ERROR(m.required("deliveries", deliveries));
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*deliveries, "deliveries", items));
  DS_RETURN_IF_ERROR(check_count("deliveries", items.size(), kMaxBatchRecords, "deliveries"));
  out.deliveries.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DS_RETURN_IF_ERROR(read_delivery(items[i], index_path("deliveries", i), out.deliveries[i]));
  }
  return Status::ok();
}

// A required array of business type names, each validated.
Status read_type_names(const MapReader& m, std::string_view name, std::vector<std::string>& out) {
  const msgpack::object* list = nullptr;
  DS_RETURN_IF_ERROR(m.required(name, list));
  const std::string field(name);
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*list, field, items));
  DS_RETURN_IF_ERROR(check_count(field, items.size(), kMaxBatchRecords, field));
  out.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string path = index_path(field, i);
    DS_RETURN_IF_ERROR(read(items[i], path, out[i]));
    DS_RETURN_IF_ERROR(validate_type_name(out[i]).with_context(path));
  }
  return Status::ok();
}

// A map keyed by business type name ({<type>: {...}}), each value read by
// `read_value(object, path, value)`; a bad or repeated type name is refused.
template <typename T, typename ReadValue>
Status read_type_map(const MapReader& m, std::string_view name, std::map<std::string, T>& out, ReadValue read_value) {
  const std::string field(name);
  const msgpack::object* map = nullptr;
  DS_RETURN_IF_ERROR(m.required(name, map));
  if (map->type != msgpack::type::MAP) return type_error(field, "map", *map);
  out.clear();
  for (uint32_t i = 0; i < map->via.map.size; ++i) {
    const msgpack::object_kv& kv = map->via.map.ptr[i];
    std::string type;
    DS_RETURN_IF_ERROR(read(kv.key, field, type));
    const std::string path = msgpack_reader::child_path(field, type);
    DS_RETURN_IF_ERROR(validate_type_name(type).with_context(path));
    T value;
    DS_RETURN_IF_ERROR(read_value(kv.val, path, value));
    if (!out.emplace(std::move(type), std::move(value)).second) return field_error(path, "duplicate key");
  }
  return Status::ok();
}

Status read_heartbeat_request(const msgpack::object& o, HeartbeatRequest& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(m.required("hub", out.hub));
  DS_RETURN_IF_ERROR(m.required("ts", out.ts));
  DS_RETURN_IF_ERROR(read_type_names(m, "types", out.types));
  return read_flag(m, "register", out.reregister);
}

Status read_checkpoint(const msgpack::object& o, const std::string& path, Checkpoint& c) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(m.required("version", c.version));
  DS_RETURN_IF_ERROR(m.required("seq", c.seq));
  DS_RETURN_IF_ERROR(m.required("ts", c.ts));
  DS_RETURN_IF_ERROR(m.required("schema_hash", c.schema_hash));
  return read_flag(m, "feed", c.feed);
}

Status read_heartbeat_reply(const msgpack::object& o, HeartbeatReply& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(m.required("agent", out.agent));
  DS_RETURN_IF_ERROR(validate_agent_id(out.agent).with_context("agent"));
  DS_RETURN_IF_ERROR(m.required("ts", out.ts));
  std::string status;
  DS_RETURN_IF_ERROR(m.required("status", status));
  if (status == "ok") {
    out.status = AgentHealth::kOk;
  } else if (status == "degraded") {
    out.status = AgentHealth::kDegraded;
  } else {
    return field_error("status", "unknown status " + shown(status) + " (expected ok or degraded)");
  }
  DS_RETURN_IF_ERROR(read_type_map(m, "checkpoints", out.checkpoints, read_checkpoint));
  DS_RETURN_IF_ERROR(m.required("pending", out.pending));
  DS_RETURN_IF_ERROR(m.required("quarantined", out.quarantined));
  // Agents before quarantined_types send the total only (the key absent or nil).
  const msgpack::object* by_type = nullptr;
  DS_RETURN_IF_ERROR(m.find("quarantined_types", by_type));
  if (by_type != nullptr && by_type->type != msgpack::type::NIL) {
    out.quarantined_types.emplace();
    DS_RETURN_IF_ERROR(read_type_map(m, "quarantined_types", *out.quarantined_types,
                                     [](const msgpack::object& count, const std::string& path, uint64_t& n) {
                                       return msgpack_reader::read(count, path, n);
                                     }));
  }
  return m.optional("error", out.error);
}

Status read_change(const msgpack::object& o, const std::string& path, Change& c) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(m.required("v", c.v));
  DS_RETURN_IF_ERROR(read_record_key(m, "key", c.key));
  std::string op;
  DS_RETURN_IF_ERROR(m.required("op", op));
  if (op == "u") {
    c.op = Op::kUpsert;
  } else if (op == "d") {
    c.op = Op::kDelete;
  } else {
    return field_error(m.path("op"), "unknown op " + shown(op) + " (expected u or d)");
  }
  DS_RETURN_IF_ERROR(read_optional_fields(m, "f", c.f));
  DS_RETURN_IF_ERROR(m.required("ts", c.ts));
  return m.required("hts", c.hts);
}

Status read_delta_batch(const msgpack::object& o, DeltaBatch& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_type_name(m, "type", out.type));
  const msgpack::object* changes = nullptr;
  DS_RETURN_IF_ERROR(m.required("changes", changes));
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*changes, "changes", items));
  DS_RETURN_IF_ERROR(check_count("changes", items.size(), kMaxBatchRecords, "changes"));
  out.changes.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DS_RETURN_IF_ERROR(read_change(items[i], index_path("changes", i), out.changes[i]));
  }
  return Status::ok();
}

Status read_snapshot_request(const msgpack::object& o, SnapshotRequest& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_type_name(m, "type", out.type));
  DS_RETURN_IF_ERROR(read_partition_filter(m, "partition", out.partition));
  DS_RETURN_IF_ERROR(m.optional("after_key", out.after_key));
  if (out.after_key) DS_RETURN_IF_ERROR(check_key("after_key", *out.after_key));
  DS_RETURN_IF_ERROR(m.required("limit", out.limit));
  if (out.limit < 1 || out.limit > kMaxSnapshotPage) {
    return field_error("limit", "page size " + std::to_string(out.limit) + " is outside 1.." +
                                    std::to_string(kMaxSnapshotPage));
  }
  return Status::ok();
}

Status read_snapshot_record(const msgpack::object& o, const std::string& path, SnapshotRecord& r) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(m.required("v", r.v));
  DS_RETURN_IF_ERROR(read_record_key(m, "key", r.key));
  const msgpack::object* f = nullptr;
  DS_RETURN_IF_ERROR(m.required("f", f));
  DS_RETURN_IF_ERROR(read_fields(*f, m.path("f"), r.f));
  return m.required("ts", r.ts);
}

Status read_snapshot_reply(const msgpack::object& o, SnapshotReply& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_reply_status(m, /*ok_required=*/false, out.error));
  if (out.error) return Status::ok();
  const msgpack::object* records = nullptr;
  DS_RETURN_IF_ERROR(m.required("records", records));
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*records, "records", items));
  DS_RETURN_IF_ERROR(check_count("records", items.size(), kMaxSnapshotPage, "records"));
  out.records.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DS_RETURN_IF_ERROR(read_snapshot_record(items[i], index_path("records", i), out.records[i]));
  }
  DS_RETURN_IF_ERROR(m.required("high_version", out.high_version));
  DS_RETURN_IF_ERROR(m.required("high_seq", out.high_seq));
  return m.required("done", out.done);
}

// Digest buckets: at most 65536 (shared/digest.h kMaxDigestBuckets, which
// the codec does not include), listed buckets at most 4096.
constexpr uint32_t kMaxWireDigestBuckets = 65536;
constexpr size_t kMaxListedBuckets = 4096;

Status read_digest_request(const msgpack::object& o, DigestRequest& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_type_names(m, "types", out.types));
  std::optional<uint32_t> buckets;
  DS_RETURN_IF_ERROR(m.optional("buckets", buckets));
  out.buckets = buckets.value_or(0);
  if (out.buckets > kMaxWireDigestBuckets) {
    return field_error("buckets", "at most " + std::to_string(kMaxWireDigestBuckets) + " buckets");
  }
  out.list.clear();
  const msgpack::object* list = nullptr;
  DS_RETURN_IF_ERROR(m.find("list", list));
  if (list == nullptr || list->type == msgpack::type::NIL) return Status::ok();
  std::span<const msgpack::object> items;
  DS_RETURN_IF_ERROR(read_array(*list, "list", items));
  DS_RETURN_IF_ERROR(check_count("list", items.size(), kMaxListedBuckets, "buckets"));
  out.list.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DS_RETURN_IF_ERROR(read(items[i], index_path("list", i), out.list[i]));
    if (out.list[i] >= out.buckets) {
      return field_error(index_path("list", i), "bucket " + std::to_string(out.list[i]) + " is not below buckets (" +
                                                    std::to_string(out.buckets) + ")");
    }
  }
  return Status::ok();
}

// buckets: bin of 16 bytes per bucket, u64_le rows || u64_le sum.
Status read_digest_buckets(const msgpack::object& o, const std::string& path, TypeDigest& d) {
  if (o.type != msgpack::type::BIN) return type_error(path, "bin", o);
  if (o.via.bin.size % 16 != 0 || o.via.bin.size / 16 > kMaxWireDigestBuckets) {
    return field_error(path, "expected 16 bytes per bucket, at most " + std::to_string(kMaxWireDigestBuckets) +
                                 " buckets, got " + std::to_string(o.via.bin.size) + " bytes");
  }
  auto le = [&o](size_t at) {
    uint64_t v = 0;
    for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(o.via.bin.ptr[at + i])) << (8 * i);
    return v;
  };
  d.buckets.resize(o.via.bin.size / 16);
  for (size_t b = 0; b < d.buckets.size(); ++b) d.buckets[b] = {le(16 * b), le(16 * b + 8)};
  return Status::ok();
}

Status read_type_digest(const msgpack::object& o, const std::string& path, TypeDigest& d) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, path));
  DS_RETURN_IF_ERROR(read_partition_filter(m, "partition", d.partition));
  DS_RETURN_IF_ERROR(m.required("version", d.version));
  DS_RETURN_IF_ERROR(m.required("ts", d.ts));
  DS_RETURN_IF_ERROR(m.required("rows", d.rows));
  DS_RETURN_IF_ERROR(m.required("digest", d.digest));
  std::optional<std::string> content;
  DS_RETURN_IF_ERROR(m.optional("content", content));
  d.content = content.value_or("");
  const msgpack::object* buckets = nullptr;
  DS_RETURN_IF_ERROR(m.find("buckets", buckets));
  if (buckets != nullptr && buckets->type != msgpack::type::NIL) {
    DS_RETURN_IF_ERROR(read_digest_buckets(*buckets, m.path("buckets"), d));
  }
  const msgpack::object* listed = nullptr;
  DS_RETURN_IF_ERROR(m.find("listed", listed));
  if (listed != nullptr && listed->type != msgpack::type::NIL) {
    const std::string field = m.path("listed");
    std::span<const msgpack::object> items;
    DS_RETURN_IF_ERROR(read_array(*listed, field, items));
    d.listed.resize(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string at = index_path(field, i);
      std::span<const msgpack::object> pair;
      DS_RETURN_IF_ERROR(read_array(items[i], at, pair));
      if (pair.size() != 2) return field_error(at, "expected [key, hash]");
      DS_RETURN_IF_ERROR(read(pair[0], at, d.listed[i].first));
      DS_RETURN_IF_ERROR(read(pair[1], at, d.listed[i].second));
    }
  }
  std::optional<bool> truncated;
  DS_RETURN_IF_ERROR(m.optional("listed_truncated", truncated));
  d.listed_truncated = truncated.value_or(false);
  return Status::ok();
}

Status read_digest_reply(const msgpack::object& o, DigestReply& out) {
  DS_ASSIGN_OR_RETURN(MapReader m, MapReader::open(o, ""));
  DS_RETURN_IF_ERROR(read_reply_status(m, /*ok_required=*/false, out.error));
  if (out.error) return Status::ok();
  DS_RETURN_IF_ERROR(m.required("agent", out.agent));
  DS_RETURN_IF_ERROR(validate_agent_id(out.agent).with_context("agent"));
  return read_type_map(m, "types", out.types, read_type_digest);
}

// Unpacks `bytes` as exactly one msgpack object and reads it into a T with
// `read_fn`. msgpack-c reports malformed input by throwing; every exception
// stops here and becomes InvalidArgument, and a failed read discards the
// partly filled T.
template <typename T, typename ReadFn>
Result<T> decode_with(std::string_view bytes, ReadFn read_fn) {
  if (bytes.empty()) return Status::invalid_argument("empty message");
  try {
    const msgpack::unpack_limit limits(kMaxArrayEntries, kMaxMapEntries, kMaxStringBytes, kMaxBinBytes,
                                       kMaxExtBytes, kMaxDepth);
    size_t offset = 0;
    msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limits);
    if (offset != bytes.size()) {
      return Status::invalid_argument("trailing bytes after message (" + std::to_string(bytes.size() - offset) +
                                      " bytes)");
    }
    T out;
    DS_RETURN_IF_ERROR(read_fn(handle.get(), out));
    return out;
  } catch (const msgpack::insufficient_bytes&) {
    return Status::invalid_argument("truncated msgpack message");
  } catch (const msgpack::array_size_overflow&) {
    return Status::invalid_argument("msgpack array longer than " + std::to_string(kMaxArrayEntries) + " entries");
  } catch (const msgpack::map_size_overflow&) {
    return Status::invalid_argument("msgpack map larger than " + std::to_string(kMaxMapEntries) + " entries");
  } catch (const msgpack::str_size_overflow&) {
    return Status::invalid_argument("msgpack str longer than " + std::to_string(kMaxStringBytes) + " bytes");
  } catch (const msgpack::bin_size_overflow&) {
    return Status::invalid_argument("msgpack bin longer than " + std::to_string(kMaxBinBytes) + " bytes");
  } catch (const msgpack::ext_size_overflow&) {
    return Status::invalid_argument("msgpack ext longer than " + std::to_string(kMaxExtBytes) + " bytes");
  } catch (const msgpack::depth_size_overflow&) {
    return Status::invalid_argument("msgpack nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  } catch (const std::bad_alloc&) {
    return Status::invalid_argument("msgpack message too large to decode");
  } catch (const std::exception& e) {
    return Status::invalid_argument(std::string("malformed msgpack message: ") + e.what());
  }
}

// JSON ingest goes through the msgpack decoder so that both forms obey the
// same rules and produce the same errors.
Result<std::string> json_to_msgpack(const nlohmann::json& j) {
  try {
    std::vector<std::uint8_t> bytes = nlohmann::json::to_msgpack(j);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    return Status::invalid_argument(std::string("invalid JSON: ") + e.what());
  }
}

}  // namespace

Result<Fields> decode_logged_fields(std::string_view bytes, const TypeSchema& schema) {
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
      const bool real = column != nullptr && column->type == ColumnType::kReal;
      const msgpack::object& v = kv.val;
      Value value;
      switch (v.type) {
        case msgpack::type::NIL: value = std::monostate{}; break;
        case msgpack::type::BOOLEAN: value = v.via.boolean; break;
        // Logs written before reals were always float64 hold an integral
        // real (2.0) as an integer: a real column's value is that double.
        case msgpack::type::POSITIVE_INTEGER:
          if (real) {
            value = static_cast<double>(v.via.u64);
          } else {
            value = static_cast<int64_t>(v.via.u64);
          }
          break;
        case msgpack::type::NEGATIVE_INTEGER:
          if (real) {
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

Result<DigestRequest> decode_digest_request(std::string_view bytes) {
  return decode_with<DigestRequest>(bytes, read_digest_request);
}
Result<DigestReply> decode_digest_reply(std::string_view bytes) {
  return decode_with<DigestReply>(bytes, read_digest_reply);
}

Result<IngestRequest> decode_ingest_request(std::string_view bytes, std::optional<uint32_t>* bad_record) {
  if (bad_record != nullptr) bad_record->reset();
  return decode_with<IngestRequest>(
      bytes, [bad_record](const msgpack::object& o, IngestRequest& out) { return read_ingest_request(o, out, bad_record); });
}
Result<IngestReply> decode_ingest_reply(std::string_view bytes) {
  return decode_with<IngestReply>(bytes, read_ingest_reply);
}
Result<RegisterRequest> decode_register_request(std::string_view bytes) {
  return decode_with<RegisterRequest>(bytes, read_register_request);
}
Result<RegisterReply> decode_register_reply(std::string_view bytes) {
  return decode_with<RegisterReply>(bytes, read_register_reply);
}
Result<HeartbeatRequest> decode_heartbeat_request(std::string_view bytes) {
  return decode_with<HeartbeatRequest>(bytes, read_heartbeat_request);
}
Result<HeartbeatReply> decode_heartbeat_reply(std::string_view bytes) {
  return decode_with<HeartbeatReply>(bytes, read_heartbeat_reply);
}
Result<DeltaBatch> decode_delta_batch(std::string_view bytes) {
  return decode_with<DeltaBatch>(bytes, read_delta_batch);
}
Result<SnapshotRequest> decode_snapshot_request(std::string_view bytes) {
  return decode_with<SnapshotRequest>(bytes, read_snapshot_request);
}
Result<SnapshotReply> decode_snapshot_reply(std::string_view bytes) {
  return decode_with<SnapshotReply>(bytes, read_snapshot_reply);
}

Result<IngestRequest> decode_ingest_request_json(std::string_view json, std::optional<uint32_t>* bad_record) {
  if (bad_record != nullptr) bad_record->reset();
  DS_ASSIGN_OR_RETURN(nlohmann::json j, parse_json(json));
  DS_ASSIGN_OR_RETURN(std::string bytes, json_to_msgpack(j));
  return decode_ingest_request(bytes, bad_record);
}

Result<std::vector<IngestRecord>> decode_ingest_records_json(std::string_view json,
                                                             std::optional<uint32_t>* bad_record) {
  if (bad_record != nullptr) bad_record->reset();
  DS_ASSIGN_OR_RETURN(nlohmann::json j, parse_json(json));
  if (!j.is_array()) {
    return Status::invalid_argument(std::string("records: expected a JSON array of records, got ") + j.type_name());
  }
  nlohmann::json request = nlohmann::json::object();
  request["records"] = std::move(j);
  DS_ASSIGN_OR_RETURN(std::string bytes, json_to_msgpack(request));
  DS_ASSIGN_OR_RETURN(IngestRequest decoded, decode_ingest_request(bytes, bad_record));
  return std::move(decoded.records);
}

}  // namespace ds
