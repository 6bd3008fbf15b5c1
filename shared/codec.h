#pragma once
// msgpack encoding of every message in shared/messages.h, plus the JSON forms
// accepted on ingest (NATS with Content-Type: application/json, and HTTP).
//
// Decoders never crash and never return a partial object: any malformed input
// (truncated bytes, wrong types, missing required keys, unknown op, oversize
// batch, invalid type name or agent id) yields InvalidArgument whose message
// names the field, e.g. "records[3].op: unknown op 'upsrt' (expected upsert or delete)".

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/messages.h"
#include "shared/status.h"

namespace ds {

std::string encode(const IngestRequest& m);
std::string encode(const IngestReply& m);
std::string encode(const RegisterRequest& m);
std::string encode(const RegisterReply& m);
std::string encode(const HeartbeatRequest& m);
std::string encode(const HeartbeatReply& m);
std::string encode(const DeltaBatch& m);
std::string encode(const SnapshotRequest& m);
std::string encode(const SnapshotReply& m);
std::string encode(const DigestRequest& m);
std::string encode(const DigestReply& m);

// `bad_record`, when given, is set when the failure is in one record
// (records[i]: unknown op, a field of the wrong type, a bad key, ...) to its
// index i, and reset otherwise; the ingest reply carries it as error.index.
Result<IngestRequest> decode_ingest_request(std::string_view bytes, std::optional<uint32_t>* bad_record = nullptr);
Result<IngestReply> decode_ingest_reply(std::string_view bytes);
Result<RegisterRequest> decode_register_request(std::string_view bytes);
Result<RegisterReply> decode_register_reply(std::string_view bytes);
Result<HeartbeatRequest> decode_heartbeat_request(std::string_view bytes);
Result<HeartbeatReply> decode_heartbeat_reply(std::string_view bytes);
Result<DeltaBatch> decode_delta_batch(std::string_view bytes);
Result<SnapshotRequest> decode_snapshot_request(std::string_view bytes);
Result<SnapshotReply> decode_snapshot_reply(std::string_view bytes);
Result<DigestRequest> decode_digest_request(std::string_view bytes);
Result<DigestReply> decode_digest_reply(std::string_view bytes);

// JSON ingest: the same shape as the msgpack ingest request
// ({"producer":..,"seq":..,"records":[..]}), decoded by converting the JSON
// to msgpack and reading that, so both forms obey the same rules and give the
// same errors. Blob values are base64 strings only where the schema says so,
// so JSON values decode as text/int/real/bool/null, and nested
// objects/arrays as JsonText; validate_fields applies the column types.
// `bad_record` as decode_ingest_request.
Result<IngestRequest> decode_ingest_request_json(std::string_view json,
                                                 std::optional<uint32_t>* bad_record = nullptr);
// HTTP body: a bare JSON array of records.
Result<std::vector<IngestRecord>> decode_ingest_records_json(std::string_view json,
                                                             std::optional<uint32_t>* bad_record = nullptr);

// ---- sizes: cutting messages under the broker's max_payload ----
//
// The hub sends no message body larger than message_body_limit(max_payload)
// of the server it is connected to (a delta batch, a snapshot page): the
// headroom is left for headers and slack: Nats-Msg-Id and, from an HA hub,
// Ds-Hub and an expectation header, each under 200 bytes ([hub] name is at
// most 64 characters). Ds-Retry-Keys is counted in the body's limit
// (hub/retry_key_header.h).
inline constexpr int64_t kPayloadHeadroom = 4096;
// nats-server's default max_payload; assumed only while none is known.
inline constexpr int64_t kDefaultMaxPayload = 1 << 20;
// max_payload - min(kPayloadHeadroom, max_payload / 4).
size_t message_body_limit(int64_t max_payload);

// The exact bytes one change adds to encode(DeltaBatch), and a bound on the
// rest: encode(DeltaBatch{type, changes}).size() <=
// delta_batch_overhead(type) + sum of encoded_size(change).
size_t encoded_size(const Change& c);
size_t delta_batch_overhead(std::string_view type);
// The same for a snapshot reply and its records.
size_t encoded_size(const SnapshotRecord& r);
size_t snapshot_reply_overhead();

// A value as JSON text (blob as base64 string, JsonText verbatim), for hooks,
// the HTTP API and the CLI.
std::string value_to_json(const Value& v);
// Fields as a JSON object text.
std::string fields_to_json(const Fields& f);

}  // namespace ds
