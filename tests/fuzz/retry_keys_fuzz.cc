// Fuzz target: a hub's reading of the header Ds-Retry-Keys of a delta batch
// from its stream (decode_retry_keys, hub/retry_key_header.h; the standby
// and the recovery after a restore read it). Checks: no crash or leak;
// errors are InvalidArgument; what decodes encodes back to the same value,
// and each entry within the size bound the cutting rule counts.

#include <cstddef>
#include <cstdint>

#include "hub/retry_key_header.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  const std::string_view text = fuzz::as_view(data, size);
  Result<std::vector<ProducerRetryKey>> keys = decode_retry_keys(text);
  if (!keys.is_ok()) {
    FUZZ_CHECK(keys.status().code() == StatusCode::kInvalidArgument, "a refusal that is not InvalidArgument");
    return 0;
  }
  const std::string again = encode_retry_keys(*keys);
  Result<std::vector<ProducerRetryKey>> back = decode_retry_keys(again);
  FUZZ_CHECK(back.is_ok() && *back == *keys, "decode(encode(keys)) differs");
  for (const ProducerRetryKey& k : *keys) {
    FUZZ_CHECK(encode_retry_keys({k}).size() + 1 <= retry_key_header_bound(k.producer),
               "an entry larger than its size bound");
  }
  return 0;
}
