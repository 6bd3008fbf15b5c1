#pragma once
// Shared by the libFuzzer targets of tests/fuzz/ (one decoder each, see
// docs/reliability.md "Fuzzing"): a property check that fails the run, the
// round trip every msgpack message must survive, and the business types the
// ingest and push targets validate against.
//
// A failed check prints what failed and aborts; libFuzzer then saves the
// input as a crash artifact. Targets run single-threaded; nothing here keeps
// state between inputs.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hub/ingest_validation.h"
#include "shared/codec.h"
#include "shared/config.h"
#include "shared/status.h"

namespace ds::fuzz {

[[noreturn]] inline void fail(const char* check, const char* file, int line, const std::string& detail) {
  std::fprintf(stderr, "fuzz property failed at %s:%d: %s\n", file, line, check);
  if (!detail.empty()) std::fprintf(stderr, "  %s\n", detail.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, detail)                                         \
  do {                                                                   \
    if (!(cond)) ::ds::fuzz::fail(#cond, __FILE__, __LINE__, (detail));  \
  } while (0)

inline std::string status_text(const Status& s) { return s.to_string(); }

// The wire round trip of a message that decoded: its encoding decodes again,
// and encodes to the same bytes. With `compare_values` the two decoded
// messages must also be equal (not for messages that can carry a NaN field
// value, which never equals itself; the bytes still must).
template <typename T, typename DecodeFn>
void check_round_trip(const T& first, DecodeFn decode, bool compare_values) {
  const std::string bytes = encode(first);
  Result<T> second = decode(std::string_view(bytes));
  FUZZ_CHECK(second.is_ok(), "re-decoding an encoded message failed: " + status_text(second.status()));
  FUZZ_CHECK(encode(*second) == bytes, "encode(decode(encode(m))) differs from encode(m)");
  if (compare_values) FUZZ_CHECK(*second == first, "decode(encode(m)) differs from m");
}

// Decodes `input` with `decode`; a failure must be InvalidArgument (the
// decoders' contract), a success must survive check_round_trip. Returns the
// decoded message for further checks.
template <typename DecodeFn>
auto check_decoder(std::string_view input, DecodeFn decode, bool compare_values) {
  auto decoded = decode(input);
  if (decoded.is_ok()) {
    check_round_trip(*decoded, decode, compare_values);
  } else {
    FUZZ_CHECK(decoded.status().code() == StatusCode::kInvalidArgument,
               "a decoder failed with another code than InvalidArgument: " + status_text(decoded.status()));
  }
  return decoded;
}

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// A business type with a column of every type, partitioned by a text column,
// and one partitioned by an integer column: what ingest validation and the
// push reader are checked against.
inline TypeConfig text_partitioned_type() {
  TypeConfig t;
  t.name = "things";
  t.schema.key = "id";
  t.schema.partition = "region";
  t.schema.columns = {{"region", ColumnType::kText}, {"name", ColumnType::kText},
                      {"count", ColumnType::kInteger}, {"price", ColumnType::kReal},
                      {"active", ColumnType::kBool}, {"photo", ColumnType::kBlob},
                      {"doc", ColumnType::kJson}};
  return t;
}

inline TypeConfig integer_partitioned_type() {
  TypeConfig t;
  t.name = "stock";
  t.schema.key = "sku";
  t.schema.partition = "store";
  t.schema.columns = {{"store", ColumnType::kInteger}, {"qty", ColumnType::kInteger},
                      {"note", ColumnType::kText}, {"extra", ColumnType::kJson}};
  return t;
}

inline TypeConfig unpartitioned_type() {
  TypeConfig t = text_partitioned_type();
  t.name = "plain";
  t.schema.partition.reset();
  return t;
}

// What the hub does next with a decoded ingest batch (hub/ingest_validation.h),
// against each of the types above. A batch it accepts must be in stored form
// (validation is idempotent), and must survive the wire: encoded as an ingest
// request, decoded and validated again, it gives the same records.
inline void check_ingest_validation(const std::vector<IngestRecord>& decoded) {
  const size_t limit = message_body_limit(kDefaultMaxPayload);
  for (const TypeConfig& type : {text_partitioned_type(), integer_partitioned_type(), unpartitioned_type()}) {
    std::vector<IngestRecord> records = decoded;
    if (std::optional<Rejection> rejected = validate_ingest_records(type, records, limit)) {
      FUZZ_CHECK(!rejected->status.is_ok(), "a rejection without an error");
      FUZZ_CHECK(!rejected->index || *rejected->index < records.size(), "a rejection names a record past the end");
      continue;
    }
    for (const IngestRecord& r : records) {
      Result<bool> stored = fields_in_stored_form(type.schema, r.key, r.fields);
      FUZZ_CHECK(stored.is_ok() && *stored, "validated fields are not in stored form (record " + r.key + ")");
    }
    std::vector<IngestRecord> again = records;
    std::optional<Rejection> second = validate_ingest_records(type, again, limit);
    FUZZ_CHECK(!second, "validating a validated batch failed: " + status_text(second->status));
    FUZZ_CHECK(again == records, "validation is not idempotent");

    IngestRequest request;
    request.records = records;
    Result<IngestRequest> wire = decode_ingest_request(encode(request));
    FUZZ_CHECK(wire.is_ok(), "a validated batch does not decode: " + status_text(wire.status()));
    std::optional<Rejection> on_hub = validate_ingest_records(type, wire->records, limit);
    FUZZ_CHECK(!on_hub, "a validated batch fails validation after the wire: " + status_text(on_hub->status));
    FUZZ_CHECK(wire->records == records, "a validated batch changes over the wire");
  }
}

}  // namespace ds::fuzz
