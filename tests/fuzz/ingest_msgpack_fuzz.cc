// Fuzz target: the hub's msgpack ingest decoding (NATS ds.ingest.<type>):
// decode_ingest_request, then validate_ingest_records as the hub does.
// Checks: no crash or leak; a decoded request survives the round trip; a
// rejected one names a record inside the batch; a validated batch is in
// stored form and survives the wire (tests/fuzz/fuzz_support.h).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::optional<uint32_t> bad_record;
  Result<IngestRequest> request = decode_ingest_request(input, &bad_record);
  if (!request.is_ok()) {
    FUZZ_CHECK(request.status().code() == StatusCode::kInvalidArgument, fuzz::status_text(request.status()));
    return 0;
  }
  FUZZ_CHECK(!bad_record, "bad_record set on success");
  fuzz::check_round_trip(*request, [](std::string_view b) { return decode_ingest_request(b); },
                         /*compare_values=*/false);
  fuzz::check_ingest_validation(request->records);
  return 0;
}
