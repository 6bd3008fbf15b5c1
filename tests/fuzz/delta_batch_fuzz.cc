// Fuzz target: the agent's decoding of a delta batch from its stream
// (decode_delta_batch; also what the hub re-reads from its change log).
// Checks: no crash or leak; errors are InvalidArgument; a decoded batch
// round-trips to the same bytes (field values may be NaN, so values are
// compared through their encoding); the encoded size stays within the bound
// the hub cuts batches by (delta_batch_overhead + encoded_size per change).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  auto decode = [](std::string_view b) { return decode_delta_batch(b); };
  Result<DeltaBatch> m = fuzz::check_decoder(fuzz::as_view(data, size), decode, /*compare_values=*/false);
  if (!m.is_ok()) return 0;
  size_t bound = delta_batch_overhead(m->type);
  for (const Change& c : m->changes) {
    FUZZ_CHECK(!c.key.empty() && c.key.size() <= kMaxKeyBytes, "decoded a key out of bounds");
    bound += encoded_size(c);
  }
  FUZZ_CHECK(encode(*m).size() <= bound, "a delta batch encodes larger than its size bound");
  return 0;
}
