// Fuzz target: the remaining msgpack decoders, chosen by the input's first
// byte (mod 4), the rest being the message: 0 the ingest reply a producer
// reads, 1 the registration reply an agent reads (with the schemas it builds
// tables from), 2 the heartbeat request an agent reads, 3 the snapshot
// request the hub reads.
// Checks: no crash or leak; errors are InvalidArgument; a decoded message
// round-trips (equal value, equal bytes).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  if (size == 0) return 0;
  const std::string_view message = fuzz::as_view(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      (void)fuzz::check_decoder(message, [](std::string_view b) { return decode_ingest_reply(b); }, true);
      break;
    case 1: {
      auto m = fuzz::check_decoder(message, [](std::string_view b) { return decode_register_reply(b); }, true);
      if (m.is_ok() && !m->error) {
        for (const Delivery& d : m->deliveries) {
          FUZZ_CHECK(!d.schema.partition || d.schema.find_column(*d.schema.partition) != nullptr,
                     "a schema whose partition is not a column");
        }
      }
      break;
    }
    case 2:
      (void)fuzz::check_decoder(message, [](std::string_view b) { return decode_heartbeat_request(b); }, true);
      break;
    case 3: {
      auto m = fuzz::check_decoder(message, [](std::string_view b) { return decode_snapshot_request(b); }, true);
      if (m.is_ok()) FUZZ_CHECK(m->limit >= 1 && m->limit <= kMaxSnapshotPage, "a page size out of range");
      break;
    }
  }
  return 0;
}
