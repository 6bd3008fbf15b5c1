// Fuzz target: the hub's JSON ingest decoding: a request object as on NATS
// with Content-Type application/json (decode_ingest_request_json), and the
// HTTP body, a bare array of records (decode_ingest_records_json), then
// validate_ingest_records as the hub does.
// Checks: no crash or leak; errors are InvalidArgument; a record index in an
// error is inside the batch; both JSON forms agree with the msgpack decoder
// (the request, encoded as msgpack, decodes to the same records); a
// validated batch is in stored form and survives the wire.

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::optional<uint32_t> bad_record;
  Result<IngestRequest> request = decode_ingest_request_json(input, &bad_record);
  if (request.is_ok()) {
    FUZZ_CHECK(!bad_record, "bad_record set on success");
    fuzz::check_round_trip(*request, [](std::string_view b) { return decode_ingest_request(b); },
                           /*compare_values=*/false);
    fuzz::check_ingest_validation(request->records);
  } else {
    FUZZ_CHECK(request.status().code() == StatusCode::kInvalidArgument, fuzz::status_text(request.status()));
  }

  Result<std::vector<IngestRecord>> records = decode_ingest_records_json(input, &bad_record);
  if (records.is_ok()) {
    FUZZ_CHECK(!bad_record, "bad_record set on success");
    IngestRequest as_request;
    as_request.records = *records;
    fuzz::check_round_trip(as_request, [](std::string_view b) { return decode_ingest_request(b); },
                           /*compare_values=*/false);
    fuzz::check_ingest_validation(*records);
  } else {
    FUZZ_CHECK(records.status().code() == StatusCode::kInvalidArgument, fuzz::status_text(records.status()));
    FUZZ_CHECK(!bad_record || *bad_record < ds::kMaxBatchRecords, "bad_record past any batch");
  }
  return 0;
}
