#pragma once
// msgpack encoding of every message in shared/messages.h, plus the JSON forms
// accepted on ingest (NATS with Content-Type: application/json, and HTTP).
//
// Decoders never crash and never return a partial object: any malformed input
// (truncated bytes, wrong types, missing required keys, unknown op, oversize
// batch, invalid type name or agent id) yields InvalidArgument whose message
// names the field, e.g. "records[3].op: unknown op 'upsrt' (expected upsert or delete)".

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

Result<IngestRequest> decode_ingest_request(std::string_view bytes);
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
// ({"producer":..,"seq":..,"records":[..]}). Blob values are base64 strings
// only where the schema says so, so JSON values decode as text/int/real/bool/
// null, and nested objects/arrays as JsonText.
Result<IngestRequest> decode_ingest_request_json(std::string_view json);
// HTTP body: a bare JSON array of records.
Result<std::vector<IngestRecord>> decode_ingest_records_json(std::string_view json);

// A value as JSON text (blob as base64 string, JsonText verbatim), for hooks,
// the HTTP API and the CLI.
std::string value_to_json(const Value& v);
// Fields as a JSON object text.
std::string fields_to_json(const Fields& f);

}  // namespace ds
