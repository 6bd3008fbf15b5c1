// Fuzz target: the input reader of `deltasync push` (tools/record_reader.h).
// The first byte picks the format (bit 0: CSV or JSON lines) and the type
// (bit 1: text- or integer-partitioned, tests/fuzz/fuzz_support.h); the rest
// is the file. Records are read a few at a time, as push does, until the end
// or the first error.
// Checks: no crash or leak; errors are InvalidArgument; line numbers only
// grow and stay within the input; JSON lines give one record per non-blank
// line; every batch push would send, when the hub decodes and validates it,
// means what the same records validated before sending mean (no value
// changes meaning on the way).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "tests/fuzz/fuzz_support.h"
#include "tools/record_reader.h"

namespace {

using namespace ds;

// Lines with something other than blanks, as JSON lines counts records.
size_t non_blank_lines(std::string_view text) {
  size_t n = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (text.substr(start, end - start).find_first_not_of(" \t\r") != std::string_view::npos) ++n;
    start = end + 1;
  }
  return n;
}

void check_batch_over_the_wire(const TypeConfig& type, const std::vector<IngestRecord>& batch) {
  if (batch.empty()) return;
  IngestRequest request;
  request.records = batch;
  Result<IngestRequest> on_hub = decode_ingest_request(encode(request));
  if (!on_hub.is_ok()) return;  // refused with an error naming the record: push reports it
  const size_t limit = message_body_limit(kDefaultMaxPayload);
  std::vector<IngestRecord> local = batch;
  if (validate_ingest_records(type, local, limit)) return;
  std::optional<Rejection> rejected = validate_ingest_records(type, on_hub->records, limit);
  if (rejected) return;
  FUZZ_CHECK(on_hub->records == local, "a record read by push means something else on the hub");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const InputFormat format = (data[0] & 1) != 0 ? InputFormat::kCsv : InputFormat::kJsonLines;
  const TypeConfig type = (data[0] & 2) != 0 ? fuzz::integer_partitioned_type() : fuzz::text_partitioned_type();
  const std::string_view text = fuzz::as_view(data + 1, size - 1);
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;

  std::istringstream in{std::string(text)};
  RecordReader reader(in, format, type.schema);
  size_t records = 0;
  uint64_t last_line = 0;
  for (int calls = 0; calls < 100000; ++calls) {
    std::vector<IngestRecord> batch;
    Result<size_t> n = reader.read(3, batch);
    FUZZ_CHECK(reader.line() >= last_line && reader.line() <= lines, "line number out of order or past the input");
    last_line = reader.line();
    if (!n.is_ok()) {
      FUZZ_CHECK(n.status().code() == StatusCode::kInvalidArgument, fuzz::status_text(n.status()));
      return 0;
    }
    FUZZ_CHECK(*n == batch.size(), "read() counts other records than it appends");
    if (*n == 0) break;
    records += *n;
    check_batch_over_the_wire(type, batch);
  }
  if (format == InputFormat::kJsonLines) {
    FUZZ_CHECK(records == non_blank_lines(text), "JSON lines: not one record per non-blank line");
  }
  return 0;
}
