// The encoding half of shared/codec.h: every message written with one
// msgpack writer (BasicWriter below), the sizes of encodings counted by that
// same writer, the change log's form of fields (shared/logged_fields.h) and
// values rendered as JSON text. Decoding is shared/codec_decode.cc.
#include "shared/codec.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "shared/json_text.h"
#include "shared/logged_fields.h"

namespace ds {

// ---- WireError ---------------------------------------------------------

WireError WireError::from(const Status& s, std::optional<uint32_t> index) {
  WireError e;
  // An OK status carries no error; reporting it as internal keeps a reply
  // with an error object from ever reading as success.
  e.code = s.is_ok() ? StatusCode::kInternal : s.code();
  e.message = s.is_ok() ? std::string("error reported without a cause") : s.message();
  e.index = index;
  return e;
}

Status WireError::to_status() const {
  if (code == StatusCode::kOk) return Status::internal(message);
  return Status(code, message);
}

namespace {

std::string base64_encode(std::string_view bin) {
  std::string out(sodium_base64_ENCODED_LEN(bin.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bin.data()), bin.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // ENCODED_LEN counts the terminating NUL
  return out;
}

std::string_view op_name(Op op) { return op == Op::kUpsert ? "upsert" : "delete"; }
std::string_view op_short_name(Op op) { return op == Op::kUpsert ? "u" : "d"; }
std::string_view resume_name(Resume r) { return r == Resume::kStream ? "stream" : "snapshot"; }
std::string_view health_name(AgentHealth h) { return h == AgentHealth::kOk ? "ok" : "degraded"; }

// ---- encoding ------------------------------------------------------------

// Counts the bytes a packer writes instead of keeping them: the sizes of
// encodings (encoded_size) come from the very code that encodes.
struct ByteCounter {
  size_t n = 0;
  void write(const char*, size_t len) { n += len; }
  size_t size() const { return n; }
};

// Builds one msgpack message (Sink msgpack::sbuffer), or counts its bytes
// (Sink ByteCounter). Map and array sizes are declared up front, so every
// caller counts exactly the entries it then writes.
// Appends to a caller's string, so a hot path reuses one buffer
// (encode_logged_fields).
struct StringSink {
  std::string* out = nullptr;
  void write(const char* bytes, size_t len) { out->append(bytes, len); }
};

template <typename Sink>
class BasicWriter {
 public:
  BasicWriter() = default;
  explicit BasicWriter(Sink sink) : buf_(std::move(sink)) {}

  void map(size_t n) { pk_.pack_map(static_cast<uint32_t>(n)); }
  void array(size_t n) { pk_.pack_array(static_cast<uint32_t>(n)); }
  void str(std::string_view s) {
    pk_.pack_str(static_cast<uint32_t>(s.size()));
    pk_.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  void u64(uint64_t v) { pk_.pack_uint64(v); }
  void i64(int64_t v) { pk_.pack_int64(v); }
  void boolean(bool v) { v ? pk_.pack_true() : pk_.pack_false(); }
  // Always float64: msgpack-c's packer writes integral doubles as integers,
  // which would turn a real 3.0 into an integer (and -0.0 into 0).
  void float64(double d) {
    uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    char out[9];
    out[0] = static_cast<char>(0xcb);
    for (int i = 0; i < 8; ++i) out[1 + i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xff);
    buf_.write(out, sizeof out);
  }

  void value(const Value& v) {
    std::visit([this](const auto& x) { this->value_alternative(x); }, v);
  }

  void fields(const Fields& f) {
    map(f.size());
    for (const auto& [name, v] : f) {
      str(name);
      value(v);
    }
  }

  // The change log's form (encode_logged_fields): as fields(), except that
  // a json column's value is its JSON text as a str.
  void logged_fields(const Fields& f) {
    map(f.size());
    for (const auto& [name, v] : f) {
      str(name);
      if (const auto* j = std::get_if<JsonText>(&v)) {
        str(j->text);
      } else {
        value(v);
      }
    }
  }

  void error(const WireError& e) {
    map(2 + (e.index ? 1 : 0));
    str("code");
    str(status_code_name(e.code));
    str("message");
    str(e.message);
    if (e.index) {
      str("index");
      u64(*e.index);
    }
  }

  size_t size() const { return buf_.size(); }
  std::string take() { return std::string(buf_.data(), buf_.size()); }

 private:
  void value_alternative(std::monostate) { pk_.pack_nil(); }
  void value_alternative(bool b) { boolean(b); }
  void value_alternative(int64_t i) { i64(i); }
  void value_alternative(double d) { float64(d); }
  void value_alternative(const std::string& s) { str(s); }
  void value_alternative(const Blob& b) {
    pk_.pack_bin(static_cast<uint32_t>(b.bytes.size()));
    pk_.pack_bin_body(b.bytes.data(), static_cast<uint32_t>(b.bytes.size()));
  }
  // A json column's value travels as the msgpack form of its JSON value
  // (docs/protocol.md "Values"): object -> map, array -> array, string ->
  // str, number -> int/float64, bool -> bool. A str is therefore always a
  // JSON string, never JSON text to parse. Text that is not JSON (possible
  // only if a caller skipped validate_fields) is sent as a str, rather than
  // dropped.
  void value_alternative(const JsonText& j) {
    Result<nlohmann::json> parsed = parse_json(j.text);
    if (parsed.is_ok()) {
      json(*parsed);
    } else {
      str(j.text);
    }
  }

  void json(const nlohmann::json& j) {
    switch (j.type()) {
      case nlohmann::json::value_t::null:
      case nlohmann::json::value_t::discarded: pk_.pack_nil(); break;
      case nlohmann::json::value_t::boolean: boolean(j.get<bool>()); break;
      case nlohmann::json::value_t::number_integer: i64(j.get<int64_t>()); break;
      case nlohmann::json::value_t::number_unsigned: u64(j.get<uint64_t>()); break;
      case nlohmann::json::value_t::number_float: float64(j.get<double>()); break;
      case nlohmann::json::value_t::string: str(j.get_ref<const std::string&>()); break;
      case nlohmann::json::value_t::binary: {
        const auto& bin = j.get_binary();
        pk_.pack_bin(static_cast<uint32_t>(bin.size()));
        pk_.pack_bin_body(reinterpret_cast<const char*>(bin.data()), static_cast<uint32_t>(bin.size()));
        break;
      }
      case nlohmann::json::value_t::array:
        array(j.size());
        for (const auto& e : j) json(e);
        break;
      case nlohmann::json::value_t::object:
        map(j.size());
        for (const auto& [k, e] : j.items()) {
          str(k);
          json(e);
        }
        break;
    }
  }

  Sink buf_;
  msgpack::packer<Sink> pk_{buf_};
};

using Writer = BasicWriter<msgpack::sbuffer>;
using SizeCounter = BasicWriter<ByteCounter>;

// {ok: false, error: {...}}: how every reply says the request was refused.
std::string error_reply(const WireError& e) {
  Writer w;
  w.map(2);
  w.str("ok");
  w.boolean(false);
  w.str("error");
  w.error(e);
  return w.take();
}

void write_ingest_record(Writer& w, const IngestRecord& r) {
  const bool has_fields = !r.fields.empty();
  w.map(2 + (has_fields ? 1 : 0) + (r.ts ? 1 : 0) + (r.partition ? 1 : 0));
  w.str("key");
  w.str(r.key);
  w.str("op");
  w.str(op_name(r.op));
  if (has_fields) {
    w.str("fields");
    w.fields(r.fields);
  }
  if (r.ts) {
    w.str("ts");
    w.i64(*r.ts);
  }
  if (r.partition) {
    w.str("partition");
    w.str(*r.partition);
  }
}

template <typename W>
void write_change(W& w, const Change& c) {
  const bool has_fields = !c.f.empty();
  w.map(5 + (has_fields ? 1 : 0));
  w.str("v");
  w.u64(c.v);
  w.str("key");
  w.str(c.key);
  w.str("op");
  w.str(op_short_name(c.op));
  if (has_fields) {
    w.str("f");
    w.fields(c.f);
  }
  w.str("ts");
  w.i64(c.ts);
  w.str("hts");
  w.i64(c.hts);
}

template <typename W>
void write_snapshot_record(W& w, const SnapshotRecord& r) {
  w.map(4);
  w.str("v");
  w.u64(r.v);
  w.str("key");
  w.str(r.key);
  w.str("f");
  w.fields(r.f);
  w.str("ts");
  w.i64(r.ts);
}

void write_schema(Writer& w, const TypeSchema& s) {
  w.map(2 + (s.partition ? 1 : 0));
  w.str("key");
  w.str(s.key);
  if (s.partition) {
    w.str("partition");
    w.str(*s.partition);
  }
  w.str("columns");
  w.array(s.columns.size());
  for (const Column& c : s.columns) {
    w.map(2);
    w.str("name");
    w.str(c.name);
    w.str("type");
    w.str(column_type_name(c.type));
  }
}

}  // namespace

// ---- public API ----------------------------------------------------------

std::string encode(const IngestRequest& m) {
  Writer w;
  w.map(1 + (m.producer.empty() ? 0 : 1) + (m.seq ? 1 : 0));
  if (!m.producer.empty()) {
    w.str("producer");
    w.str(m.producer);
  }
  if (m.seq) {
    w.str("seq");
    w.u64(*m.seq);
  }
  w.str("records");
  w.array(m.records.size());
  for (const IngestRecord& r : m.records) write_ingest_record(w, r);
  return w.take();
}

std::string encode(const IngestReply& m) {
  if (m.error) return error_reply(*m.error);
  Writer w;
  w.map(3);
  w.str("ok");
  w.boolean(true);
  w.str("first_version");
  w.u64(m.first_version);
  w.str("last_version");
  w.u64(m.last_version);
  return w.take();
}

std::string encode(const RegisterRequest& m) {
  Writer w;
  w.map(4);
  w.str("agent");
  w.str(m.agent);
  w.str("host");
  w.str(m.host);
  w.str("version");
  w.str(m.version);
  w.str("subscriptions");
  w.array(m.subscriptions.size());
  for (const SubscriptionReport& s : m.subscriptions) {
    w.map(6 + (s.feed ? 1 : 0));
    w.str("type");
    w.str(s.type);
    w.str("partition");
    w.str(s.partition);
    w.str("version");
    w.u64(s.version);
    w.str("seq");
    w.u64(s.seq);
    w.str("ts");
    w.i64(s.ts);
    w.str("rows");
    w.u64(s.rows);
    if (s.feed) {
      w.str("feed");
      w.boolean(true);
    }
  }
  return w.take();
}

std::string encode(const RegisterReply& m) {
  Writer w;
  if (m.error) return error_reply(*m.error);
  w.map(3);
  w.str("ok");
  w.boolean(true);
  w.str("heartbeat_ms");
  w.u64(m.heartbeat_ms);
  w.str("deliveries");
  w.array(m.deliveries.size());
  for (const Delivery& d : m.deliveries) {
    w.map(5 + (d.feed ? 1 : 0));
    w.str("type");
    w.str(d.type);
    w.str("subject");
    w.str(d.subject);
    w.str("resume");
    w.str(resume_name(d.resume));
    w.str("schema");
    write_schema(w, d.schema);
    w.str("schema_hash");
    w.str(d.schema_hash);
    if (d.feed) {
      w.str("feed");
      w.boolean(true);
    }
  }
  return w.take();
}

std::string encode(const HeartbeatRequest& m) {
  Writer w;
  w.map(3 + (m.reregister ? 1 : 0));
  w.str("hub");
  w.str(m.hub);
  w.str("ts");
  w.i64(m.ts);
  w.str("types");
  w.array(m.types.size());
  for (const std::string& t : m.types) w.str(t);
  if (m.reregister) {
    w.str("register");
    w.boolean(true);
  }
  return w.take();
}

std::string encode(const HeartbeatReply& m) {
  Writer w;
  w.map(6 + (m.quarantined_types ? 1 : 0) + (m.error ? 1 : 0));
  w.str("agent");
  w.str(m.agent);
  w.str("ts");
  w.i64(m.ts);
  w.str("status");
  w.str(health_name(m.status));
  w.str("checkpoints");
  w.map(m.checkpoints.size());
  for (const auto& [type, c] : m.checkpoints) {
    w.str(type);
    w.map(4 + (c.feed ? 1 : 0));
    w.str("version");
    w.u64(c.version);
    w.str("seq");
    w.u64(c.seq);
    w.str("ts");
    w.i64(c.ts);
    w.str("schema_hash");
    w.str(c.schema_hash);
    if (c.feed) {
      w.str("feed");
      w.boolean(true);
    }
  }
  w.str("pending");
  w.u64(m.pending);
  w.str("quarantined");
  w.u64(m.quarantined);
  if (m.quarantined_types) {
    w.str("quarantined_types");
    w.map(m.quarantined_types->size());
    for (const auto& [type, n] : *m.quarantined_types) {
      w.str(type);
      w.u64(n);
    }
  }
  if (m.error) {
    w.str("error");
    w.str(*m.error);
  }
  return w.take();
}

std::string encode(const DeltaBatch& m) {
  Writer w;
  w.map(2);
  w.str("type");
  w.str(m.type);
  w.str("changes");
  w.array(m.changes.size());
  for (const Change& c : m.changes) write_change(w, c);
  return w.take();
}

std::string encode(const SnapshotRequest& m) {
  Writer w;
  w.map(3 + (m.after_key ? 1 : 0));
  w.str("type");
  w.str(m.type);
  w.str("partition");
  w.str(m.partition);
  if (m.after_key) {
    w.str("after_key");
    w.str(*m.after_key);
  }
  w.str("limit");
  w.u64(m.limit);
  return w.take();
}

std::string encode(const SnapshotReply& m) {
  Writer w;
  if (m.error) return error_reply(*m.error);
  w.map(4);
  w.str("records");
  w.array(m.records.size());
  for (const SnapshotRecord& r : m.records) write_snapshot_record(w, r);
  w.str("high_version");
  w.u64(m.high_version);
  w.str("high_seq");
  w.u64(m.high_seq);
  w.str("done");
  w.boolean(m.done);
  return w.take();
}

size_t message_body_limit(int64_t max_payload) {
  if (max_payload <= 0) max_payload = kDefaultMaxPayload;
  const int64_t headroom = std::min<int64_t>(kPayloadHeadroom, max_payload / 4);
  return static_cast<size_t>(max_payload - headroom);
}

size_t encoded_size(const Change& c) {
  SizeCounter w;
  write_change(w, c);
  return w.size();
}

void encode_logged_fields(const Fields& fields, std::string& out) {
  out.clear();
  BasicWriter<StringSink> w(StringSink{&out});
  w.logged_fields(fields);
}

size_t delta_batch_overhead(std::string_view type) {
  SizeCounter w;
  w.map(2);
  w.str("type");
  w.str(type);
  w.str("changes");
  w.array(std::numeric_limits<uint32_t>::max());  // the widest array header
  return w.size();
}

size_t encoded_size(const SnapshotRecord& r) {
  SizeCounter w;
  write_snapshot_record(w, r);
  return w.size();
}

size_t snapshot_reply_overhead() {
  SizeCounter w;
  w.map(4);
  w.str("records");
  w.array(std::numeric_limits<uint32_t>::max());
  w.str("high_version");
  w.u64(std::numeric_limits<uint64_t>::max());
  w.str("high_seq");
  w.u64(std::numeric_limits<uint64_t>::max());
  w.str("done");
  w.boolean(false);
  return w.size();
}

std::string encode(const DigestRequest& m) {
  Writer w;
  w.map(1 + (m.buckets > 0 ? 1 : 0) + (m.list.empty() ? 0 : 1));
  w.str("types");
  w.array(m.types.size());
  for (const std::string& t : m.types) w.str(t);
  if (m.buckets > 0) {
    w.str("buckets");
    w.u64(m.buckets);
  }
  if (!m.list.empty()) {
    w.str("list");
    w.array(m.list.size());
    for (uint32_t b : m.list) w.u64(b);
  }
  return w.take();
}

std::string encode(const DigestReply& m) {
  Writer w;
  if (m.error) return error_reply(*m.error);
  w.map(2);
  w.str("agent");
  w.str(m.agent);
  w.str("types");
  w.map(m.types.size());
  for (const auto& [type, d] : m.types) {
    w.str(type);
    w.map(5 + (d.content.empty() ? 0 : 1) + (d.buckets.empty() ? 0 : 1) + (d.listed.empty() ? 0 : 1) +
          (d.listed_truncated ? 1 : 0));
    w.str("partition");
    w.str(d.partition);
    w.str("version");
    w.u64(d.version);
    w.str("ts");
    w.i64(d.ts);
    w.str("rows");
    w.u64(d.rows);
    w.str("digest");
    w.str(d.digest);
    if (!d.content.empty()) {
      w.str("content");
      w.str(d.content);
    }
    if (!d.buckets.empty()) {
      std::string bin;
      bin.reserve(16 * d.buckets.size());
      for (const auto& [rows, sum] : d.buckets) {
        for (int i = 0; i < 8; ++i) bin.push_back(static_cast<char>((rows >> (8 * i)) & 0xff));
        for (int i = 0; i < 8; ++i) bin.push_back(static_cast<char>((sum >> (8 * i)) & 0xff));
      }
      w.str("buckets");
      w.value(Value{Blob{std::move(bin)}});
    }
    if (!d.listed.empty()) {
      w.str("listed");
      w.array(d.listed.size());
      for (const auto& [key, hash] : d.listed) {
        w.array(2);
        w.str(key);
        w.u64(hash);
      }
    }
    if (d.listed_truncated) {
      w.str("listed_truncated");
      w.boolean(true);
    }
  }
  return w.take();
}

std::string value_to_json(const Value& v) {
  struct Visitor {
    std::string operator()(std::monostate) const { return "null"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    // nlohmann prints the shortest text that reads back as the same double,
    // and null for NaN and infinity, which JSON cannot express.
    std::string operator()(double d) const { return nlohmann::json(d).dump(); }
    std::string operator()(const std::string& s) const { return dump_json(nlohmann::json(s)); }
    std::string operator()(const Blob& b) const { return "\"" + base64_encode(b.bytes) + "\""; }
    std::string operator()(const JsonText& j) const { return j.text.empty() ? "null" : j.text; }
  };
  return std::visit(Visitor{}, v);
}

std::string fields_to_json(const Fields& f) {
  std::string out = "{";
  for (const auto& [name, v] : f) {
    if (out.size() > 1) out += ',';
    out += dump_json(nlohmann::json(name));
    out += ':';
    out += value_to_json(v);
  }
  out += '}';
  return out;
}

}  // namespace ds
