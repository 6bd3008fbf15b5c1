// Fuzz target: the hub's decoding of an agent's digest answer for
// `deltasync verify` (decode_digest_reply).
// Checks: no crash or leak; errors are InvalidArgument; a decoded reply
// round-trips (equal value, equal bytes); at most kMaxDigestBuckets buckets
// per type.

#include <cstddef>
#include <cstdint>

#include "shared/digest.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  auto decode = [](std::string_view b) { return decode_digest_reply(b); };
  Result<DigestReply> m = fuzz::check_decoder(fuzz::as_view(data, size), decode, /*compare_values=*/true);
  if (!m.is_ok() || m->error) return 0;
  for (const auto& [type, d] : m->types) {
    FUZZ_CHECK(d.buckets.size() <= kMaxDigestBuckets, "more buckets than kMaxDigestBuckets");
  }
  return 0;
}
